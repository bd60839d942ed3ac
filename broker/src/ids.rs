//! Typed ids (`format::ids`, through the engine): offsets, leader epochs, node ids, shard ids
//! and file positions are distinct types, so one cannot be given where another is expected.
//! Plain integers on the wire and on disk; the adapters convert at their edge.

pub use engine::ids::{FilePosition, LeaderEpoch, NodeId, Offset, ShardId};

/// The shard that owns catalog changes and consumer groups on a node.
pub const COORDINATOR_SHARD: ShardId = ShardId::new(0);

/// The shard at `index` of a per-shard table.
pub fn shard_at(index: usize) -> ShardId {
    let id = u32::try_from(index).unwrap_or(u32::MAX);
    assert!(id as usize == index, "shard index {index} does not fit a shard id");
    ShardId::new(id)
}
