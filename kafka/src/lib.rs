//! The Kafka wire protocol on shardlog's broker (`--kafka-listen`): an adapter from the
//! `kafka-protocol` codec to the broker's typed API (`broker::Shard`, `broker::admin`).
//!
//! Records stay raw `Bytes` (RecordBatch v2 is the storage format), so a batch produced over
//! Kafka is stored and served byte for byte, and either protocol reads what the other wrote.
//!
//! Every shard is a Kafka broker with its own port, and Metadata names each partition's
//! owning shard as its leader: Kafka clients send each request straight to the core that owns
//! the partition. The bootstrap address is shared by every shard (SO_REUSEPORT); a request
//! for a partition another shard owns is forwarded by the broker core, so
//! `--kafka-advertise single` (one address, one broker leading everything) works too. Group
//! requests go to the broker's one group coordinator.
//!
//! Kafka broker ids: broker (node, shard) is `node × KAFKA_BROKER_IDS_PER_NODE + shard`, so a
//! single node (node 0) advertises brokers 0, 1, …, and nodes of a cluster with several
//! shards each never collide (node 2's shard 3 is broker 2003).
//!
//! One API (or family) per file: `api_versions`, `metadata` (with FindCoordinator and
//! InitProducerId), `produce`, `fetch` (with `fetch_session`, KIP-227), `list_offsets`,
//! `admin`, `groups`, `offsets`, and the operations APIs: `group_admin` (ListGroups,
//! DescribeGroups, DeleteGroups, OffsetDelete), `configs` (DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs), `records` (DeleteRecords), `cluster` (DescribeCluster,
//! DescribeLogDirs), `leader_epoch` (OffsetForLeaderEpoch), `producers` (DescribeProducers);
//! `topic_ids` maps Kafka topic ids; `connection` decodes requests and dispatches them.

mod admin;
mod api_versions;
mod cluster;
mod codec;
mod configs;
mod connection;
mod consumer_groups;
mod fetch;
mod fetch_session;
mod group_admin;
pub mod groups;
mod leader_epoch;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod producers;
mod reassign;
mod records;
mod topic_ids;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use broker::broker::accept_loop;
use broker::groups::{CommitError, GroupError};
use broker::ids::{shard_at, COORDINATOR_SHARD};
use broker::net::serve_connection;
use broker::{AdminError, CallError, NodeId, PartitionError, ProducerError, Service, Shard, ShardId};

pub use connection::{answer_without_shard, decode, encode, Body, Close, Decoded, Kafka, WithoutShard};

/// Kafka broker ids per node: a node's shards are brokers `node × this + shard`.
pub const KAFKA_BROKER_IDS_PER_NODE: i32 = 1000;
const _: () = assert!(broker::limits::SHARDS_MAX < KAFKA_BROKER_IDS_PER_NODE as usize);

/// Kafka error codes (org.apache.kafka.common.protocol.Errors) the broker returns.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const INVALID_RECORD: i16 = 87;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
}

