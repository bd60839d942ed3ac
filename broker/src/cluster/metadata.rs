//! The cluster's metadata — brokers, topics, each partition's replicas ((node, shard) each),
//! leader, leader epoch, in-sync replicas and partition epoch, and the consumer groups'
//! committed offsets — and the commands that change it. Every command is proposed through
//! the Raft log and applied by every node in log order (`apply`), so every node holds the
//! same metadata once it has applied the same entries: `apply` is deterministic and decides
//! from the metadata alone (no clocks, no randomness; placement is computed by the proposer
//! and carried in the command).
//!
//! Elections follow Kafka's rules: a new leader comes from the ISR (and is not fenced);
//! only a topic that allows unclean election may take another replica, and then the ISR
//! restarts at the new leader alone. Every change of leader bumps the leader epoch; every
//! change of ISR or leader bumps the partition epoch, which fences stale ISR updates.

use std::collections::BTreeMap;

use engine::catalog::TopicConfig;
use serde::{Deserialize, Serialize};

/// One replica's place: a node, and the shard on it that owns the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Replica {
    pub node: u32,
    pub shard: u32,
}

/// A broker process of the cluster, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub node: u32,
    /// Chosen at random by each start of the broker process: a registration with a new
    /// incarnation is a restart, whose replicas may have lost what they had not synced.
    pub incarnation: u64,
    /// Where its cluster port (Raft and controller calls) listens.
    pub cluster_address: String,
    /// Each shard's own native address (replica fetches go there).
    pub native_addresses: Vec<String>,
    /// Each shard's own Kafka address (empty without a Kafka listener).
    pub kafka_addresses: Vec<String>,
    /// Out of the cluster's service: its heartbeats stopped (or it never registered since it
    /// was fenced). A fenced broker leads nothing and is in no ISR.
    pub fenced: bool,
    /// Being drained: new replicas go elsewhere, and its replicas are moved off.
    pub draining: bool,
}

/// Replication settings of a topic (Kafka's topic configs of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationConfig {
    pub replication_factor: u32,
    /// acks=all is refused (NOT_ENOUGH_REPLICAS) while the ISR is smaller.
    pub min_insync_replicas: u32,
    /// A replica outside the ISR may become leader when no ISR member can (losing what
    /// only the ISR had).
    pub unclean_leader_election: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub replicas: Vec<Replica>,
    /// The leading node; `None` while no eligible replica can lead (offline).
    pub leader: Option<u32>,
    pub leader_epoch: u32,
    /// In-sync replicas (nodes), the leader first.
    pub isr: Vec<u32>,
    pub partition_epoch: u32,
    /// A reassignment under way (Kafka's adding/removing replicas): `replicas` holds the old
    /// and the new ones until every new one is in sync; then the removed ones go.
    #[serde(default)]
    pub adding: Vec<Replica>,
    #[serde(default)]
    pub removing: Vec<Replica>,
}

impl PartitionMeta {
    pub fn replica_on(&self, node: u32) -> Option<Replica> {
        self.replicas.iter().copied().find(|r| r.node == node)
    }

