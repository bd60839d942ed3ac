//! Property test: random append / read / roll / reopen / retention sequences against an
//! in-memory model. Offsets stay contiguous from the log start and reads return exactly what
//! was appended.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use engine::{Durability, Log, LogConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Batches of (record count, value size); acknowledged per `sync`.
    Append { batches: Vec<(u32, usize)>, sync: bool },
    /// Read from a point inside the log, as a fraction of its length.
    Read { at_permille: u32, bytes_max: u32 },
    /// Close then open; `crash` removes the clean-shutdown marker first, so recovery rescans,
    /// and `drop_index` also deletes the last segment's index.
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

fn config(retention_bytes: Option<u64>) -> LogConfig {
    LogConfig { tail_cache_bytes: 8 << 10, retention_bytes, ..small_config() }
}

/// The model: every batch still in the log, in order (base offset, count, bytes from 16 on).
struct Model {
    batches: Vec<(i64, u32, Bytes)>,
    end: u64,
}

async fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), model.end);
    let start = log.log_start_offset();
    assert_eq!(start, model.batches.first().map_or(model.end, |b| b.0 as u64));
    assert_eq!(read_all(log, start).await, model.batches);
}

fn run_ops(ops: Vec<Op>) {
    let dir = temp_dir();
    let path = dir.path().join("p-0");
    run(move || async move {
        let mut log = Log::open(&path, config(None)).await.unwrap();
        let mut model = Model { batches: Vec::new(), end: 0 };
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
                        assert_eq!(*base, model.end, "offsets assigned contiguously");
                        model.batches.push((*base as i64, count, b.slice(16..)));
                        model.end += u64::from(count);
                    }
                    if sync {
                        assert_eq!(log.durable_end_offset(), model.end);
                    }
                }
                Op::Read { at_permille, bytes_max } => {
                    let start = log.log_start_offset();
                    let offset = start + (model.end - start) * u64::from(at_permille) / 1000;
                    let read = log.read(offset, bytes_max).await.unwrap();
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
                    log.close().await.unwrap();
                    if crash {
                        std::fs::remove_file(path.join("clean_shutdown")).unwrap();
                        if drop_index {
                            let last = segment_files(&path).pop().unwrap();
                            let _ = std::fs::remove_file(last.with_extension("index"));
                        }
                    }
                    log = Log::open(&path, config(None)).await.unwrap();
                }
                Op::Retain { keep_bytes } => {
                    log.close().await.unwrap();
                    log = Log::open(&path, config(Some(keep_bytes))).await.unwrap();
                    let outcome = log.apply_retention(0).await.unwrap();
                    let start = log.log_start_offset();
                    assert_eq!(outcome.log_start_offset, start);
                    // Whole batches (whole segments) from the front only.
                    let keep_from = model.batches.partition_point(|b| (b.0 as u64) < start);
                    if keep_from < model.batches.len() {
                        assert_eq!(model.batches[keep_from].0 as u64, start);
                    }
                    model.batches.drain(..keep_from);
                    assert!(log.stats().size_bytes >= keep_bytes.min(log.stats().size_bytes));
                }
            }
            check(&log, &model).await;
        }
        log.close().await.unwrap();
        let log = Log::open(&path, config(None)).await.unwrap();
        check(&log, &model).await;
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run_ops(ops);
    }
}
