//! Injected storage faults, many seeds (issue #6, part 2).
//!
//! Each seed draws a `FaultPlan` (EIO after a sector prefix, short writes, read and fallocate
//! EIO, failed fdatasyncs that tear what they covered) and runs a workload of concurrent
//! appends (`Sync` and `None`), reads, clean reopens and simulated crashes (unsynced writes
//! torn per 512-byte sector) against a model. It checks:
//! - every `Sync` append that resolved `Ok` is readable, byte for byte, after every reopen;
//! - once a write or fdatasync failed, no append resolves `Ok` until the log is reopened;
//! - a read returns only whole batches that pass their CRC and were really appended at those
//!   offsets; an offset below the acknowledged-durable end never reads as corrupt;
//! - open after a fault or crash succeeds, and appends continue at the recovered end.
//!
//! A second test flips a bit at rest in a sealed segment: reading the batch holding it is a
//! corruption error, before and after a reopen, and every batch in the other segments and
//! before it in the same segment still reads back intact.
//!
//! Seeds: `SHARDLOG_FAULT_SEEDS` (default 200) from `SHARDLOG_FAULT_SEED_BASE` (default 0);
//! `SHARDLOG_FAULT_SEED=N` replays one seed. A failure names its seed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use engine::batch::split_batches;
use engine::io::faulty::{FaultInjector, FaultPlan};
use engine::{AppendError, Durability, Log, LogConfig, ReadError};

const SEEDS_DEFAULT: u64 = 200;
/// With at least this many seeds, every fault kind must have fired somewhere (a run that
/// injects nothing proves nothing).
const SEEDS_FOR_COVERAGE: usize = 50;

thread_local! {
    /// How often each fault kind fired, and workload counts, over the seeds run on this
    /// executor thread.
    static TALLY: std::cell::RefCell<BTreeMap<&'static str, u64>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

fn tally(what: &'static str, n: u64) {
    TALLY.with(|t| *t.borrow_mut().entry(what).or_default() += n);
}
const ROUNDS_PER_SEED: u32 = 24;
const REOPENS_PER_SEED_MAX: u32 = 3;

fn config() -> LogConfig {
    LogConfig { segment_bytes: 64 << 10, preallocate_step_bytes: 64 << 10, ..LogConfig::default() }
}

/// The shard's cache budget: small, so most reads go to disk.
const SHARD_CACHE_BYTES: u64 = 8 << 10;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// The seeds to run: one replayed seed, or a range.
fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("SHARDLOG_FAULT_SEED") {
        return vec![seed];
    }
    let base = env_u64("SHARDLOG_FAULT_SEED_BASE").unwrap_or(0);
    let count = env_u64("SHARDLOG_FAULT_SEEDS").unwrap_or(SEEDS_DEFAULT);
    (base..base + count).collect()
}

/// Prints how to replay the seed if the test panics while it is alive.
struct SeedGuard {
    seed: u64,
    injector: FaultInjector,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n*** seed {} failed: replay with SHARDLOG_FAULT_SEED={} ***\nplan: {:?}\nfaults fired: {:#?}",
                self.seed,
                self.seed,
                FaultPlan::random(self.seed),
                self.injector.events()
            );
        }
    }
}

/// A batch stored at `base`: its record count and its bytes from byte 16 on (what the log
/// must return unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    count: u32,
    body: Bytes,
}

/// What the log must hold.
#[derive(Default)]
struct Model {
    /// Batches known at their offsets: appends that resolved `Ok`, and what a reopen found.
    batches: BTreeMap<u64, Stored>,
    /// Offsets below this were acknowledged durable (a `Sync` append resolved `Ok`, or a reopen
    /// found them); they must survive anything.
    durable_end: u64,
    /// Every batch body ever offered to `append`, so that a batch of an append that failed
    /// after it was queued (its offsets never reported) is still recognised as real.
    attempted: HashMap<Bytes, u32>,
    /// A write or fdatasync failed since the last reopen: every `Sync` append must fail now.
    fenced: bool,
    /// Fault events that fired before the last reopen.
    events_before_reopen: usize,
    next_seed: u64,
}

impl Model {
    fn new_batch(&mut self, rng: &mut fastrand::Rng) -> Bytes {
        self.next_seed += 1;
        let count = rng.u32(1..=8);
        let value_bytes = rng.usize(12..1500);
        let b = batch(self.next_seed, count, value_bytes, 1_000 + self.next_seed as i64);
        self.attempted.insert(b.slice(16..), count);
        b
    }

