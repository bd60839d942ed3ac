//! A fault-injecting segment file for tests (feature `fault-injection`), in the spirit of
//! TigerBeetle's simulated storage, but over the real file: every byte still goes to ext4
//! through the real `DmaFile`, and this layer decides, from one seed, when an operation fails
//! and what a crash leaves behind.
//!
//! What it injects (see `FaultPlan`):
//! - EIO on a write, after a random whole-sector prefix of it was written;
//! - a short write: a whole-sector prefix written and reported as a short count;
//! - EIO on a read, or on an fallocate;
//! - a failed fdatasync. Linux may drop the dirty state a failed fsync could not write and
//!   report success on the next one (PostgreSQL's "fsyncgate"), so a failed sync here also
//!   tears every write it should have covered, at once, as a crash would;
//! - a simulated crash (`FaultInjector::crash`): every write not covered by a successful
//!   fdatasync is torn at 512-byte sector granularity — each sector keeps one of its versions
//!   (the one before the unsynced writes, or any later one), and sectors past everything ever
//!   synced may hold garbage. Sectors are atomic, as on real disks; bytes a successful sync
//!   covered are never touched, because the appender only appends (every version of a sector
//!   holds the same synced prefix);
//! - a flipped bit at rest (`flip_bit_at_rest`), for sealed segments;
//! - a process death at a named step (`stop_at_step`): multi-file operations (truncation)
//!   call `io::crash_point` before each durable step; the n-th such step fails, and so does
//!   every later one, as if the process had died there. What the steps before it did stays on
//!   disk (each one is synced before the next begins).
//!
//! Scope: one injector per executor thread (`install`); files opened while it is installed
//! are wrapped. Index files and directory entries do not go through this layer (they are
//! written whole, synced, and renamed into place; see `fs.rs`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use event_listener::Event;
use glommio::io::{DmaBuffer, DmaFile, ReadResult};

use crate::fs::io_err;

/// The sector size of the simulated disk: the unit a torn write is made of, and of a short
/// write's prefix. glommio aligns O_DIRECT to the device's logical block (512 bytes here).
pub const SECTOR_BYTES: u64 = 512;

/// When faults fire. A `*_one_in` of N makes each such operation fail with odds 1/N (0 =
/// never); a `*_at` of n makes exactly the n-th such operation (1-based, counted since the
/// injector was armed) fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub seed: u64,
    pub write_error_one_in: u32,
    pub write_error_at: Option<u64>,
    pub short_write_one_in: u32,
    pub short_write_at: Option<u64>,
    pub read_error_one_in: u32,
    pub read_error_at: Option<u64>,
    pub sync_error_one_in: u32,
    pub sync_error_at: Option<u64>,
    pub allocate_error_one_in: u32,
}

impl FaultPlan {
    /// A plan drawn from `seed`: one or two fault kinds, each at a random operation or with
    /// random odds, so that a run of many seeds covers every kind and many timings.
    pub fn random(seed: u64) -> FaultPlan {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut plan = FaultPlan { seed, ..FaultPlan::default() };
        for _ in 0..rng.u32(1..=2) {
            let at = Some(rng.u64(1..40));
            let one_in = rng.u32(20..200);
            match rng.u32(0..9) {
                0 => plan.write_error_at = at,
                1 => plan.write_error_one_in = one_in,
                2 => plan.short_write_at = at,
                3 => plan.short_write_one_in = one_in,
                4 => plan.read_error_at = at,
                5 => plan.read_error_one_in = one_in,
                6 => plan.sync_error_at = Some(rng.u64(1..12)),
                7 => plan.sync_error_one_in = rng.u32(4..40),
                _ => plan.allocate_error_one_in = rng.u32(2..10),
            }
        }
        plan
    }
}

/// One fault that fired, for the failure message of a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    pub kind: &'static str,
    pub path: PathBuf,
    pub position: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Sync,
    Allocate,
}

