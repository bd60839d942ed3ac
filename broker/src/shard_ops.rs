//! The operations APIs on a partition (issue #13), each run on the partition's owner like
//! `Shard::read` (at once when that is this shard, else as a cross-shard call with a
//! deadline): deleting records (Kafka's DeleteRecords), the record with the largest timestamp
//! (ListOffsets MAX_TIMESTAMP), the end offset of a leader epoch (OffsetForLeaderEpoch), the
//! idempotent producers (DescribeProducers); and applying a topic's new config to the
//! partitions this shard owns.

use std::rc::Rc;

use engine::catalog::TopicConfig;
use engine::{LogConfig, MaintenanceError, MaxTimestamp};

use crate::calls::{Reply, ShardCall};
use crate::error::PartitionError;
use crate::ids::{LeaderEpoch, Offset};
use crate::limits::SHARD_CALL_TIMEOUT_MS;
use crate::partition::{Partition, TopicPartition};
use crate::producers::ProducerDescription;
use crate::router::deadline_in;
use crate::shard::Shard;

impl Shard {
    /// Runs `local` on the partition if this shard owns it, else sends the call `remote`
    /// builds to the owner.
    async fn on_partition_owner<T>(
        self: &Rc<Self>,
        partition: &TopicPartition,
        local: impl AsyncFnOnce(Rc<Partition>) -> Result<T, PartitionError>,
        remote: impl FnOnce(Reply<Result<T, PartitionError>>) -> ShardCall,
    ) -> Result<T, PartitionError> {
        let owner = self.owner(partition).ok_or(PartitionError::UnknownTopicOrPartition)?;
        if owner == self.id() {
            let p = self.local_partition(partition).ok_or(PartitionError::UnknownTopicOrPartition)?;
            return local(p).await;
        }
        self.router().call(owner, remote, deadline_in(SHARD_CALL_TIMEOUT_MS)).await?
    }

    /// Deletes `partition`'s records before `offset` (`None`: the high watermark, Kafka's -1);
    /// returns the log start after (Kafka's low watermark). An offset past the high watermark
    /// is `OffsetOutOfRange`.
    pub async fn delete_records(
        self: &Rc<Self>,
        partition: TopicPartition,
        offset: Option<Offset>,
    ) -> Result<Offset, PartitionError> {
        let local = async |p: Rc<Partition>| {
            // In a cluster only the leader deletes; followers follow its log start.
            p.check_leader()?;
            let bounds = p.bounds();
            let offset = offset.unwrap_or(bounds.high_watermark);
            if offset > bounds.high_watermark {
                return Err(PartitionError::OffsetOutOfRange {
                    offset,
                    log_start: bounds.log_start_offset,
                    log_end: bounds.high_watermark,
                });
            }
            let start = p.log().delete_records_before(offset).await.map_err(|e| match e {
                MaintenanceError::DeleteBeyondEnd { offset, log_end_offset } => PartitionError::OffsetOutOfRange {
                    offset,
                    log_start: p.log().log_start_offset(),
                    log_end: log_end_offset,
                },
                MaintenanceError::Closed => PartitionError::ShuttingDown,
                MaintenanceError::Fenced { reason } => PartitionError::Fenced { reason },
                other => PartitionError::Storage { reason: other.to_string() },
            })?;
            p.wait_log_start_replicated(start).await?;
            Ok(start)
        };
        let remote = |reply| ShardCall::DeleteRecords { partition: partition.clone(), offset, reply };
        self.on_partition_owner(&partition, local, remote).await
    }

    /// The record with the largest timestamp, `None` for an empty partition.
    pub async fn max_timestamp(
        self: &Rc<Self>,
        partition: TopicPartition,
    ) -> Result<Option<MaxTimestamp>, PartitionError> {
        let local = async |p: Rc<Partition>| Ok(p.log().max_timestamp().await?);
        let remote = |reply| ShardCall::MaxTimestamp { partition: partition.clone(), reply };
        self.on_partition_owner(&partition, local, remote).await
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch ≤ `epoch` the partition knows and
    /// where the next one starts (the log end for the latest); `None` past the latest.
    pub async fn end_offset_for_epoch(
        self: &Rc<Self>,
        partition: TopicPartition,
        epoch: LeaderEpoch,
    ) -> Result<Option<(LeaderEpoch, Offset)>, PartitionError> {
        let local = async |p: Rc<Partition>| Ok(p.log().end_offset_for_epoch(epoch));
        let remote = |reply| ShardCall::EndOffsetForEpoch { partition: partition.clone(), epoch, reply };
        self.on_partition_owner(&partition, local, remote).await
    }

    /// The idempotent producers the partition remembers.
    pub async fn describe_producers(
        self: &Rc<Self>,
        partition: TopicPartition,
    ) -> Result<Vec<ProducerDescription>, PartitionError> {
        let local = async |p: Rc<Partition>| p.describe_producers().await;
        let remote = |reply| ShardCall::DescribeProducers { partition: partition.clone(), reply };
        self.on_partition_owner(&partition, local, remote).await
    }

    /// A topic's new config, applied to the partitions of it this shard has open: rolls and
    /// retention from the next append or pass, acks=1 durability from the next append.
    pub fn reconfigure_partitions(&self, topic: &str, config: &TopicConfig) {
        let table = self.topics();
        let Some(info) = table.topics.get(topic) else {
            return;
        };
        for p in &info.partitions {
            let Some(partition) = self.local_partition(&TopicPartition::new(topic, p.partition)) else {
                continue;
            };
            if let Err(reason) = partition.log().reconfigure(LogConfig::from_topic(config)) {
                // The catalog validated the config; a log refusing it keeps its old settings.
                tracing::error!(partition = %partition.id(), %reason, "reconfiguring a log failed");
            }
            partition.set_durability(config.durability);
        }
    }
}