/// The Kafka error code for a partition error.
pub fn partition_code(e: &PartitionError) -> i16 {
    match e {
        PartitionError::UnknownTopicOrPartition => codes::UNKNOWN_TOPIC_OR_PARTITION,
        PartitionError::OffsetOutOfRange { .. } => codes::OFFSET_OUT_OF_RANGE,
        PartitionError::InvalidBatch { .. } => codes::CORRUPT_MESSAGE,
        PartitionError::BatchTooLarge { .. } => codes::MESSAGE_TOO_LARGE,
        // Kafka answers a full log dir and a failed one with KAFKA_STORAGE_ERROR (retriable).
        PartitionError::DiskFull { .. }
        | PartitionError::Fenced { .. }
        | PartitionError::Storage { .. }
        | PartitionError::Corrupt { .. } => codes::KAFKA_STORAGE_ERROR,
        PartitionError::Producer(ProducerError::InvalidProducerEpoch { .. }) => codes::INVALID_PRODUCER_EPOCH,
        PartitionError::Producer(ProducerError::OutOfOrderSequence { .. }) => codes::OUT_OF_ORDER_SEQUENCE_NUMBER,
        PartitionError::Producer(_) => codes::INVALID_RECORD,
        // A shard that is going away or does not answer: the client retries (and refreshes
        // its metadata).
        PartitionError::ShuttingDown | PartitionError::Call(CallError::Unreachable { .. }) => {
            codes::NOT_LEADER_OR_FOLLOWER
        }
        PartitionError::Call(_) => codes::REQUEST_TIMED_OUT,
        PartitionError::NotLeader { .. } => codes::NOT_LEADER_OR_FOLLOWER,
        PartitionError::ReplicationTimedOut { .. } => codes::REQUEST_TIMED_OUT,
        PartitionError::NotEnoughReplicas { .. } => codes::NOT_ENOUGH_REPLICAS,
        PartitionError::NotEnoughReplicasAfterAppend { .. } => codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        PartitionError::FencedLeaderEpoch { .. } => codes::FENCED_LEADER_EPOCH,
        PartitionError::UnknownLeaderEpoch { .. } => codes::UNKNOWN_LEADER_EPOCH,
        _ => codes::UNKNOWN_SERVER_ERROR,
    }
}

/// The Kafka error code for a failed catalog change.
pub fn admin_code(e: &AdminError) -> i16 {
    match e {
        AdminError::InvalidTopicName { .. } => codes::INVALID_TOPIC_EXCEPTION,
        AdminError::TopicExists { .. } => codes::TOPIC_ALREADY_EXISTS,
        AdminError::UnknownTopic { .. } => codes::UNKNOWN_TOPIC_OR_PARTITION,
        AdminError::InvalidPartitions { .. } => codes::INVALID_PARTITIONS,
        AdminError::InvalidConfig { .. } => codes::INVALID_CONFIG,
        AdminError::Call(CallError::TimedOut { .. }) => codes::REQUEST_TIMED_OUT,
        AdminError::Call(_) => codes::NOT_LEADER_OR_FOLLOWER,
        AdminError::InvalidReplicationFactor { .. } => codes::INVALID_REPLICATION_FACTOR,
        AdminError::Cluster(_) => codes::REQUEST_TIMED_OUT,
        AdminError::InvalidReplicaAssignment { .. } | AdminError::NotACluster => codes::INVALID_REPLICA_ASSIGNMENT,
        AdminError::NoReassignmentInProgress { .. } => codes::NO_REASSIGNMENT_IN_PROGRESS,
        AdminError::ElectionNotNeeded { .. } => codes::ELECTION_NOT_NEEDED,
        AdminError::PreferredLeaderNotAvailable { .. } => codes::PREFERRED_LEADER_NOT_AVAILABLE,
        _ => codes::KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for a group error.
pub fn group_code(e: GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => codes::UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => codes::ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => codes::REBALANCE_IN_PROGRESS,
        GroupError::InconsistentGroupProtocol => codes::INCONSISTENT_GROUP_PROTOCOL,
        GroupError::InvalidGroupId => codes::INVALID_GROUP_ID,
        GroupError::InvalidSessionTimeout => codes::INVALID_SESSION_TIMEOUT,
        GroupError::MetadataTooLarge => codes::INVALID_REQUEST,
        GroupError::GroupFull => codes::GROUP_MAX_SIZE_REACHED,
        GroupError::TooManyGroups | GroupError::CoordinatorUnavailable(_) => codes::COORDINATOR_NOT_AVAILABLE,
        GroupError::MemberIdRequired => codes::MEMBER_ID_REQUIRED,
        GroupError::FencedInstanceId => codes::FENCED_INSTANCE_ID,
        GroupError::NotCoordinator => codes::NOT_COORDINATOR,
        GroupError::FencedMemberEpoch => codes::FENCED_MEMBER_EPOCH,
        GroupError::StaleMemberEpoch => codes::STALE_MEMBER_EPOCH,
        GroupError::UnsupportedAssignor => codes::UNSUPPORTED_ASSIGNOR,
        GroupError::InvalidRequest(_) => codes::INVALID_REQUEST,
        GroupError::GroupIdNotFound => codes::GROUP_ID_NOT_FOUND,
        GroupError::UnreleasedInstanceId => codes::UNRELEASED_INSTANCE_ID,
        _ => codes::UNKNOWN_SERVER_ERROR,
    }
}

/// The Kafka error code for a refused offset commit.
pub fn commit_code(e: &CommitError) -> i16 {
    match e {
        CommitError::UnknownTopicOrPartition => codes::UNKNOWN_TOPIC_OR_PARTITION,
        CommitError::InvalidGroupId { .. } => codes::INVALID_GROUP_ID,
        CommitError::InvalidTopicName { .. } => codes::INVALID_TOPIC_EXCEPTION,
        CommitError::InvalidOffset { .. } => codes::INVALID_COMMIT_OFFSET_SIZE,
        CommitError::Group(g) => group_code(*g),
        CommitError::Call(_) | CommitError::Unavailable { .. } => codes::COORDINATOR_NOT_AVAILABLE,
        _ => codes::KAFKA_STORAGE_ERROR,
    }
}

/// A Kafka broker endpoint as advertised in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

/// What Kafka clients are told about the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAdvertise {
    /// Every shard is a broker on its own port, leading the partitions it owns.
    Shards,
    /// Only the bootstrap address, as one broker leading every partition (forwarding mode).
    Single,
}

