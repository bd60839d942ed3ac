//! The write path of one active segment: aligned O_DIRECT writes through io_uring, several in
//! flight, and group commit.
//!
//! Contract (read this before calling):
//! - `push` copies bytes into the open chunk and returns at once. Bytes pushed are **not
//!   durable** — not even written — until `wait_durable` (or `seal`) says so.
//! - One pusher at a time: the owning `Log` serialises appends; the appender itself only runs
//!   a background flusher task that writes and syncs.
//! - Positions are file positions (`FilePosition` at this API; plain bytes inside, where
//!   only positions meet). `end_position` ≥ `written_position` ≥ `durable_position`.
//!   The prefix `[0, durable_position)` survived an fdatasync that completed successfully.
//! - After any write or fdatasync error the appender is *fenced*: every waiter and every later
//!   call gets the error. A failed fdatasync is never retried, because the kernel may have
//!   dropped the dirty state it failed to write (the "fsyncgate" lesson); the owner must
//!   reopen the log, which re-verifies the tail from disk.
//!
//! Buffering: appends fill DMA buffers ("chunks"), each starting at an aligned file position:
//! `WRITE_CHUNK_BYTES` ones from the shard's pool while a stream runs, smaller ones (sized for
//! the bytes at hand, doubling as they fill: `buffer_for`) after a partial write, so a small
//! write goes out of a buffer of about its size without a copy. A full chunk is written as
//! soon as fewer than `WRITES_IN_FLIGHT_MAX` writes are in flight. A partial chunk is written
//! when nothing else is in flight and either something needs its bytes on disk (a sync waiter,
//! a seal or stop, shard memory pressure) or its oldest unwritten byte has waited
//! `LogConfig::partial_write_delay` — so a light stream of small appends shares one write
//! instead of paying one each. Its last page is padded with zeroes and copied into the next
//! chunk (a one-page one), so a later write rewrites that page — every write covers
//! `[align_down(start), align_up(end))`. That page is rewritten by a write of its own, never
//! together with the unwritten (fallocated) pages after it: ext4 cannot do such a mixed write
//! without blocking, so io_uring would hand it to a worker thread (see `push`). Two writes never
//! cover the same page at once: a chunk that starts inside the last page of a write still in
//! flight waits for it, otherwise the older write could land last and zero newer bytes.
//!
//! Idle partitions are cheap: once everything pushed is written and nothing is pending, the
//! open chunk's buffer goes back to the shard's pool (or is freed) and only its partial last
//! page is kept (in a one-page buffer); the next push that does not fit there takes a buffer
//! sized for it (`buffer_for`). So 2 000 quiet partitions hold ~8 MiB of buffers, not 2 GiB.
//!
//! Backpressure: a push waits (`wait_for_capacity`) while this appender has more than
//! `UNWRITTEN_BYTES_MAX` bytes not yet written, or while all appenders of the shard together
//! have more than `shard_unwritten_bytes_max(cache budget)` (unwritten batches cannot leave the
//! shard's cache, `cache.rs`).
//!
//! Group commit: a `Sync` waiter raises `sync_wanted_position`. The flusher issues one
//! fdatasync covering everything written so far; waiters that arrive while it is in flight
//! are covered by the next one. Writes continue while a sync is in flight, so the disk never
//! idles waiting for the sync.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use event_listener::Event;
use glommio::io::DmaBuffer;

use crate::deadlines;
use crate::error::IoError;
use crate::fs::{align_down, align_up};
use crate::ids::{FilePosition, Offset};
use crate::io::SegmentFile;
use crate::latency::LatencyHistogram;
use crate::limits::{
    shard_unwritten_bytes_max, CHUNK_POOL_BUFFERS_MAX, IO_ALIGN_BYTES, PAGE_POOL_BUFFERS_MAX,
    PARTIAL_WRITE_COPY_BYTES_MAX, PREALLOCATE_FIRST_STEP_BYTES, SMALL_CHUNK_BYTES_MIN, UNWRITTEN_BYTES_MAX,
    WRITES_IN_FLIGHT_MAX, WRITE_CHUNK_BYTES,
};

/// A DMA buffer that holds the file bytes `[file_position, file_position + len)`.
struct Chunk {
    file_position: u64,
    buf: DmaBuffer,
    len: usize,
}

impl Chunk {
    fn end_position(&self) -> u64 {
        self.file_position + self.len as u64
    }

    fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }
}

/// See `State::durable_marks`.
const DURABLE_MARKS_MAX: usize = 4096;

struct InFlightWrite {
    /// End of the data (not the padding) this write carries.
    data_end_position: u64,
    done: bool,
}

