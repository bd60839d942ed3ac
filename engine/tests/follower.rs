//! The follower API: `append_replica` stores a leader's batches byte for byte, `truncate_to`
//! cuts a divergent tail (crash-safe at every step), and the high-watermark checkpoint.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use engine::ids::LeaderEpoch;
use engine::io::faulty::{FaultInjector, FaultPlan};
use engine::{AppendError, Durability, EpochEntry, Log, MaintenanceError, TruncateError};

fn e(epoch: u32) -> LeaderEpoch {
    LeaderEpoch::new(epoch)
}

fn entries(pairs: &[(u32, u64)]) -> Vec<EpochEntry> {
    pairs.iter().map(|&(epoch, start)| EpochEntry { epoch: e(epoch), start_offset: o(start) }).collect()
}

/// A leader log over several segments with epochs 0, 2 and 5.
async fn leader(path: &Path) -> Log {
    let log = Log::open(path, small_config()).await.unwrap();
    for seed in 0..120u64 {
        if seed == 40 {
            log.begin_epoch(e(2)).await.unwrap();
        }
        if seed == 80 {
            log.begin_epoch(e(5)).await.unwrap();
        }
        log.append(&[batch(seed, 1 + (seed % 4) as u32, 1000, seed as i64)], Durability::None).await.unwrap();
    }
    log
}

/// Batches of `log` from `from`, whole, in requests of a few each.
async fn fetch(log: &Log, from: u64) -> Vec<Vec<Bytes>> {
    let all = read_whole_batches(log).await;
    let from_index = all.iter().position(|b| i64::from_be_bytes(b[0..8].try_into().unwrap()) as u64 >= from).unwrap();
    all[from_index..].chunks(3).map(<[Bytes]>::to_vec).collect()
}

#[test]
fn a_replica_stores_the_leaders_batches_byte_for_byte() {
    let dir = temp_dir();
    let (leader_path, follower_path) = (dir.path().join("leader"), dir.path().join("follower"));
    run(move || async move {
        let leader = leader(&leader_path).await;
        let follower = Log::open(&follower_path, small_config()).await.unwrap();
        for request in fetch(&leader, 0).await {
            let end = follower.log_end_offset();
            let info = follower.append_replica(&request, Durability::Sync).await.unwrap();
            assert_eq!(info.base_offsets[0], end);
        }
        assert_eq!(follower.log_end_offset(), leader.log_end_offset());
        assert_eq!(follower.durable_end_offset(), leader.log_end_offset());
        assert_eq!(read_whole_batches(&follower).await, read_whole_batches(&leader).await);
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        assert_eq!(follower.leader_epoch(), e(5));
        follower.close().await.unwrap();
        // And from disk after a reopen.
        let follower = Log::open(&follower_path, small_config()).await.unwrap();
        assert_eq!(read_whole_batches(&follower).await, read_whole_batches(&leader).await);
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        follower.close().await.unwrap();
        leader.close().await.unwrap();
    });
}