/// The Kafka broker id of (node, shard).
pub fn kafka_broker_id(node: NodeId, shard: ShardId) -> i32 {
    let node = i32::try_from(node.get()).unwrap_or(i32::MAX / KAFKA_BROKER_IDS_PER_NODE);
    node.saturating_mul(KAFKA_BROKER_IDS_PER_NODE).saturating_add(shard.get() as i32)
}

/// What every shard knows about the Kafka listener (built once, before the shards start).
#[derive(Debug)]
pub struct KafkaSettings {
    pub advertise: KafkaAdvertise,
    pub node: NodeId,
    /// The brokers named in Metadata: one per shard, or only the bootstrap address.
    pub brokers: Vec<Endpoint>,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    /// Part of a cluster: brokers, leaders and the coordinator come from the cluster metadata.
    pub cluster: bool,
}

/// How the Kafka listener presents itself, from the `serve` flags.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub advertise: KafkaAdvertise,
    /// Host put in Metadata; default: the bound IP.
    pub advertised_host: Option<String>,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    /// Part of a cluster (see `KafkaSettings::cluster`).
    pub cluster: bool,
}

impl KafkaSettings {
    pub fn new(
        options: &KafkaOptions,
        node: NodeId,
        bootstrap: SocketAddr,
        shard_addresses: &[SocketAddr],
    ) -> KafkaSettings {
        let host = |addr: &SocketAddr| options.advertised_host.clone().unwrap_or_else(|| addr.ip().to_string());
        let brokers = match options.advertise {
            KafkaAdvertise::Shards => shard_addresses
                .iter()
                .enumerate()
                .map(|(shard, addr)| Endpoint {
                    node_id: kafka_broker_id(node, shard_at(shard)),
                    host: host(addr),
                    port: addr.port(),
                })
                .collect(),
            KafkaAdvertise::Single => vec![Endpoint {
                node_id: kafka_broker_id(node, COORDINATOR_SHARD),
                host: host(&bootstrap),
                port: bootstrap.port(),
            }],
        };
        assert!(!brokers.is_empty());
        KafkaSettings {
            advertise: options.advertise,
            node,
            brokers,
            auto_create_topics: options.auto_create_topics,
            default_partitions: options.default_partitions,
            cluster: options.cluster,
        }
    }

    /// The broker id Metadata names as the leader of a partition owned by `shard`.
    pub fn leader_for(&self, shard: ShardId) -> i32 {
        match self.advertise {
            KafkaAdvertise::Shards => kafka_broker_id(self.node, shard),
            KafkaAdvertise::Single => kafka_broker_id(self.node, COORDINATOR_SHARD),
        }
    }

