//! A full disk: appends fail with `AppendError::NoSpace` (no panic, no hang, nothing
//! half-accepted), the log stays readable, and appends resume once space is freed — by
//! deleting another file or by retention.
//!
//! Each test mounts its own small ext4 image on a loop device (needs root). Where loop mounts
//! are impossible, the tests fail unless `SHARDLOG_SKIP_LOOP_TESTS=1` is set.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/loop_mount.rs"]
mod loop_mount;

use bytes::Bytes;
use common::*;
use engine::{AppendError, Durability, Log, LogConfig};
use loop_mount::LoopMount;

const IMAGE_BYTES: u64 = 48 << 20;
const FILLER_BYTES: usize = 12 << 20;
/// Records per batch × value bytes ≈ 256 KiB a batch.
const BATCH_RECORDS: u32 = 64;
const BATCH_VALUE_BYTES: usize = 4000;
/// 48 MiB holds at most ~190 such batches: running out of space must happen well before this.
const APPENDS_MAX: u64 = 1_000;

fn enospc_config() -> LogConfig {
    LogConfig { segment_bytes: 4 << 20, preallocate_step_bytes: 1 << 20, ..LogConfig::default() }
}

/// The ~256 KiB batch number `seed`.
fn big_batch(seed: u64) -> Bytes {
    batch(seed, BATCH_RECORDS, BATCH_VALUE_BYTES, 1_000 + seed as i64)
}

/// Appends `big_batch(first..)` with `Sync` until one fails; returns the error. Every batch
/// acknowledged goes into `expected` (what `read_all` must return).
async fn fill(log: &Log, first: u64, expected: &mut Vec<(i64, u32, Bytes)>) -> AppendError {
    for seed in first..first + APPENDS_MAX {
        let b = big_batch(seed);
        let end = log.log_end_offset();
        match log.append(std::slice::from_ref(&b), Durability::Sync).await {
            Ok(info) => {
                assert_eq!(info.base_offsets, vec![end]);
                expected.push((end.to_wire(), BATCH_RECORDS, b.slice(16..)));
            }
            Err(e) => {
                assert_eq!(log.log_end_offset(), end, "a failed append moved the log end");
                return e;
            }
        }
    }
    panic!("{APPENDS_MAX} appends of 256 KiB on a {IMAGE_BYTES}-byte file system never failed");
}

/// Appends one batch that must succeed at the log end and read back.
async fn append_ok(log: &Log, seed: u64, expected: &mut Vec<(i64, u32, Bytes)>) {
    let b = big_batch(seed);
    let end = log.log_end_offset();
    let info = log.append(std::slice::from_ref(&b), Durability::Sync).await.unwrap();
    assert_eq!(info.base_offsets, vec![end]);
    assert_eq!(log.durable_end_offset(), end.checked_add(u64::from(BATCH_RECORDS)).unwrap());
    let read = log.read(end, 1 << 20).await.unwrap();
    assert_eq!(batch_bodies(read.to_bytes()), vec![(end.to_wire(), BATCH_RECORDS, b.slice(16..))]);
    expected.push((end.to_wire(), BATCH_RECORDS, b.slice(16..)));
}

#[test]
fn append_fails_with_no_space_and_resumes_when_space_is_freed() {
    let Some(mount) = LoopMount::new_or_skip("append_fails_with_no_space_and_resumes_when_space_is_freed", IMAGE_BYTES)
    else {
        return;
    };
    // Space to give back later, on the same file system.
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![0xa5u8; FILLER_BYTES]).unwrap();
    std::fs::File::open(&filler).unwrap().sync_all().unwrap();
    let path = mount.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, enospc_config()).await.unwrap();
        let mut expected = Vec::new();
        let err = fill(&log, 0, &mut expected).await;
        assert!(matches!(err, AppendError::NoSpace(_)), "expected NoSpace, got {err:?}");
        let full_end = log.log_end_offset();
        println!("{} batches acknowledged before {err}", expected.len());
        assert!(expected.len() > 8, "only {} batches fitted before NoSpace", expected.len());
        assert_eq!(full_end, o(expected.len() as u64 * u64::from(BATCH_RECORDS)));
        // Still readable, exactly what was acknowledged; nothing of the failed append.
        assert_eq!(read_all(&log, o(0)).await, expected);
        assert_eq!(log.durable_end_offset(), full_end);
        // Still full: the same clear error again, nothing fenced, nothing moved.
        let err = log.append(&[big_batch(10_000)], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::NoSpace(_)), "second append on a full disk: {err:?}");
        assert_eq!(log.log_end_offset(), full_end);
        // A small append may still fit in what is preallocated, or fail the same way.
        let small = batch(10_001, 1, 100, 0);
        match log.append(std::slice::from_ref(&small), Durability::Sync).await {
            Ok(info) => {
                assert_eq!(info.base_offsets, vec![full_end]);
                expected.push((full_end.to_wire(), 1, small.slice(16..)));
            }
            Err(err) => assert!(matches!(err, AppendError::NoSpace(_)), "small append on a full disk: {err:?}"),
        }

        // Free space: appends succeed again at the log end, across a roll.
        std::fs::remove_file(&filler).unwrap();
        let freed_end = log.log_end_offset();
        append_ok(&log, 20_000, &mut expected).await;
        assert_eq!(o(expected.last().unwrap().0 as u64), freed_end);
        for seed in 20_001..20_024 {
            append_ok(&log, seed, &mut expected).await;
        }
        assert_eq!(read_all(&log, o(0)).await, expected);
        let end = log.log_end_offset();
        log.close().await.unwrap();

        let log = Log::open(&path, enospc_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log, o(0)).await, expected);
        append_ok(&log, 30_000, &mut expected).await;
        log.close().await.unwrap();
    });
}

