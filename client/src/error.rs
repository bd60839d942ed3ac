//! The client's error type.

use std::fmt;
use std::io;

use protocol::messages::ErrorCode;

/// Everything a client call can fail with. `Clone`, because one broken connection fails every
/// request waiting on it with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection broke (closed by the broker, an I/O error, or a protocol violation that
    /// desynchronised the stream) before the response arrived.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    /// The broker sent something this client cannot make sense of.
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    /// The broker answered with an error code.
    #[error("{}", BrokerErrorText(.code, .message))]
    Broker { code: ErrorCode, message: String },
    /// A record or argument the client refuses before sending anything.
    #[error("{0}")]
    InvalidArgument(String),
    /// The producer or consumer was closed (or dropped) before the operation finished.
    #[error("client closed before the operation finished")]
    Closed,
    /// A record of the Kafka-protocol producer (`client::kafka`) failed; the text is its
    /// `KafkaError`'s.
    #[error("{0}")]
    Kafka(String),
}

impl ClientError {
    /// The broker's error code, if this is a broker error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A broker error; `message` says what it is about (a topic name, a partition).
    pub fn broker(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError::Broker { code, message: message.into() }
    }

    pub(crate) fn connect(addr: &str, error: &io::Error) -> ClientError {
        ClientError::Connect { addr: addr.to_owned(), reason: io_reason(error) }
    }

    pub(crate) fn lost(addr: &str, reason: impl Into<String>) -> ClientError {
        ClientError::ConnectionLost { addr: addr.to_owned(), reason: reason.into() }
    }

    pub(crate) fn protocol(addr: &str, reason: impl Into<String>) -> ClientError {
        ClientError::Protocol { addr: addr.to_owned(), reason: reason.into() }
    }
}

/// A short description of an error code, as used in messages ("unknown topic or partition").
pub fn error_code_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::None => "no error",
        ErrorCode::UnknownTopicOrPartition => "unknown topic or partition",
        ErrorCode::TopicAlreadyExists => "topic already exists",
        ErrorCode::InvalidTopicName => "invalid topic name",
        ErrorCode::InvalidPartitions => "invalid partition count",
        ErrorCode::InvalidConfig => "invalid topic config",
        ErrorCode::CorruptBatch => "corrupt batch",
        ErrorCode::BatchTooLarge => "batch too large",
        ErrorCode::OffsetOutOfRange => "offset out of range",
        ErrorCode::DiskFull => "broker disk full",
        ErrorCode::StorageError => "broker storage error",
        ErrorCode::RequestTimedOut => "request timed out",
        ErrorCode::UnknownMemberId => "unknown group member",
        ErrorCode::IllegalGeneration => "stale group generation",
        ErrorCode::RebalanceInProgress => "group rebalance in progress",
        ErrorCode::InvalidGroupId => "invalid group id",
        ErrorCode::MalformedRequest => "malformed request",
        ErrorCode::UnsupportedRequest => "unsupported request",
        ErrorCode::CorruptStoredData => "corrupt stored data",
        ErrorCode::ShuttingDown => "broker shutting down",
        ErrorCode::InvalidOffset => "invalid offset",
        ErrorCode::Internal => "internal broker error",
        ErrorCode::GroupNotEmpty => "the group has members",
        ErrorCode::GroupNotFound => "no such group",
        ErrorCode::ReassignmentRefused => "refused",
        ErrorCode::NotLeaderOrFollower => "not the partition's leader",
        ErrorCode::NotEnoughReplicas => "not enough in-sync replicas",
        ErrorCode::NotEnoughReplicasAfterAppend => "not enough in-sync replicas after the append",
        ErrorCode::FencedLeaderEpoch => "fenced leader epoch",
        ErrorCode::UnknownLeaderEpoch => "unknown leader epoch",
        ErrorCode::NotCoordinator => "not the group coordinator",
    }
}

impl ClientError {
    /// Worth retrying after a metadata refresh: the partition's leader moved or is being
    /// elected, its in-sync replicas are too few for now, or the connection failed (the
    /// broker may be gone). A retried produce may be appended twice.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => matches!(
                code,
                ErrorCode::NotLeaderOrFollower
                    | ErrorCode::NotEnoughReplicas
                    | ErrorCode::NotEnoughReplicasAfterAppend
                    | ErrorCode::FencedLeaderEpoch
                    | ErrorCode::UnknownLeaderEpoch
                    | ErrorCode::NotCoordinator
                    | ErrorCode::ShuttingDown
            ),
            ClientError::Connect { .. } | ClientError::ConnectionLost { .. } => true,
            _ => false,
        }
    }
}

/// `<code text>: <message>`; just the message when it already starts with the code's text, just
/// the code's text when there is no message.
struct BrokerErrorText<'a>(&'a ErrorCode, &'a String);

impl fmt::Display for BrokerErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = error_code_text(*self.0);
        let message = self.1.trim();
        if message.is_empty() {
            f.write_str(text)
        } else if message.to_ascii_lowercase().starts_with(text) {
            f.write_str(message)
        } else {
            write!(f, "{text}: {message}")
        }
    }
}

/// "connection refused" rather than "Connection refused (os error 111)" for the common cases.
pub(crate) fn io_reason(error: &io::Error) -> String {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | TimedOut | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable | BrokenPipe | UnexpectedEof => error.kind().to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_read_well() {
        let e = ClientError::broker(ErrorCode::UnknownTopicOrPartition, "users");
        assert_eq!(e.to_string(), "unknown topic or partition: users");
        let e = ClientError::broker(ErrorCode::InvalidTopicName, "invalid topic name \"a b\": bad character");
        assert_eq!(e.to_string(), "invalid topic name \"a b\": bad character");
        assert_eq!(ClientError::broker(ErrorCode::DiskFull, "").to_string(), "broker disk full");
    }

    #[test]
    fn connect_errors_read_well() {
        let e = ClientError::connect("127.0.0.1:9292", &io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(e.to_string(), "cannot connect to 127.0.0.1:9292: connection refused");
    }

    #[test]
    fn every_code_has_a_text() {
        for v in 0..64u16 {
            if let Some(code) = ErrorCode::from_u16(v) {
                assert!(!error_code_text(code).is_empty());
            }
        }
    }
}
