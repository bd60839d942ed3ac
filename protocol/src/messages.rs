//! The native protocol's messages as plain Rust types. `codec.rs` turns them into flatbuffers
//! headers (schema: `protocol/schema/protocol.fbs`) and back; `frame.rs` puts them on the wire.
//!
//! Record batches never go through flatbuffers: a Produce request's batches and a Fetch
//! response's records follow the header as raw RecordBatch v2 bytes (the header carries their
//! lengths), so the broker hands stored bytes to the socket without re-encoding them.

use bytes::Bytes;

/// Every error the broker reports, on the wire as a u16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    None = 0,
    UnknownTopicOrPartition = 1,
    TopicAlreadyExists = 2,
    InvalidTopicName = 3,
    InvalidPartitions = 4,
    InvalidConfig = 5,
    /// A batch failed validation (CRC, framing, record count).
    CorruptBatch = 6,
    BatchTooLarge = 7,
    OffsetOutOfRange = 8,
    /// The disk is full (or below the configured free-space floor); retry later.
    DiskFull = 9,
    /// An I/O error on the broker; the partition is fenced until it is reopened.
    StorageError = 10,
    RequestTimedOut = 11,
    UnknownMemberId = 12,
    IllegalGeneration = 13,
    /// The group's membership changed: rejoin to get the new assignment.
    RebalanceInProgress = 14,
    InvalidGroupId = 15,
    /// The request could not be decoded.
    MalformedRequest = 16,
    UnsupportedRequest = 17,
    /// A stored batch failed its CRC on read; it is never served.
    CorruptStoredData = 18,
    /// The broker is shutting down.
    ShuttingDown = 19,
    InvalidOffset = 20,
    Internal = 21,
    /// This broker does not lead the partition (a cluster): refresh metadata, retry there.
    NotLeaderOrFollower = 22,
    /// Fewer in-sync replicas than the topic's min.insync.replicas; nothing was appended.
    NotEnoughReplicas = 23,
    /// Appended, but the in-sync replicas fell below min.insync.replicas before the batch was
    /// replicated: retry it.
    NotEnoughReplicasAfterAppend = 24,
    /// The request's leader epoch is older than the partition's.
    FencedLeaderEpoch = 25,
    /// The request's leader epoch is newer than this replica knows.
    UnknownLeaderEpoch = 26,
    /// Consumer groups are served by another node (the controller): ask Metadata for it.
    NotCoordinator = 27,
    /// DeleteGroup of a group that still has members.
    GroupNotEmpty = 28,
    /// DeleteGroup of a group with neither members nor committed offsets.
    GroupNotFound = 29,
    /// A reassignment, leader election or drain refused; the message says why.
    ReassignmentRefused = 30,
}

impl ErrorCode {
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        const ALL: [ErrorCode; 31] = [
            None,
            UnknownTopicOrPartition,
            TopicAlreadyExists,
            InvalidTopicName,
            InvalidPartitions,
            InvalidConfig,
            CorruptBatch,
            BatchTooLarge,
            OffsetOutOfRange,
            DiskFull,
            StorageError,
            RequestTimedOut,
            UnknownMemberId,
            IllegalGeneration,
            RebalanceInProgress,
            InvalidGroupId,
            MalformedRequest,
            UnsupportedRequest,
            CorruptStoredData,
            ShuttingDown,
            InvalidOffset,
            Internal,
            NotLeaderOrFollower,
            NotEnoughReplicas,
            NotEnoughReplicasAfterAppend,
            FencedLeaderEpoch,
            UnknownLeaderEpoch,
            NotCoordinator,
            GroupNotEmpty,
            GroupNotFound,
            ReassignmentRefused,
        ];
        ALL.get(v as usize).copied()
    }

    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }
}

/// How a Produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No response is sent at all (Kafka acks=0).
    None,
    /// Acknowledged once the partition accepted the batches, with the topic's durability
    /// (Kafka acks=1).
    Leader,
    /// Acknowledged after an fdatasync covering the batches.
    Durable,
}