    /// Keeps only batches below `end` (a crash may lose unacknowledged ones from the end).
    fn cut(&mut self, end: u64) {
        self.batches.retain(|&base, _| base < end);
    }
}

/// Checks one read result against the model: whole, CRC-valid batches that were appended,
/// contiguous from `offset`, and equal to the model where it knows the offset.
fn check_read(model: &Model, offset: u64, chunks: &[Bytes], next_offset: u64) {
    let mut bytes = Vec::new();
    for c in chunks {
        bytes.extend_from_slice(c);
    }
    let total = bytes.len();
    let mut consumed = 0usize;
    let mut expect = None::<u64>;
    for b in split_batches(Bytes::from(bytes)) {
        let b = b.unwrap_or_else(|e| panic!("read at {offset} returned a batch failing validation: {e}"));
        consumed += b.bytes().len();
        let base = b.base_offset() as u64;
        let body = b.bytes().slice(16..);
        match expect {
            None => assert!(base <= offset && offset <= b.last_offset() as u64, "first batch {base} misses {offset}"),
            Some(e) => assert_eq!(base, e, "batches not contiguous in read at {offset}"),
        }
        expect = Some(b.last_offset() as u64 + 1);
        assert_eq!(
            model.attempted.get(&body),
            Some(&b.record_count()),
            "read at {offset}: batch {base} was never appended"
        );
        if let Some(stored) = model.batches.get(&base) {
            assert_eq!(stored.body, body, "read at {offset}: batch {base} differs from what was appended");
        }
    }
    assert_eq!(consumed, total, "read at {offset} returned a partial batch");
    if let Some(e) = expect {
        assert_eq!(next_offset, e);
    }
}

/// Reads the whole log after a reopen, checks it against the model, and makes it the model.
async fn verify_reopened(log: &Log, model: &mut Model) {
    let start = log.log_start_offset().get();
    let end = log.log_end_offset().get();
    assert!(
        end >= model.durable_end,
        "acknowledged-durable offsets lost: log ends at {end}, {} were acknowledged",
        model.durable_end
    );
    let mut found = BTreeMap::new();
    let mut offset = start;
    while offset < end {
        let read = log.read(o(offset), 64 << 10).await.unwrap_or_else(|e| panic!("read at {offset} after reopen: {e}"));
        assert!(!read.is_empty(), "empty read at {offset} before end {end}");
        check_read(model, offset, &read.chunks, read.next_offset.get());
        for b in split_batches(read.to_bytes()) {
            let b = b.unwrap();
            found.insert(b.base_offset() as u64, Stored { count: b.record_count(), body: b.bytes().slice(16..) });
        }
        offset = read.next_offset.get();
    }
    for (base, stored) in &model.batches {
        if *base < model.durable_end {
            assert_eq!(found.get(base), Some(stored), "acknowledged batch at {base} lost or changed");
        } else if *base < end {
            // Not acknowledged durable, but the log still reaches here: it must be this batch.
            assert_eq!(found.get(base), Some(stored), "batch at {base} changed across a reopen");
        }
    }
    model.batches = found;
    model.durable_end = end;
    model.fenced = false;
}

/// One seed of the workload.
async fn run_seed(seed: u64, dir: &Path) {
    // Odd seeds sync through the shard's shared syncfs rounds (`shard_sync.rs`), even seeds
    // through each file's own fdatasync.
    engine::shard_sync::set_syncs_alone_max(if seed % 2 == 1 { 0 } else { usize::MAX });
    let plan = FaultPlan::random(seed);
    let injector = FaultInjector::install(plan);
    let _guard = SeedGuard { seed, injector: injector.clone() };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut model = Model::default();
    let mut log = Log::open(dir, config()).await.unwrap();
    injector.arm();
    let mut reopens = 0;
    for _round in 0..ROUNDS_PER_SEED {
        let action = rng.u32(0..100);
        if action < 60 {
            append_round(&log, &injector, &mut model, &mut rng).await;
        } else if action < 88 {
            read_round(&log, &injector, &model, &mut rng).await;
        } else if reopens < REOPENS_PER_SEED_MAX {
            reopens += 1;
            let crash = action >= 94 || model.fenced;
            log = reopen(log, dir, &injector, &mut model, crash).await;
            injector.arm();
        }
    }
    // Always end with a crash and a reopen without faults: everything acknowledged is there.
    let log = reopen(log, dir, &injector, &mut model, true).await;
    // And appends continue at the recovered end.
    let b = model.new_batch(&mut rng);
    let end = log.log_end_offset();
    let info = log.append(std::slice::from_ref(&b), Durability::Sync).await.unwrap();
    assert_eq!(info.base_offsets, vec![end]);
    log.close().await.unwrap();
    for e in injector.events() {
        tally(e.kind, 1);
    }
    FaultInjector::uninstall();
}

