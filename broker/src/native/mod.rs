//! The native protocol (docs/protocol.md) on the broker: decode a request (`protocol`
//! crate), call the typed broker API (`Shard`, `admin`), encode the answer. Nothing below
//! this adapter sees a native message.

mod groups;
mod ops;

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use engine::catalog::{Durability, TopicConfig};
use protocol::codec::{decode_request, encode_response};
use protocol::messages::{
    CommitOffset, ErrorCode, FetchPartitionResult, FetchedOffset, ListOffsetsResult, OffsetSpec, PartitionMetadata,
    ProducePartitionResult, ReplicaFetchResult, Request, Response, ShardInfo, TopicMetadata, TopicSettings,
};

use crate::admin;
use crate::broker::{accept_loop, Service};
use crate::calls::OffsetsCommit;
use crate::error::{AdminError, CallError, PartitionError};
use crate::groups::offsets::OffsetToCommit;
use crate::groups::CommitError;
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::net::{serve_connection, Answer, Decoded, Protocol};
use crate::order::{AppendOrder, Turn};
use crate::partition::{Acks, OffsetQuery, TopicPartition};
use crate::replica::serve::ReplicaFetchPartition;
use crate::shard::{join_all, FetchPartition, Shard};

/// What every shard's native listener needs to know.
#[derive(Debug, Clone)]
pub struct NativeSettings {
    /// Every shard's own listener address, advertised in Metadata.
    pub shard_addresses: Vec<String>,
}

/// The native protocol's listeners: a `Service` for `Broker::start`.
pub struct NativeService {
    settings: Arc<NativeSettings>,
}

impl NativeService {
    pub fn new(settings: NativeSettings) -> NativeService {
        NativeService { settings: Arc::new(settings) }
    }
}

impl Service for NativeService {
    fn serve(
        &self,
        shard: Rc<Shard>,
        listener: glommio::net::TcpListener,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        let protocol = Rc::new(Native { settings: self.settings.clone() });
        Box::pin(accept_loop(shard, listener, move |shard, stream| serve_connection(shard, protocol.clone(), stream)))
    }
}

/// The native protocol on one shard.
pub struct Native {
    settings: Arc<NativeSettings>,
}

/// A decoded native request and its correlation id.
pub struct NativeRequest {
    correlation_id: u32,
    request: Request,
}

impl Protocol for Native {
    type Request = NativeRequest;

    fn decode(&self, shard: &Shard, frame: Bytes) -> Decoded<NativeRequest> {
        match decode_request(frame) {
            Ok((correlation_id, request)) => Decoded::Request(NativeRequest { correlation_id, request }),
            Err(e) => {
                shard.metrics().malformed_frame();
                let Some(correlation_id) = e.correlation_id() else {
                    return Decoded::Close("undecodable frame");
                };
                tracing::debug!(error = %e, "malformed request");
                Decoded::Answer(encode_response(correlation_id, &Response::status(e.error_code(), e.to_string())))
            }
        }
    }

    fn turns(&self, request: &NativeRequest, order: &AppendOrder) -> Vec<Turn> {
        match &request.request {
            Request::Produce { partitions, .. } => {
                partitions.iter().map(|p| order.take(&p.topic, p.partition)).collect()
            }
            _ => Vec::new(),
        }
    }