/// Topic settings in a CreateTopic request; `None` takes the broker default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    /// "sync" | "none" | "interval:MS" (engine::Durability's text form).
    pub durability: Option<String>,
    /// Replicas per partition in a cluster (1 when absent).
    pub replication_factor: Option<u32>,
    pub min_insync_replicas: Option<u32>,
    pub unclean_leader_election: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub topic: String,
    pub partition: u32,
    /// Whole RecordBatch v2 batches, one per `Bytes` (slices of the request frame).
    pub batches: Vec<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub bytes_max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// First offset whose record timestamp is ≥ this (ms since epoch).
    Timestamp(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub topic: String,
    pub partition: u32,
    pub spec: OffsetSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Range,
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CreateTopic {
        name: String,
        partitions: u32,
        settings: TopicSettings,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: u32,
    },
    /// `topics: None` = all topics. `with_offsets` also reports each partition's start/end
    /// offsets and size (asks every owning shard).
    Metadata {
        topics: Option<Vec<String>>,
        with_offsets: bool,
    },
    Produce {
        acks: Acks,
        timeout_ms: u32,
        partitions: Vec<ProducePartition>,
    },
    Fetch {
        wait_ms_max: u32,
        bytes_min: u32,
        bytes_max: u32,
        partitions: Vec<FetchPartition>,
    },
    ListOffsets {
        partitions: Vec<ListOffsetsPartition>,
    },
    OffsetCommit {
        group: String,
        generation_id: i32,
        member_id: String,
        offsets: Vec<CommitOffset>,
    },
    /// `partitions: None` = every partition the group committed.
    OffsetFetch {
        group: String,
        partitions: Option<Vec<TopicPartition>>,
    },
    JoinGroup {
        group: String,
        member_id: String,
        topics: Vec<String>,
        session_timeout_ms: u32,
        assignor: Assignor,
    },
    Heartbeat {
        group: String,
        generation_id: i32,
        member_id: String,
    },
    LeaveGroup {
        group: String,
        member_id: String,
    },
    /// Every group with members or committed offsets.
    ListGroups,
    DescribeGroup {
        group: String,
    },
    /// Deletes a group without members, and its committed offsets.
    DeleteGroup {
        group: String,
    },
    /// Every Kafka topic config of a topic.
    DescribeTopicConfig {
        name: String,
    },
    /// Sets `set` (name, value) and returns `reset` to their defaults; the rest stays.
    AlterTopicConfig {
        name: String,
        set: Vec<(String, String)>,
        reset: Vec<String>,
    },
    /// Moves a partition to the replicas on `replicas` (node ids, the first preferred leader);
    /// `None` cancels the reassignment under way (a cluster).
    Reassign {
        topic: String,
        partition: u32,
        replicas: Option<Vec<u32>>,
    },
    /// The reassignments under way (a cluster).
    ListReassignments,
    /// Moves a partition's leadership to its preferred replica (a cluster).
    ElectLeader {
        topic: String,
        partition: u32,
    },
    /// Marks `node` draining and moves its replicas away; `draining` false clears the mark.
    Drain {
        node: u32,
        draining: bool,
    },
    /// A follower replica fetching from its leader (cluster-internal).
    ReplicaFetch {
        replica_node: u32,
        wait_ms_max: u32,
        bytes_max: u32,
        partitions: Vec<ReplicaFetchPartition>,
    },
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub protocol_type: String,
    pub state: String,
}

/// A group as DescribeGroup answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub error: ErrorCode,
    pub group: String,
    /// Kafka's state names, and "Dead" for a group that does not exist.
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub generation_id: i32,
    pub members: Vec<GroupMember>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: String,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Vec<TopicPartition>,
}

/// A partition being moved (node ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentEntry {
    pub topic: String,
    pub partition: u32,
    /// Every replica now, old and new.
    pub replicas: Vec<u32>,
    pub adding: Vec<u32>,
    pub removing: Vec<u32>,
}

