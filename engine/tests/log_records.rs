//! Operator actions on an open log: deleting records before an offset (durable across a
//! reopen, reads below it refused, whole segments below it removed), new settings while
//! open, and the record with the largest timestamp.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use engine::{Durability, Log, LogConfig, MaintenanceError, ReadError};

#[test]
fn deleted_records_stay_deleted_across_a_reopen_and_whole_segments_go() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        for seed in 0..40u64 {
            log.append(&[batch(seed, 2, 3_000, 1_000 + seed as i64)], Durability::None).await.unwrap();
        }
        log.flush().await.unwrap();
        let segments_before = log.stats().segments;
        assert!(segments_before > 3, "small segments must have rolled");
        assert_eq!(log.delete_records_before(o(0)).await.unwrap(), o(0), "nothing below the start");
        // Past the log end: refused, nothing changes.
        let err = log.delete_records_before(o(81)).await.unwrap_err();
        assert!(matches!(err, MaintenanceError::DeleteBeyondEnd { .. }), "{err}");
        // Inside a segment: the start moves there; earlier whole segments are removed.
        assert_eq!(log.delete_records_before(o(41)).await.unwrap(), o(41));
        assert_eq!(log.log_start_offset(), o(41));
        assert!(log.stats().segments < segments_before, "whole segments below the start are removed");
        let below = log.read(o(40), 1 << 20).await.unwrap_err();
        assert!(matches!(below, ReadError::OffsetOutOfRange { .. }), "{below}");
        let first = log.read(o(41), 1 << 20).await.unwrap();
        assert!(!first.is_empty());
        assert_eq!(log.delete_records_before(o(10)).await.unwrap(), o(41), "the start never goes back");
        log.close().await.unwrap();

        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_start_offset(), o(41), "the start survives a reopen");
        assert!(log.read(o(40), 1 << 20).await.is_err());
        // Retention after it never moves the start back below it.
        log.apply_retention(i64::MAX).await.unwrap();
        assert!(log.log_start_offset() >= o(41));
        // Everything: the start is the log end, and appends go on from there.
        let end = log.log_end_offset();
        assert_eq!(log.delete_records_before(end).await.unwrap(), end);
        let info = log.append(&[batch(99, 1, 10, 9_000)], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![end]);
        log.close().await.unwrap();
    });
}

#[test]
fn the_largest_timestamp_is_found_and_settings_change_while_open() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.max_timestamp().await.unwrap(), None, "an empty log has none");
        let timestamps = [5_000i64, 9_000, 7_000, 9_000, 1_000];
        for (seed, ts) in timestamps.iter().enumerate() {
            log.append(&[batch(seed as u64, 1, 100, *ts)], Durability::None).await.unwrap();
        }
        let max = log.max_timestamp().await.unwrap().unwrap();
        assert_eq!((max.timestamp_ms, max.offset), (9_000, o(1)), "the first record with the largest timestamp");

        let bigger = LogConfig { segment_bytes: 1 << 20, retention_ms: Some(1), ..small_config() };
        log.reconfigure(bigger.clone()).unwrap();
        assert_eq!(log.config().segment_bytes, 1 << 20);
        assert_eq!(log.config().retention_ms, Some(1));
        assert!(log.reconfigure(LogConfig { segment_bytes: 1, ..bigger }).is_err(), "an invalid config is refused");
        assert_eq!(log.config().segment_bytes, 1 << 20);
        log.close().await.unwrap();
    });
}
