//! Append, read, roll, reopen, retention, time lookup and long-poll on a real file system.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use engine::{AppendError, Durability, Log, LogConfig, ReadError};

#[test]
fn append_read_reopen_round_trip() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (o(0), o(0)));
        let mut expected = Vec::new();
        for seed in 0..40u64 {
            let b = batch(seed, 1 + (seed % 5) as u32, 100 + seed as usize * 37, 1_000 + seed as i64);
            let durability = if seed % 3 == 0 { Durability::Sync } else { Durability::None };
            let info = log.append(std::slice::from_ref(&b), durability).await.unwrap();
            expected.push((info.base_offsets[0].to_wire(), 1 + (seed % 5) as u32, b.slice(16..)));
        }
        assert!(log.stats().segments > 1, "small segments must have rolled");
        assert_eq!(read_all(&log, o(0)).await, expected);
        log.close().await.unwrap();
        assert!(engine::has_clean_shutdown_marker(&path).await);

        let log = Log::open(&path, small_config()).await.unwrap();
        assert!(!engine::has_clean_shutdown_marker(&path).await, "marker removed before writes");
        assert_eq!(read_all(&log, o(0)).await, expected);
        // Appends continue at the right offset after reopen.
        let end = log.log_end_offset();
        let info = log.append(&[batch(99, 2, 10, 5_000)], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![end]);
        assert_eq!(log.durable_end_offset(), end.checked_add(2).unwrap());
        log.close().await.unwrap();
    });
}

#[test]
fn client_base_offsets_are_ignored_and_bad_batches_rejected() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, LogConfig::default()).await.unwrap();
        let mut b = batch(1, 3, 10, 0).to_vec();
        b[0..8].copy_from_slice(&777i64.to_be_bytes());
        let info = log.append(&[Bytes::from(b.clone())], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![o(0)]);
        assert_eq!(info.log_end_offset, o(3));
        // A corrupt batch in a request rejects the whole request; nothing is appended.
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = log.append(&[Bytes::from(b.clone()), Bytes::from(bad)], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::InvalidBatch { index: 1, .. }), "{err}");
        assert_eq!(log.log_end_offset(), o(3));
        let err = log.append(&[], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::Empty));
        let err = log.append(&[Bytes::from_static(b"short")], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::InvalidBatch { index: 0, .. }), "{err}");
        // Reads out of range are clear errors.
        assert!(matches!(log.read(o(4), 1024).await, Err(ReadError::OffsetOutOfRange { .. })));
        assert!(log.read(o(3), 1024).await.unwrap().is_empty());
        log.close().await.unwrap();
        assert!(matches!(log.append(&[batch(1, 1, 1, 0)], Durability::None).await, Err(AppendError::Closed)));
    });
}

/// Sets the compression bits and the counts of `batch`, and reseals its CRC: the records stay
/// uncompressed bytes, which the log never looks into once a batch is compressed.
fn as_compressed(batch: &Bytes, last_offset_delta: i32, records_count: i32) -> Bytes {
    let mut b = batch.to_vec();
    b[21..23].copy_from_slice(&1i16.to_be_bytes()); // attributes: gzip
    b[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    b[57..61].copy_from_slice(&records_count.to_be_bytes());
    engine::batch::write_crc(&mut b);
    Bytes::from(b)
}

/// A compressed batch's records cannot be counted, so its lastOffsetDelta must match its
/// recordsCount: otherwise one batch could claim 2^31 offsets.
#[test]
fn compressed_batches_claim_exactly_their_records() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        let plain = batch(1, 3, 10, 0);
        for (delta, count) in [(i32::MAX - 1, 1), (i32::MAX, 3), (9, 3), (1, 3), (-1, 0)] {
            let err = log.append(&[as_compressed(&plain, delta, count)], Durability::Sync).await.unwrap_err();
            assert!(matches!(err, AppendError::InvalidBatch { index: 0, .. }), "delta {delta}, count {count}: {err}");
            assert_eq!(log.log_end_offset(), o(0), "a rejected batch moved the log end");
        }
        // One bad batch among good ones rejects the request.
        let good = as_compressed(&plain, 2, 3);
        let err = log.append(&[good.clone(), as_compressed(&plain, 1 << 30, 3)], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::InvalidBatch { index: 1, .. }), "{err}");
        assert_eq!(log.log_end_offset(), o(0));
        // A compressed batch whose counts agree takes exactly its records' offsets.
        let info = log.append(&[good.clone(), good.clone()], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![o(0), o(3)]);
        assert_eq!(info.log_end_offset, o(6));
        let read = read_all(&log, o(0)).await;
        assert_eq!(read, vec![(0, 3, good.slice(16..)), (3, 3, good.slice(16..))]);
        log.close().await.unwrap();
    });
}