/// A completed write not yet covered by a successful fdatasync.
struct PendingWrite {
    /// Completion order across all files: a `syncfs` covers the writes completed before it.
    seq: u64,
    position: u64,
    /// The bytes there before this write.
    old: Vec<u8>,
    new: Vec<u8>,
}

#[derive(Default)]
struct FileTrack {
    pending: Vec<PendingWrite>,
    /// End of the furthest write a successful fdatasync covered: no sector below it may turn
    /// into garbage on a crash.
    synced_end: u64,
}

struct State {
    plan: FaultPlan,
    rng: fastrand::Rng,
    armed: bool,
    /// Crash points passed so far, the one to stop at, and whether it was reached.
    steps_taken: u64,
    stop_at_step: Option<u64>,
    stopped_at: Option<&'static str>,
    counts: [u64; 4],
    files: BTreeMap<PathBuf, FileTrack>,
    /// Writes completed so far (`PendingWrite::seq`).
    writes_completed: u64,
    /// Every write issued, in issue order: `(file, position, length)` (`FaultInjector::writes`).
    writes_issued: Vec<(PathBuf, u64, u64)>,
    events: Vec<FaultEvent>,
}

struct Inner {
    state: RefCell<State>,
    /// Files opened before the last crash belong to the "dead process": every call fails.
    generation: Cell<u64>,
    crashed: Cell<bool>,
    in_flight: Cell<usize>,
    idle: Event,
}

/// The handle a test holds: arm, disarm, crash, flip bits, read what fired.
#[derive(Clone)]
pub struct FaultInjector {
    inner: Rc<Inner>,
}

thread_local! {
    static INSTALLED: RefCell<Option<FaultInjector>> = const { RefCell::new(None) };
}

fn eio(what: &str) -> std::io::Error {
    std::io::Error::other(format!("injected EIO: {what}"))
}

impl FaultInjector {
    /// Installs an injector for this executor thread: segment files opened from now on are
    /// wrapped by it. It starts disarmed (no faults fire until `arm`).
    pub fn install(plan: FaultPlan) -> FaultInjector {
        let state = State {
            rng: fastrand::Rng::with_seed(plan.seed ^ 0x5eed_fa17),
            plan,
            armed: false,
            steps_taken: 0,
            stop_at_step: None,
            stopped_at: None,
            counts: [0; 4],
            files: BTreeMap::new(),
            writes_completed: 0,
            writes_issued: Vec::new(),
            events: Vec::new(),
        };
        let injector = FaultInjector {
            inner: Rc::new(Inner {
                state: RefCell::new(state),
                generation: Cell::new(0),
                crashed: Cell::new(false),
                in_flight: Cell::new(0),
                idle: Event::new(),
            }),
        };
        INSTALLED.with(|i| *i.borrow_mut() = Some(injector.clone()));
        injector
    }

    /// Removes this thread's injector; files opened later are plain.
    pub fn uninstall() {
        INSTALLED.with(|i| *i.borrow_mut() = None);
    }

    pub(crate) fn installed() -> Option<FaultInjector> {
        INSTALLED.with(|i| i.borrow().clone())
    }

    /// Faults fire from now on; operation counts restart at zero.
    pub fn arm(&self) {
        let mut state = self.inner.state.borrow_mut();
        state.armed = true;
        state.counts = [0; 4];
    }

    /// No more faults fire (a crash can still be simulated).
    pub fn disarm(&self) {
        self.inner.state.borrow_mut().armed = false;
    }

    /// Makes the `n`-th crash point from now on (1-based) and every later one fail: the
    /// process "dies" just before that step. `None` disables it.
    pub fn stop_at_step(&self, n: Option<u64>) {
        let mut state = self.inner.state.borrow_mut();
        state.steps_taken = 0;
        state.stop_at_step = n;
        state.stopped_at = None;
    }