#[test]
fn replica_batches_must_continue_the_log_exactly() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        log.append_replica(&[stored_batch(1, 3, 10, 0, 2)], Durability::Sync).await.unwrap();
        assert_eq!(log.leader_epochs(), entries(&[(2, 0)]));
        let rejected = |batches: Vec<Bytes>| {
            let log = log.clone();
            async move {
                let err = log.append_replica(&batches, Durability::Sync).await.unwrap_err();
                assert_eq!(log.log_end_offset(), o(3), "a rejected request moved the log end: {err}");
                assert_eq!(log.leader_epochs(), entries(&[(2, 0)]), "a rejected request changed the epochs: {err}");
                err
            }
        };
        // A gap, an overlap, a gap inside the request.
        let err = rejected(vec![stored_batch(2, 1, 10, 4, 2)]).await;
        assert!(matches!(err, AppendError::ReplicaOffsetMismatch { index: 0, found: 4, .. }), "{err}");
        let err = rejected(vec![stored_batch(2, 1, 10, 2, 2)]).await;
        assert!(matches!(err, AppendError::ReplicaOffsetMismatch { index: 0, .. }), "{err}");
        let err = rejected(vec![stored_batch(2, 1, 10, 3, 2), stored_batch(3, 1, 10, 5, 2)]).await;
        assert!(matches!(err, AppendError::ReplicaOffsetMismatch { index: 1, found: 5, .. }), "{err}");
        // Epochs: unknown, older than the log's, decreasing inside the request.
        let err = rejected(vec![stored_batch(2, 1, 10, 3, -1)]).await;
        assert!(matches!(err, AppendError::ReplicaEpochUnknown { index: 0, epoch: -1 }), "{err}");
        let err = rejected(vec![stored_batch(2, 1, 10, 3, 1)]).await;
        assert!(matches!(err, AppendError::ReplicaEpochBackwards { index: 0, .. }), "{err}");
        let err = rejected(vec![stored_batch(2, 1, 10, 3, 4), stored_batch(3, 1, 10, 4, 3)]).await;
        assert!(matches!(err, AppendError::ReplicaEpochBackwards { index: 1, .. }), "{err}");
        // A corrupt batch.
        let mut bad = stored_batch(2, 1, 10, 3, 2).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = rejected(vec![Bytes::from(bad)]).await;
        assert!(matches!(err, AppendError::InvalidBatch { index: 0, .. }), "{err}");
        // New epochs inside one request each get an entry.
        let batches = [stored_batch(4, 2, 10, 3, 2), stored_batch(5, 1, 10, 5, 6), stored_batch(6, 1, 10, 6, 9)];
        let info = log.append_replica(&batches, Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![o(3), o(5), o(6)]);
        assert_eq!(log.leader_epochs(), entries(&[(2, 0), (6, 5), (9, 6)]));
        assert_eq!(read_epochs(&log).await, vec![(0, 2), (3, 2), (5, 6), (6, 9)]);
        // A leader append after that stamps the latest epoch.
        log.append(&[batch(7, 1, 10, 0)], Durability::Sync).await.unwrap();
        assert_eq!(read_epochs(&log).await.last(), Some(&(7, 9)));
        log.close().await.unwrap();
    });
}

#[test]
fn truncate_to_cuts_at_batch_boundaries_everywhere() {
    let dir = temp_dir();
    let path = dir.path().join("leader");
    let cases_root = dir.path().to_path_buf();
    run(move || async move {
        let log = leader(&path).await;
        let all = read_whole_batches(&log).await;
        let epochs = log.leader_epochs();
        let end = log.log_end_offset().get();
        log.close().await.unwrap();
        let bases: Vec<u64> = all.iter().map(|b| i64::from_be_bytes(b[0..8].try_into().unwrap()) as u64).collect();
        let segment_bases: Vec<u64> =
            segment_files(&path).iter().map(|f| f.file_stem().unwrap().to_str().unwrap().parse().unwrap()).collect();
        assert!(segment_bases.len() > 3);
        // Inside the first batch, at segment boundaries, just after them, mid-segment, the last batch.
        let mut targets = vec![0, 1, bases[1], bases[bases.len() - 1], bases[bases.len() - 1] + 1, end - 1];
        for &s in &segment_bases[1..] {
            targets.extend([s, s + 1]);
        }
        targets.push(bases[bases.len() / 2] + 2);
        for (i, target) in targets.into_iter().enumerate() {
            let case = cases_root.join(format!("case-{i}"));
            copy_into(&path, &case);
            let log = Log::open(&case, small_config()).await.unwrap();
            log.checkpoint_high_watermark(o(end)).await.unwrap();
            // The batch holding the target goes, with everything after it.
            let keep = bases.partition_point(|&b| b <= target) - 1;
            let cut = bases[keep];
            assert!(cut <= target);
            let new_end = log.truncate_to(o(target)).await.unwrap();
            assert_eq!(new_end, o(cut), "truncate_to({target})");
            assert_eq!(log.log_end_offset(), o(cut));
            assert_eq!(log.checkpointed_high_watermark(), o(cut));
            let expected_epochs: Vec<EpochEntry> = epochs.iter().copied().filter(|x| x.start_offset < o(cut)).collect();
            let expected_epochs = if expected_epochs.is_empty() { entries(&[(0, cut)]) } else { expected_epochs };
            assert_eq!(log.leader_epochs(), expected_epochs, "truncate_to({target})");
            assert_eq!(read_whole_batches(&log).await, all[..keep], "truncate_to({target})");
            // Appends continue at the cut, in the latest epoch kept.
            let info = log.append(&[batch(900, 2, 10, 0)], Durability::Sync).await.unwrap();
            assert_eq!(info.base_offsets, vec![o(cut)]);
            log.close().await.unwrap();
            let log = Log::open(&case, small_config()).await.unwrap();
            assert_eq!(log.log_end_offset(), o(cut + 2));
            assert_eq!(read_whole_batches(&log).await[..keep], all[..keep]);
            assert!(!case.join("truncate-intent").exists());
            log.close().await.unwrap();
            std::fs::remove_dir_all(&case).unwrap();
        }
    });
}

