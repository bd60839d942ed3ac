//! Shard 0's extra duties: the catalog (create / delete topics, add partitions) and consumer
//! groups (membership, assignment, committed offsets). Every other shard forwards these
//! requests here, so each has exactly one writer and needs no lock.
//!
//! Admin changes run one at a time. Order for a new topic: persist the catalog, open the
//! partitions on their owning shards, then publish the new topic table — so a request routed
//! by the new table always finds its partition open.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use engine::catalog::{Catalog, CatalogError, Durability, TopicConfig, TopicInfo};
use engine::group_offsets::{GroupOffsets, GroupOffsetsError, OffsetCommit};
use glommio::sync::Semaphore;

use crate::groups::Groups;
use crate::router::{ShardRequest, ShardResponse};
use crate::shard::{now_ms, Shard};
use crate::topics::TopicTable;
use protocol::messages::{
    CommitOffset, ErrorCode, FetchedOffset, PartitionError, Request, Response, TopicPartition, TopicSettings,
};

pub struct Coordinator {
    /// `None` only while an admin change runs on the blocking pool.
    catalog: RefCell<Option<Catalog>>,
    admin: Semaphore,
    offsets: GroupOffsets,
    pub groups: Rc<Groups>,
}

impl Coordinator {
    pub fn new(catalog: Catalog, offsets: GroupOffsets) -> Coordinator {
        Coordinator {
            catalog: RefCell::new(Some(catalog)),
            admin: Semaphore::new(1),
            offsets,
            groups: Rc::new(Groups::default()),
        }
    }

    pub async fn close(&self) {
        if let Err(e) = self.offsets.close().await {
            tracing::error!(error = %e, "closing group offsets failed");
        }
    }

    pub async fn handle(&self, shard: &Rc<Shard>, request: Request) -> Response {
        match request {
            Request::CreateTopic { name, partitions, settings } => {
                self.create_topic(shard, name, partitions, settings).await
            }
            Request::DeleteTopic { name } => self.delete_topic(shard, name).await,
            Request::CreatePartitions { name, total } => self.add_partitions(shard, name, total).await,
            Request::OffsetCommit { group, generation_id, member_id, offsets } => {
                self.commit(shard, group, generation_id, member_id, offsets).await
            }
            Request::OffsetFetch { group, partitions } => self.fetch_offsets(group, partitions),
            Request::JoinGroup { group, member_id, topics, session_timeout_ms, assignor } => {
                let table = shard.topics.load_full();
                self.groups.join(&table, group, member_id, topics, session_timeout_ms, assignor)
            }
            Request::Heartbeat { group, generation_id, member_id } => {
                self.groups.heartbeat(&group, generation_id, &member_id)
            }
            Request::LeaveGroup { group, member_id } => self.groups.leave(&shard.topics.load(), &group, &member_id),
            other => Response::status(ErrorCode::UnsupportedRequest, format!("not a coordinator request: {other:?}")),
        }
    }

    /// Runs a catalog change on the blocking pool (it fsyncs), one at a time.
    async fn change_catalog<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<(T, TopicTable), CatalogError> {
        let Some(mut catalog) = self.catalog.borrow_mut().take() else {
            return Err(CatalogError::InvalidConfig { reason: "catalog busy".into() });
        };
        let (catalog, result) = glommio::executor()
            .spawn_blocking(move || {
                let result = change(&mut catalog);
                (catalog, result)
            })
            .await;
        let table = TopicTable::from_catalog(&catalog);
        *self.catalog.borrow_mut() = Some(catalog);
        result.map(|t| (t, table))
    }

    async fn create_topic(
        &self,
        shard: &Rc<Shard>,
        name: String,
        partitions: u32,
        settings: TopicSettings,
    ) -> Response {
        let _permit = self.admin.acquire_permit(1).await;
        let config = match topic_config(&settings) {
            Ok(config) => config,
            Err(message) => return Response::status(ErrorCode::InvalidConfig, message),
        };
        let created = self.change_catalog(move |c| c.create_topic(&name, partitions, config)).await;
        let (info, table) = match created {
            Ok(ok) => ok,
            Err(e) => return catalog_error(e),
        };
        let all: Vec<u32> = (0..info.partitions.len() as u32).collect();
        if let Err(message) = open_on_owners(shard, &info, &all, table.shard_count).await {
            return Response::status(ErrorCode::StorageError, message);
        }
        shard.topics.store(Arc::new(table));
        tracing::info!(topic = %info.name, partitions = info.partitions.len(), "topic created");
        Response::ok()
    }

    async fn add_partitions(&self, shard: &Rc<Shard>, name: String, total: u32) -> Response {
        let _permit = self.admin.acquire_permit(1).await;
        let before = shard.topics.load().topics.get(&name).map_or(0, |t| t.partitions.len() as u32);
        let grown = self.change_catalog(move |c| c.add_partitions(&name, total)).await;
        let (info, table) = match grown {
            Ok(ok) => ok,
            Err(e) => return catalog_error(e),
        };
        let new: Vec<u32> = (before..info.partitions.len() as u32).collect();
        if let Err(message) = open_on_owners(shard, &info, &new, table.shard_count).await {
            return Response::status(ErrorCode::StorageError, message);
        }
        shard.topics.store(Arc::new(table));
        self.groups.topic_changed(&shard.topics.load(), &info.name);
        Response::ok()
    }