async fn append_round(log: &Log, injector: &FaultInjector, model: &mut Model, rng: &mut fastrand::Rng) {
    let fenced_before = model.fenced;
    let mut tasks = Vec::new();
    for _ in 0..rng.u32(1..=3) {
        let batches: Vec<Bytes> = (0..rng.u32(1..=3)).map(|_| model.new_batch(rng)).collect();
        let durability = if rng.u32(0..10) < 7 { Durability::Sync } else { Durability::None };
        let log = log.clone();
        let task = glommio::spawn_local(async move {
            let result = log.append(&batches, durability).await;
            (batches, durability, result)
        });
        tasks.push(task);
    }
    for task in tasks {
        let (batches, durability, result) = task.await;
        match result {
            Ok(info) => {
                // `None` appends may still be queued until the fence is noticed (a seal failing
                // in the background); they promise nothing. `Sync` ones must not resolve.
                assert!(
                    !(fenced_before && durability == Durability::Sync),
                    "a Sync append resolved Ok after a write or fdatasync failed: {info:?}"
                );
                for (b, &base) in batches.iter().zip(&info.base_offsets) {
                    let count = model.attempted[&b.slice(16..)];
                    model.batches.insert(base.get(), Stored { count, body: b.slice(16..) });
                }
                if durability == Durability::Sync {
                    tally("sync appends ok", 1);
                    model.durable_end = model.durable_end.max(info.log_end_offset.get());
                }
            }
            Err(AppendError::Fenced { .. }) | Err(AppendError::Io(_)) => tally("appends failed", 1),
            Err(e) => panic!("unexpected append error under injected faults: {e:?}"),
        }
    }
    let kinds: Vec<&str> = injector.events().iter().skip(model.events_before_reopen).map(|e| e.kind).collect();
    if kinds.iter().any(|k| matches!(*k, "write EIO" | "short write" | "fdatasync EIO" | "syncfs EIO")) {
        model.fenced = true;
    }
}

async fn read_round(log: &Log, injector: &FaultInjector, model: &Model, rng: &mut fastrand::Rng) {
    let (start, end) = (log.log_start_offset().get(), log.log_end_offset().get());
    if start == end {
        return;
    }
    let offset = rng.u64(start..end);
    let bytes_max = rng.u32(1..(96 << 10));
    match log.read(o(offset), bytes_max).await {
        Ok(read) => check_read(model, offset, &read.chunks, read.next_offset.get()),
        Err(ReadError::Io(_)) => {
            let read_faults = injector.events().iter().filter(|e| e.kind == "read EIO").count();
            assert!(read_faults > 0, "read at {offset} failed with no read fault injected");
        }
        Err(e) if e.is_corrupt() => {
            assert!(offset >= model.durable_end, "acknowledged offset {offset} read as corrupt: {e}");
            assert!(!injector.events().is_empty(), "read at {offset} corrupt with no fault injected: {e}");
        }
        Err(e) => panic!("unexpected read error at {offset}: {e:?}"),
    }
}

/// Closes (or crashes) the log and opens it again without faults, then checks it.
async fn reopen(log: Log, dir: &Path, injector: &FaultInjector, model: &mut Model, crash: bool) -> Log {
    injector.disarm();
    let crash = crash || log.close().await.is_err();
    if crash {
        tally("crashes", 1);
        injector.crash().await;
        // The dead log's handles fail every call now; `close` only waits for its background
        // seal to end (an index write racing the reopen's own would be a test artifact: a
        // crashed process runs nothing). It cannot write anything through a dead handle.
        let _ = log.close().await;
    } else {
        tally("clean reopens", 1);
    }
    drop(log);
    let log = Log::open(dir, config()).await.unwrap_or_else(|e| panic!("open after a fault (crash={crash}): {e}"));
    if !crash {
        assert!(log.log_end_offset() >= o(model.batches.keys().next_back().map_or(0, |b| b + 1)));
    }
    model.cut(log.log_end_offset().get());
    verify_reopened(&log, model).await;
    model.events_before_reopen = injector.events().len();
    log
}

