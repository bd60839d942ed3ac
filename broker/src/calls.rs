//! What one shard asks another to do: one variant per operation, each with its own typed
//! reply slot, so a caller gets exactly the answer type it asked for (no "unexpected reply"
//! to handle). Everything here is `Send`: it crosses threads in a glommio shared channel,
//! and the reply comes back through a `oneshot` (glommio wakes the caller's task from the
//! other thread).

use bytes::Bytes;
use engine::catalog::{PartitionInfo, TopicConfig};
use futures_channel::oneshot;

use crate::cluster::{MetaCommand, MetaResponse, ProposeError};
use crate::error::{AdminError, PartitionError};
use crate::groups::offsets::Committed;
use crate::groups::{
    AssignedJoin, CommitError, ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatReply, DeleteGroupError,
    GroupDescription, GroupError, GroupListing, HeartbeatRequest, JoinRequest, Joined, LeaveRequest, MemberLeft,
    OffsetDeleteError, OffsetToCommit, SyncRequest, Synced,
};
use crate::ids::{LeaderEpoch, Offset};
use crate::metrics::ShardMetricsSnapshot;
use crate::partition::{Acks, Appended, ListedOffset, OffsetQuery, PartitionBounds, Read, TopicPartition};
use crate::producers::ProducerDescription;

/// Where the answer goes.
pub type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
pub enum ShardCall {
    /// Append to a partition the receiving shard owns.
    Produce {
        partition: TopicPartition,
        batches: Vec<Bytes>,
        acks: Acks,
        reply: Reply<Result<Appended, PartitionError>>,
    },
    Read {
        partition: TopicPartition,
        offset: Offset,
        bytes_max: u32,
        reply: Reply<Result<Read, PartitionError>>,
    },
    /// Answer once data exists at `offset`, or after `wait_ms`.
    Wait {
        partition: TopicPartition,
        offset: Offset,
        wait_ms: u32,
        reply: Reply<()>,
    },
    ListOffset {
        partition: TopicPartition,
        query: OffsetQuery,
        reply: Reply<Result<ListedOffset, PartitionError>>,
    },
    Bounds {
        partition: TopicPartition,
        reply: Reply<Result<PartitionBounds, PartitionError>>,
    },
    /// Open (create) partitions the catalog assigned to the receiving shard.
    OpenPartitions {
        topic: String,
        partitions: Vec<PartitionInfo>,
        config: TopicConfig,
        reply: Reply<Result<(), AdminError>>,
    },
    /// Close and delete partitions of a deleted topic.
    DropPartitions {
        topic: String,
        partitions: Vec<u32>,
        reply: Reply<Result<(), AdminError>>,
    },
    /// Catalog changes, on the coordinator shard.
    CreateTopic {
        name: String,
        partitions: u32,
        config: TopicConfig,
        reply: Reply<Result<(), AdminError>>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<Result<(), AdminError>>,
    },
    CreatePartitions {
        name: String,
        total: u32,
        reply: Reply<Result<(), AdminError>>,
    },
    /// Group calls, on the coordinator shard.
    JoinGroup {
        request: JoinRequest,
        reply: Reply<Result<Joined, GroupError>>,
    },
    JoinAssignedGroup {
        request: JoinRequest,
        reply: Reply<Result<AssignedJoin, GroupError>>,
    },
    SyncGroup {
        request: SyncRequest,
        reply: Reply<Result<Synced, GroupError>>,
    },
    Heartbeat {
        request: HeartbeatRequest,
        reply: Reply<Result<(), GroupError>>,
    },
    LeaveGroup {
        request: LeaveRequest,
        reply: Reply<Result<Vec<MemberLeft>, GroupError>>,
    },
    /// A KIP-848 ConsumerGroupHeartbeat, on the coordinator shard.
    ConsumerHeartbeat {
        request: ConsumerHeartbeat,
        reply: Reply<Result<ConsumerHeartbeatReply, GroupError>>,
    },
    /// A KIP-848 group as ConsumerGroupDescribe reports it (`None`: no such group).
    DescribeConsumerGroup {
        group: String,
        reply: Reply<Option<ConsumerGroupDescription>>,
    },
    /// OffsetFetch v9+: may this member (at this epoch) read the group's offsets?
    CheckOffsetFetch {
        group: String,
        member_id: String,
        member_epoch: i32,
        reply: Reply<Result<(), GroupError>>,
    },
    CommitOffsets {
        commit: OffsetsCommit,
        reply: Reply<Vec<Result<(), CommitError>>>,
    },
    FetchOffsets {
        group: String,
        partitions: Option<Vec<TopicPartition>>,
        reply: Reply<Vec<(TopicPartition, Option<Committed>)>>,
    },
    Metrics {
        reply: Reply<ShardMetricsSnapshot>,
    },
    // ---- operations APIs (issue #13): groups admin, records, configs ----------------------
    /// Groups with members or committed offsets, on the coordinator shard.
    ListGroups {
        reply: Reply<Vec<GroupListing>>,
    },
    DescribeGroup {
        group: String,
        reply: Reply<GroupDescription>,
    },
    /// Deletes an empty group and its committed offsets.
    DeleteGroup {
        group: String,
        reply: Reply<Result<(), DeleteGroupError>>,
    },
    /// Deletes a group's committed offsets of some partitions (one result each).
    DeleteOffsets {
        group: String,
        partitions: Vec<TopicPartition>,
        reply: Reply<Result<Vec<Result<(), OffsetDeleteError>>, DeleteGroupError>>,
    },
    /// Deletes a partition's records before `offset` (`None`: the high watermark).
    DeleteRecords {
        partition: TopicPartition,
        offset: Option<Offset>,
        reply: Reply<Result<Offset, PartitionError>>,
    },
    MaxTimestamp {
        partition: TopicPartition,
        reply: Reply<Result<Option<engine::MaxTimestamp>, PartitionError>>,
    },
    EndOffsetForEpoch {
        partition: TopicPartition,
        epoch: LeaderEpoch,
        reply: Reply<Result<Option<(LeaderEpoch, Offset)>, PartitionError>>,
    },
    DescribeProducers {
        partition: TopicPartition,
        reply: Reply<Result<Vec<ProducerDescription>, PartitionError>>,
    },
    /// A topic's config change, on the coordinator shard.
    AlterTopicConfig {
        name: String,
        config: TopicConfig,
        reply: Reply<Result<(), AdminError>>,
    },
    /// Applies a topic's new config to the partitions the receiving shard owns.
    ReconfigurePartitions {
        topic: String,
        config: TopicConfig,
        reply: Reply<()>,
    },
    /// A cluster metadata change, on the coordinator shard (which runs this node's Raft).
    Propose {
        command: MetaCommand,
        reply: Reply<Result<MetaResponse, ProposeError>>,
    },
}

impl ShardCall {
    /// The partition a produce appends to; `None` for other calls.
    pub fn produce_partition(&self) -> Option<&TopicPartition> {
        match self {
            ShardCall::Produce { partition, .. } => Some(partition),
            _ => None,
        }
    }
}

/// An offset commit: a group member's (generation, member id), or generation -1 and no
/// member for a standalone commit, and the offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsCommit {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    pub offsets: Vec<OffsetToCommit>,
}
