//! Typed errors at the cluster crate's boundaries: one enum per family of operations, so that a
//! caller can tell "the disk failed" from "the file is corrupt" from "the peer did not answer".
//! openraft wants its own `StorageError` from the storage traits; `log_store.rs` and
//! `state_machine.rs` convert at that edge.

use std::path::PathBuf;

/// An I/O operation that failed, with the file it touched.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path:?}: {source}")]
pub struct IoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IoError { op, path: path.into(), source }
    }
}

/// Errors of the Raft log file (`log_store.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogStoreError {
    #[error(transparent)]
    Io(#[from] IoError),
    /// A record that is not the torn tail of the file failed its checks: the file was damaged
    /// after it was written, and silently dropping the record would lose committed entries.
    #[error("corrupt Raft log {path:?} at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("a Raft log record of {bytes} bytes passes the limit of {max} bytes")]
    RecordTooLarge { bytes: usize, max: u32 },
    /// An earlier write or fdatasync failed; the file's state on disk is unknown, so nothing
    /// more is written until the node restarts (and recovers from what is on disk).
    #[error("Raft log fenced by an earlier I/O error ({reason}); restart the node")]
    Fenced { reason: String },
    #[error("encoding a Raft log record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Errors of the snapshot file (`state_machine.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("snapshot {path:?} is unusable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("received snapshot is unusable: {reason}")]
    BadData { reason: String },
    #[error("encoding a snapshot: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Why a request to a peer got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No connection could be made (refused, unroutable, timed out): the peer is down.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("resolving {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    /// The connection failed mid-request; the peer may or may not have acted on it.
    #[error("talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {after_ms} ms")]
    TimedOut { addr: String, after_ms: u64 },
    #[error("a frame of {bytes} bytes passes the limit of {max} bytes")]
    FrameTooLarge { bytes: usize, max: u32 },
    #[error("undecodable frame: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("encoding a request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The peer answered with a response of another kind than the request's.
    #[error("{addr} answered a {request} request with {response}")]
    Unexpected { addr: String, request: &'static str, response: String },
    /// The peer could not read our request.
    #[error("{addr} refused the request: {reason}")]
    BadRequest { addr: String, reason: String },
}

/// An invalid `ClusterConfig`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid cluster config: {0}")]
    Invalid(String),
}

/// Why this node's part of the cluster did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the cluster config was already used by an earlier start")]
    AlreadyStarted,
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("starting Raft: {reason}")]
    Raft { reason: String },
}
