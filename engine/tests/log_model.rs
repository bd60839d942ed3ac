//! Property test: random append / read / roll / reopen / crash / retention sequences against an
//! in-memory model. Offsets stay contiguous from the log start and reads return exactly what
//! was appended. A crash is real: the fault layer tears every write no fdatasync covered, so
//! unsynced appends may vanish from the end, and synced ones never do.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use engine::io::faulty::{FaultInjector, FaultPlan};
use engine::{Durability, Log, LogConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Batches of (record count, value size); acknowledged per `sync`.
    Append { batches: Vec<(u32, usize)>, sync: bool },
    /// Read from a point inside the log, as a fraction of its length.
    Read { at_permille: u32, bytes_max: u32 },
    /// Close then open, or with `crash` a simulated power loss (unsynced writes torn) then
    /// open; `drop_index` also deletes the last segment's index before the open.
    Reopen { crash: bool, drop_index: bool },
    /// Retention by bytes.
    Retain { keep_bytes: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::vec((1u32..6, 0usize..3000), 1..4), any::<bool>())
            .prop_map(|(batches, sync)| Op::Append { batches, sync }),
        2 => (0u32..1000, 1u32..200_000).prop_map(|(at_permille, bytes_max)| Op::Read { at_permille, bytes_max }),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(crash, drop_index)| Op::Reopen { crash, drop_index }),
        1 => (64u64 << 10..512 << 10).prop_map(|keep_bytes| Op::Retain { keep_bytes }),
    ]
}

/// The partial write delays a case runs with: none (every tail written as soon as the disk is
/// idle), the default, and one longer than any case (tails wait for a sync, a roll or a close).
const PARTIAL_WRITE_DELAYS: [Duration; 3] =
    [Duration::ZERO, engine::limits::PARTIAL_WRITE_DELAY, Duration::from_secs(600)];

fn config(retention_bytes: Option<u64>, partial_write_delay: Duration) -> LogConfig {
    LogConfig { retention_bytes, partial_write_delay, ..small_config() }
}

/// The model: every batch still in the log, in order (base offset, count, bytes from 16 on).
struct Model {
    batches: Vec<(i64, u32, Bytes)>,
    end: u64,
    /// Offsets below this survived an fdatasync (a `Sync` append, a close): a crash keeps them.
    durable_end: u64,
}

/// Crashes that lost unsynced batches, over all cases: a run where none did proves nothing
/// about the crash path.
static CRASH_LOSSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sizes of the segment files, oldest first (after an open every one is cut to its data).
fn segment_sizes(dir: &std::path::Path) -> Vec<u64> {
    segment_files(dir).iter().map(|f| std::fs::metadata(f).unwrap().len()).collect()
}

async fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), o(model.end));
    let start = log.log_start_offset().get();
    assert_eq!(start, model.batches.first().map_or(model.end, |b| b.0 as u64));
    assert_eq!(read_all(log, o(start)).await, model.batches);
}

