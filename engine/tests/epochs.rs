//! Leader epochs stored for real: `begin_epoch` writes the checkpoint, appends stamp the epoch
//! into bytes 12..16 of each batch, recovery verifies (or rebuilds) them, reads check them, and
//! `end_offset_for_epoch` answers as Kafka's OffsetForLeaderEpoch does.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use engine::ids::{LeaderEpoch, Offset};
use engine::{Durability, EpochEntry, EpochError, Log, ReadError};

const EPOCHS_FILE: &str = "leader-epoch-checkpoint";

fn e(epoch: u32) -> LeaderEpoch {
    LeaderEpoch::new(epoch)
}

fn o(offset: u64) -> Offset {
    Offset::new(offset)
}

fn entries(pairs: &[(u32, u64)]) -> Vec<EpochEntry> {
    pairs.iter().map(|&(epoch, start)| EpochEntry { epoch: e(epoch), start_offset: o(start) }).collect()
}

/// Appends `count` batches of 3 records each, `Sync`.
async fn append_batches(log: &Log, first_seed: u64, count: u64) {
    for seed in first_seed..first_seed + count {
        log.append(&[batch(seed, 3, 600, seed as i64)], Durability::Sync).await.unwrap();
    }
}

/// A log over several segments with epochs 0 (offsets 0..), 3 and 7: returns the epoch each
/// batch must carry, by base offset.
async fn three_epochs(log: &Log) -> Vec<(u64, i32)> {
    append_batches(log, 0, 60).await;
    log.begin_epoch(e(3)).await.unwrap();
    append_batches(log, 60, 60).await;
    log.begin_epoch(e(7)).await.unwrap();
    append_batches(log, 120, 60).await;
    (0..180u64)
        .map(|i| {
            (
                i * 3,
                if i < 60 {
                    0
                } else if i < 120 {
                    3
                } else {
                    7
                },
            )
        })
        .collect()
}

fn closed_copy(from: &Path, root: &Path, name: &str) -> PathBuf {
    let to = root.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

#[test]
fn a_new_log_is_epoch_zero_and_appends_stamp_the_current_epoch() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        assert!(path.join(EPOCHS_FILE).exists(), "the checkpoint is written on open");
        assert_eq!(log.leader_epoch(), LeaderEpoch::ZERO);
        assert_eq!(log.leader_epochs(), entries(&[(0, 0)]));
        let expected = three_epochs(&log).await;
        assert_eq!(log.leader_epoch(), e(7));
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (3, 180), (7, 360)]));
        // From the cache and from disk alike.
        assert_eq!(read_epochs(&log).await, expected);
        // Epochs never go backwards; the same one again changes nothing.
        let err = log.begin_epoch(e(6)).await.unwrap_err();
        assert!(matches!(err, EpochError::Backwards { epoch, latest } if epoch == e(6) && latest == e(7)), "{err}");
        log.begin_epoch(e(7)).await.unwrap();
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (3, 180), (7, 360)]));
        log.close().await.unwrap();
        assert!(matches!(log.begin_epoch(e(8)).await, Err(EpochError::Closed)));

        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (3, 180), (7, 360)]));
        assert_eq!(read_epochs(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn end_offset_for_epoch_answers_as_kafka() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        append_batches(&log, 0, 2).await; // offsets 0..6 in epoch 0
        log.begin_epoch(e(2)).await.unwrap();
        append_batches(&log, 2, 2).await; // 6..12 in epoch 2
                                          // Epoch 4 begins and writes nothing before epoch 5 begins at the same offset.
        log.begin_epoch(e(4)).await.unwrap();
        log.begin_epoch(e(5)).await.unwrap();
        append_batches(&log, 4, 1).await; // 12..15 in epoch 5
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (2, 6), (5, 12)]));
        assert_eq!(log.end_offset_for_epoch(e(5)), Some((e(5), o(15))));
        assert_eq!(log.end_offset_for_epoch(e(4)), Some((e(2), o(12))));
        assert_eq!(log.end_offset_for_epoch(e(3)), Some((e(2), o(12))));
        assert_eq!(log.end_offset_for_epoch(e(2)), Some((e(2), o(12))));
        assert_eq!(log.end_offset_for_epoch(e(1)), Some((e(0), o(6))));
        assert_eq!(log.end_offset_for_epoch(e(0)), Some((e(0), o(6))));
        assert_eq!(log.end_offset_for_epoch(e(6)), None);
        log.close().await.unwrap();
    });
}

