//! Committed group offsets, one store for both protocols (on the coordinator shard): a
//! commit is checked against the group's membership by the caller, then written durably to
//! the internal offsets log (`engine::group_offsets`, `Durability::Sync`), so an
//! acknowledged commit survives a crash and a group's offsets are the same whichever
//! protocol committed or reads them.

use engine::group_offsets::{CommittedOffset, GroupOffsets, GroupOffsetsError, OffsetCommit};

use crate::error::CallError;
use crate::groups::GroupError;
use crate::ids::{LeaderEpoch, Offset};
use crate::partition::TopicPartition;
use crate::topics::TopicTable;

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    pub partition: TopicPartition,
    pub offset: Offset,
    pub metadata: String,
    /// The leader epoch the consumer committed with (Kafka's committedLeaderEpoch).
    pub leader_epoch: Option<LeaderEpoch>,
}

/// Why a partition's commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("invalid group id: {reason}")]
    InvalidGroupId { reason: String },
    #[error("invalid topic name: {reason}")]
    InvalidTopicName { reason: String },
    /// Metadata or offset beyond what a commit may carry.
    #[error("{reason}")]
    InvalidOffset { reason: String },
    #[error("storage error: {reason}")]
    Storage { reason: String },
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    Call(#[from] CallError),
    /// A cluster: the metadata log did not take the commit (retry).
    #[error("commit not stored: {reason}")]
    Unavailable { reason: String },
}

impl From<GroupOffsetsError> for CommitError {
    fn from(e: GroupOffsetsError) -> Self {
        let reason = e.to_string();
        match e {
            GroupOffsetsError::InvalidGroup { .. } => CommitError::InvalidGroupId { reason },
            GroupOffsetsError::InvalidTopic(_) => CommitError::InvalidTopicName { reason },
            GroupOffsetsError::MetadataTooLarge { .. } | GroupOffsetsError::OffsetTooLarge { .. } => {
                CommitError::InvalidOffset { reason }
            }
            _ => CommitError::Storage { reason },
        }
    }
}

/// A committed offset, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub partition: TopicPartition,
    pub offset: Offset,
    pub metadata: String,
    pub leader_epoch: Option<LeaderEpoch>,
}

pub struct OffsetStore {
    offsets: GroupOffsets,
}

impl OffsetStore {
    pub fn new(offsets: GroupOffsets) -> OffsetStore {
        OffsetStore { offsets }
    }

    /// Stores the commits of existing partitions (one durable append for all of them) and
    /// answers each in request order.
    pub async fn commit(
        &self,
        table: &TopicTable,
        group: &str,
        offsets: Vec<OffsetToCommit>,
        now_ms: i64,
    ) -> Vec<Result<(), CommitError>> {
        let mut results: Vec<Result<(), CommitError>> = Vec::with_capacity(offsets.len());
        let mut commits = Vec::new();
        for o in offsets {
            if !table.exists(&o.partition.topic, o.partition.partition) {
                results.push(Err(CommitError::UnknownTopicOrPartition));
                continue;
            }
            commits.push(OffsetCommit {
                topic: o.partition.topic,
                partition: o.partition.partition,
                offset: o.offset.get(),
                metadata: o.metadata,
                leader_epoch: o.leader_epoch.map(LeaderEpoch::get),
            });
            results.push(Ok(()));
        }
        if let Err(e) = self.offsets.commit(group, &commits, now_ms).await {
            let e = CommitError::from(e);
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
        results
    }

    /// The committed offset of each partition asked for (`None` where nothing was committed),
    /// or every committed offset of the group when `partitions` is `None`.
    pub fn fetch(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Vec<(TopicPartition, Option<Committed>)> {
        // The store refuses offsets beyond i64::MAX, so every stored one is an `Offset`.
        let committed = |tp: TopicPartition, c: CommittedOffset| Committed {
            partition: tp,
            offset: Offset::new(c.offset),
            metadata: c.metadata,
            // Stored epochs came from the wire (at most i32::MAX); anything else reads as none.
            leader_epoch: c.leader_epoch.and_then(|e| LeaderEpoch::from_wire(i32::try_from(e).ok()?)),
        };
        match partitions {
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let found = self.offsets.fetch(group, &tp.topic, tp.partition);
                    (tp.clone(), found.map(|c| committed(tp, c)))
                })
                .collect(),
            None => self
                .offsets
                .fetch_group(group)
                .into_iter()
                .map(|(topic, partition, c)| {
                    let tp = TopicPartition::new(topic, partition);
                    (tp.clone(), Some(committed(tp, c)))
                })
                .collect(),
        }
    }

    /// Forgets every group's offsets of a deleted topic.
    pub async fn delete_topic(&self, topic: &str, now_ms: i64) {
        if let Err(e) = self.offsets.delete_topic(topic, now_ms).await {
            tracing::error!(%topic, error = %e, "forgetting committed offsets failed");
        }
    }

    /// Every group that has committed offsets, sorted.
    pub fn groups(&self) -> Vec<String> {
        self.offsets.groups()
    }

    /// Forgets every offset `group` committed; how many there were.
    pub async fn delete_group(&self, group: &str, now_ms: i64) -> Result<usize, CommitError> {
        Ok(self.offsets.delete_group(group, now_ms).await?)
    }

    /// Forgets `group`'s offsets of `partitions` (Kafka's OffsetDelete).
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<(), CommitError> {
        let keys: Vec<(String, u32)> = partitions.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect();
        Ok(self.offsets.delete_offsets(group, &keys, now_ms).await?)
    }

    pub async fn close(&self) {
        if let Err(e) = self.offsets.close().await {
            tracing::error!(error = %e, "closing group offsets failed");
        }
    }
}
