//! The broker's side of a cluster. The metadata every node agrees on (`metadata.rs`: brokers,
//! topics, replicas, leaders, epochs, ISR, committed group offsets) and the two seams the
//! `cluster` crate plugs into: `ClusterService` starts this node's part of the cluster (Raft,
//! the controller) on the coordinator shard, and the `ClusterControl` it returns proposes
//! metadata changes. Committed metadata comes back through `MetadataSink::publish`, which
//! every shard reads as its topic table.
//!
//! A single node (no `--cluster-*` flags) has no `ClusterService`: the catalog is its
//! metadata, as before.

pub mod metadata;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

pub use metadata::{
    BrokerInfo, ClusterMetadata, CommittedMeta, MetaCommand, MetaResponse, PartitionMeta, Replica, ReplicationConfig,
    TopicMeta,
};

use crate::ids::NodeId;

/// Why a proposal got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// No Raft leader is known (an election is under way, or a majority is unreachable).
    #[error("no metadata leader: {reason}")]
    NoLeader { reason: String },
    /// The leader did not answer before the deadline; the command may or may not commit.
    #[error("the metadata proposal timed out: {reason}")]
    TimedOut { reason: String },
    #[error("the metadata proposal failed: {reason}")]
    Failed { reason: String },
}

/// A boxed future on the coordinator shard's executor (not `Send`).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Proposes metadata changes through the metadata log; lives on the coordinator shard.
pub trait ClusterControl {
    /// Proposes `command` (forwarded to the Raft leader when this node is not it) and
    /// resolves with its result once it is committed and applied here, so the change is in
    /// this node's published metadata when this returns `Ok`.
    fn propose(&self, command: MetaCommand) -> LocalFuture<'_, Result<MetaResponse, ProposeError>>;

    /// The node that leads the metadata log now (the controller, and the group coordinator).
    fn controller(&self) -> Option<NodeId>;

    /// Stops the node's part of the cluster (shutdown).
    fn stop(&self) -> LocalFuture<'_, ()>;
}

/// Installs committed metadata in every shard of this node.
pub trait MetadataSink {
    fn publish(&self, metadata: Arc<ClusterMetadata>);
}

/// What a node's part of the cluster starts from.
pub struct ClusterStart {
    pub node: NodeId,
    pub data_dir: PathBuf,
    /// This broker as it registers itself (addresses advertised to the others).
    pub broker: BrokerInfo,
    pub sink: Rc<dyn MetadataSink>,
}

/// Starts this node's part of the cluster (implemented by the `cluster` crate). Called once,
/// on the coordinator shard's executor, while the broker starts.
pub trait ClusterService: Send + Sync + 'static {
    fn start(&self, start: ClusterStart) -> LocalFuture<'static, Result<Rc<dyn ClusterControl>, String>>;
}