#[test]
fn reads_return_whole_batches_from_any_offset() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        engine::cache::set_shard_budget_bytes(0); // Force every read to disk once written.
        let log = Log::open(&path, small_config()).await.unwrap();
        for seed in 0..30u64 {
            log.append(&[batch(seed, 4, 500, 0)], Durability::Sync).await.unwrap();
        }
        for offset in 0..120u64 {
            let read = log.read(o(offset), 1).await.unwrap();
            let batches = batch_bodies(read.to_bytes());
            assert_eq!(batches.len(), 1, "at least one whole batch even past bytes_max");
            let base = batches[0].0 as u64;
            assert!(base <= offset && offset < base + 4);
        }
        let read = log.read(o(0), 10 << 20).await.unwrap();
        assert_eq!(read.next_offset, o(120).min(read.next_offset));
        log.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_old_sealed_segments_only() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let mut config = small_config();
        config.retention_bytes = Some(200 << 10);
        config.retention_ms = Some(60_000);
        let log = Log::open(&path, config).await.unwrap();
        for seed in 0..200u64 {
            // Old timestamps for the first half.
            let ts = if seed < 100 { 1_000 } else { 10_000_000 };
            log.append(&[batch(seed, 2, 4000, ts)], Durability::None).await.unwrap();
        }
        let before = log.stats();
        let outcome = log.apply_retention(10_000_000).await.unwrap();
        assert!(outcome.segments_deleted > 0);
        let after = log.stats();
        assert!(after.size_bytes < before.size_bytes);
        assert_eq!(log.log_start_offset(), outcome.log_start_offset);
        assert!(log.log_start_offset() > o(0));
        assert!(matches!(log.read(o(0), 100).await, Err(ReadError::OffsetOutOfRange { .. })));
        // Everything from the new start is intact.
        let all = read_all(&log, log.log_start_offset()).await;
        assert_eq!(o(all.last().unwrap().0 as u64 + 2), log.log_end_offset());
        // Time retention: everything is old relative to a far future; still never the active segment.
        let outcome = log.apply_retention(i64::MAX / 2).await.unwrap();
        let _ = outcome;
        assert!(log.stats().segments >= 1);
        assert!(log.read(log.log_start_offset(), 100).await.is_ok());
        let start = log.log_start_offset();
        log.close().await.unwrap();
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        log.close().await.unwrap();
    });
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        // Batch i holds 3 records with timestamps 1000*i, +1, +2.
        for i in 0..100u64 {
            log.append(&[batch(i, 3, 700, 1000 * i as i64)], Durability::None).await.unwrap();
        }
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some(o(0)));
        assert_eq!(log.offset_for_timestamp(1).await.unwrap(), Some(o(1)));
        assert_eq!(log.offset_for_timestamp(3).await.unwrap(), Some(o(3)));
        assert_eq!(log.offset_for_timestamp(50_002).await.unwrap(), Some(o(152)));
        assert_eq!(log.offset_for_timestamp(50_003).await.unwrap(), Some(o(153)));
        assert_eq!(log.offset_for_timestamp(99_002).await.unwrap(), Some(o(299)));
        assert_eq!(log.offset_for_timestamp(99_003).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn wait_for_offset_resolves_when_data_arrives() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        let waiter = glommio::spawn_local({
            let log = log.clone();
            async move {
                log.wait_for_offset(o(0)).await;
                log.read(o(0), 1024).await.unwrap().next_offset
            }
        });
        glommio::timer::sleep(Duration::from_millis(20)).await;
        log.append(&[batch(1, 5, 10, 0)], Durability::None).await.unwrap();
        assert_eq!(waiter.await, o(5));
        log.close().await.unwrap();
    });
}

#[test]
fn durability_modes_and_durable_reads() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        log.append(&[batch(1, 2, 10, 0)], Durability::Sync).await.unwrap();
        assert_eq!(log.durable_end_offset(), o(2));
        log.append(&[batch(2, 2, 10, 0)], Durability::Interval { ms: 5 }).await.unwrap();
        // The interval sync lands within a few ms.
        for _ in 0..200 {
            if log.durable_end_offset() == o(4) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.durable_end_offset(), o(4));
        let read = log.read_durable(o(0), 1 << 20).await.unwrap();
        assert_eq!(read.next_offset, o(4));
        // flush() makes None appends durable.
        log.append(&[batch(3, 3, 10, 0)], Durability::None).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.durable_end_offset(), o(7));
        // Many concurrent Sync appends share fdatasyncs (group commit).
        let syncs_before = log.stats().syncs_count;
        let mut tasks = Vec::new();
        for seed in 0..64u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                log.append(&[batch(seed, 1, 100, 0)], Durability::Sync).await.unwrap()
            }));
        }
        for t in tasks {
            t.await;
        }
        let syncs = log.stats().syncs_count - syncs_before;
        assert!(syncs < 64, "64 concurrent sync appends took {syncs} fdatasyncs");
        assert_eq!(log.durable_end_offset(), log.log_end_offset());
        log.close().await.unwrap();
    });
}

/// A quiet partition reserves one small step, not a full 32 MiB one (1000 partitions would
/// otherwise reserve 32 GiB); a busy one grows its steps with the segment.
#[test]
fn preallocation_starts_small_and_grows_with_the_segment() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    let probe = path.clone();
    run(move || async move {
        let config = LogConfig { segment_bytes: 128 << 20, ..LogConfig::default() };
        assert_eq!(config.preallocate_step_bytes, engine::limits::PREALLOCATE_STEP_BYTES);
        let log = Log::open(&path, config).await.unwrap();
        log.append(&[batch(1, 1, 100, 0)], Durability::Sync).await.unwrap();
        let sizes = |dir: &std::path::Path| -> u64 {
            segment_files(dir).iter().map(|p| std::fs::metadata(p).unwrap().len()).max().unwrap()
        };
        let quiet = sizes(&probe);
        assert!(quiet <= 2 * engine::limits::PREALLOCATE_FIRST_STEP_BYTES, "a quiet segment reserved {quiet} bytes");
        for seed in 0..24u64 {
            log.append(&[batch(seed, 4, 256 << 10, 0)], Durability::None).await.unwrap();
        }
        log.flush().await.unwrap();
        // 24 MiB written: steps doubled past the first, and the reservation stays ahead.
        let busy = sizes(&probe);
        assert!(busy >= 24 << 20, "a busy segment reserved only {busy} bytes");
        log.close().await.unwrap();
    });
}
