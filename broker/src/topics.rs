//! A read-only snapshot of the catalog that every shard reads without locks: shard 0 owns
//! the `Catalog` and publishes a new `TopicTable` after each change (`arc_swap`), so routing a
//! request is one atomic load, never a cross-core message.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use engine::catalog::{topic_uuid, Catalog, TopicInfo};

#[derive(Debug, Default)]
pub struct TopicTable {
    pub topics: HashMap<String, TopicInfo>,
    pub shard_count: u32,
    /// The catalog's incarnation: the high half of every topic's UUID (`topic_uuid`).
    pub incarnation: u64,
    /// Topic names by catalog id (the low half of a topic UUID).
    pub names_by_id: HashMap<u64, String>,
}

impl TopicTable {
    pub fn from_catalog(catalog: &Catalog) -> TopicTable {
        TopicTable {
            topics: catalog.topics().map(|t| (t.name.clone(), t.clone())).collect(),
            shard_count: catalog.shard_count(),
            incarnation: catalog.incarnation(),
            names_by_id: catalog.topics().map(|t| (t.id, t.name.clone())).collect(),
        }
    }

    /// The shard that owns `topic`/`partition`, if both exist.
    pub fn owner(&self, topic: &str, partition: u32) -> Option<usize> {
        let info = self.topics.get(topic)?;
        let p = info.partitions.get(partition as usize)?;
        debug_assert_eq!(p.partition, partition);
        Some((p.shard % self.shard_count.max(1)) as usize)
    }

    /// A topic's UUID (Kafka's topic id): changes when the topic is deleted and re-created.
    pub fn topic_uuid(&self, info: &TopicInfo) -> [u8; 16] {
        topic_uuid(self.incarnation, info.id)
    }

    /// The topic a UUID names, if it exists now.
    pub fn topic_by_uuid(&self, uuid: &[u8; 16]) -> Option<&TopicInfo> {
        let (high, low) = uuid.split_at(8);
        let incarnation = u64::from_be_bytes(high.try_into().ok()?);
        let id = u64::from_be_bytes(low.try_into().ok()?);
        if incarnation != self.incarnation {
            return None;
        }
        let info = self.topics.get(self.names_by_id.get(&id)?)?;
        debug_assert_eq!(info.id, id);
        Some(info)
    }
}

pub type SharedTopics = Arc<ArcSwap<TopicTable>>;
