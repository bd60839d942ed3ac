//! The broker's typed errors. Each crosses shards (so `Send` and `Clone`, messages as owned
//! text), and each protocol adapter maps them onto its own error codes; nothing here knows a
//! wire format.

use engine::{AppendError, ReadError};

use crate::ids::{LeaderEpoch, NodeId, Offset, ShardId};

/// Why a call to another shard got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Its channel is closed: the shard is stopping.
    #[error("shard {shard} is unreachable (shutting down?)")]
    Unreachable { shard: ShardId },
    /// No answer before the call's deadline.
    #[error("shard {shard} did not answer in time")]
    TimedOut { shard: ShardId },
}

/// Why an idempotent producer's batch was refused (Kafka's producer-state checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// The batch's producer epoch is older than the producer's current one (a zombie).
    #[error("producer epoch {epoch} is older than the current {current}")]
    InvalidProducerEpoch { epoch: i16, current: i16 },
    /// The batch does not start right after the producer's last sequence.
    #[error("sequence {first_sequence} does not follow {expected}")]
    OutOfOrderSequence { first_sequence: i32, expected: i32 },
    /// An idempotent producer's produce carries exactly one batch per partition (Kafka).
    #[error("an idempotent produce carries exactly one batch per partition, not {batches}")]
    SeveralBatches { batches: usize },
    /// Producer fields that no producer writes (negative sequence or epoch, no records).
    #[error("invalid producer fields (sequence {first_sequence}, epoch {epoch}, {records} records)")]
    InvalidFields { first_sequence: i32, epoch: i16, records: i32 },
}

/// Why an operation on a partition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: Offset, log_start: Offset, log_end: Offset },
    /// A batch failed validation (CRC, framing, record count); nothing was appended.
    #[error("invalid record batch: {reason}")]
    InvalidBatch { reason: String },
    #[error("record batch too large: {reason}")]
    BatchTooLarge { reason: String },
    /// The disk is full or below the free-space floor; retry once space is freed.
    #[error("{reason}")]
    DiskFull { reason: String },
    /// A write or fdatasync failed: the partition refuses appends until the broker restarts
    /// (which re-verifies the log from disk).
    #[error("partition fenced after an I/O error, until restart: {reason}")]
    Fenced { reason: String },
    #[error("storage error: {reason}")]
    Storage { reason: String },
    /// A stored batch failed its checks on read; it is never served.
    #[error("stored data is corrupt: {reason}")]
    Corrupt { reason: String },
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Call(#[from] CallError),
    /// A cluster: this broker does not lead the partition (`leader`, if any, does).
    #[error("not the partition's leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// A cluster leader's change did not reach every in-sync replica in time (DeleteRecords
    /// waiting for the followers' log starts); the leader made it, the followers will follow.
    #[error("{reason}")]
    ReplicationTimedOut { reason: String },
    /// acks=all with fewer in-sync replicas than the topic's min.insync.replicas; nothing
    /// was appended.
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas {min}")]
    NotEnoughReplicas { isr: usize, min: u32 },
    /// Appended, but the ISR fell below min.insync.replicas (or the wait timed out) before the
    /// batch reached every in-sync replica: it may or may not survive a failure.
    #[error("appended but not replicated: {reason}")]
    NotEnoughReplicasAfterAppend { reason: String },
    /// The request names an older leader epoch than the partition's.
    #[error("leader epoch {requested} is older than the partition's {current}")]
    FencedLeaderEpoch { requested: LeaderEpoch, current: LeaderEpoch },
    /// The request names a newer leader epoch than this replica knows.
    #[error("leader epoch {requested} is newer than this replica's {current}")]
    UnknownLeaderEpoch { requested: LeaderEpoch, current: LeaderEpoch },
}

impl PartitionError {
    /// The disk is full: retention should run now rather than at its next interval.
    pub fn wants_space(&self) -> bool {
        matches!(self, PartitionError::DiskFull { .. })
    }
}

impl From<AppendError> for PartitionError {
    fn from(e: AppendError) -> Self {
        let reason = e.to_string();
        match e {
            AppendError::InvalidBatch { .. } | AppendError::Empty => PartitionError::InvalidBatch { reason },
            AppendError::BatchTooLarge { .. } => PartitionError::BatchTooLarge { reason },
            AppendError::NoSpace(_) | AppendError::DiskFull { .. } => PartitionError::DiskFull { reason },
            AppendError::Fenced { reason } => PartitionError::Fenced { reason },
            AppendError::Closed => PartitionError::ShuttingDown,
            _ => PartitionError::Storage { reason },
        }
    }
}

impl From<ReadError> for PartitionError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::OffsetOutOfRange { offset, log_start_offset, log_end_offset } => {
                PartitionError::OffsetOutOfRange { offset, log_start: log_start_offset, log_end: log_end_offset }
            }
            other if other.is_corrupt() => PartitionError::Corrupt { reason: other.to_string() },
            other => PartitionError::Storage { reason: other.to_string() },
        }
    }
}

/// Why a catalog change (create or delete a topic, add partitions) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("invalid topic name: {reason}")]
    InvalidTopicName { reason: String },
    #[error("topic {name:?} already exists")]
    TopicExists { name: String },
    #[error("unknown topic {name:?}")]
    UnknownTopic { name: String },
    #[error("invalid partition count: {reason}")]
    InvalidPartitions { reason: String },
    #[error("invalid topic config: {reason}")]
    InvalidConfig { reason: String },
    #[error("storage error: {reason}")]
    Storage { reason: String },
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("invalid replication factor: {reason}")]
    InvalidReplicationFactor { reason: String },
    /// The cluster's metadata log did not take the change (no leader, timed out).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ProposeError),
    /// A reassignment's target replicas are not usable (unknown brokers, duplicates, none).
    #[error("invalid replica assignment: {reason}")]
    InvalidReplicaAssignment { reason: String },
    #[error("no reassignment is under way for {topic}-{partition}")]
    NoReassignmentInProgress { topic: String, partition: u32 },
    /// The preferred replica already leads.
    #[error("{topic}-{partition}: the preferred replica already leads")]
    ElectionNotNeeded { topic: String, partition: u32 },
    /// The preferred replica is not live and in sync.
    #[error("{topic}-{partition}: the preferred replica cannot lead now: {reason}")]
    PreferredLeaderNotAvailable { topic: String, partition: u32, reason: String },
    /// A cluster operation on a single node.
    #[error("this broker is a single node, not part of a cluster")]
    NotACluster,
}

impl From<engine::catalog::CatalogError> for AdminError {
    fn from(e: engine::catalog::CatalogError) -> Self {
        use engine::catalog::CatalogError;
        let reason = e.to_string();
        match e {
            CatalogError::InvalidTopicName { .. } => AdminError::InvalidTopicName { reason },
            CatalogError::TopicExists { name } => AdminError::TopicExists { name },
            CatalogError::UnknownTopic { name } => AdminError::UnknownTopic { name },
            CatalogError::InvalidPartitionCount { .. } => AdminError::InvalidPartitions { reason },
            CatalogError::TooManyTopics { .. } | CatalogError::InvalidConfig { .. } => {
                AdminError::InvalidConfig { reason }
            }
            _ => AdminError::Storage { reason },
        }
    }
}