struct State {
    end_position: u64,
    written_position: u64,
    durable_position: u64,
    /// Aligned end of the last dispatched write: a chunk starting below it overlaps that write.
    dispatched_end_aligned: u64,
    /// Data end of the last dispatched write.
    dispatched_position: u64,
    /// Aligned end of the pages written (or being written) to the file: a page below it holds
    /// data on disk, so writing it again is a rewrite (see `push`).
    on_disk_end_aligned: u64,
    /// The chunk receiving pushes; always present, starts at an aligned position.
    open: Chunk,
    sealed: VecDeque<Chunk>,
    in_flight: VecDeque<InFlightWrite>,
    sync_wanted_position: u64,
    /// `(end_position, next_offset)` of pushed batches not yet durable, oldest first, so the
    /// log can say which offsets are durable. Bounded: past `DURABLE_MARKS_MAX` the newest
    /// mark is overwritten, which only makes `durable_next_offset` lag (never lead) until a
    /// sync covers it.
    durable_marks: VecDeque<(FilePosition, Offset)>,
    durable_next_offset: Offset,
    sync_deadline: Option<Instant>,
    sync_in_flight: bool,
    /// When the open chunk's undispatched bytes must be written at the latest: set when the
    /// flusher first sees them, cleared once none are left (`LogConfig::partial_write_delay`).
    partial_due: Option<Instant>,
    /// `LogConfig::partial_write_delay`.
    partial_write_delay: Duration,
    /// Bytes reserved on disk with fallocate.
    allocated_bytes: u64,
    /// This appender's share of `SHARD_UNWRITTEN_BYTES` (see `account`).
    accounted_unwritten_bytes: u64,
    fenced: Option<String>,
    stopping: bool,
    flusher_running: bool,
    /// A background fallocate is running (seal waits for it: a fallocate landing after the
    /// truncate would grow the sealed file again).
    preallocating: bool,
    /// Statistics for benchmarks and metrics.
    writes_count: u64,
    syncs_count: u64,
    sync_latency: LatencyHistogram,
}

struct Inner {
    file: Rc<SegmentFile>,
    path: PathBuf,
    state: RefCell<State>,
    /// Wakes the flusher: new bytes, a new sync request, a completed write or sync.
    work: Event,
    /// Wakes waiters: written/durable positions moved, or the appender was fenced.
    progress: Event,
}

/// Counters exposed for benchmarks: how many writes and fdatasyncs this appender issued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppenderStats {
    pub writes_count: u64,
    pub syncs_count: u64,
    pub sync_latency: LatencyHistogram,
}

pub(crate) struct Appender {
    inner: Rc<Inner>,
}

enum Step {
    Write(Chunk),
    Sync(u64),
    Wait(Option<Instant>),
    Stop,
}

impl Appender {
    /// Starts appending to `file` at `end_position`. `tail_page` holds the bytes
    /// `[align_down(end_position), end_position)` as they are on disk, so that the first write
    /// rewrites that page intact. `allocated_bytes` is the file's current size.
    pub fn start(
        file: Rc<SegmentFile>,
        path: &Path,
        end_position: FilePosition,
        next_offset: Offset,
        tail_page: &[u8],
        allocated_bytes: u64,
        partial_write_delay: Duration,
    ) -> Appender {
        let end_position = end_position.get();
        let chunk_position = align_down(end_position);
        assert_eq!(tail_page.len() as u64, end_position - chunk_position);
        assert!((tail_page.len() as u64) < IO_ALIGN_BYTES);
        // One page: an appender that never gets a push holds no chunk (see "Idle partitions").
        let mut buf = file.alloc_dma_buffer(IO_ALIGN_BYTES as usize);
        buf.as_bytes_mut()[..tail_page.len()].copy_from_slice(tail_page);
        let state = State {
            end_position,
            written_position: end_position,
            durable_position: end_position,
            dispatched_end_aligned: chunk_position,
            dispatched_position: end_position,
            on_disk_end_aligned: align_up(end_position),
            open: Chunk { file_position: chunk_position, buf, len: tail_page.len() },
            sealed: VecDeque::new(),
            in_flight: VecDeque::new(),
            sync_wanted_position: end_position,
            durable_marks: VecDeque::new(),
            durable_next_offset: next_offset,
            sync_deadline: None,
            sync_in_flight: false,
            partial_due: None,
            partial_write_delay,
            allocated_bytes,
            accounted_unwritten_bytes: 0,
            fenced: None,
            stopping: false,
            flusher_running: true,
            preallocating: false,
            writes_count: 0,
            syncs_count: 0,
            sync_latency: LatencyHistogram::default(),
        };
        let inner = Rc::new(Inner {
            file,
            path: path.to_path_buf(),
            state: RefCell::new(state),
            work: Event::new(),
            progress: Event::new(),
        });
        glommio::spawn_local(flusher(inner.clone())).detach();
        Appender { inner }
    }