    /// Crash points passed since `stop_at_step`, and the step the process died before.
    pub fn steps(&self) -> (u64, Option<&'static str>) {
        let state = self.inner.state.borrow();
        (state.steps_taken, state.stopped_at)
    }

    pub(crate) fn crash_point(&self, step: &'static str) -> std::io::Result<()> {
        let mut state = self.inner.state.borrow_mut();
        if state.stopped_at.is_some() {
            return Err(eio("process stopped at an earlier crash point"));
        }
        state.steps_taken += 1;
        if state.stop_at_step.is_some_and(|n| state.steps_taken >= n) {
            state.stopped_at = Some(step);
            let position = state.steps_taken;
            state.events.push(FaultEvent {
                kind: "stopped at step",
                path: PathBuf::new(),
                position,
                detail: step.to_owned(),
            });
            return Err(eio("simulated process death at a crash point"));
        }
        Ok(())
    }

    /// Every fault that fired so far.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.inner.state.borrow().events.clone()
    }

    /// Every write issued to a wrapped file so far, in issue order, faulty or not:
    /// `(file, position, length)`. Tests check the shape of the appender's writes with it.
    pub fn writes(&self) -> Vec<(PathBuf, u64, u64)> {
        self.inner.state.borrow().writes_issued.clone()
    }

    /// A random number from the injector's seeded stream (for tests that pick targets).
    pub fn random_u64(&self, range: std::ops::Range<u64>) -> u64 {
        self.inner.state.borrow_mut().rng.u64(range)
    }

    /// Simulates a power loss: waits for the operations in flight, then tears every write no
    /// successful fdatasync covered (see the module comment). Files opened before the crash
    /// fail every later call with EIO, as the handles of a dead process would. Returns the
    /// number of sectors that did not keep their newest version.
    pub async fn crash(&self) -> u64 {
        self.inner.crashed.set(true);
        while self.inner.in_flight.get() > 0 {
            let listener = self.inner.idle.listen();
            if self.inner.in_flight.get() == 0 {
                break;
            }
            listener.await;
        }
        let mut state = self.inner.state.borrow_mut();
        let state = &mut *state;
        let files = std::mem::take(&mut state.files);
        let mut torn = 0;
        for (path, track) in files {
            torn += tear(&mut state.rng, &mut state.events, &path, track, "crash");
        }
        self.inner.generation.set(self.inner.generation.get() + 1);
        self.inner.crashed.set(false);
        torn
    }

    /// Flips one random bit of the file at `path` within `[start, end)` (bytes at rest, as
    /// bit rot would); returns the position of the flipped byte.
    pub fn flip_bit_at_rest(&self, path: &Path, start: u64, end: u64) -> std::io::Result<u64> {
        assert!(start < end);
        let mut state = self.inner.state.borrow_mut();
        let position = state.rng.u64(start..end);
        let bit = state.rng.u8(0..8);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, position)?;
        byte[0] ^= 1 << bit;
        file.write_all_at(&byte, position)?;
        file.sync_data()?;
        state.events.push(FaultEvent {
            kind: "bit flip",
            path: path.to_path_buf(),
            position,
            detail: format!("bit {bit}"),
        });
        Ok(position)
    }

    /// Decides whether this operation fails; `Err` when the file belongs to a dead process.
    fn begin(&self, op: Op, generation: u64) -> std::io::Result<bool> {
        if self.inner.crashed.get() || generation != self.inner.generation.get() {
            return Err(eio("file handle from before a simulated crash"));
        }
        self.inner.in_flight.set(self.inner.in_flight.get() + 1);
        let mut state = self.inner.state.borrow_mut();
        if !state.armed {
            return Ok(false);
        }
        let i = op as usize;
        state.counts[i] += 1;
        let n = state.counts[i];
        let plan = &state.plan;
        let (at, one_in) = match op {
            Op::Read => (plan.read_error_at, plan.read_error_one_in),
            Op::Write => (plan.write_error_at, plan.write_error_one_in),
            Op::Sync => (plan.sync_error_at, plan.sync_error_one_in),
            Op::Allocate => (None, plan.allocate_error_one_in),
        };
        Ok(at == Some(n) || (one_in > 0 && state.rng.u32(0..one_in) == 0))
    }

    /// A short write is a second kind of write fault, drawn separately.
    fn short_write(&self) -> bool {
        let mut state = self.inner.state.borrow_mut();
        if !state.armed {
            return false;
        }
        let n = state.counts[Op::Write as usize];
        let (at, one_in) = (state.plan.short_write_at, state.plan.short_write_one_in);
        at == Some(n) || (one_in > 0 && state.rng.u32(0..one_in) == 0)
    }

    fn end(&self) {
        self.inner.in_flight.set(self.inner.in_flight.get() - 1);
        self.inner.idle.notify(usize::MAX);
    }

    fn record(&self, kind: &'static str, path: &Path, position: u64, detail: String) {
        tracing::warn!(kind, path = %path.display(), position, %detail, "injected fault");
        self.inner.state.borrow_mut().events.push(FaultEvent { kind, path: path.to_path_buf(), position, detail });
    }
}

