//! A partition's append path on a real log: idempotent producers' checks happen together
//! with the append, so a batch that fails to append takes no sequence, and a retry of a
//! batch already appended is acknowledged with its original offset, not appended again.
#![allow(clippy::unwrap_used)]

use broker::ids::{LeaderEpoch, Offset};
use broker::order::Turn;
use broker::partition::{Acks, Partition, TopicPartition};
use broker::{PartitionError, ProducerError};
use bytes::Bytes;
use engine::batch::BatchBuilder;
use engine::catalog::TopicConfig;

fn idempotent_batch(producer_id: i64, epoch: i16, first_sequence: i32, records: u32) -> Bytes {
    let mut builder = BatchBuilder::new().producer(producer_id, epoch, first_sequence);
    for i in 0..records {
        builder.push(Some(format!("k{i}").as_bytes()), Some(b"v"), 1_700_000_000_000, &[]);
    }
    builder.build().unwrap()
}

fn run<F: std::future::Future<Output = ()> + 'static>(make: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default().spawn(make).unwrap().join().unwrap();
}

#[test]
fn idempotent_checks_and_appends_are_one_step() {
    let dir = tempfile::Builder::new().prefix("shardlog-partition-").tempdir_in(std::env::temp_dir()).unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let partition =
            Partition::open(&path, TopicPartition::new("t", 0), &TopicConfig::default(), LeaderEpoch::ZERO, 0)
                .await
                .unwrap();
        let append = |batch: Bytes| partition.append(vec![batch], Acks::Durable, Turn::unordered());
        let first = append(idempotent_batch(7, 0, 0, 3)).await.unwrap();
        assert_eq!((first.base_offsets.clone(), first.duplicate), (vec![Offset::ZERO], false));

        // A batch that fails to append (its CRC is broken) takes no sequence: the retry of the
        // same sequences is appended.
        let mut broken = idempotent_batch(7, 0, 3, 2).to_vec();
        let last = broken.len() - 1;
        broken[last] ^= 0xff;
        assert!(matches!(append(Bytes::from(broken)).await, Err(PartitionError::InvalidBatch { .. })));
        let second = append(idempotent_batch(7, 0, 3, 2)).await.unwrap();
        assert_eq!(second.base_offsets, vec![Offset::new(3)]);

        // A retry of an appended batch gets its original offset and is not stored again.
        let end = partition.bounds().log_end_offset;
        let retry = append(idempotent_batch(7, 0, 0, 3)).await.unwrap();
        assert_eq!((retry.base_offsets, retry.duplicate), (vec![Offset::ZERO], true));
        assert_eq!(partition.bounds().log_end_offset, end);

        // A gap, an old epoch, several batches at once: refused, nothing stored.
        let gap = append(idempotent_batch(7, 0, 9, 1)).await.unwrap_err();
        assert_eq!(gap, PartitionError::Producer(ProducerError::OutOfOrderSequence { first_sequence: 9, expected: 5 }));
        let two = partition
            .append(vec![idempotent_batch(8, 0, 0, 1), idempotent_batch(8, 0, 1, 1)], Acks::Durable, Turn::unordered())
            .await
            .unwrap_err();
        assert_eq!(two, PartitionError::Producer(ProducerError::SeveralBatches { batches: 2 }));
        assert_eq!(partition.bounds().log_end_offset, end);

        // After a restart the state is rebuilt from the log: the retry is still recognised.
        partition.close().await;
        let reopened =
            Partition::open(&path, TopicPartition::new("t", 0), &TopicConfig::default(), LeaderEpoch::ZERO, 0)
                .await
                .unwrap();
        let retry =
            reopened.append(vec![idempotent_batch(7, 0, 3, 2)], Acks::Durable, Turn::unordered()).await.unwrap();
        assert_eq!((retry.base_offsets, retry.duplicate), (vec![Offset::new(3)], true));
        let next = reopened.append(vec![idempotent_batch(7, 0, 5, 1)], Acks::Durable, Turn::unordered()).await.unwrap();
        assert_eq!(next.base_offsets, vec![Offset::new(5)]);
        reopened.close().await;
    });
}

