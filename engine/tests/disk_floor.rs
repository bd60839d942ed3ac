//! The free-space floor (`LogConfig::disk_free_floor_bytes`) and the preallocation cap, on
//! any file system: a floor above the free space refuses appends with a clear `DiskFull`
//! and accepts nothing; a floor below it changes nothing. (The full-disk runs on a small
//! loop-mounted ext4 are in `enospc.rs` and `server/tests/full_disk.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use engine::{AppendError, Durability, Log, LogConfig};

fn free_bytes(path: &std::path::Path) -> u64 {
    engine::free_bytes(path).unwrap()
}

#[test]
fn a_floor_above_the_free_space_refuses_appends_and_keeps_the_log_intact() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    let free = free_bytes(dir.path());
    run(move || async move {
        // First without a floor: two batches go in.
        let log = Log::open(&path, small_config()).await.unwrap();
        let first = batch(1, 4, 100, 0);
        log.append(&[first.clone(), batch(2, 4, 100, 0)], Durability::Sync).await.unwrap();
        log.close().await.unwrap();

        let floor = free + (1 << 40);
        let config = LogConfig { disk_free_floor_bytes: floor, ..small_config() };
        let log = Log::open(&path, config).await.unwrap();
        for seed in 3..6 {
            let err = log.append(&[batch(seed, 1, 10, 0)], Durability::Sync).await.unwrap_err();
            match &err {
                AppendError::DiskFull { free_bytes, floor_bytes } => {
                    assert_eq!(*floor_bytes, floor);
                    assert!(*free_bytes < floor);
                }
                other => panic!("expected DiskFull, got {other:?}"),
            }
            assert!(err.to_string().contains("disk_free_floor_bytes"), "{err}");
        }
        // Nothing accepted, nothing fenced, everything still readable.
        assert_eq!(log.log_end_offset(), o(8));
        let read = log.read(o(0), 1 << 20).await.unwrap();
        assert_eq!(batch_bodies(read.to_bytes())[0].2, first.slice(16..));
        log.close().await.unwrap();

        // A floor the file system satisfies: appends work again.
        let config = LogConfig { disk_free_floor_bytes: 1 << 20, ..small_config() };
        let log = Log::open(&path, config).await.unwrap();
        let info = log.append(&[batch(9, 1, 10, 0)], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![o(8)]);
        log.close().await.unwrap();
    });
}

#[test]
fn preallocation_stops_at_the_segment_size() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        // A 32 MiB step on 64 KiB segments used to reserve 32 MiB per segment.
        let config = LogConfig { preallocate_step_bytes: 32 << 20, ..small_config() };
        let log = Log::open(&path, config).await.unwrap();
        for seed in 0..120 {
            log.append(&[batch(seed, 4, 500, 0)], Durability::None).await.unwrap();
        }
        assert!(log.stats().segments > 2);
        for file in segment_files(&path) {
            let size = std::fs::metadata(&file).unwrap().len();
            assert!(size <= 64 << 10, "{file:?} is {size} bytes for a 64 KiB segment");
        }
        log.close().await.unwrap();
    });
}
