//! Catalog changes — create and delete topics, add partitions — from any shard. On a single
//! node they run on the coordinator shard, one at a time, in an order that keeps every request
//! routable. A new topic: persist the catalog, open the partitions on their owning shards, then
//! publish the new topic table, so a request routed by the new table always finds its
//! partition open. A deleted topic: persist, unroute (publish), then close and delete the logs,
//! then forget its committed offsets.
//!
//! In a cluster a change is a command proposed through the metadata log (placement computed
//! here, from the metadata this node has: replicas on distinct nodes, leaders spread over
//! nodes and shards); every node applies it when it commits, and each shard then opens,
//! deletes or re-roles its replicas (`replica/reconcile.rs`).

use std::collections::BTreeMap;
use std::rc::Rc;

use engine::catalog::{validate_topic_name, PartitionInfo, TopicConfig, TopicInfo};
use engine::limits::PARTITIONS_PER_TOPIC_MAX;

use crate::calls::ShardCall;
use crate::cluster::metadata::place;
use crate::cluster::{ClusterMetadata, MetaCommand, MetaResponse, Replica, ReplicationConfig};
use crate::error::AdminError;
use crate::ids::{ShardId, COORDINATOR_SHARD};
use crate::limits::SHARD_CALL_TIMEOUT_MS;
use crate::router::deadline_in;
use crate::shard::{now_ms, CoordinatorState, Shard};

/// How a new topic is replicated (a cluster); `None` takes the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replication {
    /// Replicas per partition (Kafka's replication.factor).
    pub factor: Option<u32>,
    /// acks=all needs this many in-sync replicas (Kafka's min.insync.replicas; default 1).
    pub min_insync: Option<u32>,
    /// Kafka's unclean.leader.election.enable (default false).
    pub unclean_leader_election: Option<bool>,
    /// Explicit placement (Kafka's replica assignment): each partition's replicas' nodes, the
    /// preferred leader first.
    pub assignment: Option<Vec<Vec<u32>>>,
}

pub async fn create_topic(
    shard: &Rc<Shard>,
    name: String,
    partitions: u32,
    config: TopicConfig,
) -> Result<(), AdminError> {
    create_topic_with(shard, name, partitions, config, Replication::default()).await
}