    /// The replicas once a reassignment under way completes.
    pub fn target(&self) -> Vec<Replica> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }

    /// Starts (or, with an empty `target`, cancels) a reassignment to `target`.
    fn reassign(&mut self, target: &[Replica]) -> MetaResponse {
        if target.is_empty() {
            // Cancel: back to the replicas before it (the added ones leave, also the ISR).
            if self.adding.is_empty() && self.removing.is_empty() {
                return MetaResponse::Rejected("no reassignment under way".into());
            }
            let adding = std::mem::take(&mut self.adding);
            self.removing.clear();
            self.replicas.retain(|r| !adding.contains(r));
            self.isr.retain(|n| !adding.iter().any(|r| r.node == *n));
            if self.leader.is_some_and(|l| adding.iter().any(|r| r.node == l)) {
                self.leader = self.isr.first().copied();
                self.leader_epoch += 1;
            }
            self.partition_epoch += 1;
            return MetaResponse::Ok;
        }
        let mut nodes: Vec<u32> = target.iter().map(|r| r.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != target.len() {
            return MetaResponse::Rejected(format!("target replicas must be on distinct nodes: {target:?}"));
        }
        if !self.adding.is_empty() || !self.removing.is_empty() {
            return MetaResponse::Rejected("a reassignment is already under way".into());
        }
        // A node keeps its shard: one replica per node.
        let target: Vec<Replica> = target.iter().map(|t| self.replica_on(t.node).unwrap_or(*t)).collect();
        self.adding = target.iter().copied().filter(|t| !self.replicas.contains(t)).collect();
        self.removing = self.replicas.iter().copied().filter(|r| !target.contains(r)).collect();
        // The target order first (its first replica is the new preferred leader), then the
        // replicas being removed.
        let mut replicas = target.clone();
        replicas.extend(self.removing.iter().copied());
        self.replicas = replicas;
        self.partition_epoch += 1;
        MetaResponse::Ok
    }

    /// Whether every new replica of a reassignment under way is in sync.
    pub fn reassignment_caught_up(&self) -> bool {
        (!self.adding.is_empty() || !self.removing.is_empty()) && self.adding.iter().all(|r| self.isr.contains(&r.node))
    }

    fn complete_reassignment(&mut self, fenced: &[u32]) -> MetaResponse {
        if !self.reassignment_caught_up() {
            return MetaResponse::Rejected("the new replicas are not all in sync".into());
        }
        let removing = std::mem::take(&mut self.removing);
        self.adding.clear();
        self.replicas.retain(|r| !removing.contains(r));
        self.isr.retain(|n| !removing.iter().any(|r| r.node == *n));
        if self.leader.is_some_and(|l| removing.iter().any(|r| r.node == l)) {
            self.leader = self.isr.iter().copied().find(|n| !fenced.contains(n));
            if let Some(l) = self.leader {
                self.isr.retain(|n| *n != l);
                self.isr.insert(0, l);
            }
            self.leader_epoch += 1;
        }
        self.partition_epoch += 1;
        MetaResponse::Ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Never reused: a deleted and re-created topic gets a new id.
    pub id: u64,
    pub config: TopicConfig,
    pub replication: ReplicationConfig,
    pub partitions: Vec<PartitionMeta>,
}

/// A group's committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedMeta {
    pub offset: u64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// The committing consumer's leader epoch of the partition (Kafka's committed leader epoch).
    #[serde(default)]
    pub leader_epoch: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub brokers: BTreeMap<u32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicMeta>,
    pub next_topic_id: u64,
    /// group → topic → partition → committed offset.
    pub offsets: BTreeMap<String, BTreeMap<String, BTreeMap<u32, CommittedMeta>>>,
}