    pub fn end_position(&self) -> FilePosition {
        FilePosition::new(self.inner.state.borrow().end_position)
    }

    pub fn written_position(&self) -> FilePosition {
        FilePosition::new(self.inner.state.borrow().written_position)
    }

    /// The offset after the last batch known durable in this segment.
    pub fn durable_next_offset(&self) -> Offset {
        self.inner.state.borrow().durable_next_offset
    }

    /// Bytes of DMA buffers this appender holds (the open chunk and full ones not yet written).
    pub fn buffer_bytes(&self) -> u64 {
        let state = self.inner.state.borrow();
        (state.open.buf.len() + state.sealed.iter().map(|c| c.buf.len()).sum::<usize>()) as u64
    }

    pub fn fenced(&self) -> Option<String> {
        self.inner.state.borrow().fenced.clone()
    }

    pub fn stats(&self) -> AppenderStats {
        let state = self.inner.state.borrow();
        AppenderStats {
            writes_count: state.writes_count,
            syncs_count: state.syncs_count,
            sync_latency: state.sync_latency,
        }
    }

    /// Makes sure the file has room for `size_bytes` more bytes, growing the preallocation in
    /// steps that start at `PREALLOCATE_FIRST_STEP_BYTES` and double up to `step_bytes`, but
    /// not past `segment_bytes` (the segment rolls there; the space would only be cut off
    /// again, and on a nearly full disk it is space others need).
    /// Running out of disk fails here, before any byte is accepted.
    ///
    /// Once the reservation is half used, the next step is allocated in the background, so
    /// appends rarely wait for fallocate.
    pub async fn reserve(&self, size_bytes: u64, step_bytes: u64, segment_bytes: u64) -> Result<(), IoError> {
        let (needed, allocated, preallocating) = {
            let state = self.inner.state.borrow();
            (align_up(state.end_position + size_bytes), state.allocated_bytes, state.preallocating)
        };
        let cap = align_up(segment_bytes).max(needed);
        // Grow the step with the segment (see PREALLOCATE_FIRST_STEP_BYTES).
        let step_bytes = align_up(allocated.clamp(PREALLOCATE_FIRST_STEP_BYTES.min(step_bytes), step_bytes));
        debug_assert!(step_bytes > 0);
        if needed > allocated {
            // One fallocate at a time: a failed one cuts the file back to the reservation,
            // which must not undo another one's success.
            if preallocating {
                self.wait_until(|s| !s.preallocating).await?;
                if needed <= self.inner.state.borrow().allocated_bytes {
                    return Ok(());
                }
            }
            let target = (needed.div_ceil(step_bytes) * step_bytes).min(cap);
            return preallocate(&self.inner, target).await;
        }
        if !preallocating && needed + step_bytes / 2 > allocated && allocated < cap {
            self.inner.state.borrow_mut().preallocating = true;
            let inner = self.inner.clone();
            let target = (allocated + step_bytes).min(cap);
            glommio::spawn_local(async move {
                if let Err(e) = preallocate(&inner, target).await {
                    // The next append that needs the space retries and reports it.
                    tracing::warn!(error = %e, "background preallocation failed");
                }
                inner.state.borrow_mut().preallocating = false;
                inner.progress.notify(usize::MAX);
            })
            .detach();
        }
        Ok(())
    }

    /// Waits while more than `UNWRITTEN_BYTES_MAX` accepted bytes are not yet on disk, or
    /// while the whole shard has more than `shard_unwritten_bytes_max` of them, so that
    /// producers faster than the disk are slowed instead of growing memory without bound. The
    /// shard bound is soft: appends that passed the check together may each overshoot it by
    /// one request.
    pub async fn wait_for_capacity(&self) -> Result<(), IoError> {
        loop {
            // Every appender's written progress (and fence) notifies the shard's event.
            let listener = SHARD_WRITE_PROGRESS.with(|event| event.listen());
            {
                let state = self.inner.state.borrow();
                if let Some(reason) = &state.fenced {
                    return Err(self.fenced_error(reason));
                }
                let own_ok = state.end_position - state.written_position <= UNWRITTEN_BYTES_MAX;
                let shard_max = shard_unwritten_bytes_max(crate::cache::shard_budget_bytes());
                let shard_ok = SHARD_UNWRITTEN_BYTES.with(Cell::get) <= shard_max;
                if own_ok && shard_ok {
                    return Ok(());
                }
            }
            listener.await;
        }
    }