#[test]
fn an_epoch_begun_on_an_idle_log_survives_a_crash() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        append_batches(&log, 0, 3).await;
        log.begin_epoch(e(4)).await.unwrap();
        drop(log); // No close: the next open recovers.
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.leader_epoch(), e(4));
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (4, 9)]));
        append_batches(&log, 3, 1).await;
        assert_eq!(read_epochs(&log).await, vec![(0, 0), (3, 0), (6, 0), (9, 4)]);
        log.close().await.unwrap();
    });
}

#[test]
fn a_missing_or_corrupt_checkpoint_is_rebuilt_from_the_batches() {
    let root = temp_dir();
    let original = root.path().join("orig");
    let expected = {
        let path = original.clone();
        run(move || async move {
            let log = Log::open(&path, small_config()).await.unwrap();
            let expected = three_epochs(&log).await;
            log.close().await.unwrap();
            expected
        })
    };
    assert!(segment_files(&original).len() > 3, "want several sealed segments");
    let checkpoint = std::fs::read(original.join(EPOCHS_FILE)).unwrap();
    for (name, clean) in [("missing", true), ("missing-crash", false), ("corrupt", true)] {
        let dir = closed_copy(&original, root.path(), name);
        if name == "corrupt" {
            let mut bad = checkpoint.clone();
            bad[14] ^= 1;
            std::fs::write(dir.join(EPOCHS_FILE), bad).unwrap();
        } else {
            std::fs::remove_file(dir.join(EPOCHS_FILE)).unwrap();
        }
        if !clean {
            std::fs::remove_file(dir.join("clean_shutdown")).unwrap();
        }
        let expected = expected.clone();
        let probe = dir.clone();
        run(move || async move {
            let log = Log::open(&dir, small_config()).await.unwrap();
            assert_eq!(log.leader_epochs(), entries(&[(0, 0), (3, 180), (7, 360)]), "{name}");
            assert_eq!(log.log_end_offset(), o(540), "{name}");
            assert_eq!(read_epochs(&log).await, expected, "{name}");
            log.close().await.unwrap();
        });
        assert_eq!(std::fs::read(probe.join(EPOCHS_FILE)).unwrap(), checkpoint, "{name}: rewritten as it was");
    }
}

#[test]
fn rebuilding_cuts_the_log_where_an_epoch_decreases() {
    let root = temp_dir();
    let original = root.path().join("orig");
    {
        let path = original.clone();
        run(move || async move {
            let log = Log::open(&path, small_config()).await.unwrap();
            three_epochs(&log).await;
            log.close().await.unwrap();
        });
    }
    // In a sealed segment of epoch 3, a batch claims epoch 1: a decrease.
    let files = segment_files(&original);
    let (victim, bad) = files
        .iter()
        .find_map(|f| {
            let batches = stored_batches(f);
            batches.iter().copied().find(|b| b.epoch == 3 && b.base_offset > 200).map(|b| (f.clone(), b))
        })
        .unwrap();
    assert_ne!(&victim, files.last().unwrap(), "the victim is sealed");
    write_stored_epoch(&victim, bad.position, 1);
    std::fs::remove_file(original.join(EPOCHS_FILE)).unwrap();
    let cut = bad.base_offset;
    let probe = original.clone();
    run(move || async move {
        let log = Log::open(&original, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), o(cut), "the log ends just before the decrease");
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (3, 180)]));
        let epochs = read_epochs(&log).await;
        assert_eq!(epochs.last().unwrap().0 + 3, cut);
        assert!(epochs.iter().all(|&(_, epoch)| epoch == 0 || epoch == 3));
        // Appends continue there, in the latest epoch kept.
        let info = log.append(&[batch(999, 1, 10, 0)], Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![o(cut)]);
        log.close().await.unwrap();
    });
    let last = segment_files(&probe).pop().unwrap();
    assert!(last <= victim, "the segments after the cut are gone");
}