/// Applies a crash to one file's unsynced writes; returns the sectors that lost their newest
/// version.
fn tear(rng: &mut fastrand::Rng, events: &mut Vec<FaultEvent>, path: &Path, track: FileTrack, why: &str) -> u64 {
    // Every version of each sector, oldest first: the one before the unsynced writes, then
    // one per write.
    let mut sectors: BTreeMap<u64, Vec<&[u8]>> = BTreeMap::new();
    for w in &track.pending {
        for (i, new) in w.new.chunks(SECTOR_BYTES as usize).enumerate() {
            let at = w.position + i as u64 * SECTOR_BYTES;
            let old = &w.old[i * SECTOR_BYTES as usize..][..new.len()];
            sectors.entry(at).or_insert_with(|| vec![old]).push(new);
        }
    }
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return 0; // Deleted (retention, topic deletion): nothing to tear.
    };
    let mut torn = 0;
    let mut garbage = vec![0u8; SECTOR_BYTES as usize];
    for (at, versions) in sectors {
        let newest = versions.len() - 1;
        let may_be_garbage = at >= track.synced_end;
        let pick = rng.usize(0..versions.len() + usize::from(may_be_garbage));
        if pick == newest {
            continue;
        }
        torn += 1;
        let bytes: &[u8] = if pick < versions.len() {
            versions[pick]
        } else {
            rng.fill(&mut garbage);
            &garbage[..versions[newest].len()]
        };
        // The real file holds the newest version; write the chosen one over it. A failure
        // here is the test machine's, not the engine's: report it loudly.
        if let Err(e) = file.write_all_at(bytes, at) {
            panic!("fault injection could not tear {path:?} at {at}: {e}");
        }
    }
    if torn > 0 {
        if let Err(e) = file.sync_data() {
            panic!("fault injection could not sync {path:?}: {e}");
        }
        events.push(FaultEvent {
            kind: "torn sectors",
            path: path.to_path_buf(),
            position: 0,
            detail: format!("{why}: {torn} sectors"),
        });
    }
    torn
}

/// A segment file whose operations go through a `FaultInjector`.
pub struct FaultyFile {
    inner: DmaFile,
    path: PathBuf,
    injector: FaultInjector,
    generation: u64,
}