#[test]
fn retention_frees_space_after_no_space() {
    let Some(mount) = LoopMount::new_or_skip("retention_frees_space_after_no_space", IMAGE_BYTES) else {
        return;
    };
    let path = mount.path().join("t-0");
    run(move || async move {
        let config = LogConfig { retention_bytes: Some(8 << 20), ..enospc_config() };
        let log = Log::open(&path, config.clone()).await.unwrap();
        let mut expected = Vec::new();
        let err = fill(&log, 0, &mut expected).await;
        assert!(matches!(err, AppendError::NoSpace(_)), "expected NoSpace, got {err:?}");
        assert_eq!(read_all(&log, o(0)).await, expected);
        let segments_before = log.stats().segments;
        assert!(segments_before > 3, "{segments_before} segments on a full disk");

        let outcome = log.apply_retention(0).await.unwrap();
        assert!(outcome.segments_deleted > 0, "{outcome:?}");
        assert_eq!(log.stats().segments, segments_before - outcome.segments_deleted);
        let start = log.log_start_offset();
        assert_eq!(outcome.log_start_offset, start);
        assert!(start > o(0));
        // Whole batches only: the retained log is a suffix of what was acknowledged.
        let kept: Vec<_> = expected.iter().filter(|b| o(b.0 as u64) >= start).cloned().collect();
        assert_eq!(o(kept.first().unwrap().0 as u64), start);
        assert_eq!(read_all(&log, start).await, kept);

        // Appends fit again, at the log end.
        let end = log.log_end_offset();
        append_ok(&log, 20_000, &mut expected).await;
        assert_eq!(o(expected.last().unwrap().0 as u64), end);
        for seed in 20_001..20_012 {
            append_ok(&log, seed, &mut expected).await;
        }
        let kept: Vec<_> = expected.iter().filter(|b| o(b.0 as u64) >= start).cloned().collect();
        assert_eq!(read_all(&log, start).await, kept);
        let end = log.log_end_offset();
        log.close().await.unwrap();

        let log = Log::open(&path, config).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
        assert_eq!(read_all(&log, start).await, kept);
        log.close().await.unwrap();
    });
}

/// Regression: ext4 keeps the blocks a failed fallocate managed to allocate (and grows the
/// file to them), so an ENOSPC at preallocation used to leave the disk at 0 bytes free —
/// nothing left for index files, the catalog or consumer offsets. The appender now cuts the
/// file back to its reservation.
#[test]
fn a_failed_preallocation_gives_its_partial_allocation_back() {
    let Some(mount) = LoopMount::new_or_skip("a_failed_preallocation_gives_its_partial_allocation_back", IMAGE_BYTES)
    else {
        return;
    };
    let free_at_start = engine::free_bytes(mount.path()).unwrap();
    let leave_free_bytes: u64 = 4 << 20;
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![0x5au8; (free_at_start - leave_free_bytes) as usize]).unwrap();
    std::fs::File::open(&filler).unwrap().sync_all().unwrap();
    let path = mount.path().join("t-0");
    let probe = mount.path().to_path_buf();
    run(move || async move {
        // A 6 MiB batch needs a 7 MiB reservation (1 MiB steps), which cannot fit in the 4 MiB
        // left: ext4 allocates what it can, then fails.
        let config = LogConfig { segment_bytes: 64 << 20, preallocate_step_bytes: 32 << 20, ..enospc_config() };
        let log = Log::open(&path, config).await.unwrap();
        let free_before = engine::free_bytes(&probe).unwrap();
        let err = log.append(&[batch(1, 1, 6 << 20, 0)], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::NoSpace(_)), "expected NoSpace, got {err:?}");
        let free_after = engine::free_bytes(&probe).unwrap();
        assert!(
            free_after + (1 << 20) >= free_before,
            "a failed fallocate kept the space: {free_before} bytes free before, {free_after} after"
        );
        assert_eq!(log.log_end_offset(), o(0));
        log.close().await.unwrap();
        // A batch whose first (1 MiB) step fits works: the failed attempt gave its space back.
        let config = LogConfig { segment_bytes: 64 << 20, preallocate_step_bytes: 32 << 20, ..enospc_config() };
        let log = Log::open(&path, config).await.unwrap();
        log.append(&[batch(2, 1, 100, 0)], Durability::Sync).await.unwrap();
        log.close().await.unwrap();
    });
}