    async fn serve(self: Rc<Self>, shard: Rc<Shard>, request: NativeRequest, turns: Vec<Turn>) -> Answer {
        let NativeRequest { correlation_id, request } = request;
        let span = tracing::debug_span!("native_request", correlation_id);
        let _enter = span.enter();
        let response = match request {
            Request::Metadata { topics, with_offsets } => Some(self.metadata(&shard, topics, with_offsets).await),
            Request::Produce { acks, timeout_ms: _, partitions } => {
                let response = produce(&shard, acks, partitions, turns).await;
                (acks != protocol::messages::Acks::None).then_some(response)
            }
            Request::Fetch { wait_ms_max, bytes_min, bytes_max, partitions } => {
                Some(fetch(&shard, wait_ms_max, bytes_min, bytes_max, partitions).await)
            }
            Request::ListOffsets { partitions } => Some(list_offsets(&shard, partitions).await),
            Request::CreateTopic { name, partitions, settings } => Some(match topic_config(&settings) {
                Ok(config) => {
                    let replication = admin::Replication {
                        factor: settings.replication_factor,
                        min_insync: settings.min_insync_replicas,
                        unclean_leader_election: settings.unclean_leader_election,
                        assignment: None,
                    };
                    admin_status(admin::create_topic_with(&shard, name, partitions, config, replication).await)
                }
                Err(message) => Response::status(ErrorCode::InvalidConfig, message),
            }),
            Request::DeleteTopic { name } => Some(admin_status(admin::delete_topic(&shard, name).await)),
            Request::CreatePartitions { name, total } => {
                Some(admin_status(admin::create_partitions(&shard, name, total).await))
            }
            Request::OffsetCommit { group, generation_id, member_id, offsets } => {
                Some(commit(&shard, group, generation_id, member_id, offsets).await)
            }
            Request::OffsetFetch { group, partitions } => Some(fetch_offsets(&shard, group, partitions).await),
            Request::JoinGroup { group, member_id, topics, session_timeout_ms, assignor } => {
                Some(groups::join(&shard, group, member_id, topics, session_timeout_ms, assignor).await)
            }
            Request::Heartbeat { group, generation_id, member_id } => {
                Some(groups::heartbeat(&shard, group, generation_id, member_id).await)
            }
            Request::LeaveGroup { group, member_id } => Some(groups::leave(&shard, group, member_id).await),
            // The operations requests (issue #13), for `shardlog group …` and `topic config …`.
            Request::ListGroups => Some(ops::list_groups(&shard).await),
            Request::DescribeGroup { group } => Some(ops::describe_group(&shard, group).await),
            Request::DeleteGroup { group } => Some(ops::delete_group(&shard, group).await),
            Request::DescribeTopicConfig { name } => Some(ops::describe_topic_config(&shard, &name)),
            Request::AlterTopicConfig { name, set, reset } => {
                Some(ops::alter_topic_config(&shard, name, set, reset).await)
            }
            Request::Reassign { topic, partition, replicas } => {
                Some(ops::reassign_partition(&shard, topic, partition, replicas).await)
            }
            Request::ListReassignments => Some(ops::list_reassignments(&shard)),
            Request::ElectLeader { topic, partition } => Some(ops::elect_leader(&shard, topic, partition).await),
            Request::Drain { node, draining } => Some(ops::drain(&shard, node, draining).await),
            Request::ReplicaFetch { replica_node, wait_ms_max, bytes_max, partitions } => {
                Some(replica_fetch(&shard, replica_node, wait_ms_max, bytes_max, partitions).await)
            }
        };
        Ok(response.map(|r| encode_response(correlation_id, &r)))
    }
}

impl Native {
    async fn metadata(&self, shard: &Rc<Shard>, topics: Option<Vec<String>>, with_offsets: bool) -> Response {
        let table = shard.topics();
        let names: Vec<String> = topics.unwrap_or_else(|| {
            let mut all: Vec<String> = table.topics.keys().cloned().collect();
            all.sort();
            all
        });
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(info) = table.topics.get(&name) else {
                out.push(TopicMetadata {
                    name,
                    error: ErrorCode::UnknownTopicOrPartition,
                    id: 0,
                    retention_ms: None,
                    retention_bytes: None,
                    segment_bytes: 0,
                    durability: String::new(),
                    partitions: Vec::new(),
                });
                continue;
            };
            let mut partitions = Vec::with_capacity(info.partitions.len());
            for p in &info.partitions {
                let bounds = if with_offsets {
                    shard.bounds(TopicPartition::new(&info.name, p.partition)).await.ok()
                } else {
                    None
                };
                let mut metadata = PartitionMetadata {
                    partition: p.partition,
                    shard: p.shard % table.shard_count.max(1),
                    log_start_offset: bounds.map(|b| b.log_start_offset.get()),
                    log_end_offset: bounds.map(|b| b.high_watermark.get()),
                    size_bytes: bounds.map(|b| b.size_bytes),
                    leader_address: None,
                    leader_node: -1,
                    leader_epoch: p.leader_epoch,
                    replica_nodes: Vec::new(),
                    isr_nodes: Vec::new(),
                    high_watermark: bounds.map(|b| b.high_watermark.get()),
                };
                let cluster = table.cluster.as_ref();
                if let Some((view, meta)) = cluster.and_then(|v| Some((v, v.partition(&info.name, p.partition)?))) {
                    let leader = meta.leader.and_then(|l| meta.replica_on(l));
                    metadata.shard = leader.map_or(metadata.shard, |r| r.shard);
                    metadata.leader_address = leader.and_then(|r| view.native_address(r)).map(str::to_owned);
                    metadata.leader_node = meta.leader.map_or(-1, |l| i32::try_from(l).unwrap_or(-1));
                    metadata.leader_epoch = meta.leader_epoch;
                    metadata.replica_nodes = meta.replicas.iter().map(|r| r.node).collect();
                    metadata.isr_nodes = meta.isr.clone();
                }
                partitions.push(metadata);
            }
            out.push(TopicMetadata {
                name: info.name.clone(),
                error: ErrorCode::None,
                id: info.id,
                retention_ms: info.config.retention_ms,
                retention_bytes: info.config.retention_bytes,
                segment_bytes: info.config.segment_bytes,
                durability: info.config.durability.to_string(),
                partitions,
            });
        }
        let shards = self
            .settings
            .shard_addresses
            .iter()
            .enumerate()
            .map(|(shard, address)| ShardInfo { shard: shard as u32, address: address.clone() })
            .collect();
        // In a cluster the controller node serves consumer groups (its coordinator shard).
        let coordinator_address = table.cluster.as_ref().and_then(|view| {
            let controller = view.controller?;
            view.broker(controller)?.native_addresses.first().cloned()
        });
        Response::Metadata { shards, topics: out, coordinator_address }
    }
}