type SeedBody = fn(u64, std::path::PathBuf) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// A seed takes tens of milliseconds; one that makes no progress for this long is hung. A
/// liveness bound, not a timing assertion.
const SEED_STALL_LIMIT: Duration = Duration::from_secs(120);

fn run_seeds(name: &'static str, body: SeedBody) -> BTreeMap<&'static str, u64> {
    let seeds = seeds();
    let count = seeds.len();
    let running = Arc::new(AtomicU64::new(u64::MAX));
    watch_for_a_stalled_seed(name, running.clone());
    let tally = run(move || async move {
        engine::cache::set_shard_budget_bytes(SHARD_CACHE_BYTES);
        for seed in seeds {
            running.store(seed, Ordering::Relaxed);
            let dir = temp_dir();
            body(seed, dir.path().join("p")).await;
        }
        running.store(u64::MAX, Ordering::Relaxed);
        TALLY.with(|t| std::mem::take(&mut *t.borrow_mut()))
    });
    println!("{name}: {count} seeds passed; {tally:?}");
    tally
}

/// A hung seed fails the run naming its seed, instead of hanging it (and CI) with no word of
/// where. The process exits: a hung executor thread cannot be unwound from outside.
fn watch_for_a_stalled_seed(name: &'static str, running: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut last = (u64::MAX, Instant::now());
        // Ends with the seeds: the executor's closure held the other reference.
        while Arc::strong_count(&running) > 1 {
            std::thread::sleep(Duration::from_secs(1));
            let seed = running.load(Ordering::Relaxed);
            if seed != last.0 {
                last = (seed, Instant::now());
            } else if seed != u64::MAX && last.1.elapsed() >= SEED_STALL_LIMIT {
                // Straight to stderr: the test harness captures `eprintln!` until the test ends.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** {name}: seed {seed} made no progress for {SEED_STALL_LIMIT:?}: replay with \
                     SHARDLOG_FAULT_SEED={seed} ***"
                );
                std::process::exit(1);
            }
        }
    });
}

#[test]
fn acknowledged_appends_survive_injected_faults() {
    let tally = run_seeds("faults", |seed, dir| Box::pin(async move { run_seed(seed, &dir).await }));
    if seeds().len() >= SEEDS_FOR_COVERAGE {
        for kind in
            ["write EIO", "short write", "read EIO", "fdatasync EIO", "syncfs EIO", "fallocate EIO", "torn sectors"]
        {
            assert!(tally.get(kind).is_some_and(|&n| n > 0), "no {kind:?} fault fired in {tally:?}");
        }
        assert!(tally["sync appends ok"] > 0 && tally["appends failed"] > 0, "{tally:?}");
    }
}

/// Walks a segment file: `(position, size, base_offset)` of each batch.
fn batch_positions(path: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let base = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let size = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize + 12;
        out.push((at as u64, size as u64, base));
        at += size;
    }
    assert_eq!(at, bytes.len(), "sealed segment {path:?} is not whole batches");
    out
}