    /// The group coordinator's endpoint: the coordinator shard, or the only broker.
    pub fn coordinator(&self) -> &Endpoint {
        &self.brokers[0]
    }

    /// Whether `shard` answers as the Kafka broker that coordinates groups: the coordinator
    /// shard, or every shard when only one broker is advertised.
    pub fn is_coordinator_broker(&self, shard: ShardId) -> bool {
        self.advertise == KafkaAdvertise::Single || shard == COORDINATOR_SHARD
    }
}

/// The Kafka listeners: a `broker::Service` for `Broker::start`.
pub struct KafkaService {
    settings: Arc<KafkaSettings>,
}

impl KafkaService {
    pub fn new(settings: KafkaSettings) -> KafkaService {
        KafkaService { settings: Arc::new(settings) }
    }
}

impl Service for KafkaService {
    fn serve(
        &self,
        shard: Rc<Shard>,
        listener: glommio::net::TcpListener,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        let settings = self.settings.clone();
        Box::pin(accept_loop(shard, listener, move |shard, stream| {
            // Kafka reports each group member's host as "/<ip>".
            let host = stream.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default();
            serve_connection(shard, Rc::new(Kafka::with_client_host(settings.clone(), host)), stream)
        }))
    }
}

/// A random UUID (version 4 layout), for Kafka member ids. Not for secrets: the bits come
/// from std's randomly keyed SipHash over a process-wide counter, which is unique within the
/// process and unpredictable across processes.
pub fn random_uuid() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let keys = std::collections::hash_map::RandomState::new();
    let half = |salt: u64| {
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&half(1).to_be_bytes());
    uuid[8..].copy_from_slice(&half(2).to_be_bytes());
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid
}

/// A UUID in Java's `UUID.toString()` form (8-4-4-4-12 lowercase hex).
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// `StrBytes` from an owned string (the crate's string type).
fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// Longest error message sent to a Kafka client, in bytes. Messages quote client strings (a
/// topic name of up to 32 767 bytes, a config value, escaped), and in a non-flexible version
/// a string field holds at most i16::MAX bytes: a longer message would not encode, and the
/// client would lose its connection instead of getting the error.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;
const _: () = assert!(ERROR_MESSAGE_BYTES_MAX <= i16::MAX as usize);

/// An error message for a response, cut to `ERROR_MESSAGE_BYTES_MAX` (at a char boundary).
fn error_message(mut message: String) -> kafka_protocol::protocol::StrBytes {
    if message.len() > ERROR_MESSAGE_BYTES_MAX {
        let mut end = ERROR_MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    debug_assert!(message.len() <= ERROR_MESSAGE_BYTES_MAX);
    str_bytes(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_cut_at_a_char_boundary() {
        assert_eq!(error_message("short".into()).as_str(), "short");
        let long = "é".repeat(ERROR_MESSAGE_BYTES_MAX); // 2 bytes each
        let cut = error_message(long.clone());
        assert_eq!(cut.len(), ERROR_MESSAGE_BYTES_MAX);
        assert!(long.starts_with(cut.as_str()));
        let odd = format!("x{long}");
        assert_eq!(error_message(odd).len(), ERROR_MESSAGE_BYTES_MAX - 1);
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        let text = uuid_string(&a);
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_eq!(text.matches('-').count(), 4);
    }

    #[test]
    fn broker_ids_of_a_single_node_are_its_shard_ids_and_nodes_never_collide() {
        assert_eq!(kafka_broker_id(NodeId::new(0), ShardId::new(0)), 0);
        assert_eq!(kafka_broker_id(NodeId::new(0), ShardId::new(7)), 7);
        assert_eq!(kafka_broker_id(NodeId::new(2), ShardId::new(3)), 2003);
        let last_of_node_1 = kafka_broker_id(NodeId::new(1), shard_at(broker::limits::SHARDS_MAX - 1));
        assert!(last_of_node_1 < kafka_broker_id(NodeId::new(2), ShardId::new(0)));
    }
}