/// A follower's fetch (cluster-internal): the partitions' answers in request order.
async fn replica_fetch(
    shard: &Rc<Shard>,
    replica_node: u32,
    wait_ms_max: u32,
    bytes_max: u32,
    partitions: Vec<protocol::messages::ReplicaFetchPartition>,
) -> Response {
    let requests: Vec<ReplicaFetchPartition> = partitions
        .iter()
        .map(|p| ReplicaFetchPartition {
            partition: TopicPartition::new(&p.topic, p.partition),
            leader_epoch: LeaderEpoch::new(p.leader_epoch),
            fetch_offset: wire_offset(p.fetch_offset).unwrap_or(Offset::MAX),
            durable_offset: wire_offset(p.durable_offset).unwrap_or(Offset::ZERO),
            last_fetched_epoch: p.last_fetched_epoch.map(LeaderEpoch::new),
            bytes_max: p.bytes_max,
            log_start_offset: wire_offset(p.log_start_offset).unwrap_or(Offset::ZERO),
        })
        .collect();
    let results = shard.replica_fetch(NodeId::new(replica_node), requests, wait_ms_max, bytes_max).await;
    let partitions = partitions
        .into_iter()
        .zip(results)
        .map(|(p, result)| match result {
            Ok(fetched) => ReplicaFetchResult {
                topic: p.topic,
                partition: p.partition,
                error: ErrorCode::None,
                high_watermark: fetched.high_watermark.get(),
                log_start_offset: fetched.log_start_offset.get(),
                log_end_offset: fetched.log_end_offset.get(),
                diverging: fetched.diverging.map(|(epoch, end)| (epoch.get(), end.get())),
                records: fetched.records,
            },
            Err(e) => ReplicaFetchResult {
                topic: p.topic,
                partition: p.partition,
                error: partition_code(&e),
                high_watermark: 0,
                // Out of range: the leader's bounds, so a follower below its log start can
                // start over there.
                log_start_offset: match &e {
                    PartitionError::OffsetOutOfRange { log_start, .. } => log_start.get(),
                    _ => 0,
                },
                log_end_offset: match &e {
                    PartitionError::OffsetOutOfRange { log_end, .. } => log_end.get(),
                    _ => 0,
                },
                diverging: None,
                records: Vec::new(),
            },
        })
        .collect();
    Response::ReplicaFetch { partitions }
}

async fn produce(
    shard: &Rc<Shard>,
    acks: protocol::messages::Acks,
    partitions: Vec<protocol::messages::ProducePartition>,
    turns: Vec<Turn>,
) -> Response {
    let acks = match acks {
        protocol::messages::Acks::None => Acks::None,
        protocol::messages::Acks::Leader => Acks::Leader,
        protocol::messages::Acks::Durable => Acks::Durable,
    };
    let turns = turns.into_iter().chain(std::iter::repeat_with(Turn::unordered));
    let calls = partitions.into_iter().zip(turns).map(|(p, turn)| {
        let shard = shard.clone();
        async move {
            let id = TopicPartition::new(p.topic, p.partition);
            match shard.produce(id.clone(), p.batches, acks, turn).await {
                Ok(appended) => ProducePartitionResult {
                    topic: id.topic,
                    partition: id.partition,
                    error: ErrorCode::None,
                    message: String::new(),
                    base_offsets: appended.base_offsets.iter().map(|o| o.get()).collect(),
                    log_end_offset: appended.log_end_offset.get(),
                },
                Err(e) => ProducePartitionResult {
                    topic: id.topic,
                    partition: id.partition,
                    error: partition_code(&e),
                    message: e.to_string(),
                    base_offsets: Vec::new(),
                    log_end_offset: 0,
                },
            }
        }
    });
    Response::Produce { partitions: join_all(calls).await }
}

