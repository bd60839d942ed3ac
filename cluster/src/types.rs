//! The Raft type configuration of the metadata log: its entries carry `MetaCommand`s, their
//! results are `MetaResponse`s, nodes are the broker node ids (widened to openraft's u64) with
//! their advertised cluster address, and everything runs on the coordinator shard's glommio
//! executor. Snapshots are whole JSON documents in memory (the metadata is small).

use std::io::Cursor;

use broker::cluster::{MetaCommand, MetaResponse};
use openraft::BasicNode;

use crate::runtime::GlommioRuntime;

openraft::declare_raft_types!(
    /// The metadata log's Raft types.
    pub TypeConfig:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = GlommioRuntime,
);

/// A Raft node id (a broker's node id, widened).
pub type RaftNodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<RaftNodeId>;
pub type Vote = openraft::Vote<RaftNodeId>;
pub type StoredMembership = openraft::StoredMembership<RaftNodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<RaftNodeId, BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<RaftNodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<RaftNodeId, BasicNode>;

/// The Raft id of broker node `node`.
pub fn raft_id(node: u32) -> RaftNodeId {
    u64::from(node)
}

/// The broker node of Raft id `id`; ids are only ever made by `raft_id`.
pub fn broker_node(id: RaftNodeId) -> Option<u32> {
    u32::try_from(id).ok()
}
