//! Moving partitions in a cluster (Kafka's AlterPartitionReassignments,
//! ListPartitionReassignments and preferred ElectLeaders), and draining a broker. Each is a
//! metadata command (`MetaCommand::Reassign`, `ElectLeader`, `SetDraining`); the reconcilers
//! open the new replicas as followers, the leader adds them to the ISR once they caught up, and
//! the controller then completes the reassignment (`CompleteReassignment`), after which the
//! removed replicas are deleted.

use std::rc::Rc;

use crate::admin::placement;
use crate::cluster::{MetaCommand, MetaResponse, Replica};
use crate::error::AdminError;
use crate::partition::TopicPartition;
use crate::shard::Shard;
use crate::topics::ClusterView;

/// A reassignment under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    pub partition: TopicPartition,
    /// Every replica now, old and new.
    pub replicas: Vec<Replica>,
    pub adding: Vec<Replica>,
    pub removing: Vec<Replica>,
}

fn view(shard: &Shard) -> Result<ClusterView, AdminError> {
    shard.topics().cluster.clone().ok_or(AdminError::NotACluster)
}

/// Starts moving `partition` to the replicas on `target` nodes (the first one preferred
/// leader); `None` cancels a reassignment under way.
pub async fn reassign(
    shard: &Rc<Shard>,
    partition: TopicPartition,
    target: Option<Vec<u32>>,
) -> Result<(), AdminError> {
    let view = view(shard)?;
    let meta = view
        .partition(&partition.topic, partition.partition)
        .ok_or_else(|| AdminError::UnknownTopic { name: partition.topic.clone() })?;
    let target: Vec<Replica> = match target {
        None => Vec::new(),
        Some(nodes) if nodes.is_empty() => {
            return Err(AdminError::InvalidReplicaAssignment { reason: "no target replica".into() });
        }
        Some(nodes) => {
            let factor = nodes.len() as u32;
            let mut placed = placement(&view.metadata, 0, 1, factor, Some(&[nodes]))
                .map_err(|e| AdminError::InvalidReplicaAssignment { reason: e.to_string() })?;
            // A node that already holds the partition keeps its shard.
            placed.pop().unwrap_or_default().into_iter().map(|r| meta.replica_on(r.node).unwrap_or(r)).collect()
        }
    };
    let cancel = target.is_empty();
    let command = MetaCommand::Reassign { topic: partition.topic.clone(), partition: partition.partition, target };
    match shard.propose(command).await? {
        MetaResponse::Ok => Ok(()),
        MetaResponse::UnknownTopic | MetaResponse::TopicExists => {
            Err(AdminError::UnknownTopic { name: partition.topic })
        }
        MetaResponse::Rejected(_) if cancel => {
            Err(AdminError::NoReassignmentInProgress { topic: partition.topic, partition: partition.partition })
        }
        MetaResponse::Rejected(reason) => Err(AdminError::InvalidReplicaAssignment { reason }),
    }
}

/// The reassignments under way (of `only` these partitions, if given).
pub fn reassignments(shard: &Shard, only: Option<&[TopicPartition]>) -> Result<Vec<Reassignment>, AdminError> {
    let view = view(shard)?;
    let mut out = Vec::new();
    for topic in view.metadata.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            let id = TopicPartition::new(topic.name.clone(), index as u32);
            if p.adding.is_empty() && p.removing.is_empty() || only.is_some_and(|o| !o.contains(&id)) {
                continue;
            }
            out.push(Reassignment {
                partition: id,
                replicas: p.replicas.clone(),
                adding: p.adding.clone(),
                removing: p.removing.clone(),
            });
        }
    }
    Ok(out)
}

/// Moves `partition`'s leadership to its preferred (first) replica.
pub async fn elect_preferred(shard: &Rc<Shard>, partition: TopicPartition) -> Result<(), AdminError> {
    let view = view(shard)?;
    let meta = view
        .partition(&partition.topic, partition.partition)
        .ok_or_else(|| AdminError::UnknownTopic { name: partition.topic.clone() })?;
    let Some(preferred) = meta.replicas.first().map(|r| r.node) else {
        return Err(AdminError::UnknownTopic { name: partition.topic });
    };
    if meta.leader == Some(preferred) {
        return Err(AdminError::ElectionNotNeeded { topic: partition.topic, partition: partition.partition });
    }
    let command = MetaCommand::ElectLeader {
        topic: partition.topic.clone(),
        partition: partition.partition,
        partition_epoch: meta.partition_epoch,
        leader: preferred,
    };
    match shard.propose(command).await? {
        MetaResponse::Ok => Ok(()),
        MetaResponse::UnknownTopic | MetaResponse::TopicExists => {
            Err(AdminError::UnknownTopic { name: partition.topic })
        }
        MetaResponse::Rejected(reason) => Err(AdminError::PreferredLeaderNotAvailable {
            topic: partition.topic,
            partition: partition.partition,
            reason,
        }),
    }
}

/// Drains `node` (no new replica is placed there) and moves every replica it holds to the least
/// loaded other broker; with `draining` false, only clears the mark. The partitions whose move
/// started.
pub async fn drain(shard: &Rc<Shard>, node: u32, draining: bool) -> Result<Vec<TopicPartition>, AdminError> {
    let command = MetaCommand::SetDraining { node, draining };
    if let MetaResponse::Rejected(reason) = shard.propose(command).await? {
        return Err(AdminError::InvalidReplicaAssignment { reason });
    }
    if !draining {
        return Ok(Vec::new());
    }
    // The metadata now has the mark (proposals return once applied here).
    let view = view(shard)?;
    let mut moved = Vec::new();
    for (topic, partition, target) in view.metadata.drain_targets(node) {
        let command = MetaCommand::Reassign { topic: topic.clone(), partition, target };
        match shard.propose(command).await? {
            MetaResponse::Ok => moved.push(TopicPartition::new(topic, partition)),
            other => tracing::warn!(%topic, partition, ?other, "a drain move was refused"),
        }
    }
    tracing::info!(node, partitions = moved.len(), "draining");
    Ok(moved)
}
