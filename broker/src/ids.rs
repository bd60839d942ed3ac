//! Typed ids the broker passes around, so that a shard id cannot be given where a node id
//! (or a partition index, or a count) is expected. Zero-cost newtypes; plain integers on the
//! wire and on disk.

use std::fmt;

/// One shard (executor, core) of this node: 0 .. the node's shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ShardId(u32);

impl ShardId {
    pub const fn new(id: u32) -> ShardId {
        ShardId(id)
    }

    /// The shard that owns catalog changes and consumer groups on a node.
    pub const COORDINATOR: ShardId = ShardId(0);

    pub const fn get(self) -> u32 {
        self.0
    }

    /// For indexing per-shard tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The shard at `index` of a per-shard table.
    pub fn from_index(index: usize) -> ShardId {
        let id = u32::try_from(index).unwrap_or(u32::MAX);
        assert!(id as usize == index, "shard index {index} does not fit a shard id");
        ShardId(id)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One broker process (node) of a cluster. A single node is node 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct NodeId(u32);

impl NodeId {
    pub const fn new(id: u32) -> NodeId {
        NodeId(id)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