/// A change to the metadata, proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A broker starting, or coming back after it was fenced: its addresses; it is unfenced.
    /// A new incarnation (a restart) is first fenced, so its replicas leave every ISR and
    /// lose their leaderships (they may have lost unsynced data) and rejoin as followers.
    RegisterBroker(BrokerInfo),
    /// The controller stopped hearing from `node`: it leads nothing and leaves every ISR.
    FenceBroker {
        node: u32,
    },
    /// A topic with its placement (computed by the proposer).
    CreateTopic {
        name: String,
        config: TopicConfig,
        replication: ReplicationConfig,
        assignment: Vec<Vec<Replica>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Partitions added at the end of `name`, with their placement.
    CreatePartitions {
        name: String,
        assignment: Vec<Vec<Replica>>,
    },
    /// A partition leader's ISR change (shrink or expand), valid only for the leader epoch
    /// and partition epoch it was computed in.
    AlterIsr {
        topic: String,
        partition: u32,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    },
    /// Move a partition's leadership to `leader` (preferred-leader balancing), valid only
    /// for the partition epoch it was computed in; `leader` must be in the ISR and live.
    ElectLeader {
        topic: String,
        partition: u32,
        partition_epoch: u32,
        leader: u32,
    },
    /// A topic's config replaced (Kafka's AlterConfigs / IncrementalAlterConfigs); every
    /// replica applies it to its open log.
    AlterTopicConfig {
        name: String,
        config: TopicConfig,
    },
    /// A group's committed offsets deleted: of `partitions`, or all of them (DeleteGroups).
    DeleteOffsets {
        group: String,
        partitions: Option<Vec<(String, u32)>>,
    },
    /// Group offset commits.
    CommitOffsets {
        group: String,
        offsets: Vec<(String, u32, CommittedMeta)>,
    },
    /// Start moving a partition to `target` (Kafka's AlterPartitionReassignments): the new
    /// replicas join as followers; `CompleteReassignment` finishes once they are in sync.
    /// An empty target cancels a reassignment under way (the added replicas are dropped).
    Reassign {
        topic: String,
        partition: u32,
        target: Vec<Replica>,
    },
    /// Finish a reassignment whose new replicas are all in sync (the controller proposes it):
    /// the removed replicas go; a leader being removed hands over to an in-sync new one.
    CompleteReassignment {
        topic: String,
        partition: u32,
        partition_epoch: u32,
    },
    /// Mark a broker as draining (new replicas go elsewhere) or not.
    SetDraining {
        node: u32,
        draining: bool,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Ok,
    TopicExists,
    UnknownTopic,
    /// A partition, broker or epoch the command named does not match the metadata.
    Rejected(String),
}

impl ClusterMetadata {
    /// Applies one committed command. Deterministic.
    pub fn apply(&mut self, command: &MetaCommand) -> MetaResponse {
        match command {
            MetaCommand::RegisterBroker(info) => {
                let mut info = info.clone();
                let node = info.node;
                let restarted = self.brokers.get(&node).is_some_and(|b| b.incarnation != info.incarnation);
                if restarted {
                    if let Some(b) = self.brokers.get_mut(&node) {
                        b.fenced = true;
                    }
                    self.fence(node);
                }
                info.fenced = false;
                info.draining = self.brokers.get(&node).is_some_and(|b| b.draining);
                self.brokers.insert(node, info);
                self.elect_where_offline(node);
                MetaResponse::Ok
            }
            MetaCommand::FenceBroker { node } => {
                let Some(broker) = self.brokers.get_mut(node) else {
                    return MetaResponse::Rejected(format!("unknown broker {node}"));
                };
                broker.fenced = true;
                self.fence(*node);
                MetaResponse::Ok
            }
            MetaCommand::CreateTopic { name, config, replication, assignment } => {
                if self.topics.contains_key(name) {
                    return MetaResponse::TopicExists;
                }
                self.next_topic_id += 1;
                let partitions = assignment.iter().map(|replicas| self.new_partition(replicas)).collect();
                let topic = TopicMeta {
                    name: name.clone(),
                    id: self.next_topic_id,
                    config: config.clone(),
                    replication: *replication,
                    partitions,
                };
                self.topics.insert(name.clone(), topic);
                MetaResponse::Ok
            }
            MetaCommand::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return MetaResponse::UnknownTopic;
                }
                for topics in self.offsets.values_mut() {
                    topics.remove(name);
                }
                MetaResponse::Ok
            }
            MetaCommand::CreatePartitions { name, assignment } => {
                let partitions: Vec<PartitionMeta> = assignment.iter().map(|r| self.new_partition(r)).collect();
                let Some(topic) = self.topics.get_mut(name) else {
                    return MetaResponse::UnknownTopic;
                };
                topic.partitions.extend(partitions);
                MetaResponse::Ok
            }
            MetaCommand::AlterIsr { topic, partition, leader_epoch, partition_epoch, isr } => {
                let Some(p) = self.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(*partition as usize)) else {
                    return MetaResponse::UnknownTopic;
                };
                if p.leader_epoch != *leader_epoch || p.partition_epoch != *partition_epoch {
                    return MetaResponse::Rejected(format!(
                        "stale ISR update (epochs {leader_epoch}/{partition_epoch}, now {}/{})",
                        p.leader_epoch, p.partition_epoch
                    ));
                }
                let leader = p.leader;
                let valid = isr.iter().all(|n| p.replicas.iter().any(|r| r.node == *n))
                    && leader.is_some_and(|l| isr.first() == Some(&l));
                if !valid {
                    return MetaResponse::Rejected(format!("ISR {isr:?} must start with the leader and hold replicas"));
                }
                // A fenced broker does not rejoin the ISR.
                if isr.iter().any(|n| self.brokers.get(n).is_some_and(|b| b.fenced)) {
                    return MetaResponse::Rejected("a fenced broker cannot join the ISR".into());
                }
                p.isr = isr.clone();
                p.partition_epoch += 1;
                MetaResponse::Ok
            }
            MetaCommand::ElectLeader { topic, partition, partition_epoch, leader } => {
                let fenced = self.brokers.get(leader).is_none_or(|b| b.fenced);
                let Some(p) = self.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(*partition as usize)) else {
                    return MetaResponse::UnknownTopic;
                };
                if p.partition_epoch != *partition_epoch {
                    return MetaResponse::Rejected(format!(
                        "stale election (partition epoch {partition_epoch}, now {})",
                        p.partition_epoch
                    ));
                }
                if fenced || !p.isr.contains(leader) {
                    return MetaResponse::Rejected(format!("node {leader} is not a live in-sync replica"));
                }
                if p.leader != Some(*leader) {
                    p.isr.retain(|n| n != leader);
                    p.isr.insert(0, *leader);
                    p.leader = Some(*leader);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
                MetaResponse::Ok
            }
            MetaCommand::Reassign { topic, partition, target } => {
                let registered = |r: &Replica| self.brokers.contains_key(&r.node);
                if !target.iter().all(registered) {
                    return MetaResponse::Rejected(format!("a target replica is on an unknown broker: {target:?}"));
                }
                let Some(p) = self.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(*partition as usize)) else {
                    return MetaResponse::UnknownTopic;
                };
                p.reassign(target)
            }
            MetaCommand::CompleteReassignment { topic, partition, partition_epoch } => {
                let fenced: Vec<u32> = self.brokers.values().filter(|b| b.fenced).map(|b| b.node).collect();
                let Some(p) = self.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(*partition as usize)) else {
                    return MetaResponse::UnknownTopic;
                };
                if p.partition_epoch != *partition_epoch {
                    return MetaResponse::Rejected(format!(
                        "stale completion (partition epoch {partition_epoch}, now {})",
                        p.partition_epoch
                    ));
                }
                p.complete_reassignment(&fenced)
            }
            MetaCommand::SetDraining { node, draining } => {
                let Some(broker) = self.brokers.get_mut(node) else {
                    return MetaResponse::Rejected(format!("unknown broker {node}"));
                };
                broker.draining = *draining;
                MetaResponse::Ok
            }
            MetaCommand::AlterTopicConfig { name, config } => {
                let Some(topic) = self.topics.get_mut(name) else {
                    return MetaResponse::UnknownTopic;
                };
                topic.config = config.clone();
                MetaResponse::Ok
            }
            MetaCommand::DeleteOffsets { group, partitions } => {
                match partitions {
                    None => {
                        self.offsets.remove(group);
                    }
                    Some(partitions) => {
                        if let Some(topics) = self.offsets.get_mut(group) {
                            for (topic, partition) in partitions {
                                if let Some(committed) = topics.get_mut(topic) {
                                    committed.remove(partition);
                                    if committed.is_empty() {
                                        topics.remove(topic);
                                    }
                                }
                            }
                            if topics.is_empty() {
                                self.offsets.remove(group);
                            }
                        }
                    }
                }
                MetaResponse::Ok
            }
            MetaCommand::CommitOffsets { group, offsets } => {
                let topics = self.offsets.entry(group.clone()).or_default();
                for (topic, partition, committed) in offsets {
                    topics.entry(topic.clone()).or_default().insert(*partition, committed.clone());
                }
                MetaResponse::Ok
            }
        }
    }

    /// A new partition: led by its first replica, every replica in sync (it has nothing yet).
    fn new_partition(&self, replicas: &[Replica]) -> PartitionMeta {
        let eligible = |r: &&Replica| self.brokers.get(&r.node).is_none_or(|b| !b.fenced);
        let leader = replicas.iter().find(eligible).map(|r| r.node);
        let mut isr: Vec<u32> = replicas.iter().filter(eligible).map(|r| r.node).collect();
        if let Some(l) = leader {
            isr.retain(|n| *n != l);
            isr.insert(0, l);
        }
        PartitionMeta {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 0,
            isr,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// `node` was fenced: it leaves every ISR; partitions it led elect a new leader.
    fn fence(&mut self, node: u32) {
        let fenced: Vec<u32> = self.brokers.values().filter(|b| b.fenced).map(|b| b.node).collect();
        for topic in self.topics.values_mut() {
            let unclean = topic.replication.unclean_leader_election;
            for p in &mut topic.partitions {
                if p.leader == Some(node) {
                    p.isr.retain(|n| *n != node);
                    let from_isr = p.isr.iter().copied().find(|n| !fenced.contains(n));
                    let unclean_pick = || p.replicas.iter().map(|r| r.node).find(|n| !fenced.contains(n));
                    let new_leader = from_isr.or_else(|| unclean.then(unclean_pick).flatten());
                    match new_leader {
                        Some(l) => {
                            if !p.isr.contains(&l) {
                                // Unclean: the ISR restarts at the new leader.
                                p.isr = vec![l];
                            }
                            p.isr.retain(|n| *n != l);
                            p.isr.insert(0, l);
                            p.leader = Some(l);
                        }
                        None => {
                            // Offline: the ISR keeps the last in-sync member, who may lead
                            // again when it comes back (Kafka keeps it in the ISR too).
                            if p.isr.is_empty() {
                                p.isr = vec![node];
                            }
                            p.leader = None;
                        }
                    }
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                } else if p.isr.contains(&node) && p.leader.is_some() {
                    p.isr.retain(|n| *n != node);
                    p.partition_epoch += 1;
                }
                // An offline partition keeps its last in-sync member in the ISR: it is the one
                // that may lead again when it comes back (as Kafka keeps it).
            }
        }
    }

    /// `node` is back: partitions with no leader that it may lead elect it.
    fn elect_where_offline(&mut self, node: u32) {
        for topic in self.topics.values_mut() {
            let unclean = topic.replication.unclean_leader_election;
            for p in &mut topic.partitions {
                if p.leader.is_some() || p.replica_on(node).is_none() {
                    continue;
                }
                let in_isr = p.isr.contains(&node);
                if in_isr || unclean {
                    if !in_isr {
                        p.isr = vec![node];
                    }
                    p.isr.retain(|n| *n != node);
                    p.isr.insert(0, node);
                    p.leader = Some(node);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// Partitions whose preferred replica (the first) is live and in sync but does not lead:
    /// (topic, partition, partition epoch, preferred node), for leadership balancing.
    pub fn unbalanced_leaders(&self) -> Vec<(String, u32, u32, u32)> {
        let mut out = Vec::new();
        for topic in self.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                let Some(preferred) = p.replicas.first().map(|r| r.node) else { continue };
                let live = self.brokers.get(&preferred).is_some_and(|b| !b.fenced);
                if live && p.leader != Some(preferred) && p.isr.contains(&preferred) {
                    out.push((topic.name.clone(), index as u32, p.partition_epoch, preferred));
                }
            }
        }
        out
    }

    /// Reassignments whose new replicas are all in sync: (topic, partition, partition epoch),
    /// for the controller to complete.
    pub fn completable_reassignments(&self) -> Vec<(String, u32, u32)> {
        let mut out = Vec::new();
        for topic in self.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.reassignment_caught_up() {
                    out.push((topic.name.clone(), index as u32, p.partition_epoch));
                }
            }
        }
        out
    }

    /// Targets moving every replica off `node` (draining it): for each partition with a replica
    /// there, the same replicas with that one replaced by one on the least loaded other
    /// placeable broker not yet holding the partition. Partitions with nowhere to go are
    /// left out.
    pub fn drain_targets(&self, node: u32) -> Vec<(String, u32, Vec<Replica>)> {
        let mut load = self.replica_load();
        let brokers: Vec<(u32, u32)> = self.placeable_brokers().into_iter().filter(|(n, _)| *n != node).collect();
        let mut out = Vec::new();
        for topic in self.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.replica_on(node).is_none() || !p.adding.is_empty() || !p.removing.is_empty() {
                    continue;
                }
                let candidate = brokers
                    .iter()
                    .filter(|(n, _)| p.replica_on(*n).is_none())
                    .flat_map(|&(n, shards)| (0..shards.max(1)).map(move |s| Replica { node: n, shard: s }))
                    .min_by_key(|r| {
                        let node_load: u32 = load.iter().filter(|(k, _)| k.node == r.node).map(|(_, v)| *v).sum();
                        (node_load, load.get(r).copied().unwrap_or(0), r.node, r.shard)
                    });
                let Some(replacement) = candidate else { continue };
                *load.entry(replacement).or_default() += 1;
                let target =
                    p.replicas.iter().map(|r| if r.node == node { replacement } else { *r }).collect::<Vec<_>>();
                out.push((topic.name.clone(), index as u32, target));
            }
        }
        out
    }

    /// The unfenced brokers, in node order.
    pub fn live_brokers(&self) -> Vec<&BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced).collect()
    }
}