/// A partition opened in a newer leader epoch stamps it on the batches it appends from then
/// on; the older ones keep theirs; an older epoch than the log's is refused.
#[test]
fn the_leader_epoch_is_stamped_on_appended_batches() {
    let dir = tempfile::Builder::new().prefix("shardlog-partition-epoch-").tempdir_in(std::env::temp_dir()).unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let id = || TopicPartition::new("t", 0);
        let config = TopicConfig::default();
        let batch = |value: &str| {
            let mut builder = BatchBuilder::new();
            builder.push(None, Some(value.as_bytes()), 1_700_000_000_000, &[]);
            builder.build().unwrap()
        };
        let first = Partition::open(&path, id(), &config, LeaderEpoch::ZERO, 0).await.unwrap();
        first.append(vec![batch("a")], Acks::Durable, Turn::unordered()).await.unwrap();
        first.close().await;
        let second = Partition::open(&path, id(), &config, LeaderEpoch::new(2), 0).await.unwrap();
        assert_eq!(second.leader_epoch(), LeaderEpoch::new(2));
        second.append(vec![batch("b")], Acks::Durable, Turn::unordered()).await.unwrap();
        let read = second.read(Offset::ZERO, 1 << 20).await.unwrap();
        let mut all = Vec::new();
        for chunk in &read.chunks {
            all.extend_from_slice(chunk);
        }
        let epochs: Vec<i32> = engine::batch::split_batches(Bytes::from(all))
            .map(|b| b.unwrap().header().partition_leader_epoch)
            .collect();
        assert_eq!(epochs, vec![0, 2]);
        second.close().await;
        assert!(Partition::open(&path, id(), &config, LeaderEpoch::new(1), 0).await.is_err(), "epochs never go back");
    });
}

/// A failed fdatasync fences the partition: the append it covered is not acknowledged, every
/// later append gets `Fenced` and `fenced()` says why, until the partition is reopened (the
/// broker restarts), which re-verifies the log and serves again.
#[test]
fn a_failed_fdatasync_fences_the_partition_until_it_is_reopened() {
    use engine::io::faulty::{FaultInjector, FaultPlan};
    let dir = tempfile::Builder::new().prefix("shardlog-partition-fenced-").tempdir_in(std::env::temp_dir()).unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let id = || TopicPartition::new("t", 0);
        let config = TopicConfig::default();
        let batch = || {
            let mut builder = BatchBuilder::new();
            builder.push(None, Some(b"v"), 1_700_000_000_000, &[]);
            builder.build().unwrap()
        };
        let injector = FaultInjector::install(FaultPlan { seed: 11, sync_error_at: Some(1), ..FaultPlan::default() });
        let partition = Partition::open(&path, id(), &config, LeaderEpoch::ZERO, 0).await.unwrap();
        assert_eq!(partition.fenced(), None);
        injector.arm();
        let first = partition.append(vec![batch()], Acks::Durable, Turn::unordered()).await;
        assert!(first.is_err(), "an append whose fdatasync failed is not acknowledged: {first:?}");
        let reason = partition.fenced().expect("fenced");
        let second = partition.append(vec![batch()], Acks::Leader, Turn::unordered()).await;
        assert_eq!(second, Err(PartitionError::Fenced { reason }));
        injector.disarm();
        drop(partition);
        FaultInjector::uninstall();
        let reopened = Partition::open(&path, id(), &config, LeaderEpoch::ZERO, 0).await.unwrap();
        assert_eq!(reopened.fenced(), None);
        reopened.append(vec![batch()], Acks::Durable, Turn::unordered()).await.unwrap();
        reopened.close().await;
    });
}