fn copy_into(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn truncate_to_edges() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let mut config = small_config();
        config.retention_bytes = Some(1);
        let log = Log::open(&path, config).await.unwrap();
        for seed in 0..60u64 {
            log.append(&[batch(seed, 2, 2000, 0)], Durability::None).await.unwrap();
        }
        log.apply_retention(0).await.unwrap();
        let (start, end) = (log.log_start_offset().get(), log.log_end_offset().get());
        assert!(start > 0);
        // Past the end: nothing to do. Below the start: an error.
        assert_eq!(log.truncate_to(o(end + 10)).await.unwrap(), o(end));
        assert_eq!(log.truncate_to(o(end)).await.unwrap(), o(end));
        let err = log.truncate_to(o(start - 1)).await.unwrap_err();
        assert!(matches!(err, TruncateError::BelowLogStart { .. }), "{err}");
        // To the start: an empty log there, back at epoch 0.
        log.begin_epoch(e(3)).await.unwrap();
        assert_eq!(log.truncate_to(o(start)).await.unwrap(), o(start));
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (o(start), o(start)));
        assert_eq!(log.leader_epochs(), entries(&[(0, start)]));
        assert!(log.read(o(start), 100).await.unwrap().is_empty());
        // A replica may then start over at any epoch.
        log.append_replica(&[stored_batch(1, 2, 10, start, 7)], Durability::Sync).await.unwrap();
        assert_eq!(log.leader_epochs(), entries(&[(7, start)]));
        log.close().await.unwrap();
        assert!(matches!(log.truncate_to(o(start)).await, Err(TruncateError::Closed)));
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (o(start), o(start + 2)));
        log.close().await.unwrap();
    });
}

#[test]
fn an_append_waiting_when_its_batches_are_truncated_is_not_acknowledged() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        log.append(&[batch(1, 2, 10, 0)], Durability::Sync).await.unwrap();
        let kept = log.append_queued(&[batch(2, 2, 10, 0)]).await.unwrap();
        let cut = log.append_queued(&[batch(3, 2, 10, 0)]).await.unwrap();
        assert_eq!(log.truncate_to(o(4)).await.unwrap(), o(4));
        assert_eq!(kept.durable(Durability::Sync).await.unwrap().log_end_offset, o(4));
        let err = cut.durable(Durability::Sync).await.unwrap_err();
        assert!(
            matches!(err, AppendError::Truncated { end_offset, truncated_to } if end_offset == o(6) && truncated_to == o(4)),
            "{err}"
        );
        // New batches at the same offsets are not confused with the old ones.
        let again = log.append_queued(&[batch(4, 2, 10, 0)]).await.unwrap();
        assert_eq!(again.durable(Durability::None).await.unwrap().base_offsets, vec![o(4)]);
        log.close().await.unwrap();
    });
}

#[test]
fn reads_racing_a_truncation_see_the_log_before_or_after_it() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    run(move || async move {
        engine::cache::set_shard_budget_bytes(0);
        let log = Log::open(&path, small_config()).await.unwrap();
        for seed in 0..200u64 {
            log.append(&[batch(seed, 2, 700, 0)], Durability::None).await.unwrap();
        }
        log.flush().await.unwrap();
        let before = read_whole_batches(&log).await;
        let readers: Vec<_> = (0..4u64)
            .map(|r| {
                let log = log.clone();
                let before = before.clone();
                glommio::spawn_local(async move {
                    let mut reads = 0;
                    for i in 0..200u64 {
                        let offset = (i * 37 + r * 11) % 400;
                        match log.read(o(offset), 16 << 10).await {
                            Ok(read) => {
                                for b in engine::batch::split_batches(read.to_bytes()) {
                                    let b = b.unwrap().into_bytes();
                                    let base = i64::from_be_bytes(b[0..8].try_into().unwrap()) as usize;
                                    assert_eq!(b, before[base / 2], "read at {offset} served a batch that never was");
                                }
                                reads += 1;
                            }
                            Err(engine::ReadError::OffsetOutOfRange { .. }) => {}
                            Err(e) => panic!("read at {offset}: {e}"),
                        }
                        glommio::yield_if_needed().await;
                    }
                    reads
                })
            })
            .collect();
        glommio::timer::sleep(Duration::from_millis(1)).await;
        assert_eq!(log.truncate_to(o(150)).await.unwrap(), o(150));
        for reader in readers {
            assert!(reader.await > 0);
        }
        assert_eq!(read_whole_batches(&log).await, before[..75]);
        log.close().await.unwrap();
    });
}