/// Places `partitions` new partitions (numbered from `first`) of `replication_factor`
/// replicas each over `brokers` (live, not draining, in node order): replicas of a partition
/// on distinct nodes, each partition's first replica (its leader) rotating over the nodes,
/// and on each node the shard with the fewest replicas (counting `load`, which it updates).
pub fn place(
    first: u32,
    partitions: u32,
    replication_factor: u32,
    brokers: &[(u32, u32)],
    load: &mut BTreeMap<Replica, u32>,
) -> Result<Vec<Vec<Replica>>, String> {
    if replication_factor == 0 || replication_factor as usize > brokers.len() {
        return Err(format!(
            "replication factor {replication_factor} needs that many live brokers; {} are",
            brokers.len()
        ));
    }
    let mut out = Vec::with_capacity(partitions as usize);
    for p in first..first + partitions {
        let mut replicas = Vec::with_capacity(replication_factor as usize);
        for k in 0..replication_factor as usize {
            let (node, shards) = brokers[(p as usize + k) % brokers.len()];
            let shard = (0..shards.max(1))
                .min_by_key(|&s| (load.get(&Replica { node, shard: s }).copied().unwrap_or(0), s))
                .unwrap_or(0);
            let replica = Replica { node, shard };
            *load.entry(replica).or_default() += 1;
            replicas.push(replica);
        }
        out.push(replicas);
    }
    Ok(out)
}

