//! The Kafka wire protocol, beside the native one (`--kafka-listen`).
//!
//! Messages are decoded and encoded by the `kafka-protocol` crate; records stay raw `Bytes`
//! (RecordBatch v2 is the storage format), so a batch produced over Kafka is stored and
//! served byte for byte, and either protocol reads what the other wrote.
//!
//! Every shard is a Kafka broker (node id = shard id) with its own port, and Metadata names
//! each partition's owning shard as its leader: Kafka clients send each request straight to
//! the core that owns the partition. The bootstrap address is shared by every shard
//! (SO_REUSEPORT); a request for a partition another shard owns is forwarded, as in the
//! native protocol, so `--kafka-advertise single` (one address, broker 0 leads everything)
//! works too. Group requests go to the coordinator shard (shard 0).
//!
//! One API (or family) per file: `api_versions`, `metadata` (and FindCoordinator),
//! `produce` with `idempotence`, `fetch`, `list_offsets`, `admin`, `groups` (the group state
//! machine) and `offsets`; `connection` frames requests and dispatches them.

mod admin;
mod api_versions;
mod connection;
mod fetch;
mod groups;
mod idempotence;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;

use crate::config::{KafkaAdvertise, KafkaConfig};
use crate::order::Turn;
use crate::router::{ShardRequest, ShardResponse};
use crate::shard::Shard;
use protocol::messages::ErrorCode;

pub use connection::{
    answer_without_shard, decode, encode, encode_group_reply, Answer, Body, Close, Decoded, WithoutShard,
};
pub use groups::{GroupCall, GroupReply, KafkaGroups, Waiting};
pub use idempotence::ProducerStates;
pub use produce::PartitionProduced;

/// Kafka error codes (org.apache.kafka.common.protocol.Errors) the broker returns.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
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
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_CONFIG: i16 = 40;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const INVALID_RECORD: i16 = 87;
}

/// The Kafka error code for a native one.
pub fn kafka_code(error: ErrorCode) -> i16 {
    match error {
        ErrorCode::None => codes::NONE,
        ErrorCode::UnknownTopicOrPartition => codes::UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode::TopicAlreadyExists => codes::TOPIC_ALREADY_EXISTS,
        ErrorCode::InvalidTopicName => codes::INVALID_TOPIC_EXCEPTION,
        ErrorCode::InvalidPartitions => codes::INVALID_PARTITIONS,
        ErrorCode::InvalidConfig => codes::INVALID_CONFIG,
        ErrorCode::CorruptBatch => codes::CORRUPT_MESSAGE,
        ErrorCode::BatchTooLarge => codes::MESSAGE_TOO_LARGE,
        ErrorCode::OffsetOutOfRange => codes::OFFSET_OUT_OF_RANGE,
        // Kafka answers a full log dir with KAFKA_STORAGE_ERROR (retriable).
        ErrorCode::DiskFull | ErrorCode::StorageError | ErrorCode::CorruptStoredData => codes::KAFKA_STORAGE_ERROR,
        ErrorCode::RequestTimedOut => codes::REQUEST_TIMED_OUT,
        ErrorCode::UnknownMemberId => codes::UNKNOWN_MEMBER_ID,
        ErrorCode::IllegalGeneration => codes::ILLEGAL_GENERATION,
        ErrorCode::RebalanceInProgress => codes::REBALANCE_IN_PROGRESS,
        ErrorCode::InvalidGroupId => codes::INVALID_GROUP_ID,
        ErrorCode::MalformedRequest => codes::INVALID_REQUEST,
        ErrorCode::InvalidOffset => codes::INVALID_COMMIT_OFFSET_SIZE,
        // A shard that is going away: the client retries (and refreshes its metadata).
        ErrorCode::ShuttingDown => codes::NOT_LEADER_OR_FOLLOWER,
        ErrorCode::UnsupportedRequest | ErrorCode::Internal => codes::UNKNOWN_SERVER_ERROR,
    }
}

/// A Kafka broker endpoint as advertised in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

/// What every shard knows about the Kafka listener (built once, before the shards start).
#[derive(Debug)]
pub struct KafkaSettings {
    pub advertise: KafkaAdvertise,
    /// The brokers named in Metadata: one per shard, or only the bootstrap address.
    pub brokers: Vec<Endpoint>,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
}