#[test]
fn the_high_watermark_checkpoint_survives_reopen_clamped_to_the_log() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    let probe = path.clone();
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.checkpointed_high_watermark(), o(0));
        log.append(&[batch(1, 5, 10, 0)], Durability::Sync).await.unwrap();
        let err = log.checkpoint_high_watermark(o(6)).await.unwrap_err();
        assert!(matches!(err, MaintenanceError::HighWatermarkBeyondEnd { .. }), "{err}");
        log.checkpoint_high_watermark(o(3)).await.unwrap();
        assert_eq!(log.checkpointed_high_watermark(), o(3));
        log.checkpoint_high_watermark(o(5)).await.unwrap();
        drop(log);
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.checkpointed_high_watermark(), o(5));
        log.close().await.unwrap();
        assert!(matches!(log.checkpoint_high_watermark(o(1)).await, Err(MaintenanceError::Closed)));
    });
    // A checkpoint past the recovered end (the tail was lost) is clamped to it.
    std::fs::remove_file(probe.join("clean_shutdown")).unwrap();
    let last = segment_files(&probe).pop().unwrap();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(10).unwrap();
    let path = probe.clone();
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(log.log_end_offset(), o(0));
        assert_eq!(log.checkpointed_high_watermark(), o(0));
        log.close().await.unwrap();
    });
    // A corrupt checkpoint is ignored.
    let file = probe.join("high-watermark-checkpoint");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[9] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    run(move || async move {
        let log = Log::open(&probe, small_config()).await.unwrap();
        assert_eq!(log.checkpointed_high_watermark(), o(0));
        log.close().await.unwrap();
    });
}

/// Stops the process before each durable step of a truncation in turn (and then before each
/// step of the open that finishes it): every open yields the log before the truncation or the
/// truncated log, exactly, and once the record was written, the truncated one.
#[test]
fn a_truncation_interrupted_at_any_step_is_finished_or_never_happened() {
    let dir = temp_dir();
    let original = dir.path().join("orig");
    let root = dir.path().to_path_buf();
    run(move || async move {
        let log = leader(&original).await;
        log.checkpoint_high_watermark(log.log_end_offset()).await.unwrap();
        let before = read_whole_batches(&log).await;
        let epochs_before = log.leader_epochs();
        log.close().await.unwrap();
        // Into an early segment, inside epoch 2: several later segments to delete, epoch 5 to drop.
        let files = segment_files(&original);
        let target = files
            .iter()
            .flat_map(|f| stored_batches(f))
            .find(|b| b.epoch == 2 && b.base_offset > epochs_before[1].start_offset.get() + 3)
            .unwrap()
            .base_offset;
        assert!(segment_files(&original).iter().filter(|f| stored_batches(f)[0].base_offset > target).count() > 2);
        assert!(target < epochs_before[2].start_offset.get());
        let keep = before.iter().filter(|b| (i64::from_be_bytes(b[0..8].try_into().unwrap()) as u64) < target).count();
        let mut step = 1;
        let mut finished_once = false;
        loop {
            let case = root.join(format!("step-{step}"));
            copy_into(&original, &case);
            let injector = FaultInjector::install(FaultPlan::default());
            let log = Log::open(&case, small_config()).await.unwrap();
            injector.stop_at_step(Some(step));
            let result = log.truncate_to(o(target)).await;
            let (_, stopped_at) = injector.steps();
            drop(log);
            FaultInjector::uninstall();
            if stopped_at.is_none() {
                assert_eq!(result.unwrap(), o(target));
                finished_once = true;
            } else {
                assert!(result.is_err(), "step {step}: a stopped truncation reported success");
            }
            let intent_written = case.join("truncate-intent").exists();
            // Reopen, itself stopped at every step of finishing the cut, until it gets through.
            for open_step in 1.. {
                let injector = FaultInjector::install(FaultPlan::default());
                injector.stop_at_step(Some(open_step));
                let opened = Log::open(&case, small_config()).await;
                let (_, open_stopped) = injector.steps();
                FaultInjector::uninstall();
                match opened {
                    Ok(log) => {
                        assert!(open_stopped.is_none());
                        let got = read_whole_batches(&log).await;
                        let truncated = got.len() == keep;
                        if truncated {
                            assert_eq!(got, before[..keep], "step {step}/{open_step}");
                            let kept: Vec<EpochEntry> =
                                epochs_before.iter().copied().filter(|x| x.start_offset < o(target)).collect();
                            assert_eq!(log.leader_epochs(), kept, "step {step}/{open_step}");
                            assert_eq!(log.checkpointed_high_watermark(), o(target), "step {step}/{open_step}");
                        } else {
                            assert!(
                                !intent_written || stopped_at.is_none(),
                                "step {step}: the record was written but the cut undone"
                            );
                            assert_eq!(got, before, "step {step}/{open_step}: neither before nor after");
                            assert_eq!(log.leader_epochs(), epochs_before);
                        }
                        if intent_written || stopped_at.is_none() {
                            assert!(truncated, "step {step}/{open_step}: the truncation was not finished");
                        }
                        assert!(!case.join("truncate-intent").exists());
                        log.close().await.unwrap();
                        break;
                    }
                    Err(e) => assert!(open_stopped.is_some(), "step {step}/{open_step}: open failed: {e}"),
                }
            }
            std::fs::remove_dir_all(&case).unwrap();
            if stopped_at.is_none() {
                break;
            }
            step += 1;
        }
        assert!(finished_once);
        assert!(step > 8, "only {step} steps: the crash points are not where the truncation writes");
        println!("truncation stopped before each of {} steps", step - 1);
    });
}

