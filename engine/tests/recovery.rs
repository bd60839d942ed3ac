//! Recovery on open: torn, zeroed and corrupt tails are cut, never served; indexes rebuilt.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use engine::{Durability, Log, ReadError};

/// Copies every regular file of `from` into a new dir under `root`.
fn copy_dir(from: &Path, root: &Path, name: &str) -> PathBuf {
    let to = root.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

/// Builds a cleanly closed log of `count` small batches, then removes the clean-shutdown
/// marker so the next open treats it as a crash. Returns the expected bodies.
fn build_log(path: PathBuf, count: u64) -> Vec<(i64, u32, Bytes)> {
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        for seed in 0..count {
            log.append(&[batch(seed, 3, 20 + seed as usize % 50, seed as i64)], Durability::Sync).await.unwrap();
        }
        let all = read_all(&log, o(0)).await;
        log.close().await.unwrap();
        std::fs::remove_file(path.join("clean_shutdown")).unwrap();
        all
    })
}

/// Opens `dir` and checks it holds exactly `expected`, then that an append lands right after.
fn reopen_and_check(dir: PathBuf, expected: Vec<(i64, u32, Bytes)>, what: String) {
    run(move || async move {
        let log = Log::open(&dir, small_config()).await.unwrap();
        let end = o(expected.last().map_or(0, |(base, count, _)| *base as u64 + u64::from(*count)));
        assert_eq!(log.log_end_offset(), end, "{what}: log end");
        assert_eq!(read_all(&log, o(0)).await, expected, "{what}: contents");
        let info = log.append(&[batch(999, 2, 10, 0)], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![end], "{what}: next append offset");
        log.close().await.unwrap();
    });
}

#[test]
fn torn_last_batch_is_truncated_at_every_byte() {
    let root = temp_dir();
    let original = root.path().join("orig");
    let all = build_log(original.clone(), 12);
    let log_file = segment_files(&original).pop().unwrap();
    let file_bytes = std::fs::metadata(&log_file).unwrap().len();
    let (_, _, last_body) = all.last().unwrap().clone();
    let last_start = file_bytes - (last_body.len() as u64 + 16);
    let expected: Vec<_> = all[..all.len() - 1].to_vec();
    for cut in last_start..file_bytes {
        let dir = copy_dir(&original, root.path(), &format!("cut-{cut}"));
        let file = dir.join(log_file.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(cut).unwrap();
        reopen_and_check(dir.clone(), expected.clone(), format!("cut at {cut}"));
        std::fs::remove_dir_all(dir).unwrap();
    }
    // Cutting nothing keeps everything.
    reopen_and_check(copy_dir(&original, root.path(), "whole"), all, "uncut".into());
}

#[test]
fn flipped_byte_in_last_batch_is_truncated_at_every_position() {
    let root = temp_dir();
    let original = root.path().join("orig");
    let all = build_log(original.clone(), 12);
    let log_file = segment_files(&original).pop().unwrap();
    let bytes = std::fs::read(&log_file).unwrap();
    let (_, _, last_body) = all.last().unwrap().clone();
    let last_start = bytes.len() - (last_body.len() + 16);
    let expected: Vec<_> = all[..all.len() - 1].to_vec();
    for at in last_start..bytes.len() {
        let dir = copy_dir(&original, root.path(), &format!("flip-{at}"));
        let mut flipped = bytes.clone();
        flipped[at] ^= 0xff;
        std::fs::write(dir.join(log_file.file_name().unwrap()), &flipped).unwrap();
        reopen_and_check(dir.clone(), expected.clone(), format!("flip at {at}"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn zeroed_preallocated_tail_and_missing_or_corrupt_index_are_recovered() {
    let root = temp_dir();
    let original = root.path().join("orig");
    let all = build_log(original.clone(), 1000); // several segments
    let files = segment_files(&original);
    assert!(files.len() > 2, "want several segments, got {}", files.len());
    let last = files.last().unwrap().file_name().unwrap().to_owned();

    // Zeroes after the data, as a preallocated tail looks after a crash.
    let dir = copy_dir(&original, root.path(), "zeroed");
    let file = dir.join(&last);
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len + (1 << 20)).unwrap();
    reopen_and_check(dir, all.clone(), "zeroed tail".into());

    // Every index file missing: all rebuilt by scanning.
    let dir = copy_dir(&original, root.path(), "no-index");
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            std::fs::remove_file(p).unwrap();
        }
    }
    reopen_and_check(dir.clone(), all.clone(), "missing indexes".into());
    // And the rebuilt indexes are written back for sealed segments.
    let rebuilt = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|e| e == "index"));
    let rebuilt = rebuilt.count();
    assert!(rebuilt >= files.len() - 1, "{rebuilt} index files for {} segments", files.len());

    // Corrupt index files are ignored and rebuilt.
    let dir = copy_dir(&original, root.path(), "bad-index");
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "index") {
            let mut b = std::fs::read(&p).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(&p, b).unwrap();
        }
    }
    reopen_and_check(dir, all, "corrupt indexes".into());
}