async fn fetch(
    shard: &Rc<Shard>,
    wait_ms_max: u32,
    bytes_min: u32,
    bytes_max: u32,
    partitions: Vec<protocol::messages::FetchPartition>,
) -> Response {
    // An offset beyond any Kafka offset (i64::MAX) is out of every partition's range; it is
    // answered without asking the partition.
    let wanted: Vec<FetchPartition> = partitions
        .iter()
        .filter_map(|p| {
            Some(FetchPartition {
                partition: TopicPartition::new(&p.topic, p.partition),
                offset: wire_offset(p.offset)?,
                bytes_max: p.bytes_max,
            })
        })
        .collect();
    let mut results = shard.fetch(wanted, bytes_min, bytes_max, wait_ms_max).await.into_iter();
    let partitions = partitions
        .into_iter()
        .map(|p| {
            let result = match wire_offset(p.offset) {
                Some(_) => results.next().unwrap_or(Err(PartitionError::ShuttingDown)),
                None => Err(PartitionError::OffsetOutOfRange {
                    offset: Offset::MAX,
                    log_start: Offset::ZERO,
                    log_end: Offset::ZERO,
                }),
            };
            (p, result)
        })
        .map(|(p, result)| match result {
            Ok(read) => FetchPartitionResult {
                topic: p.topic,
                partition: p.partition,
                error: ErrorCode::None,
                log_start_offset: read.bounds.log_start_offset.get(),
                log_end_offset: read.bounds.high_watermark.get(),
                next_offset: read.next_offset.get(),
                records: read.chunks,
            },
            Err(e) => {
                let (log_start_offset, log_end_offset) = match &e {
                    PartitionError::OffsetOutOfRange { log_start, log_end, .. } => (log_start.get(), log_end.get()),
                    _ => (0, 0),
                };
                FetchPartitionResult {
                    topic: p.topic,
                    partition: p.partition,
                    error: partition_code(&e),
                    log_start_offset,
                    log_end_offset,
                    next_offset: p.offset,
                    records: Vec::new(),
                }
            }
        })
        .collect();
    Response::Fetch { partitions }
}

async fn list_offsets(shard: &Rc<Shard>, partitions: Vec<protocol::messages::ListOffsetsPartition>) -> Response {
    let calls = partitions.into_iter().map(|p| {
        let shard = shard.clone();
        async move {
            let query = match p.spec {
                OffsetSpec::Earliest => OffsetQuery::Earliest,
                OffsetSpec::Latest => OffsetQuery::Latest,
                OffsetSpec::Timestamp(ts) => OffsetQuery::Timestamp(ts),
            };
            let (error, offset) = match shard.list_offset(TopicPartition::new(&p.topic, p.partition), query).await {
                Ok(listed) => (ErrorCode::None, listed.offset.map_or(-1, Offset::to_wire)),
                Err(e) => (partition_code(&e), -1),
            };
            ListOffsetsResult { topic: p.topic, partition: p.partition, error, offset }
        }
    });
    Response::ListOffsets { partitions: join_all(calls).await }
}

async fn commit(
    shard: &Rc<Shard>,
    group: String,
    generation: i32,
    member_id: String,
    offsets: Vec<CommitOffset>,
) -> Response {
    let named: Vec<(String, u32)> = offsets.iter().map(|o| (o.topic.clone(), o.partition)).collect();
    // An offset beyond i64::MAX is kept out of the store and reported (Kafka's offsets are i64).
    let valid: Vec<bool> = offsets.iter().map(|o| wire_offset(o.offset).is_some()).collect();
    let offsets = offsets
        .into_iter()
        .filter_map(|o| {
            Some(OffsetToCommit {
                offset: wire_offset(o.offset)?,
                partition: TopicPartition::new(o.topic, o.partition),
                metadata: o.metadata,
                leader_epoch: None,
            })
        })
        .collect();
    // Native commits without a generation are standalone (tools, the crash loop's committer).
    let mut results = shard.commit_offsets(OffsetsCommit { group, generation, member_id, offsets }).await.into_iter();
    let partitions = named
        .into_iter()
        .zip(valid)
        .map(|((topic, partition), valid)| {
            let error = match valid {
                false => ErrorCode::InvalidOffset,
                true => results
                    .next()
                    .map_or(ErrorCode::Internal, |r| r.map_or_else(|e| commit_code(&e), |()| ErrorCode::None)),
            };
            protocol::messages::PartitionError { topic, partition, error }
        })
        .collect();
    Response::OffsetCommit { partitions }
}