/// Creates a topic with replication settings: in a cluster they are proposed with it; a single
/// node accepts only one replica per partition.
pub async fn create_topic_with(
    shard: &Rc<Shard>,
    name: String,
    partitions: u32,
    config: TopicConfig,
    replication: Replication,
) -> Result<(), AdminError> {
    if shard.topics().cluster.is_some() {
        return create_topic_in_cluster(shard, name, partitions, config, replication).await;
    }
    if replication.factor.is_some_and(|f| f != 1) || replication.assignment.is_some() {
        return Err(AdminError::InvalidReplicationFactor {
            reason: "a single node keeps one replica of each partition (start a cluster for more)".into(),
        });
    }
    match shard.coordinator() {
        Some(c) => create_topic_here(shard, c, name, partitions, config).await,
        None => {
            let call = |reply| ShardCall::CreateTopic { name, partitions, config, reply };
            shard.router().call(COORDINATOR_SHARD, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await?
        }
    }
}

pub async fn delete_topic(shard: &Rc<Shard>, name: String) -> Result<(), AdminError> {
    if shard.topics().cluster.is_some() {
        return propose_change(shard, MetaCommand::DeleteTopic { name: name.clone() }, &name).await;
    }
    match shard.coordinator() {
        Some(c) => delete_topic_here(shard, c, name).await,
        None => {
            let call = |reply| ShardCall::DeleteTopic { name, reply };
            shard.router().call(COORDINATOR_SHARD, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await?
        }
    }
}

/// Grows `name` to `total` partitions.
pub async fn create_partitions(shard: &Rc<Shard>, name: String, total: u32) -> Result<(), AdminError> {
    if let Some(view) = shard.topics().cluster.clone() {
        let metadata = &view.metadata;
        let topic = metadata.topics.get(&name).ok_or_else(|| AdminError::UnknownTopic { name: name.clone() })?;
        let current = topic.partitions.len() as u32;
        if total <= current || total > PARTITIONS_PER_TOPIC_MAX {
            return Err(AdminError::InvalidPartitions {
                reason: format!(
                    "{name} has {current} partitions; the new total must be in {}..={PARTITIONS_PER_TOPIC_MAX}",
                    current + 1
                ),
            });
        }
        let assignment = placement(metadata, current, total - current, topic.replication.replication_factor, None)?;
        return propose_change(shard, MetaCommand::CreatePartitions { name: name.clone(), assignment }, &name).await;
    }
    match shard.coordinator() {
        Some(c) => create_partitions_here(shard, c, name, total).await,
        None => {
            let call = |reply| ShardCall::CreatePartitions { name, total, reply };
            shard.router().call(COORDINATOR_SHARD, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await?
        }
    }
}

pub(crate) async fn create_topic_here(
    shard: &Rc<Shard>,
    c: &CoordinatorState,
    name: String,
    partitions: u32,
    config: TopicConfig,
) -> Result<(), AdminError> {
    let _change = c.catalog.begin().await?;
    config.validate().map_err(|e| AdminError::InvalidConfig { reason: e.to_string() })?;
    let (info, table) = c.catalog.change(move |catalog| catalog.create_topic(&name, partitions, config)).await?;
    let all: Vec<u32> = (0..info.partitions.len() as u32).collect();
    open_on_owners(shard, &info, &all, table.shard_count).await?;
    shard.publish_topics(table);
    tracing::info!(topic = %info.name, partitions = info.partitions.len(), "topic created");
    Ok(())
}

pub(crate) async fn create_partitions_here(
    shard: &Rc<Shard>,
    c: &CoordinatorState,
    name: String,
    total: u32,
) -> Result<(), AdminError> {
    let _change = c.catalog.begin().await?;
    let before = shard.topics().topics.get(&name).map_or(0, |t| t.partitions.len() as u32);
    let (info, table) = c.catalog.change(move |catalog| catalog.add_partitions(&name, total)).await?;
    let new: Vec<u32> = (before..info.partitions.len() as u32).collect();
    open_on_owners(shard, &info, &new, table.shard_count).await?;
    shard.publish_topics(table);
    c.groups.topic_changed(&info.name);
    tracing::info!(topic = %info.name, partitions = info.partitions.len(), "partitions added");
    Ok(())
}

pub(crate) async fn delete_topic_here(shard: &Rc<Shard>, c: &CoordinatorState, name: String) -> Result<(), AdminError> {
    let _change = c.catalog.begin().await?;
    let (info, table) = c.catalog.change(move |catalog| catalog.delete_topic(&name)).await?;
    let shard_count = table.shard_count;
    // Unroute first, then close and remove the logs.
    shard.publish_topics(table);
    let all: Vec<u32> = (0..info.partitions.len() as u32).collect();
    for (owner, partitions) in by_owner(&info, &all, shard_count) {
        let dropped = if owner == shard.id() {
            shard.drop_partitions(&info.name, &partitions).await
        } else {
            let call = |reply| ShardCall::DropPartitions { topic: info.name.clone(), partitions, reply };
            match shard.router().call(owner, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await {
                Ok(result) => result,
                Err(e) => Err(e.into()),
            }
        };
        if let Err(e) = dropped {
            tracing::error!(topic = %info.name, error = %e, "removing partitions failed");
        }
    }
    c.offsets.delete_topic(&info.name, now_ms()).await;
    tracing::info!(topic = %info.name, "topic deleted");
    Ok(())
}

async fn open_on_owners(
    shard: &Rc<Shard>,
    info: &TopicInfo,
    partitions: &[u32],
    shard_count: u32,
) -> Result<(), AdminError> {
    for (owner, partitions) in by_owner(info, partitions, shard_count) {
        let partitions: Vec<PartitionInfo> =
            partitions.iter().filter_map(|&p| info.partitions.get(p as usize).cloned()).collect();
        if owner == shard.id() {
            shard.open_partitions(&info.name, &partitions, &info.config).await?;
            continue;
        }
        let call = |reply| ShardCall::OpenPartitions {
            topic: info.name.clone(),
            partitions,
            config: info.config.clone(),
            reply,
        };
        shard.router().call(owner, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await??;
    }
    Ok(())
}

fn by_owner(info: &TopicInfo, partitions: &[u32], shard_count: u32) -> BTreeMap<ShardId, Vec<u32>> {
    let mut owners: BTreeMap<ShardId, Vec<u32>> = BTreeMap::new();
    for &p in partitions {
        if let Some(pi) = info.partitions.get(p as usize) {
            owners.entry(ShardId::new(pi.shard % shard_count.max(1))).or_default().push(p);
        }
    }
    owners
}

/// Replaces a topic's config (Kafka's AlterConfigs / IncrementalAlterConfigs): persisted in
/// the catalog first, then published, then applied to the open logs on every shard. A shard
/// that does not answer keeps its old settings until it restarts (it reopens the logs with
/// the catalog's); the change itself is durable.
pub async fn alter_topic_config(shard: &Rc<Shard>, name: String, config: TopicConfig) -> Result<(), AdminError> {
    if shard.topics().cluster.is_some() {
        // A cluster: the metadata log holds topic configs; each replica applies the committed
        // change when it reconciles.
        config.validate().map_err(|e| AdminError::InvalidConfig { reason: e.to_string() })?;
        if !shard.topics().topics.contains_key(&name) {
            return Err(AdminError::UnknownTopic { name });
        }
        let command = MetaCommand::AlterTopicConfig { name: name.clone(), config };
        return propose_change(shard, command, &name).await;
    }
    let Some(c) = shard.coordinator() else {
        let call = |reply| ShardCall::AlterTopicConfig { name, config, reply };
        return shard.router().call(COORDINATOR_SHARD, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await?;
    };
    let _change = c.catalog.begin().await?;
    config.validate().map_err(|e| AdminError::InvalidConfig { reason: e.to_string() })?;
    let (info, table) = c.catalog.change(move |catalog| catalog.set_topic_config(&name, config)).await?;
    let shard_count = table.shard_count as usize;
    shard.publish_topics(table);
    for index in 0..shard_count {
        let owner = crate::ids::shard_at(index);
        if owner == shard.id() {
            shard.reconfigure_partitions(&info.name, &info.config);
            continue;
        }
        let call =
            |reply| ShardCall::ReconfigurePartitions { topic: info.name.clone(), config: info.config.clone(), reply };
        if let Err(e) = shard.router().call(owner, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await {
            tracing::error!(topic = %info.name, shard = %owner, error = %e, "applying a topic's new config failed");
        }
    }
    tracing::info!(topic = %info.name, config = ?info.config, "topic config changed");
    Ok(())
}

/// A cluster's new topic: validated, placed, proposed.
async fn create_topic_in_cluster(
    shard: &Rc<Shard>,
    name: String,
    partitions: u32,
    config: TopicConfig,
    replication: Replication,
) -> Result<(), AdminError> {
    validate_topic_name(&name)?;
    config.validate().map_err(|e| AdminError::InvalidConfig { reason: e.to_string() })?;
    let Some(view) = shard.topics().cluster.clone() else {
        return Err(AdminError::Storage { reason: "not a cluster".into() });
    };
    let metadata = &view.metadata;
    if metadata.topics.contains_key(&name) {
        return Err(AdminError::TopicExists { name });
    }
    let partitions = match &replication.assignment {
        Some(assignment) => u32::try_from(assignment.len()).unwrap_or(u32::MAX),
        None => partitions,
    };
    if partitions == 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
        return Err(AdminError::InvalidPartitions {
            reason: format!("{partitions} partitions; a topic has 1..={PARTITIONS_PER_TOPIC_MAX}"),
        });
    }
    let factor = match (&replication.assignment, replication.factor) {
        (Some(assignment), _) => assignment.first().map_or(1, |r| r.len() as u32),
        (None, Some(factor)) => factor,
        (None, None) => shard.default_replication_factor(),
    };
    let min_insync = replication.min_insync.unwrap_or(1);
    if min_insync == 0 {
        return Err(AdminError::InvalidConfig { reason: "min.insync.replicas must be at least 1".into() });
    }
    let assignment = placement(metadata, 0, partitions, factor, replication.assignment.as_deref())?;
    let replication = ReplicationConfig {
        replication_factor: factor,
        min_insync_replicas: min_insync,
        unclean_leader_election: replication.unclean_leader_election.unwrap_or(false),
    };
    let command = MetaCommand::CreateTopic { name: name.clone(), config, replication, assignment };
    propose_change(shard, command, &name).await
}

/// Replica placement for `count` new partitions from `first`: the explicit `assignment` (nodes
/// only; each replica goes to its node's least loaded shard), or `place`'s spread.
pub(crate) fn placement(
    metadata: &ClusterMetadata,
    first: u32,
    count: u32,
    factor: u32,
    assignment: Option<&[Vec<u32>]>,
) -> Result<Vec<Vec<Replica>>, AdminError> {
    let mut load = metadata.replica_load();
    let Some(assignment) = assignment else {
        let brokers = metadata.placeable_brokers();
        return place(first, count, factor, &brokers, &mut load)
            .map_err(|reason| AdminError::InvalidReplicationFactor { reason });
    };
    let mut out = Vec::with_capacity(assignment.len());
    for (index, nodes) in assignment.iter().enumerate() {
        if nodes.len() as u32 != factor || factor == 0 {
            return Err(AdminError::InvalidReplicationFactor {
                reason: format!("partition {index} has {} replicas; every partition needs {factor}", nodes.len()),
            });
        }
        let mut replicas: Vec<Replica> = Vec::with_capacity(nodes.len());
        for &node in nodes {
            let Some(broker) = metadata.brokers.get(&node) else {
                return Err(AdminError::InvalidReplicationFactor { reason: format!("no broker {node}") });
            };
            if replicas.iter().any(|r| r.node == node) {
                return Err(AdminError::InvalidReplicationFactor {
                    reason: format!("partition {index} names node {node} twice"),
                });
            }
            let shards = broker.native_addresses.len().max(1) as u32;
            let shard = (0..shards)
                .min_by_key(|&s| (load.get(&Replica { node, shard: s }).copied().unwrap_or(0), s))
                .unwrap_or(0);
            *load.entry(Replica { node, shard }).or_default() += 1;
            replicas.push(Replica { node, shard });
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Proposes a topic change and maps the metadata's answer.
async fn propose_change(shard: &Rc<Shard>, command: MetaCommand, name: &str) -> Result<(), AdminError> {
    match shard.propose(command).await? {
        MetaResponse::Ok => {
            tracing::info!(topic = name, "topic change committed");
            Ok(())
        }
        MetaResponse::TopicExists => Err(AdminError::TopicExists { name: name.to_owned() }),
        MetaResponse::UnknownTopic => Err(AdminError::UnknownTopic { name: name.to_owned() }),
        MetaResponse::Rejected(reason) => Err(AdminError::InvalidConfig { reason }),
    }
}