    /// Copies one batch, given as `head` (the rewritten first bytes) then `body`, into the
    /// write buffers; `next_offset` is the offset after this batch. Returns the file position
    /// the batch starts at. The caller must have called `reserve` for these bytes.
    pub fn push(&self, head: &[u8], body: &[u8], next_offset: Offset) -> FilePosition {
        let mut state = self.inner.state.borrow_mut();
        assert!(state.fenced.is_none(), "push on a fenced appender");
        assert!(!state.stopping, "push on a stopping appender");
        let position = state.end_position;
        let size_bytes = (head.len() + body.len()) as u64;
        assert!(position + size_bytes <= state.allocated_bytes, "push beyond the reservation");
        if state.open.len + size_bytes as usize > state.open.buf.len()
            && state.open.buf.len() as u64 == IO_ALIGN_BYTES
            && state.open.file_position >= state.on_disk_end_aligned
        {
            // A one-page chunk at a fresh page: take one sized for the push (its bytes copied
            // over). A bigger one that fills up is sealed by `copy_in` instead.
            let len = state.open.len;
            let mut buf = buffer_for(&self.inner.file, len + size_bytes as usize);
            buf.as_bytes_mut()[..len].copy_from_slice(&state.open.buf.as_bytes()[..len]);
            return_buffer(std::mem::replace(&mut state.open.buf, buf));
        }
        // A one-page chunk holding the partial last page of an earlier write is never grown
        // into a full chunk: `copy_in` fills it and seals it as a write of its own, and the
        // bytes after it start a chunk at the next page. ext4 cannot write a range that
        // straddles written blocks (that page) and preallocated, still unwritten ones without
        // blocking (it returns EAGAIN to io_uring's non-blocking attempt), so such a write
        // went to an io_uring worker thread: at 1 000 partitions every write did. Two writes
        // that each stay on one side are issued inline (docs/benchmarks.md, "Many partitions").
        let sealed_before = state.sealed.len();
        self.copy_in(&mut state, head);
        self.copy_in(&mut state, body);
        // The flusher needs waking for a chunk to write, or to see the first pending bytes
        // (it then sets `partial_due` and registers it with the shard's deadline timer); more
        // bytes behind a due time it already holds change nothing, and waking it per push
        // costs a wake-up each.
        let wake_flusher = state.sealed.len() > sealed_before || state.partial_due.is_none();
        state.end_position += size_bytes;
        account(&mut state);
        let mark = (FilePosition::new(state.end_position), next_offset);
        if state.durable_marks.len() >= DURABLE_MARKS_MAX {
            if let Some(last) = state.durable_marks.back_mut() {
                *last = mark;
            }
        } else {
            state.durable_marks.push_back(mark);
        }
        debug_assert_eq!(state.open.end_position(), state.end_position);
        drop(state);
        if wake_flusher {
            self.inner.work.notify(usize::MAX);
        }
        FilePosition::new(position)
    }