async fn fetch_offsets(
    shard: &Rc<Shard>,
    group: String,
    partitions: Option<Vec<protocol::messages::TopicPartition>>,
) -> Response {
    if !shard.coordinates_groups() {
        let error = ErrorCode::NotCoordinator;
        return Response::OffsetFetch { error, offsets: Vec::new() };
    }
    let partitions =
        partitions.map(|list| list.into_iter().map(|tp| TopicPartition::new(tp.topic, tp.partition)).collect());
    match shard.fetch_offsets(group, partitions).await {
        Ok(offsets) => Response::OffsetFetch {
            error: ErrorCode::None,
            offsets: offsets
                .into_iter()
                .map(|(tp, committed)| FetchedOffset {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset: committed.as_ref().map_or(-1, |c| c.offset.to_wire()),
                    metadata: committed.map(|c| c.metadata).unwrap_or_default(),
                    error: ErrorCode::None,
                })
                .collect(),
        },
        Err(e) => Response::OffsetFetch { error: call_code(e), offsets: Vec::new() },
    }
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

fn admin_status(result: Result<(), AdminError>) -> Response {
    match result {
        Ok(()) => Response::ok(),
        Err(e) => {
            let code = match &e {
                AdminError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
                AdminError::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
                AdminError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
                AdminError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
                AdminError::InvalidConfig { .. } | AdminError::InvalidReplicationFactor { .. } => {
                    ErrorCode::InvalidConfig
                }
                AdminError::Call(call) => call_code(*call),
                AdminError::Cluster(_) => ErrorCode::RequestTimedOut,
                AdminError::NotACluster
                | AdminError::InvalidReplicaAssignment { .. }
                | AdminError::NoReassignmentInProgress { .. }
                | AdminError::ElectionNotNeeded { .. }
                | AdminError::PreferredLeaderNotAvailable { .. } => ErrorCode::ReassignmentRefused,
                _ => ErrorCode::StorageError,
            };
            Response::status(code, e.to_string())
        }
    }
}

/// A native (u64) offset as an `Offset`; `None` beyond i64::MAX, which no log reaches.
fn wire_offset(offset: u64) -> Option<Offset> {
    i64::try_from(offset).ok().and_then(Offset::from_wire)
}

fn call_code(e: CallError) -> ErrorCode {
    match e {
        CallError::TimedOut { .. } => ErrorCode::RequestTimedOut,
        _ => ErrorCode::ShuttingDown,
    }
}

/// The native error code for a partition error.
pub fn partition_code(e: &PartitionError) -> ErrorCode {
    match e {
        PartitionError::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        PartitionError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        PartitionError::InvalidBatch { .. } | PartitionError::Producer(_) => ErrorCode::CorruptBatch,
        PartitionError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        PartitionError::DiskFull { .. } => ErrorCode::DiskFull,
        PartitionError::Corrupt { .. } => ErrorCode::CorruptStoredData,
        PartitionError::ShuttingDown => ErrorCode::ShuttingDown,
        PartitionError::Call(call) => call_code(*call),
        PartitionError::NotLeader { .. } => ErrorCode::NotLeaderOrFollower,
        PartitionError::ReplicationTimedOut { .. } => ErrorCode::RequestTimedOut,
        PartitionError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
        PartitionError::NotEnoughReplicasAfterAppend { .. } => ErrorCode::NotEnoughReplicasAfterAppend,
        PartitionError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
        PartitionError::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
        _ => ErrorCode::StorageError,
    }
}

fn commit_code(e: &CommitError) -> ErrorCode {
    match e {
        CommitError::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        CommitError::InvalidGroupId { .. } => ErrorCode::InvalidGroupId,
        CommitError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        CommitError::InvalidOffset { .. } => ErrorCode::InvalidOffset,
        CommitError::Group(g) => groups::group_code(*g),
        CommitError::Call(call) => call_code(*call),
        _ => ErrorCode::StorageError,
    }
}