impl KafkaSettings {
    pub fn new(config: &KafkaConfig, bootstrap: SocketAddr, shard_addresses: &[SocketAddr]) -> KafkaSettings {
        let host = |addr: &SocketAddr| config.advertised_host.clone().unwrap_or_else(|| addr.ip().to_string());
        let brokers = match config.advertise {
            KafkaAdvertise::Shards => shard_addresses
                .iter()
                .enumerate()
                .map(|(shard, addr)| Endpoint { node_id: shard as i32, host: host(addr), port: addr.port() })
                .collect(),
            KafkaAdvertise::Single => vec![Endpoint { node_id: 0, host: host(&bootstrap), port: bootstrap.port() }],
        };
        assert!(!brokers.is_empty());
        KafkaSettings {
            advertise: config.advertise,
            brokers,
            auto_create_topics: config.auto_create_topics,
            default_partitions: config.default_partitions,
        }
    }

    /// The node id Metadata names as the leader of a partition owned by `shard`.
    pub fn leader_for(&self, shard: usize) -> i32 {
        match self.advertise {
            KafkaAdvertise::Shards => shard as i32,
            KafkaAdvertise::Single => 0,
        }
    }

    /// The group coordinator's endpoint: the coordinator shard (0), or the only broker.
    pub fn coordinator(&self) -> &Endpoint {
        &self.brokers[0]
    }
}

/// One shard's Kafka state.
pub struct KafkaShard {
    pub settings: Arc<KafkaSettings>,
    /// Idempotent producers' sequence state for the partitions this shard owns.
    pub producers: idempotence::ProducerStates,
    /// Kafka consumer groups (used on the coordinator shard only).
    pub groups: groups::KafkaGroups,
}

impl KafkaShard {
    /// Fresh state for shard `shard_id`: no producers, no groups.
    pub fn new(settings: Arc<KafkaSettings>, shard_id: usize) -> KafkaShard {
        KafkaShard {
            settings,
            producers: idempotence::ProducerStates::new(shard_id),
            groups: groups::KafkaGroups::default(),
        }
    }
}

/// Installs the Kafka state on a shard (before its listeners accept).
pub fn start_on_shard(shard: &Rc<Shard>, settings: Arc<KafkaSettings>) {
    let state = Rc::new(KafkaShard::new(settings, shard.id));
    if shard.kafka.set(state).is_err() {
        tracing::warn!(shard = shard.id, "Kafka state installed twice");
    }
    if shard.coordinator.is_some() {
        glommio::spawn_local(groups::expiry_loop(shard.clone())).detach();
    }
}

/// Accepts Kafka connections until the task is dropped.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(connection::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "Kafka accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A Kafka operation one shard asks another to do. Everything in it is `Send`.
#[derive(Debug)]
pub enum ShardCall {
    /// Append one partition's records (with the idempotence check) on its owner.
    Produce { topic: String, partition: u32, records: bytes::Bytes, acks: i16 },
    /// A group or offset request for the coordinator shard.
    Group(Box<GroupCall>),
}

#[derive(Debug)]
pub enum ShardReply {
    Produce(PartitionProduced),
    Group(Box<GroupReply>),
}

/// Serves a call here, on the owning (or coordinator) shard; `turn` orders a produce behind
/// the earlier ones from the same source (`order.rs`).
pub async fn serve_shard_call(shard: &Rc<Shard>, call: ShardCall, turn: Turn) -> ShardReply {
    match call {
        ShardCall::Produce { topic, partition, records, acks } => {
            ShardReply::Produce(produce::produce_local(shard, topic, partition, records, acks, turn).await)
        }
        ShardCall::Group(call) => ShardReply::Group(Box::new(groups::serve_local(shard, *call).await)),
    }
}

/// Runs `call` on `owner` (this shard or another), in `turn`.
async fn on_shard(shard: &Rc<Shard>, owner: usize, call: ShardCall, turn: Turn) -> Option<ShardReply> {
    if owner == shard.id {
        return Some(Box::pin(serve_shard_call(shard, call, turn)).await);
    }
    match shard.forward_in_turn(owner, ShardRequest::Kafka(call), turn).await {
        Ok(ShardResponse::Kafka(reply)) => Some(reply),
        Ok(_) | Err(_) => None,
    }
}

/// The shard's Kafka state; present whenever a Kafka connection or call reaches it.
fn state(shard: &Shard) -> Option<&Rc<KafkaShard>> {
    shard.kafka.get()
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
}
