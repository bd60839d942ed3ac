//! The Kafka driver's typed errors. The workload counts and shows them as text; the
//! variants keep apart what a user does differently: a broker that cannot be reached, a
//! broker that answered with a Kafka error code, a stream that cannot be trusted.

/// Kafka error codes the driver reacts to (org.apache.kafka.common.protocol.Errors).
pub mod codes {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    #[error("connecting to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {addr} lost: {reason}")]
    Lost { addr: String, reason: String },
    #[error("{addr}: no response within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("{addr}: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("encoding API {api_key} v{version}: {reason}")]
    Encode { api_key: i16, version: i16, reason: String },
    /// The broker does not serve a version of an API in the range this client speaks.
    #[error("the broker serves API {api_key} only in versions {broker_min}..={broker_max}; this client speaks {ours_min}..={ours_max}")]
    UnsupportedVersion { api_key: i16, broker_min: i16, broker_max: i16, ours_min: i16, ours_max: i16 },
    /// A Kafka error code for a topic or partition.
    #[error("Kafka error {code} ({}) on {what}", code_name(*code))]
    Broker { code: i16, what: String },
    #[error("{0}")]
    Metadata(String),
    #[error("record: {0}")]
    Record(String),
    #[error("producer closed")]
    Closed,
}

impl KafkaError {
    pub fn broker(code: i16, what: impl Into<String>) -> KafkaError {
        KafkaError::Broker { code, what: what.into() }
    }

    /// Whether the client's idea of partition leaders may be stale (refresh metadata).
    pub fn is_stale_metadata(&self) -> bool {
        matches!(
            self,
            KafkaError::Broker {
                code: codes::UNKNOWN_TOPIC_OR_PARTITION | codes::LEADER_NOT_AVAILABLE | codes::NOT_LEADER_OR_FOLLOWER,
                ..
            } | KafkaError::Lost { .. }
                | KafkaError::Connect { .. }
        )
    }
}

/// The name of the common codes, for messages.
fn code_name(code: i16) -> &'static str {
    match code {
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        10 => "MESSAGE_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        21 => "INVALID_REQUIRED_ACKS",
        36 => "TOPIC_ALREADY_EXISTS",
        37 => "INVALID_PARTITIONS",
        38 => "INVALID_REPLICATION_FACTOR",
        40 => "INVALID_CONFIG",
        42 => "INVALID_REQUEST",
        56 => "KAFKA_STORAGE_ERROR",
        87 => "INVALID_RECORD",
        _ => "see Kafka's error codes",
    }
}