    fn copy_in(&self, state: &mut State, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let chunk = &mut state.open;
            let room = chunk.buf.len() - chunk.len;
            let n = room.min(bytes.len());
            chunk.buf.as_bytes_mut()[chunk.len..chunk.len + n].copy_from_slice(&bytes[..n]);
            chunk.len += n;
            bytes = &bytes[n..];
            if chunk.is_full() {
                let next_position = chunk.end_position();
                assert_eq!(next_position % IO_ALIGN_BYTES, 0);
                // After a full-size chunk, another; after a smaller one, one at least twice its
                // size (a stream that speeds up reaches full chunks in a few writes).
                let sealed_bytes = chunk.buf.len();
                let buf = if sealed_bytes >= WRITE_CHUNK_BYTES {
                    take_buffer(&self.inner.file)
                } else {
                    buffer_for(&self.inner.file, bytes.len().max(sealed_bytes))
                };
                let full = std::mem::replace(&mut state.open, Chunk { file_position: next_position, buf, len: 0 });
                state.sealed.push_back(full);
            }
        }
    }

    /// Resolves once every byte below `position` survived an fdatasync.
    pub async fn wait_durable(&self, position: FilePosition) -> Result<(), IoError> {
        let position = position.get();
        {
            let mut state = self.inner.state.borrow_mut();
            assert!(position <= state.end_position);
            state.sync_wanted_position = state.sync_wanted_position.max(position);
        }
        self.inner.work.notify(usize::MAX);
        self.wait_until(|s| s.durable_position >= position).await
    }

    /// Asks for an fdatasync covering everything pushed so far, no later than `deadline`.
    pub fn sync_by(&self, deadline: Instant) {
        let mut state = self.inner.state.borrow_mut();
        state.sync_deadline = Some(state.sync_deadline.map_or(deadline, |d| d.min(deadline)));
        drop(state);
        self.inner.work.notify(usize::MAX);
    }

    async fn wait_until(&self, done: impl Fn(&State) -> bool) -> Result<(), IoError> {
        loop {
            let listener = self.inner.progress.listen();
            {
                let state = self.inner.state.borrow();
                if done(&state) {
                    return Ok(());
                }
                if let Some(reason) = &state.fenced {
                    return Err(self.fenced_error(reason));
                }
            }
            listener.await;
        }
    }

    fn fenced_error(&self, reason: &str) -> IoError {
        IoError::new("append (fenced)", &self.inner.path, std::io::Error::other(reason.to_owned()))
    }

    /// Writes and syncs everything, stops the flusher and cuts the preallocated tail off the
    /// file. Returns the final data length. The file stays open for reads.
    pub async fn seal(&self) -> Result<FilePosition, IoError> {
        let end = self.end_position();
        self.wait_durable(end).await?;
        let end_position = end.get();
        self.stop().await;
        self.wait_until(|s| !s.preallocating).await?;
        let file = &self.inner.file;
        file.truncate(end_position).await.map_err(|e| IoError::new("truncate", &self.inner.path, e))?;
        file.fdatasync().await.map_err(|e| IoError::new("fdatasync", &self.inner.path, e))?;
        self.inner.state.borrow_mut().allocated_bytes = end_position;
        Ok(end)
    }

    /// Stops the flusher once nothing is in flight (used by `seal` and on drop of a fenced log).
    pub async fn stop(&self) {
        self.inner.state.borrow_mut().stopping = true;
        self.inner.work.notify(usize::MAX);
        let _ = self.wait_until(|s| !s.flusher_running).await;
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        // Let the flusher finish what is in flight and exit; it holds its own reference.
        self.inner.state.borrow_mut().stopping = true;
        self.inner.work.notify(usize::MAX);
    }
}

thread_local! {
    /// Chunk buffers for reuse by every appender of this executor (shard): allocating and
    /// faulting in a fresh 1 MiB buffer costs ~15× filling a reused one. Only untrimmed,
    /// full-size buffers come back here.
    static CHUNK_POOL: RefCell<Vec<DmaBuffer>> = const { RefCell::new(Vec::new()) };
    /// One-page buffers for reuse: an open chunk right after a partial write or an idle one
    /// holds only its last page, and a small partial write goes out from a copy in one of
    /// these (see `dispatch`), so light partitions cycle pages instead of 1 MiB chunks.
    static PAGE_POOL: RefCell<Vec<DmaBuffer>> = const { RefCell::new(Vec::new()) };
    /// Bytes pushed to this shard's appenders and not yet written (fenced ones excluded).
    static SHARD_UNWRITTEN_BYTES: Cell<u64> = const { Cell::new(0) };
    /// Notified whenever `SHARD_UNWRITTEN_BYTES` drops: appends waiting for capacity recheck.
    static SHARD_WRITE_PROGRESS: Event = const { Event::new() };
}

/// Brings this appender's share of `SHARD_UNWRITTEN_BYTES` up to date: its pushed but
/// unwritten bytes, or none once fenced (they will never be written, and must not hold the
/// shard's other appends back). Called after every change of either position and on fence.
fn account(state: &mut State) {
    let unwritten_bytes = if state.fenced.is_some() { 0 } else { state.end_position - state.written_position };
    let before = state.accounted_unwritten_bytes;
    state.accounted_unwritten_bytes = unwritten_bytes;
    SHARD_UNWRITTEN_BYTES.with(|total| {
        let shard = total.get();
        assert!(shard >= before, "the shard's unwritten bytes include every appender's share");
        total.set(shard - before + unwritten_bytes);
    });
    if unwritten_bytes < before {
        SHARD_WRITE_PROGRESS.with(|event| event.notify(usize::MAX));
    }
}

/// This shard's bytes pushed and not yet written, over all its appenders.
pub(crate) fn shard_unwritten_bytes() -> u64 {
    SHARD_UNWRITTEN_BYTES.with(Cell::get)
}

/// A chunk buffer from this shard's pool, or a new one.
fn take_buffer(file: &SegmentFile) -> DmaBuffer {
    CHUNK_POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_else(|| file.alloc_dma_buffer(WRITE_CHUNK_BYTES))
}