impl ClusterMetadata {
    /// How many replicas each (node, shard) holds now.
    pub fn replica_load(&self) -> BTreeMap<Replica, u32> {
        let mut load = BTreeMap::new();
        for topic in self.topics.values() {
            for p in &topic.partitions {
                for r in &p.replicas {
                    *load.entry(*r).or_default() += 1;
                }
            }
        }
        load
    }

    /// (node, shard count) of the brokers new replicas may go to.
    pub fn placeable_brokers(&self) -> Vec<(u32, u32)> {
        self.brokers
            .values()
            .filter(|b| !b.fenced && !b.draining)
            .map(|b| (b.node, b.native_addresses.len() as u32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(node: u32) -> BrokerInfo {
        BrokerInfo {
            node,
            incarnation: 1,
            cluster_address: format!("n{node}:1"),
            native_addresses: vec![format!("n{node}:2"), format!("n{node}:3")],
            kafka_addresses: Vec::new(),
            fenced: false,
            draining: false,
        }
    }

    fn three_nodes() -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for node in 1..=3 {
            assert_eq!(m.apply(&MetaCommand::RegisterBroker(broker(node))), MetaResponse::Ok);
        }
        m
    }

    fn create(m: &mut ClusterMetadata, name: &str, partitions: u32, rf: u32, unclean: bool) {
        let assignment = place(0, partitions, rf, &m.placeable_brokers(), &mut m.replica_load()).unwrap();
        let replication =
            ReplicationConfig { replication_factor: rf, min_insync_replicas: 1, unclean_leader_election: unclean };
        let command =
            MetaCommand::CreateTopic { name: name.into(), config: TopicConfig::default(), replication, assignment };
        assert_eq!(m.apply(&command), MetaResponse::Ok);
    }

    #[test]
    fn placement_spreads_replicas_over_nodes_and_leaders_over_nodes_and_shards() {
        let mut m = three_nodes();
        create(&mut m, "t", 6, 3, false);
        let t = &m.topics["t"];
        for p in &t.partitions {
            let mut nodes: Vec<u32> = p.replicas.iter().map(|r| r.node).collect();
            nodes.sort();
            nodes.dedup();
            assert_eq!(nodes.len(), 3, "replicas on distinct nodes: {p:?}");
            assert_eq!(p.leader, Some(p.replicas[0].node));
            assert_eq!(p.isr.len(), 3);
        }
        let leaders: Vec<Replica> = t.partitions.iter().map(|p| p.replicas[0]).collect();
        for node in 1..=3 {
            let on_node: Vec<&Replica> = leaders.iter().filter(|r| r.node == node).collect();
            assert_eq!(on_node.len(), 2, "two leaders per node");
            assert_ne!(on_node[0].shard, on_node[1].shard, "on different shards");
        }
        assert!(place(0, 1, 4, &m.placeable_brokers(), &mut m.replica_load()).is_err());
    }

    #[test]
    fn fencing_the_leader_elects_from_the_isr_and_bumps_epochs() {
        let mut m = three_nodes();
        create(&mut m, "t", 1, 3, false);
        let old = m.topics["t"].partitions[0].clone();
        let leader = old.leader.unwrap();
        m.apply(&MetaCommand::FenceBroker { node: leader });
        let p = &m.topics["t"].partitions[0];
        assert_ne!(p.leader, Some(leader));
        assert!(p.leader.is_some() && old.isr.contains(&p.leader.unwrap()));
        assert!(!p.isr.contains(&leader));
        assert_eq!(p.leader_epoch, old.leader_epoch + 1);
        assert!(p.partition_epoch > old.partition_epoch);
        // An ISR update from the old epochs is refused.
        let stale = MetaCommand::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch: old.leader_epoch,
            partition_epoch: old.partition_epoch,
            isr: old.isr.clone(),
        };
        assert!(matches!(m.apply(&stale), MetaResponse::Rejected(_)));
    }

    #[test]
    fn without_an_isr_member_the_partition_is_offline_unless_unclean_election_is_allowed() {
        for unclean in [false, true] {
            let mut m = three_nodes();
            create(&mut m, "t", 1, 2, unclean);
            let p = m.topics["t"].partitions[0].clone();
            let (leader, follower) = (p.replicas[0].node, p.replicas[1].node);
            // The follower falls out of the ISR, then the leader dies.
            let shrink = MetaCommand::AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![leader],
            };
            assert_eq!(m.apply(&shrink), MetaResponse::Ok);
            m.apply(&MetaCommand::FenceBroker { node: leader });
            let p = &m.topics["t"].partitions[0];
            if unclean {
                assert_eq!((p.leader, p.isr.clone()), (Some(follower), vec![follower]));
            } else {
                assert_eq!(p.leader, None, "offline: only the dead leader was in sync");
                assert_eq!(p.isr, vec![leader]);
                // It comes back: it leads again — also after a restart (a new incarnation).
                let restarted = BrokerInfo { incarnation: 2, ..broker(leader) };
                m.apply(&MetaCommand::RegisterBroker(restarted));
                assert_eq!(m.topics["t"].partitions[0].leader, Some(leader));
                assert_eq!(m.topics["t"].partitions[0].isr, vec![leader]);
            }
        }
    }