#[test]
fn corrupt_batch_in_sealed_segment_is_reported_never_served() {
    let root = temp_dir();
    let original = root.path().join("orig");
    let all = build_log(original.clone(), 400);
    let files = segment_files(&original);
    let first = files[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    // Flip a byte inside the third batch of the first (sealed) segment.
    let first_len = all[0].2.len() + 16;
    let second_len = all[1].2.len() + 16;
    let at = first_len + second_len + 30;
    bytes[at] ^= 0x55;
    std::fs::write(&first, &bytes).unwrap();
    let third_offset = o(all[2].0 as u64);
    run(move || async move {
        engine::cache::set_shard_budget_bytes(0);
        let log = Log::open(&original, small_config()).await.unwrap();
        // Batches before it are served.
        let read = log.read(o(0), 1).await.unwrap();
        assert_eq!(batch_bodies(read.to_bytes())[0].2, all[0].2);
        // The corrupt one is an error, not data.
        let err = log.read(third_offset, 1).await.unwrap_err();
        assert!(matches!(err, ReadError::Corrupt { .. }), "{err}");
        // A read that would include it stops before it or reports it; it never returns it.
        match log.read(o(0), 1 << 20).await {
            Ok(read) => assert!(read.next_offset <= third_offset),
            Err(e) => assert!(matches!(e, ReadError::Corrupt { .. })),
        }
        // Later segments are unaffected.
        let later = o(all[all.len() - 1].0 as u64);
        assert!(log.read(later, 1).await.is_ok());
        log.close().await.unwrap();
    });
}

#[test]
fn unsealed_segment_cut_short_drops_the_unacknowledged_segments_after_it() {
    // A crash between a roll and the end of the old segment's seal: the old segment has no
    // index and a torn tail, the new one already holds (unacknowledged) batches.
    let root = temp_dir();
    let original = root.path().join("orig");
    let all = build_log(original.clone(), 1000);
    let files = segment_files(&original);
    assert!(files.len() >= 3);
    let victim = &files[files.len() - 2];
    std::fs::remove_file(victim.with_extension("index")).unwrap();
    let len = std::fs::metadata(victim).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(victim).unwrap().set_len(len - 5).unwrap();
    // Everything before the victim's last batch survives; nothing after it.
    let victim_base: u64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let last_segment_base: u64 = files.last().unwrap().file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let in_victim = all.iter().filter(|b| (b.0 as u64) >= victim_base && (b.0 as u64) < last_segment_base).count();
    assert!(in_victim > 1);
    let expected: Vec<_> = all.iter().filter(|b| (b.0 as u64) < last_segment_base).cloned().collect();
    let expected = expected[..expected.len() - 1].to_vec();
    reopen_and_check(original.clone(), expected, "unsealed segment cut short".into());
    assert_eq!(segment_files(&original).len(), files.len() - 1, "the later segment is gone");
}