#[test]
fn recovery_cuts_an_unsealed_tail_whose_epoch_is_not_checkpointed() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    let probe = path.clone();
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        append_batches(&log, 0, 2).await;
        log.begin_epoch(e(2)).await.unwrap();
        append_batches(&log, 2, 3).await; // 6, 9, 12 in epoch 2
        log.close().await.unwrap();
    });
    // The last segment, no longer cleanly closed: its batch at offset 9 claims epoch 0.
    std::fs::remove_file(probe.join("clean_shutdown")).unwrap();
    let last = segment_files(&probe).pop().unwrap();
    let victim = stored_batches(&last).into_iter().find(|b| b.base_offset == 9).unwrap();
    write_stored_epoch(&last, victim.position, 0);
    run(move || async move {
        let log = Log::open(&probe, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), o(9));
        assert_eq!(read_epochs(&log).await, vec![(0, 0), (3, 0), (6, 2)]);
        assert_eq!(log.leader_epoch(), e(2));
        log.close().await.unwrap();
    });
}

/// The read-side check: the epoch field is outside the CRC, so a flipped epoch in a sealed
/// segment — even one naming another epoch of the same log — is reported, never served.
#[test]
fn a_flipped_epoch_in_a_sealed_segment_is_reported_never_served() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    let probe = path.clone();
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        three_epochs(&log).await;
        log.close().await.unwrap();
    });
    let files = segment_files(&probe);
    let sealed = &files[1];
    let batches = stored_batches(sealed);
    let victim = batches[2];
    // Another epoch the log really has, but not the one of this offset.
    let wrong = if victim.epoch == 7 { 3 } else { 7 };
    write_stored_epoch(sealed, victim.position, wrong);
    run(move || async move {
        engine::cache::set_shard_budget_bytes(0);
        let log = Log::open(&probe, small_config()).await.unwrap();
        let err = log.read(o(victim.base_offset), 1).await.unwrap_err();
        assert!(matches!(err, ReadError::Corrupt { .. }), "{err}");
        assert!(err.is_corrupt());
        // A read from the segment's start stops before it.
        let read = log.read(o(batches[0].base_offset), 1 << 20).await.unwrap();
        assert_eq!(read.next_offset, o(victim.base_offset));
        // The batch after it reads fine.
        let after = log.read(o(batches[3].base_offset), 1).await.unwrap();
        assert_eq!(
            engine::batch::split_batches(after.to_bytes()).next().unwrap().unwrap().base_offset() as u64,
            batches[3].base_offset
        );
        log.close().await.unwrap();
    });
}

#[test]
fn checkpoint_entries_past_the_recovered_end_are_dropped() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    let probe = path.clone();
    let written = run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        append_batches(&log, 0, 4).await; // 0..12
        log.begin_epoch(e(1)).await.unwrap();
        append_batches(&log, 4, 2).await; // 12..18 in epoch 1
        log.begin_epoch(e(2)).await.unwrap();
        append_batches(&log, 6, 2).await; // 18..24 in epoch 2
        log.close().await.unwrap();
        std::fs::read(path.join(EPOCHS_FILE)).unwrap()
    });
    // A crash lost the epoch-2 batches (as if never written) but the checkpoint has them.
    std::fs::remove_file(probe.join("clean_shutdown")).unwrap();
    let last = segment_files(&probe).pop().unwrap();
    let cut = stored_batches(&last).into_iter().find(|b| b.base_offset == 15).unwrap();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut.position).unwrap();
    run(move || async move {
        let log = Log::open(&probe, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), o(15));
        assert_eq!(log.leader_epochs(), entries(&[(0, 0), (1, 12)]));
        assert_ne!(std::fs::read(probe.join(EPOCHS_FILE)).unwrap(), written, "the checkpoint is rewritten");
        log.close().await.unwrap();
    });
}