    async fn delete_topic(&self, shard: &Rc<Shard>, name: String) -> Response {
        let _permit = self.admin.acquire_permit(1).await;
        let deleted = self.change_catalog(move |c| c.delete_topic(&name)).await;
        let (info, table) = match deleted {
            Ok(ok) => ok,
            Err(e) => return catalog_error(e),
        };
        let shard_count = table.shard_count;
        // Unroute first, then close and remove the logs.
        shard.topics.store(Arc::new(table));
        for (owner, partitions) in by_owner(&info, &(0..info.partitions.len() as u32).collect::<Vec<_>>(), shard_count)
        {
            let request = ShardRequest::DropPartitions { topic: info.name.clone(), partitions };
            if let Ok(ShardResponse::Done(Err(message))) = shard.on_shard(owner, request).await {
                tracing::error!(topic = %info.name, %message, "removing partitions failed");
            }
        }
        if let Err(e) = self.offsets.delete_topic(&info.name, now_ms()).await {
            tracing::error!(topic = %info.name, error = %e, "forgetting committed offsets failed");
        }
        tracing::info!(topic = %info.name, "topic deleted");
        Response::ok()
    }

    async fn commit(
        &self,
        shard: &Rc<Shard>,
        group: String,
        generation_id: i32,
        member_id: String,
        offsets: Vec<CommitOffset>,
    ) -> Response {
        let table = shard.topics.load_full();
        // A commit from a group member must carry its current generation (Kafka's fencing of
        // zombie consumers); generation -1 is a standalone commit.
        let group_error = if generation_id >= 0 {
            self.groups.check_member(&group, generation_id, &member_id)
        } else {
            ErrorCode::None
        };
        let mut results = Vec::with_capacity(offsets.len());
        let mut commits = Vec::new();
        for o in offsets {
            let error = if !group_error.is_ok() {
                group_error
            } else if table.owner(&o.topic, o.partition).is_none() {
                ErrorCode::UnknownTopicOrPartition
            } else {
                ErrorCode::None
            };
            if error.is_ok() {
                commits.push(OffsetCommit {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                    metadata: o.metadata,
                });
            }
            results.push(PartitionError { topic: o.topic, partition: o.partition, error });
        }
        if let Err(e) = self.offsets.commit(&group, &commits, now_ms()).await {
            let code = match e {
                GroupOffsetsError::InvalidGroup { .. } => ErrorCode::InvalidGroupId,
                GroupOffsetsError::InvalidTopic(_) => ErrorCode::InvalidTopicName,
                GroupOffsetsError::MetadataTooLarge { .. } | GroupOffsetsError::OffsetTooLarge { .. } => {
                    ErrorCode::InvalidOffset
                }
                _ => ErrorCode::StorageError,
            };
            for r in results.iter_mut().filter(|r| r.error.is_ok()) {
                r.error = code;
            }
        }
        Response::OffsetCommit { partitions: results }
    }

    fn fetch_offsets(&self, group: String, partitions: Option<Vec<TopicPartition>>) -> Response {
        let offsets = match partitions {
            Some(list) => list
                .into_iter()
                .map(|tp| {
                    let committed = self.offsets.fetch(&group, &tp.topic, tp.partition);
                    FetchedOffset {
                        offset: committed.as_ref().map_or(-1, |c| c.offset as i64),
                        metadata: committed.map(|c| c.metadata).unwrap_or_default(),
                        topic: tp.topic,
                        partition: tp.partition,
                        error: ErrorCode::None,
                    }
                })
                .collect(),
            None => self
                .offsets
                .fetch_group(&group)
                .into_iter()
                .map(|(topic, partition, c)| FetchedOffset {
                    topic,
                    partition,
                    offset: c.offset as i64,
                    metadata: c.metadata,
                    error: ErrorCode::None,
                })
                .collect(),
        };
        Response::OffsetFetch { error: ErrorCode::None, offsets }
    }
}

async fn open_on_owners(
    shard: &Rc<Shard>,
    info: &TopicInfo,
    partitions: &[u32],
    shard_count: u32,
) -> Result<(), String> {
    for (owner, partitions) in by_owner(info, partitions, shard_count) {
        let request =
            ShardRequest::OpenPartitions { topic: info.name.clone(), partitions, config: info.config.clone() };
        match shard.on_shard(owner, request).await? {
            ShardResponse::Done(result) => result?,
            other => return Err(format!("unexpected reply {other:?}")),
        }
    }
    Ok(())
}

fn by_owner(info: &TopicInfo, partitions: &[u32], shard_count: u32) -> BTreeMap<usize, Vec<u32>> {
    let mut owners: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &p in partitions {
        if let Some(pi) = info.partitions.get(p as usize) {
            owners.entry((pi.shard % shard_count.max(1)) as usize).or_default().push(p);
        }
    }
    owners
}

/// Broker defaults (`TopicConfig::default()`) overridden by what the request sets.
fn topic_config(settings: &TopicSettings) -> Result<TopicConfig, String> {
    let mut config = TopicConfig::default();
    if settings.retention_ms.is_some() {
        config.retention_ms = settings.retention_ms;
    }
    if settings.retention_bytes.is_some() {
        config.retention_bytes = settings.retention_bytes;
    }
    if let Some(segment_bytes) = settings.segment_bytes {
        config.segment_bytes = segment_bytes;
    }
    if settings.segment_ms.is_some() {
        config.segment_ms = settings.segment_ms;
    }
    if let Some(durability) = &settings.durability {
        config.durability = durability.parse::<Durability>()?;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn catalog_error(e: CatalogError) -> Response {
    let code = match &e {
        CatalogError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        CatalogError::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
        CatalogError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        CatalogError::InvalidPartitionCount { .. } => ErrorCode::InvalidPartitions,
        CatalogError::TooManyTopics { .. } | CatalogError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
        _ => ErrorCode::StorageError,
    };
    Response::status(code, e.to_string())
}