fn run_ops(ops: Vec<Op>, partial_write_delay: Duration, shared_syncs: bool) {
    let dir = temp_dir();
    let path = dir.path().join("p-0");
    run(move || async move {
        // Small, so most reads go to disk.
        engine::cache::set_shard_budget_bytes(8 << 10);
        // Half the cases sync through the shard's shared syncfs rounds (`shard_sync.rs`): a
        // crash must not lose what one of them acknowledged either.
        engine::shard_sync::set_syncs_alone_max(if shared_syncs { 0 } else { usize::MAX });
        // Disarmed: it injects no faults, but tracks what was synced so that it can crash.
        let injector = FaultInjector::install(FaultPlan::default());
        let mut log = Log::open(&path, config(None, partial_write_delay)).await.unwrap();
        let mut model = Model { batches: Vec::new(), end: 0, durable_end: 0 };
        let mut seed = 0u64;
        for op in ops {
            match op {
                Op::Append { batches, sync } => {
                    let bytes: Vec<Bytes> = batches
                        .iter()
                        .map(|&(count, size)| {
                            seed += 1;
                            batch(seed, count, size, seed as i64)
                        })
                        .collect();
                    let durability = if sync { Durability::Sync } else { Durability::None };
                    let info = log.append(&bytes, durability).await.unwrap();
                    for ((b, &(count, _)), base) in bytes.iter().zip(&batches).zip(&info.base_offsets) {
                        assert_eq!(base.get(), model.end, "offsets assigned contiguously");
                        model.batches.push((base.to_wire(), count, b.slice(16..)));
                        model.end += u64::from(count);
                    }
                    if sync {
                        assert_eq!(log.durable_end_offset(), o(model.end));
                        model.durable_end = model.end;
                    }
                }
                Op::Read { at_permille, bytes_max } => {
                    let start = log.log_start_offset().get();
                    let offset = start + (model.end - start) * u64::from(at_permille) / 1000;
                    let read = log.read(o(offset), bytes_max).await.unwrap();
                    if offset == model.end {
                        assert!(read.is_empty());
                        continue;
                    }
                    let got = batch_bodies(read.to_bytes());
                    let first = model.batches.partition_point(|b| b.0 as u64 + u64::from(b.1) <= offset);
                    assert!(!got.is_empty());
                    assert_eq!(got[..], model.batches[first..first + got.len()]);
                    assert!(got.len() == 1 || read.size_bytes() <= bytes_max as usize);
                }
                Op::Reopen { crash, drop_index } => {
                    if crash {
                        injector.crash().await;
                        // The dead log's handles fail every call; close only waits for its
                        // background work.
                        let _ = log.close().await;
                    } else {
                        log.close().await.unwrap();
                        model.durable_end = model.end;
                    }
                    if drop_index {
                        let last = segment_files(&path).pop().unwrap();
                        let _ = std::fs::remove_file(last.with_extension("index"));
                        let _ = std::fs::remove_file(path.join("clean_shutdown"));
                    }
                    log = Log::open(&path, config(None, partial_write_delay)).await.unwrap();
                    let end = log.log_end_offset().get();
                    assert!(
                        end >= model.durable_end,
                        "synced offsets lost: log ends at {end}, {} synced",
                        model.durable_end
                    );
                    assert!(end <= model.end, "the log grew across a reopen");
                    if end < model.end {
                        assert!(crash, "a clean reopen lost offsets {end}..{}", model.end);
                        CRASH_LOSSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Unsynced batches vanish from the end only, whole.
                    model.batches.retain(|b| (b.0 as u64) < end);
                    let kept_end = model.batches.last().map_or(model.end.min(end), |b| b.0 as u64 + u64::from(b.1));
                    assert_eq!(kept_end, end, "a crash cut the log inside a batch");
                    model.end = end;
                    model.durable_end = end;
                }
                Op::Retain { keep_bytes } => {
                    log.close().await.unwrap();
                    model.durable_end = model.end;
                    log = Log::open(&path, config(Some(keep_bytes), partial_write_delay)).await.unwrap();
                    let sizes = segment_sizes(&path);
                    let total_before: u64 = sizes.iter().sum();
                    assert_eq!(log.stats().size_bytes, total_before);
                    let outcome = log.apply_retention(0).await.unwrap();
                    let start = log.log_start_offset().get();
                    assert_eq!(outcome.log_start_offset, o(start));
                    // Whole batches (whole segments) from the front only.
                    let keep_from = model.batches.partition_point(|b| (b.0 as u64) < start);
                    if keep_from < model.batches.len() {
                        assert_eq!(model.batches[keep_from].0 as u64, start);
                    }
                    model.batches.drain(..keep_from);
                    // Whole segments from the front, and exactly as many as retention_bytes asks.
                    let deleted = outcome.segments_deleted as usize;
                    assert_eq!(outcome.bytes_deleted, sizes[..deleted].iter().sum::<u64>());
                    let total_after = log.stats().size_bytes;
                    assert_eq!(total_after, total_before - outcome.bytes_deleted);
                    assert_eq!(segment_sizes(&path), sizes[deleted..]);
                    if deleted > 0 {
                        assert!(total_after >= keep_bytes, "retention went below {keep_bytes}: {total_after} left");
                    }
                    // The next one would go below retention_bytes, or it is the active segment.
                    let remaining = &sizes[deleted..];
                    assert!(
                        remaining.len() == 1 || total_after - remaining[0] < keep_bytes,
                        "retention stopped early: {total_after} bytes left over {keep_bytes}, next segment {}",
                        remaining[0]
                    );
                }
            }
            check(&log, &model).await;
        }
        log.close().await.unwrap();
        let log = Log::open(&path, config(None, partial_write_delay)).await.unwrap();
        check(&log, &model).await;
        log.close().await.unwrap();
        FaultInjector::uninstall();
    });
}

const CASES: u32 = 64;

#[test]
fn log_matches_model() {
    let config = ProptestConfig {
        cases: CASES,
        failure_persistence: Some(Box::new(prop::test_runner::FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let mut runner = prop::test_runner::TestRunner::new(config);
    let cases =
        (prop::collection::vec(op(), 1..40), prop::sample::select(PARTIAL_WRITE_DELAYS.to_vec()), prop::bool::ANY);
    if let Err(e) = runner.run(&cases, |(ops, partial_write_delay, shared_syncs)| {
        run_ops(ops, partial_write_delay, shared_syncs);
        Ok(())
    }) {
        panic!("{e}");
    }
    let losses = CRASH_LOSSES.load(std::sync::atomic::Ordering::Relaxed);
    assert!(losses > 0, "in {CASES} cases no crash lost an unsynced batch: the crash path went untested");
    println!("{CASES} cases; {losses} crashes lost unsynced batches");
}