/// One topic config and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigEntry {
    pub name: String,
    pub value: String,
    /// Not set on the topic: the default.
    pub is_default: bool,
    /// False for a Kafka config shardlog keeps and reports but does not apply.
    pub applied: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchPartition {
    pub topic: String,
    pub partition: u32,
    /// The leader epoch the follower follows.
    pub leader_epoch: u32,
    /// The follower's log end.
    pub fetch_offset: u64,
    /// The follower's durable end.
    pub durable_offset: u64,
    /// The epoch of the follower's last batch; `None` for an empty log.
    pub last_fetched_epoch: Option<u32>,
    pub bytes_max: u32,
    /// The follower's log start.
    pub log_start_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchResult {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    /// (epoch, end offset) on the leader where the follower's log diverges from it.
    pub diverging: Option<(u32, u64)>,
    /// Whole batches from the fetch offset, as stored (chunks sent back to back).
    pub records: Vec<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard: u32,
    /// This shard's own listener, for clients that route each partition straight to its core.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub shard: u32,
    /// Present when the request asked `with_offsets`.
    pub log_start_offset: Option<u64>,
    pub log_end_offset: Option<u64>,
    pub size_bytes: Option<u64>,
    /// In a cluster: the leader's native address for this partition; `None` on a single node
    /// (use the shard's address) and while no replica leads.
    pub leader_address: Option<String>,
    /// In a cluster: the leading node, -1 while none leads (single node: -1).
    pub leader_node: i32,
    pub leader_epoch: u32,
    /// In a cluster: the nodes with a replica, and those in sync (empty on a single node).
    pub replica_nodes: Vec<u32>,
    pub isr_nodes: Vec<u32>,
    /// With offsets: where consumers may read up to.
    pub high_watermark: Option<u64>,
}

impl PartitionMetadata {
    /// A single node's partition `partition` on shard 0, without offsets (tests build on it).
    pub fn single(partition: u32) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            shard: 0,
            log_start_offset: None,
            log_end_offset: None,
            size_bytes: None,
            leader_address: None,
            leader_node: -1,
            leader_epoch: 0,
            replica_nodes: Vec::new(),
            isr_nodes: Vec::new(),
            high_watermark: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub error: ErrorCode,
    pub id: u64,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub durability: String,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    /// A human-readable reason when `error` is not `None`.
    pub message: String,
    /// Assigned base offset of each batch, in request order (empty on error).
    pub base_offsets: Vec<u64>,
    pub log_end_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    pub log_start_offset: u64,
    /// The log end offset (Kafka's high watermark here).
    pub log_end_offset: u64,
    /// The offset after the last returned batch.
    pub next_offset: u64,
    /// Whole batches, as chunks to be sent back to back (the engine's `Bytes`, not copied).
    pub records: Vec<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResult {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
    /// -1 when no offset matches (a timestamp after every record).
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub topic: String,
    pub partition: u32,
    pub error: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: u32,
    /// -1 when the group committed nothing for this partition.
    pub offset: i64,
    pub metadata: String,
    pub error: ErrorCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// CreateTopic, DeleteTopic, CreatePartitions, Heartbeat, LeaveGroup, and any request that
    /// failed as a whole (then `error` says why and `message` explains).
    Status {
        error: ErrorCode,
        message: String,
    },
    Metadata {
        shards: Vec<ShardInfo>,
        topics: Vec<TopicMetadata>,
        /// In a cluster: the native address serving consumer groups.
        coordinator_address: Option<String>,
    },
    Produce {
        partitions: Vec<ProducePartitionResult>,
    },
    Fetch {
        partitions: Vec<FetchPartitionResult>,
    },
    ListOffsets {
        partitions: Vec<ListOffsetsResult>,
    },
    OffsetCommit {
        partitions: Vec<PartitionError>,
    },
    OffsetFetch {
        error: ErrorCode,
        offsets: Vec<FetchedOffset>,
    },
    JoinGroup {
        error: ErrorCode,
        generation_id: i32,
        member_id: String,
        assignment: Vec<TopicPartition>,
    },
    ListGroups {
        groups: Vec<GroupListing>,
    },
    /// Boxed: the largest response, kept out of every other one's size.
    DescribeGroup(Box<DescribedGroup>),
    TopicConfig {
        error: ErrorCode,
        message: String,
        configs: Vec<TopicConfigEntry>,
    },
    /// ListReassignments' answer, and Drain's (the moves it started).
    Reassignments {
        error: ErrorCode,
        message: String,
        reassignments: Vec<ReassignmentEntry>,
    },
    ReplicaFetch {
        partitions: Vec<ReplicaFetchResult>,
    },
}

impl Response {
    pub fn status(error: ErrorCode, message: impl Into<String>) -> Response {
        Response::Status { error, message: message.into() }
    }

    pub fn ok() -> Response {
        Response::status(ErrorCode::None, "")
    }
}