/// A buffer for an open chunk that is to hold `needed` bytes: twice that rounded up to a power
/// of two (at least `SMALL_CHUNK_BYTES_MIN`), or a full pooled chunk once that reaches
/// `WRITE_CHUNK_BYTES`. At many partitions a partition gets a batch of a few KiB every few
/// milliseconds and each is written on its own (`partial_write_delay`): from a full 1 MiB
/// chunk, its partial write had to be copied into a buffer of its padded size so the chunk
/// could go back to the pool (4.6 % of the broker's CPU at 1 000 partitions); from a buffer
/// sized for it, the write goes out in place.
fn buffer_for(file: &SegmentFile, needed: usize) -> DmaBuffer {
    let size = needed.saturating_mul(2).next_power_of_two().max(SMALL_CHUNK_BYTES_MIN);
    if size >= WRITE_CHUNK_BYTES {
        take_buffer(file)
    } else {
        file.alloc_dma_buffer(size)
    }
}

/// A one-page buffer from this shard's pool, or a new one.
fn take_page(file: &SegmentFile) -> DmaBuffer {
    PAGE_POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_else(|| file.alloc_dma_buffer(IO_ALIGN_BYTES as usize))
}

/// Keeps an untrimmed chunk or page buffer for reuse (up to the pools' bounds); anything else
/// is freed.
fn return_buffer(buf: DmaBuffer) {
    let (pool, max) = match buf.len() {
        WRITE_CHUNK_BYTES => (&CHUNK_POOL, CHUNK_POOL_BUFFERS_MAX),
        len if len as u64 == IO_ALIGN_BYTES => (&PAGE_POOL, PAGE_POOL_BUFFERS_MAX),
        _ => return,
    };
    pool.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < max {
            pool.push(buf);
        }
    });
}

async fn preallocate(inner: &Inner, target: u64) -> Result<(), IoError> {
    if let Err(e) = inner.file.pre_allocate(target).await {
        // ext4 keeps what a failed fallocate managed to allocate, and grows the file to it: on
        // ENOSPC that is every free block, which would leave nothing for index files, the
        // catalog or consumer offsets. Give it back by cutting the file to what we reserved
        // before (bytes past it were never written).
        let allocated_bytes = inner.state.borrow().allocated_bytes;
        if let Err(cut) = inner.file.truncate(allocated_bytes).await {
            tracing::warn!(path = %inner.path.display(), error = %cut, "could not undo a failed fallocate");
        }
        return Err(IoError::new("fallocate", &inner.path, e));
    }
    let mut state = inner.state.borrow_mut();
    state.allocated_bytes = state.allocated_bytes.max(target);
    Ok(())
}

/// The background task that owns all I/O of one appender.
async fn flusher(inner: Rc<Inner>) {
    // This flusher's pending registration with the shard's deadline timer (`deadlines.rs`).
    let mut armed: Option<Instant> = None;
    loop {
        let listener = inner.work.listen();
        match next_step(&inner) {
            Step::Write(chunk) => {
                glommio::spawn_local(write_chunk(inner.clone(), chunk)).detach();
            }
            Step::Sync(position) => {
                glommio::spawn_local(sync_file(inner.clone(), position)).detach();
            }
            Step::Wait(None) => listener.await,
            Step::Wait(Some(deadline)) => {
                futures_lite::future::or(listener, deadlines::sleep_until(deadline, &mut armed)).await;
            }
            Step::Stop => break,
        }
    }
    inner.state.borrow_mut().flusher_running = false;
    inner.progress.notify(usize::MAX);
}