/// A replica that began an epoch at its log end as leader, appended nothing and lost the
/// leadership keeps that epoch as its latest — which its new leader does not have. Truncating
/// "to the log end" (nothing to cut) must drop it, or the follower would report it as its last
/// fetched epoch, be told to truncate at its end again, and never catch up (found by the
/// cluster's nemesis run). It stays dropped after a reopen.
#[test]
fn a_truncation_at_the_log_end_drops_an_epoch_begun_there() {
    let dir = temp_dir();
    let path = dir.path().join("log");
    run(move || async move {
        let log = Log::open(&path, small_config()).await.unwrap();
        log.begin_epoch(e(1)).await.unwrap();
        for seed in 0..3u64 {
            log.append(&[batch(seed, 2, 100, seed as i64)], Durability::Sync).await.unwrap();
        }
        let end = log.log_end_offset();
        log.begin_epoch(e(4)).await.unwrap();
        assert_eq!(log.leader_epochs(), entries(&[(1, 0), (4, end.get())]));
        assert_eq!(log.truncate_to(end).await.unwrap(), end);
        assert_eq!(log.leader_epochs(), entries(&[(1, 0)]), "the empty epoch 4 is gone");
        assert_eq!(log.log_end_offset(), end, "nothing was cut");
        // An epoch with batches stays.
        assert_eq!(log.truncate_to(end).await.unwrap(), end);
        assert_eq!(log.leader_epochs(), entries(&[(1, 0)]));
        log.close().await.unwrap();
        let reopened = Log::open(&path, small_config()).await.unwrap();
        assert_eq!(reopened.leader_epochs(), entries(&[(1, 0)]));
        reopened.close().await.unwrap();
    });
}

#[test]
fn a_new_replica_can_start_at_its_leaders_log_start_and_keeps_it_across_reopen() {
    let dir = temp_dir();
    let path = dir.path().join("p");
    let existing = dir.path().join("q");
    run(move || async move {
        let log = Log::open_starting_at(&path, small_config(), o(1000)).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (o(1000), o(1000)));
        assert_eq!(log.read(o(1000), 1 << 20).await.unwrap().size_bytes(), 0);
        // The leader's batches continue from there; anything else is refused.
        let err = log.append_replica(&[stored_batch(1, 2, 10, 0, 3)], Durability::Sync).await.unwrap_err();
        assert!(matches!(err, AppendError::ReplicaOffsetMismatch { index: 0, .. }), "{err}");
        log.append_replica(&[stored_batch(2, 2, 10, 1000, 3)], Durability::Sync).await.unwrap();
        assert_eq!(log.log_end_offset(), o(1002));
        assert_eq!(fetch(&log, 1000).await.concat().len(), 1);
        assert!(log.read(o(999), 1 << 20).await.is_err(), "offsets below the start were never here");
        log.close().await.unwrap();
        let log = Log::open(&path, small_config()).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (o(1000), o(1002)));
        assert_eq!(log.leader_epochs().last().map(|e| e.epoch), Some(e(3)));
        log.close().await.unwrap();
        // A directory that already holds a log ignores the start asked for.
        let log = Log::open(&existing, small_config()).await.unwrap();
        log.append_replica(&[stored_batch(3, 1, 10, 0, 1)], Durability::Sync).await.unwrap();
        log.close().await.unwrap();
        let log = Log::open_starting_at(&existing, small_config(), o(50)).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (o(0), o(1)));
        log.close().await.unwrap();
    });
}