/// Ends an operation (in-flight count) on every return path.
struct OpGuard<'a>(&'a FaultInjector);

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl FaultyFile {
    /// Wraps a file just opened. What it holds already (`size_bytes`) is treated as synced: a
    /// crash may tear it only back to an older version, never into garbage.
    pub(crate) fn new(inner: DmaFile, path: &Path, size_bytes: u64, injector: FaultInjector) -> FaultyFile {
        let generation = injector.inner.generation.get();
        {
            let mut state = injector.inner.state.borrow_mut();
            let track = state.files.entry(path.to_path_buf()).or_default();
            track.synced_end = track.synced_end.max(size_bytes);
        }
        FaultyFile { inner, path: path.to_path_buf(), injector, generation }
    }

    pub(crate) fn inner(&self) -> &DmaFile {
        &self.inner
    }

    fn begin(&self, op: Op) -> std::io::Result<(bool, OpGuard<'_>)> {
        let fault = self.injector.begin(op, self.generation)?;
        Ok((fault, OpGuard(&self.injector)))
    }

    pub(crate) async fn read_at(&self, position: u64, len: usize) -> std::io::Result<ReadResult> {
        let (fault, _guard) = self.begin(Op::Read)?;
        if fault {
            self.injector.record("read EIO", &self.path, position, format!("{len} bytes"));
            return Err(eio("read"));
        }
        self.inner.read_at(position, len).await.map_err(io_err)
    }

    pub(crate) async fn write_rc_at(&self, buf: Rc<DmaBuffer>, position: u64) -> std::io::Result<usize> {
        let (fault, _guard) = self.begin(Op::Write)?;
        let short = !fault && self.injector.short_write();
        let len = buf.len();
        self.injector.inner.state.borrow_mut().writes_issued.push((self.path.clone(), position, len as u64));
        let old = self.read_old(position, len).await?;
        if fault || short {
            // A whole-sector prefix, possibly empty, reaches the disk either way.
            let sectors = len as u64 / SECTOR_BYTES;
            let prefix = (self.injector.random_u64(0..sectors) * SECTOR_BYTES) as usize;
            if prefix > 0 {
                let mut part = self.inner.alloc_dma_buffer(prefix);
                part.as_bytes_mut().copy_from_slice(&buf.as_bytes()[..prefix]);
                self.inner.write_at(part, position).await.map_err(io_err)?;
                self.pending(position, old[..prefix].to_vec(), buf.as_bytes()[..prefix].to_vec());
            }
            let kind = if fault { "write EIO" } else { "short write" };
            self.injector.record(kind, &self.path, position, format!("{prefix} of {len} bytes written"));
            return if fault { Err(eio("write")) } else { Ok(prefix) };
        }
        let n = self.inner.write_rc_at(buf.clone(), position).await.map_err(io_err)?;
        self.pending(position, old[..n].to_vec(), buf.as_bytes()[..n].to_vec());
        Ok(n)
    }

    /// The bytes a write is about to replace (zeroes past the end of the file).
    async fn read_old(&self, position: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let got = self.inner.read_at(position, len).await.map_err(io_err)?;
        let mut old = got.to_vec();
        old.resize(len, 0);
        Ok(old)
    }

    fn pending(&self, position: u64, old: Vec<u8>, new: Vec<u8>) {
        let mut state = self.injector.inner.state.borrow_mut();
        let seq = state.writes_completed;
        state.writes_completed += 1;
        state.files.entry(self.path.clone()).or_default().pending.push(PendingWrite { seq, position, old, new });
    }

    pub(crate) async fn fdatasync(&self) -> std::io::Result<()> {
        let (fault, _guard) = self.begin(Op::Sync)?;
        // Writes completed before the sync starts are the ones it covers.
        let covered = self.injector.inner.state.borrow().files.get(&self.path).map_or(0, |t| t.pending.len());
        if fault {
            // fsyncgate: the kernel may drop what it failed to write; tear it now.
            {
                let mut state = self.injector.inner.state.borrow_mut();
                let state = &mut *state;
                if let Some(track) = state.files.get_mut(&self.path) {
                    let pending = track.pending.drain(..covered).collect();
                    let lost = FileTrack { pending, synced_end: track.synced_end };
                    tear(&mut state.rng, &mut state.events, &self.path, lost, "failed fdatasync");
                }
            }
            self.injector.record("fdatasync EIO", &self.path, 0, format!("{covered} writes it covered torn"));
            return Err(eio("fdatasync"));
        }
        self.inner.fdatasync().await.map_err(io_err)?;
        let mut state = self.injector.inner.state.borrow_mut();
        if let Some(track) = state.files.get_mut(&self.path) {
            for w in track.pending.drain(..covered) {
                track.synced_end = track.synced_end.max(w.position + w.new.len() as u64);
            }
        }
        Ok(())
    }

    /// syncfs: an fdatasync of every file the injector tracks (every test keeps them on one
    /// file system), covering the writes completed before it started. A failure tears them all.
    pub(crate) async fn sync_file_system(&self) -> std::io::Result<()> {
        let (fault, _guard) = self.begin(Op::Sync)?;
        let covered_below = self.injector.inner.state.borrow().writes_completed;
        let take = |state: &mut State| -> Vec<(PathBuf, FileTrack)> {
            let mut taken = Vec::new();
            for (path, track) in state.files.iter_mut() {
                let n = track.pending.iter().take_while(|w| w.seq < covered_below).count();
                debug_assert!(track.pending[n..].iter().all(|w| w.seq >= covered_below), "pending writes out of order");
                let pending: Vec<PendingWrite> = track.pending.drain(..n).collect();
                taken.push((path.clone(), FileTrack { pending, synced_end: track.synced_end }));
            }
            taken
        };
        if fault {
            let mut torn = 0;
            {
                let mut state = self.injector.inner.state.borrow_mut();
                let state = &mut *state;
                for (path, lost) in take(state) {
                    torn += lost.pending.len();
                    tear(&mut state.rng, &mut state.events, &path, lost, "failed syncfs");
                }
            }
            self.injector.record("syncfs EIO", &self.path, 0, format!("{torn} writes it covered torn"));
            return Err(eio("syncfs"));
        }
        super::syncfs(&self.inner).await?;
        let mut state = self.injector.inner.state.borrow_mut();
        for (path, synced) in take(&mut state) {
            if let Some(track) = state.files.get_mut(&path) {
                for w in synced.pending {
                    track.synced_end = track.synced_end.max(w.position + w.new.len() as u64);
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn pre_allocate(&self, size_bytes: u64) -> std::io::Result<()> {
        let (fault, _guard) = self.begin(Op::Allocate)?;
        if fault {
            self.injector.record("fallocate EIO", &self.path, size_bytes, String::new());
            return Err(eio("fallocate"));
        }
        self.inner.pre_allocate(size_bytes, false).await.map_err(io_err)
    }

    pub(crate) async fn truncate(&self, size_bytes: u64) -> std::io::Result<()> {
        let (_, _guard) = self.begin_unfaulted()?;
        self.inner.truncate(size_bytes).await.map_err(io_err)?;
        // Bytes past the new end are gone: nothing there to tear, and a later write there is
        // new data again.
        let mut state = self.injector.inner.state.borrow_mut();
        if let Some(track) = state.files.get_mut(&self.path) {
            track.pending.retain(|w| w.position < size_bytes);
            track.synced_end = track.synced_end.min(size_bytes);
        }
        Ok(())
    }

    pub(crate) async fn file_size(&self) -> std::io::Result<u64> {
        let (_, _guard) = self.begin_unfaulted()?;
        self.inner.file_size().await.map_err(io_err)
    }

    /// Operations without injected faults still die with the simulated process.
    fn begin_unfaulted(&self) -> std::io::Result<((), OpGuard<'_>)> {
        if self.injector.inner.crashed.get() || self.generation != self.injector.inner.generation.get() {
            return Err(eio("file handle from before a simulated crash"));
        }
        self.injector.inner.in_flight.set(self.injector.inner.in_flight.get() + 1);
        Ok(((), OpGuard(&self.injector)))
    }
}