/// Decides the flusher's next action. Pure bookkeeping under the borrow; no I/O.
fn next_step(inner: &Inner) -> Step {
    let mut state = inner.state.borrow_mut();
    let idle = state.in_flight.is_empty() && !state.sync_in_flight;
    if state.fenced.is_some() {
        return if idle { Step::Stop } else { Step::Wait(None) };
    }
    // An Interval deadline that passed turns into a sync request for everything so far.
    if let Some(deadline) = state.sync_deadline {
        if Instant::now() >= deadline {
            state.sync_deadline = None;
            state.sync_wanted_position = state.sync_wanted_position.max(state.end_position);
        }
    }
    // 1. Full chunks, in file order, while there is room in flight and no page overlap.
    if state.in_flight.len() < WRITES_IN_FLIGHT_MAX {
        let overlaps = state.sealed.front().is_some_and(|c| c.file_position < state.dispatched_end_aligned);
        if state.sealed.front().is_some() && (!overlaps || state.in_flight.is_empty()) {
            if let Some(chunk) = state.sealed.pop_front() {
                return dispatch(&mut state, chunk, &inner.file);
            }
        }
    }
    // 2. The partial open chunk: when nothing else is in flight and it is due (see
    //    `partial_is_due`), or at once when a sync waiter needs its bytes and it does not
    //    overlap a write in flight (so the fdatasync is not held back by a write issued only
    //    after the others finished).
    let pending = state.open.end_position() > state.dispatched_position;
    let now = Instant::now();
    if !pending {
        state.partial_due = None;
    } else if state.partial_due.is_none() {
        state.partial_due = Some(now + state.partial_write_delay);
    }
    let needed_now = state.sync_wanted_position > state.dispatched_position
        && state.open.file_position >= state.dispatched_end_aligned
        && state.in_flight.len() < WRITES_IN_FLIGHT_MAX;
    if state.sealed.is_empty() && pending && ((state.in_flight.is_empty() && partial_is_due(&state, now)) || needed_now)
    {
        let chunk = split_open_chunk(&mut state, &inner.file);
        state.partial_due = None;
        return dispatch(&mut state, chunk, &inner.file);
    }
    // 3. An fdatasync, once the writes it must cover have landed (or nothing more is coming).
    let want_sync = state.sync_wanted_position > state.durable_position;
    let covers_enough = state.written_position >= state.sync_wanted_position || state.in_flight.is_empty();
    if want_sync && !state.sync_in_flight && state.written_position > state.durable_position && covers_enough {
        state.sync_in_flight = true;
        return Step::Sync(state.written_position);
    }
    if state.stopping && idle && state.end_position == state.written_position {
        return Step::Stop;
    }
    if idle && state.sealed.is_empty() && state.written_position == state.end_position {
        release_idle_chunk(&mut state, &inner.file);
    }
    // Wake for whichever comes first: the interval sync or the partial tail's write (only
    // worth a timer when nothing in flight will wake the flusher anyway).
    let partial_due = if state.in_flight.is_empty() && state.sealed.is_empty() { state.partial_due } else { None };
    let wake_at = match (state.sync_deadline, partial_due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Step::Wait(wake_at)
}

/// Whether the open chunk's partial tail should be written now rather than wait for more
/// bytes: a sync waiter wants them, the appender is stopping (seal, drop), the shard is over
/// its unwritten-bytes budget (appends wait for capacity), or they waited the partial write delay.
fn partial_is_due(state: &State, now: Instant) -> bool {
    let sync_wanted = state.sync_wanted_position > state.dispatched_position;
    let shard_pressed =
        SHARD_UNWRITTEN_BYTES.with(Cell::get) > shard_unwritten_bytes_max(crate::cache::shard_budget_bytes());
    sync_wanted || state.stopping || shard_pressed || state.partial_due.is_none_or(|due| now >= due)
}

/// Everything pushed is written and nothing is in flight: keep only the open chunk's partial
/// last page (in a one-page buffer) and give its full-size buffer back to the shard's pool.
fn release_idle_chunk(state: &mut State, file: &SegmentFile) {
    if state.open.buf.len() <= IO_ALIGN_BYTES as usize {
        return;
    }
    assert!((state.open.len as u64) < IO_ALIGN_BYTES, "an idle open chunk holds only its last partial page");
    assert_eq!(state.open.end_position(), state.end_position);
    let mut page = take_page(file);
    let len = state.open.len;
    page.as_bytes_mut()[..len].copy_from_slice(&state.open.buf.as_bytes()[..len]);
    let chunk = std::mem::replace(&mut state.open.buf, page);
    return_buffer(chunk);
}

fn dispatch(state: &mut State, mut chunk: Chunk, file: &SegmentFile) -> Step {
    let padded_bytes = align_up(chunk.len as u64) as usize;
    // A small partial chunk in a full-size buffer goes out from a copy in a buffer of its
    // padded size, and the full-size buffer goes back to the pool: trimmed for the write, it
    // could not be reused (glommio cannot untrim), and allocating 1 MiB per small write cost
    // thousands of partitions a fifth of the shard's CPU in malloc (docs/benchmarks.md, "Many
    // partitions"). A smaller buffer (`buffer_for`) is not pooled: it is trimmed and written
    // in place.
    if chunk.buf.len() == WRITE_CHUNK_BYTES
        && padded_bytes < chunk.buf.len()
        && padded_bytes <= PARTIAL_WRITE_COPY_BYTES_MAX
    {
        let mut small =
            if padded_bytes as u64 == IO_ALIGN_BYTES { take_page(file) } else { file.alloc_dma_buffer(padded_bytes) };
        small.as_bytes_mut()[..chunk.len].copy_from_slice(&chunk.buf.as_bytes()[..chunk.len]);
        return_buffer(std::mem::replace(&mut chunk.buf, small));
    }
    // Zero the padding so a torn tail reads as zeroes, never as stale bytes.
    chunk.buf.as_bytes_mut()[chunk.len..padded_bytes].fill(0);
    chunk.buf.trim_to_size(padded_bytes);
    state.dispatched_end_aligned = chunk.file_position + padded_bytes as u64;
    state.on_disk_end_aligned = state.on_disk_end_aligned.max(state.dispatched_end_aligned);
    state.dispatched_position = chunk.end_position();
    state.in_flight.push_back(InFlightWrite { data_end_position: chunk.end_position(), done: false });
    state.writes_count += 1;
    Step::Write(chunk)
}

/// Takes the open chunk for writing and starts a new one holding a copy of its last partial
/// page, which the next write will rewrite with more data behind it. The new one is a single
/// page: the next push that needs more takes a full chunk (`push`), and a partition that gets
/// no more holds no chunk.
fn split_open_chunk(state: &mut State, file: &SegmentFile) -> Chunk {
    let end_position = state.open.end_position();
    let next_position = align_down(end_position);
    let keep = (end_position - next_position) as usize;
    let mut buf = take_page(file);
    let from = (next_position - state.open.file_position) as usize;
    buf.as_bytes_mut()[..keep].copy_from_slice(&state.open.buf.as_bytes()[from..from + keep]);
    std::mem::replace(&mut state.open, Chunk { file_position: next_position, buf, len: keep })
}

async fn write_chunk(inner: Rc<Inner>, chunk: Chunk) {
    let expected_bytes = chunk.buf.len();
    let position = chunk.file_position;
    let data_end_position = chunk.end_position();
    let buf = Rc::new(chunk.buf);
    let result = inner.file.write_rc_at(buf.clone(), position).await;
    let mut state = inner.state.borrow_mut();
    match result {
        // Once fenced, the written prefix stops where it is: a write landing after an earlier
        // one failed must not carry `written_position` over the hole the failure left.
        Ok(n) if n == expected_bytes && state.fenced.is_none() => {
            if let Some(w) = state.in_flight.iter_mut().find(|w| w.data_end_position == data_end_position && !w.done) {
                w.done = true;
            }
            while state.in_flight.front().is_some_and(|w| w.done) {
                if let Some(w) = state.in_flight.pop_front() {
                    state.written_position = state.written_position.max(w.data_end_position);
                }
            }
            account(&mut state);
            if let Ok(buf) = Rc::try_unwrap(buf) {
                return_buffer(buf);
            }
        }
        Ok(n) if n != expected_bytes => {
            fence(&mut state, &inner.path, format!("short write: {n} of {expected_bytes} bytes at {position}"))
        }
        Ok(_) => {} // Landed after the fence; nothing more to do.
        Err(e) => fence(&mut state, &inner.path, format!("write at {position}: {e}")),
    }
    if state.fenced.is_some() {
        // This write is over either way; keep the in-flight queue honest so the flusher stops.
        state.in_flight.retain(|w| w.data_end_position != data_end_position);
    }
    drop(state);
    // Bytes just written may be evicted now: keep the shard's cache within its budget as
    // soon as it can be, not only at the next append (with the state borrow released: the
    // cache asks appenders how far they have written).
    crate::cache::evict();
    inner.work.notify(usize::MAX);
    inner.progress.notify(usize::MAX);
}

async fn sync_file(inner: Rc<Inner>, position: u64) {
    let started = Instant::now();
    // Its own fdatasync, or a share of one syncfs with the shard's other partitions syncing
    // at the same time (`shard_sync.rs`): either covers every write completed before this.
    let result = crate::shard_sync::sync(&inner.file).await;
    let mut state = inner.state.borrow_mut();
    state.sync_in_flight = false;
    state.syncs_count += 1;
    state.sync_latency.record(started.elapsed());
    match result {
        Ok(()) => {
            state.durable_position = state.durable_position.max(position);
            while let Some(&(end_position, next_offset)) = state.durable_marks.front() {
                if end_position.get() > state.durable_position {
                    break;
                }
                state.durable_next_offset = next_offset;
                state.durable_marks.pop_front();
            }
        }
        Err(e) => fence(&mut state, &inner.path, format!("sync: {e}")),
    }
    drop(state);
    inner.work.notify(usize::MAX);
    inner.progress.notify(usize::MAX);
}

fn fence(state: &mut State, path: &Path, reason: String) {
    tracing::error!(path = %path.display(), %reason, "segment write failed; fencing the log until it is reopened");
    if state.fenced.is_none() {
        state.fenced = Some(reason);
    }
    account(state);
}