    #[test]
    fn a_restarted_broker_loses_its_leaderships_and_preferred_election_gives_them_back() {
        let mut m = three_nodes();
        create(&mut m, "t", 1, 3, false);
        let before = m.topics["t"].partitions[0].clone();
        let leader = before.leader.unwrap();
        // Re-registering the same incarnation (back from a pause) changes nothing.
        m.apply(&MetaCommand::RegisterBroker(broker(leader)));
        assert_eq!(m.topics["t"].partitions[0], before);
        // A new incarnation (a restart) hands leadership to another ISR member.
        let restarted = BrokerInfo { incarnation: 2, ..broker(leader) };
        m.apply(&MetaCommand::RegisterBroker(restarted));
        let p = m.topics["t"].partitions[0].clone();
        assert_ne!(p.leader, Some(leader));
        assert!(!p.isr.contains(&leader));
        assert!(!m.brokers[&leader].fenced);
        assert!(m.unbalanced_leaders().is_empty(), "not in sync: no election");
        // Caught up again, it is preferred: the election gives it back its leadership.
        let mut isr = p.isr.clone();
        isr.push(leader);
        let expand = MetaCommand::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        };
        assert_eq!(m.apply(&expand), MetaResponse::Ok);
        let todo = m.unbalanced_leaders();
        assert_eq!(todo.len(), 1);
        let (topic, partition, partition_epoch, preferred) = todo[0].clone();
        assert_eq!(preferred, leader);
        let elect = MetaCommand::ElectLeader { topic, partition, partition_epoch, leader: preferred };
        assert_eq!(m.apply(&elect), MetaResponse::Ok);
        assert!(matches!(m.apply(&elect), MetaResponse::Rejected(_)), "stale epoch");
        let p = &m.topics["t"].partitions[0];
        assert_eq!((p.leader, p.isr[0]), (Some(leader), leader));
        assert_eq!(p.leader_epoch, before.leader_epoch + 2);
    }

    #[test]
    fn a_reassignment_adds_replicas_then_removes_the_old_ones_once_they_are_in_sync() {
        let mut m = three_nodes();
        m.apply(&MetaCommand::RegisterBroker(broker(4)));
        let assignment = vec![vec![Replica { node: 1, shard: 0 }, Replica { node: 2, shard: 0 }]];
        let replication =
            ReplicationConfig { replication_factor: 2, min_insync_replicas: 1, unclean_leader_election: false };
        let create =
            MetaCommand::CreateTopic { name: "t".into(), config: TopicConfig::default(), replication, assignment };
        assert_eq!(m.apply(&create), MetaResponse::Ok);
        // Drain node 1 (the leader): its replica moves to node 3 or 4.
        assert_eq!(m.apply(&MetaCommand::SetDraining { node: 1, draining: true }), MetaResponse::Ok);
        let targets = m.drain_targets(1);
        assert_eq!(targets.len(), 1);
        let (topic, partition, target) = targets[0].clone();
        assert!(target.iter().all(|r| r.node != 1) && target.len() == 2);
        let new = target.iter().find(|r| r.node != 2).copied().unwrap();
        assert_eq!(m.apply(&MetaCommand::Reassign { topic: topic.clone(), partition, target }), MetaResponse::Ok);
        let p = m.topics["t"].partitions[0].clone();
        assert_eq!((p.adding.clone(), p.removing.clone()), (vec![new], vec![Replica { node: 1, shard: 0 }]));
        assert_eq!(p.replicas.len(), 3, "old and new replicas during the move");
        assert!(m.completable_reassignments().is_empty(), "the new replica is not in sync yet");
        let early =
            MetaCommand::CompleteReassignment { topic: topic.clone(), partition, partition_epoch: p.partition_epoch };
        assert!(matches!(m.apply(&early), MetaResponse::Rejected(_)));
        // The leader adds it to the ISR once it caught up; the controller completes.
        let expand = MetaCommand::AlterIsr {
            topic: topic.clone(),
            partition,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![1, 2, new.node],
        };
        assert_eq!(m.apply(&expand), MetaResponse::Ok);
        let todo = m.completable_reassignments();
        assert_eq!(todo.len(), 1);
        let (t, pi, epoch) = todo[0].clone();
        let complete = MetaCommand::CompleteReassignment { topic: t, partition: pi, partition_epoch: epoch };
        assert_eq!(m.apply(&complete), MetaResponse::Ok);
        let p = &m.topics["t"].partitions[0];
        assert!(p.replica_on(1).is_none() && p.adding.is_empty() && p.removing.is_empty());
        assert_ne!(p.leader, Some(1), "the removed leader handed over");
        assert!(p.leader.is_some_and(|l| p.isr[0] == l) && !p.isr.contains(&1));
        assert_eq!(p.leader_epoch, 1);
    }

    #[test]
    fn commands_round_trip_through_json() {
        let command = MetaCommand::AlterIsr {
            topic: "t".into(),
            partition: 3,
            leader_epoch: 2,
            partition_epoch: 5,
            isr: vec![1, 2],
        };
        let text = serde_json::to_string(&command).unwrap();
        assert_eq!(serde_json::from_str::<MetaCommand>(&text).unwrap(), command);
        let mut m = three_nodes();
        create(&mut m, "t", 2, 2, false);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ClusterMetadata>(&text).unwrap(), m);
    }
}
