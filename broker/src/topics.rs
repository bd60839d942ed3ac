//! A read-only snapshot of the catalog that every shard reads without locks: shard 0 owns
//! the `Catalog` and publishes a new `TopicTable` after each change (`arc_swap`), so routing a
//! request is one atomic load, never a cross-core message.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use engine::catalog::{Catalog, TopicInfo};

#[derive(Debug, Default)]
pub struct TopicTable {
    pub topics: HashMap<String, TopicInfo>,
    pub shard_count: u32,
}

impl TopicTable {
    pub fn from_catalog(catalog: &Catalog) -> TopicTable {
        TopicTable {
            topics: catalog.topics().map(|t| (t.name.clone(), t.clone())).collect(),
            shard_count: catalog.shard_count(),
        }
    }

    /// The shard that owns `topic`/`partition`, if both exist.
    pub fn owner(&self, topic: &str, partition: u32) -> Option<usize> {
        let info = self.topics.get(topic)?;
        let p = info.partitions.get(partition as usize)?;
        debug_assert_eq!(p.partition, partition);
        Some((p.shard % self.shard_count.max(1)) as usize)
    }
}

pub type SharedTopics = Arc<ArcSwap<TopicTable>>;
