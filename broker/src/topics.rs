//! A read-only snapshot of the topics that every shard reads without locks, so routing a
//! request is one atomic load, never a cross-core message. On a single node shard 0 owns the
//! `Catalog` and publishes a new `TopicTable` after each change (`arc_swap`); in a cluster the
//! table is built from the agreed cluster metadata each time a change commits
//! (`from_cluster`), and also says who leads each partition.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use engine::catalog::{topic_uuid, Catalog, PartitionInfo, TopicInfo};

use crate::cluster::{BrokerInfo, ClusterMetadata, PartitionMeta, Replica, TopicMeta};
use crate::ids::NodeId;

/// The high half of a cluster's topic UUIDs. A cluster's topic ids come from one counter in
/// the metadata log (`next_topic_id`) and are never reused, so unlike a single node's catalog
/// (a random incarnation per catalog) the high half need not vary.
pub const CLUSTER_TOPIC_INCARNATION: u64 = 1;

#[derive(Debug, Default)]
pub struct TopicTable {
    pub topics: HashMap<String, TopicInfo>,
    pub shard_count: u32,
    /// The catalog's incarnation: the high half of every topic's UUID (`topic_uuid`).
    pub incarnation: u64,
    /// Topic names by catalog id (the low half of a topic UUID).
    pub names_by_id: HashMap<u64, String>,
    /// In a cluster: the metadata this table was built from; `None` on a single node.
    pub cluster: Option<ClusterView>,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This node.
    pub node: NodeId,
    pub metadata: Arc<ClusterMetadata>,
    /// The node leading the metadata log (the controller, which also coordinates groups).
    pub controller: Option<NodeId>,
}

impl ClusterView {
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&PartitionMeta> {
        self.metadata.topics.get(topic)?.partitions.get(partition as usize)
    }

    pub fn topic(&self, topic: &str) -> Option<&TopicMeta> {
        self.metadata.topics.get(topic)
    }

    pub fn broker(&self, node: NodeId) -> Option<&BrokerInfo> {
        self.metadata.brokers.get(&node.get())
    }

    /// The native address of `replica`'s shard (where its partitions are fetched from).
    pub fn native_address(&self, replica: Replica) -> Option<&str> {
        self.broker(NodeId::new(replica.node))?.native_addresses.get(replica.shard as usize).map(String::as_str)
    }
}

impl TopicTable {
    pub fn from_catalog(catalog: &Catalog) -> TopicTable {
        TopicTable {
            topics: catalog.topics().map(|t| (t.name.clone(), t.clone())).collect(),
            shard_count: catalog.shard_count(),
            incarnation: catalog.incarnation(),
            names_by_id: catalog.topics().map(|t| (t.id, t.name.clone())).collect(),
            cluster: None,
        }
    }

    /// The table of a cluster node: every topic of the cluster, each partition's `shard` the
    /// one holding this node's replica (or, without one here, the leader's shard).
    pub fn from_cluster(view: ClusterView, shard_count: u32) -> TopicTable {
        let node = view.node.get();
        let topics = view
            .metadata
            .topics
            .values()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(index, p)| {
                        let here = p.replica_on(node);
                        let leader = p.leader.and_then(|l| p.replica_on(l));
                        PartitionInfo {
                            partition: index as u32,
                            shard: here.or(leader).map_or(0, |r| r.shard),
                            leader_epoch: p.leader_epoch,
                        }
                    })
                    .collect();
                let info = TopicInfo { name: t.name.clone(), id: t.id, config: t.config.clone(), partitions };
                (t.name.clone(), info)
            })
            .collect();
        let names_by_id = view.metadata.topics.values().map(|t| (t.id, t.name.clone())).collect();
        TopicTable { topics, shard_count, incarnation: CLUSTER_TOPIC_INCARNATION, names_by_id, cluster: Some(view) }
    }

    /// The shard of this node that holds `topic`/`partition`, if both exist and (in a
    /// cluster) this node has a replica of it.
    pub fn owner(&self, topic: &str, partition: u32) -> Option<usize> {
        let info = self.topics.get(topic)?;
        let p = info.partitions.get(partition as usize)?;
        debug_assert_eq!(p.partition, partition);
        if let Some(view) = &self.cluster {
            view.partition(topic, partition)?.replica_on(view.node.get())?;
        }
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

    /// Whether `topic`/`partition` exists (anywhere in the cluster).
    pub fn exists(&self, topic: &str, partition: u32) -> bool {
        self.topics.get(topic).is_some_and(|t| (partition as usize) < t.partitions.len())
    }

    /// In a cluster, the node leading `topic`/`partition` (`None` while none does, and on a
    /// single node).
    pub fn leader(&self, topic: &str, partition: u32) -> Option<NodeId> {
        let view = self.cluster.as_ref()?;
        view.partition(topic, partition)?.leader.map(NodeId::new)
    }
}

pub type SharedTopics = Arc<ArcSwap<TopicTable>>;
