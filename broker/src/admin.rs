//! Catalog changes — create and delete topics, add partitions — from any shard: they run on
//! the coordinator shard, one at a time, in an order that keeps every request routable. A new
//! topic: persist the catalog, open the partitions on their owning shards, then publish the
//! new topic table, so a request routed by the new table always finds its partition open. A
//! deleted topic: persist, unroute (publish), then close and delete the logs, then forget its
//! committed offsets.

use std::collections::BTreeMap;
use std::rc::Rc;

use engine::catalog::{PartitionInfo, TopicConfig, TopicInfo};

use crate::calls::ShardCall;
use crate::error::AdminError;
use crate::ids::{ShardId, COORDINATOR_SHARD};
use crate::limits::SHARD_CALL_TIMEOUT_MS;
use crate::router::deadline_in;
use crate::shard::{now_ms, CoordinatorState, Shard};

pub async fn create_topic(
    shard: &Rc<Shard>,
    name: String,
    partitions: u32,
    config: TopicConfig,
) -> Result<(), AdminError> {
    match shard.coordinator() {
        Some(c) => create_topic_here(shard, c, name, partitions, config).await,
        None => {
            let call = |reply| ShardCall::CreateTopic { name, partitions, config, reply };
            shard.router().call(COORDINATOR_SHARD, call, deadline_in(SHARD_CALL_TIMEOUT_MS)).await?
        }
    }
}

pub async fn delete_topic(shard: &Rc<Shard>, name: String) -> Result<(), AdminError> {
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