async fn run_bit_flip_seed(seed: u64, dir: &Path) {
    let injector = FaultInjector::install(FaultPlan { seed, ..FaultPlan::default() });
    let _guard = SeedGuard { seed, injector: injector.clone() };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut model = Model::default();
    let log = Log::open(dir, config()).await.unwrap();
    // Enough for three or more 64 KiB segments.
    while log.stats().segments < 4 {
        let batches: Vec<Bytes> = (0..rng.u32(1..=4)).map(|_| model.new_batch(&mut rng)).collect();
        let info = log.append(&batches, Durability::None).await.unwrap();
        for (b, &base) in batches.iter().zip(&info.base_offsets) {
            model.batches.insert(base.get(), Stored { count: model.attempted[&b.slice(16..)], body: b.slice(16..) });
        }
    }
    log.close().await.unwrap();
    drop(log);

    let files = segment_files(dir);
    let sealed = &files[..files.len() - 1];
    let victim = &sealed[rng.usize(0..sealed.len())];
    let positions = batch_positions(victim);
    let file_bytes = std::fs::metadata(victim).unwrap().len();
    let flipped = injector.flip_bit_at_rest(victim, 0, file_bytes).unwrap();
    tally("bit flip", 1);
    let &(_, _, bad_base) = positions.iter().find(|(p, size, _)| *p <= flipped && flipped < p + size).unwrap();
    let victim_bases: Vec<u64> = positions.iter().map(|p| p.2).collect();

    for pass in 0..2 {
        let log = Log::open(dir, config()).await.unwrap();
        for (&base, stored) in &model.batches {
            let result = log.read(o(base), 1).await;
            let in_victim = victim_bases.contains(&base);
            match result {
                Ok(read) => {
                    assert_ne!(base, bad_base, "pass {pass}: the batch holding the flipped bit was served");
                    check_read(&model, base, &read.chunks, read.next_offset.get());
                    let first = split_batches(read.to_bytes()).next().unwrap().unwrap();
                    assert_eq!(first.bytes().slice(16..), stored.body);
                }
                Err(e) if e.is_corrupt() => {
                    assert!(in_victim && base >= bad_base, "pass {pass}: intact batch {base} read as corrupt: {e}");
                }
                Err(e) => panic!("pass {pass}: read of {base}: {e:?}"),
            }
        }
        // A bigger read from the victim's start stops before the corrupt batch (or fails at it).
        let first_base = victim_bases[0];
        match log.read(o(first_base), 1 << 20).await {
            Ok(read) => {
                check_read(&model, first_base, &read.chunks, read.next_offset.get());
                assert!(read.next_offset <= o(bad_base), "read past the corrupt batch {bad_base}");
            }
            Err(e) => assert!(e.is_corrupt() && first_base == bad_base, "{e:?}"),
        }
        log.close().await.unwrap();
    }
    FaultInjector::uninstall();
}

#[test]
fn a_flipped_bit_in_a_sealed_segment_is_reported_never_served() {
    let tally = run_seeds("bit flips", |seed, dir| Box::pin(async move { run_bit_flip_seed(seed, &dir).await }));
    if seeds().len() >= SEEDS_FOR_COVERAGE {
        assert!(tally["bit flip"] as usize >= seeds().len(), "{tally:?}");
    }
}

/// Regression: the baseOffset field is outside the CRC, so a flipped bit there used to be
/// served as a batch at the wrong offset. Now the reader checks it continues the offsets
/// counted from the index entry.
#[test]
fn a_flipped_base_offset_is_reported_never_served() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let log = Log::open(&path, config()).await.unwrap();
        let mut seed = 0;
        while log.stats().segments < 3 {
            seed += 1;
            log.append(&[batch(seed, 2, 700, 0)], Durability::None).await.unwrap();
        }
        log.close().await.unwrap();
        drop(log);
        let first = &segment_files(&path)[0];
        let positions = batch_positions(first);
        let (victim_position, _, victim_base) = positions[2];
        // The low bit of baseOffset (byte 7): the batch claims a neighbouring offset.
        let file = std::fs::OpenOptions::new().read(true).write(true).open(first).unwrap();
        let mut byte = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, victim_position + 7).unwrap();
        byte[0] ^= 1;
        std::os::unix::fs::FileExt::write_all_at(&file, &byte, victim_position + 7).unwrap();
        file.sync_all().unwrap();

        let log = Log::open(&path, config()).await.unwrap();
        let err = log.read(o(victim_base), 1).await.unwrap_err();
        assert!(matches!(err, ReadError::CorruptOffset { .. }), "{err:?}");
        // A read from the segment's start returns the two batches before it, and stops.
        let read = log.read(o(0), 1 << 20).await.unwrap();
        assert_eq!(read.next_offset, o(victim_base));
        assert_eq!(split_batches(read.to_bytes()).count(), 2);
        // The batch after it is readable through the index only if an entry points past the
        // corrupt one; either way it is never served at a wrong offset.
        let (_, _, next_base) = positions[3];
        if let Ok(read) = log.read(o(next_base), 1).await {
            let b = split_batches(read.to_bytes()).next().unwrap().unwrap();
            assert_eq!(b.base_offset() as u64, next_base);
        }
        log.close().await.unwrap();
    });
}
