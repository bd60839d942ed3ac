//! One shard: one glommio executor pinned to one core, owning a set of partition logs.
//!
//! Every append and read of a partition runs on its owning shard. A client request that names
//! partitions of other shards is split: local partitions are served here, the rest are
//! forwarded through the `Router` and the answers merged in request order.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use engine::catalog::{partition_dir_name, Durability, TopicConfig};
use engine::{AppendError, Log, LogConfig, ReadError};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::sync::Semaphore;

use crate::coordinator::Coordinator;
use crate::limits::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX, RETENTION_CHECK_INTERVAL_MS};
use crate::metrics::ShardMetrics;
use crate::order::{AppendOrder, Turn};
use crate::router::{Envelope, Router, RouterError, ShardRequest, ShardResponse};
use crate::topics::SharedTopics;
use protocol::messages::{
    Acks, ErrorCode, FetchPartition, FetchPartitionResult, ListOffsetsPartition, ListOffsetsResult, OffsetSpec,
    PartitionMetadata, ProducePartition, ProducePartitionResult, Request, Response, ShardInfo, TopicMetadata,
};

type PartitionKey = (String, u32);

pub struct Shard {
    pub id: usize,
    pub shard_count: usize,
    pub data_dir: PathBuf,
    pub topics: SharedTopics,
    logs: RefCell<HashMap<PartitionKey, Log>>,
    pub router: Router,
    /// Present on shard 0 only.
    pub coordinator: Option<Coordinator>,
    /// Bytes of request frames being served; see `limits::PRODUCE_MEMORY_BYTES_PER_SHARD_MAX`.
    pub request_memory: Rc<Semaphore>,
    pub metrics: ShardMetrics,
    /// Every shard's own listener address, advertised in Metadata.
    pub shard_addresses: Vec<String>,
    pub shutting_down: Cell<bool>,
    pub shutdown: event_listener::Event,
    /// `LogConfig::disk_free_floor_bytes` for every log this shard opens (`--disk-free-floor-bytes`).
    pub disk_free_floor_bytes: Cell<u64>,
    /// A produce found the disk full: run retention now rather than at the next interval.
    space_wanted: event_listener::Event,
    /// The Kafka listener's per-shard state, with `--kafka-listen`.
    pub kafka: std::cell::OnceCell<Rc<crate::kafka::KafkaShard>>,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        shard_count: usize,
        data_dir: PathBuf,
        topics: SharedTopics,
        router: Router,
        coordinator: Option<Coordinator>,
        request_memory_bytes: u64,
        shard_addresses: Vec<String>,
    ) -> Shard {
        Shard {
            id,
            shard_count,
            data_dir,
            topics,
            logs: RefCell::new(HashMap::new()),
            router,
            coordinator,
            request_memory: Rc::new(Semaphore::new(request_memory_bytes)),
            metrics: ShardMetrics::default(),
            shard_addresses,
            shutting_down: Cell::new(false),
            shutdown: event_listener::Event::new(),
            disk_free_floor_bytes: Cell::new(0),
            space_wanted: event_listener::Event::new(),
            kafka: std::cell::OnceCell::new(),
        }
    }

    fn log(&self, topic: &str, partition: u32) -> Option<Log> {
        self.logs.borrow().get(&(topic.to_owned(), partition)).cloned()
    }

    /// Opens every partition the catalog assigns to this shard.
    pub async fn open_owned_partitions(&self) -> Result<(), String> {
        let table = self.topics.load_full();
        for info in table.topics.values() {
            let mine: Vec<u32> = info
                .partitions
                .iter()
                .filter(|p| (p.shard % table.shard_count.max(1)) as usize == self.id)
                .map(|p| p.partition)
                .collect();
            self.open_partitions(&info.name, &mine, &info.config).await?;
        }
        Ok(())
    }

    async fn open_partitions(&self, topic: &str, partitions: &[u32], config: &TopicConfig) -> Result<(), String> {
        for &partition in partitions {
            if self.log(topic, partition).is_some() {
                continue;
            }
            let dir = self.data_dir.join(partition_dir_name(topic, partition));
            let log_config =
                LogConfig { disk_free_floor_bytes: self.disk_free_floor_bytes.get(), ..LogConfig::from_topic(config) };
            let log = Log::open(&dir, log_config).await.map_err(|e| format!("opening {topic}-{partition}: {e}"))?;
            self.logs.borrow_mut().insert((topic.to_owned(), partition), log);
        }
        self.metrics.partitions.set(self.logs.borrow().len() as u64);
        Ok(())
    }

    async fn drop_partitions(&self, topic: &str, partitions: &[u32]) -> Result<(), String> {
        for &partition in partitions {
            let log = self.logs.borrow_mut().remove(&(topic.to_owned(), partition));
            match log {
                Some(log) => log.delete().await.map_err(|e| format!("deleting {topic}-{partition}: {e}"))?,
                None => {
                    // Not open (e.g. failed earlier): still remove any directory left behind.
                    let dir = self.data_dir.join(partition_dir_name(topic, partition));
                    let _ = glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
                }
            }
        }
        self.metrics.partitions.set(self.logs.borrow().len() as u64);
        Ok(())
    }

    /// Closes every log cleanly (graceful shutdown).
    pub async fn close_all(&self) {
        let logs: Vec<(PartitionKey, Log)> = self.logs.borrow_mut().drain().collect();
        for ((topic, partition), log) in logs {
            if let Err(e) = log.close().await {
                tracing::error!(shard = self.id, %topic, partition, error = %e, "closing log failed");
            }
        }
        if let Some(coordinator) = &self.coordinator {
            coordinator.close().await;
        }
    }

    /// This shard's counters, with the fdatasync latency of all its logs merged.
    pub fn metrics_snapshot(&self) -> crate::metrics::ShardMetricsSnapshot {
        let mut fdatasync = engine::latency::LatencyHistogram::default();
        for log in self.logs.borrow().values() {
            fdatasync.merge(&log.stats().sync_latency);
        }
        self.metrics.snapshot(self.id, fdatasync)
    }

    /// Retention on every partition of this shard, forever (until shutdown): every
    /// `RETENTION_CHECK_INTERVAL_MS`, and at once when a produce found the disk full, so that
    /// producers get going again as soon as retention can free space.
    pub async fn retention_loop(self: Rc<Self>) {
        while !self.shutting_down.get() {
            let space_wanted = self.space_wanted.listen();
            futures_lite::future::or(space_wanted, async {
                glommio::timer::sleep(Duration::from_millis(RETENTION_CHECK_INTERVAL_MS)).await;
            })
            .await;
            let logs: Vec<Log> = self.logs.borrow().values().cloned().collect();
            for log in logs {
                if let Err(e) = log.apply_retention(now_ms()).await {
                    tracing::warn!(shard = self.id, dir = %log.dir().display(), error = %e, "retention failed");
                }
            }
        }
    }

    // ---- client requests -------------------------------------------------------------

    /// Serves one client request. `None` means no response is sent (Produce with acks=none).
    /// A Produce's `turns` (one per partition, taken by the connection as it read the request;
    /// see `order.rs`) keep its appends in order behind the connection's earlier requests.
    pub async fn handle(self: &Rc<Self>, request: Request, turns: Vec<Turn>) -> Option<Response> {
        match request {
            Request::Metadata { topics, with_offsets } => Some(self.metadata(topics, with_offsets).await),
            Request::Produce { acks, timeout_ms: _, partitions } => {
                let response = self.produce(acks, partitions, turns).await;
                (acks != Acks::None).then_some(response)
            }
            Request::Fetch { wait_ms_max, bytes_min, bytes_max, partitions } => {
                Some(self.fetch(wait_ms_max, bytes_min, bytes_max, partitions).await)
            }
            Request::ListOffsets { partitions } => Some(self.list_offsets(partitions).await),
            other => Some(self.coordinator_call(other).await),
        }
    }

    pub(crate) async fn coordinator_call(self: &Rc<Self>, request: Request) -> Response {
        if let Some(coordinator) = &self.coordinator {
            return coordinator.handle(self, request).await;
        }
        match self.router.call(0, ShardRequest::Coordinator(request)).await {
            Ok(ShardResponse::Coordinator(response)) => response,
            Ok(other) => Response::status(ErrorCode::Internal, format!("unexpected reply {other:?}")),
            Err(e) => Response::status(ErrorCode::ShuttingDown, e.to_string()),
        }
    }

    async fn metadata(self: &Rc<Self>, topics: Option<Vec<String>>, with_offsets: bool) -> Response {
        let table = self.topics.load_full();
        let names: Vec<String> = match topics {
            Some(names) => names,
            None => {
                let mut all: Vec<String> = table.topics.keys().cloned().collect();
                all.sort();
                all
            }
        };
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
                let shard = (p.shard % table.shard_count.max(1)) as usize;
                let stats =
                    if with_offsets { self.partition_stats(shard, &info.name, p.partition).await } else { None };
                partitions.push(PartitionMetadata {
                    partition: p.partition,
                    shard: shard as u32,
                    log_start_offset: stats.map(|s| s.0),
                    log_end_offset: stats.map(|s| s.1),
                    size_bytes: stats.map(|s| s.2),
                });
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
            .shard_addresses
            .iter()
            .enumerate()
            .map(|(shard, address)| ShardInfo { shard: shard as u32, address: address.clone() })
            .collect();
        Response::Metadata { shards, topics: out }
    }

    async fn partition_stats(&self, shard: usize, topic: &str, partition: u32) -> Option<(u64, u64, u64)> {
        if shard == self.id {
            return self.local_stats(topic, partition);
        }
        match self.router.call(shard, ShardRequest::Stats { topic: topic.to_owned(), partition }).await {
            Ok(ShardResponse::Stats(stats)) => stats,
            _ => None,
        }
    }

    fn local_stats(&self, topic: &str, partition: u32) -> Option<(u64, u64, u64)> {
        let log = self.log(topic, partition)?;
        Some((log.log_start_offset(), log.log_end_offset(), log.stats().size_bytes))
    }

    async fn produce(self: &Rc<Self>, acks: Acks, partitions: Vec<ProducePartition>, turns: Vec<Turn>) -> Response {
        let table = self.topics.load_full();
        let turns = turns.into_iter().chain(std::iter::repeat_with(Turn::unordered));
        let calls = partitions.into_iter().zip(turns).map(|(p, turn)| {
            let shard = self.clone();
            let owner = table.owner(&p.topic, p.partition);
            async move {
                let Some(owner) = owner else {
                    return produce_error(
                        &p.topic,
                        p.partition,
                        ErrorCode::UnknownTopicOrPartition,
                        "unknown topic or partition",
                    );
                };
                if owner == shard.id {
                    return shard.produce_local(p.topic, p.partition, p.batches, acks, turn).await;
                }
                let (topic, partition) = (p.topic.clone(), p.partition);
                let request =
                    ShardRequest::Produce { topic: p.topic, partition: p.partition, batches: p.batches, acks };
                match shard.forward_in_turn(owner, request, turn).await {
                    Ok(ShardResponse::Produce(result)) => result,
                    Ok(_) | Err(_) => {
                        produce_error(&topic, partition, ErrorCode::ShuttingDown, "owner shard unreachable")
                    }
                }
            }
        });
        let results = join_all(calls).await;
        Response::Produce { partitions: results }
    }

    /// Sends a produce to the partition's owner once `turn` comes, and passes the turn as soon
    /// as the request is in the channel: the owner serves what one shard forwards in the order
    /// it arrives (`serve_peer`), so the next request need not wait for this one's reply.
    pub(crate) async fn forward_in_turn(
        &self,
        owner: usize,
        request: ShardRequest,
        mut turn: Turn,
    ) -> Result<ShardResponse, RouterError> {
        self.metrics.forwards_out.set(self.metrics.forwards_out.get() + 1);
        turn.wait().await;
        let sent = self.router.send(owner, request).await;
        turn.pass();
        sent?.reply().await
    }

    /// Appends to a partition this shard owns, once `turn` comes; passes the turn as soon as
    /// the batches have their offsets, before waiting for their durability.
    pub async fn produce_local(
        &self,
        topic: String,
        partition: u32,
        batches: Vec<Bytes>,
        acks: Acks,
        mut turn: Turn,
    ) -> ProducePartitionResult {
        turn.wait().await;
        let Some(log) = self.log(&topic, partition) else {
            return produce_error(&topic, partition, ErrorCode::UnknownTopicOrPartition, "partition is not open here");
        };
        let durability = match acks {
            Acks::Durable => Durability::Sync,
            Acks::Leader | Acks::None => self.topic_durability(&topic),
        };
        let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let started = std::time::Instant::now();
        let queued = log.append_queued(&batches).await;
        turn.pass();
        let result = match queued {
            Ok(queued) => queued.durable(durability).await,
            Err(e) => Err(e),
        };
        self.metrics.record_append(started.elapsed(), bytes, result.is_ok());
        match result {
            Ok(info) => ProducePartitionResult {
                topic,
                partition,
                error: ErrorCode::None,
                message: String::new(),
                base_offsets: info.base_offsets,
                log_end_offset: info.log_end_offset,
            },
            Err(e) => {
                let code = append_error_code(&e);
                if code == ErrorCode::DiskFull {
                    self.space_wanted.notify(usize::MAX);
                }
                if code == ErrorCode::StorageError {
                    tracing::error!(shard = self.id, %topic, partition, error = %e, "append failed");
                }
                produce_error(&topic, partition, code, &e.to_string())
            }
        }
    }

    fn topic_durability(&self, topic: &str) -> Durability {
        self.topics.load().topics.get(topic).map_or(Durability::Sync, |t| t.config.durability)
    }

    pub(crate) async fn fetch(
        self: &Rc<Self>,
        wait_ms_max: u32,
        bytes_min: u32,
        bytes_max: u32,
        partitions: Vec<FetchPartition>,
    ) -> Response {
        let bytes_max = bytes_max.min(FETCH_RESPONSE_BYTES_MAX);
        let wait_ms = wait_ms_max.min(FETCH_WAIT_MS_MAX);
        let mut results = self.fetch_once(&partitions, bytes_max).await;
        let fetched = |results: &[FetchPartitionResult]| -> usize {
            results.iter().map(|r| r.records.iter().map(Bytes::len).sum::<usize>()).sum()
        };
        let any_error = results.iter().any(|r| !r.error.is_ok());
        if wait_ms > 0 && !any_error && fetched(&results) < bytes_min.max(1) as usize {
            self.wait_any(&partitions, &results, wait_ms).await;
            results = self.fetch_once(&partitions, bytes_max).await;
        }
        self.metrics.fetch_requests.set(self.metrics.fetch_requests.get() + 1);
        self.metrics.fetch_bytes.set(self.metrics.fetch_bytes.get() + fetched(&results) as u64);
        Response::Fetch { partitions: results }
    }

    /// One pass over the partitions, in order, sharing `bytes_max` among them.
    async fn fetch_once(self: &Rc<Self>, partitions: &[FetchPartition], bytes_max: u32) -> Vec<FetchPartitionResult> {
        let mut results = Vec::with_capacity(partitions.len());
        let mut left = bytes_max;
        for p in partitions {
            let mut request = p.clone();
            request.bytes_max = p.bytes_max.min(left.max(1));
            let result = self.fetch_partition(request).await;
            let got: usize = result.records.iter().map(Bytes::len).sum();
            left = left.saturating_sub(got as u32);
            results.push(result);
        }
        results
    }

    async fn fetch_partition(self: &Rc<Self>, p: FetchPartition) -> FetchPartitionResult {
        let owner = self.topics.load().owner(&p.topic, p.partition);
        match owner {
            None => fetch_error(&p, ErrorCode::UnknownTopicOrPartition),
            Some(owner) if owner == self.id => self.fetch_local(p).await,
            Some(owner) => {
                self.metrics.forwards_out.set(self.metrics.forwards_out.get() + 1);
                let fallback = fetch_error(&p, ErrorCode::ShuttingDown);
                match self.router.call(owner, ShardRequest::Fetch(p)).await {
                    Ok(ShardResponse::Fetch(result)) => result,
                    _ => fallback,
                }
            }
        }
    }

    pub async fn fetch_local(&self, p: FetchPartition) -> FetchPartitionResult {
        let Some(log) = self.log(&p.topic, p.partition) else {
            return fetch_error(&p, ErrorCode::UnknownTopicOrPartition);
        };
        match log.read(p.offset, p.bytes_max).await {
            Ok(read) => FetchPartitionResult {
                topic: p.topic,
                partition: p.partition,
                error: ErrorCode::None,
                log_start_offset: log.log_start_offset(),
                log_end_offset: read.log_end_offset,
                next_offset: read.next_offset,
                records: read.chunks,
            },
            Err(e) => {
                let code = match &e {
                    ReadError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                    other if other.is_corrupt() => ErrorCode::CorruptStoredData,
                    _ => ErrorCode::StorageError,
                };
                if code != ErrorCode::OffsetOutOfRange {
                    tracing::error!(shard = self.id, topic = %p.topic, partition = p.partition, error = %e, "read failed");
                }
                let mut result = fetch_error(&p, code);
                result.log_start_offset = log.log_start_offset();
                result.log_end_offset = log.log_end_offset();
                result
            }
        }
    }

    /// Long-poll: resolves when any partition gets data past its fetch offset, or after
    /// `wait_ms`.
    async fn wait_any(self: &Rc<Self>, partitions: &[FetchPartition], results: &[FetchPartitionResult], wait_ms: u32) {
        let arrived = Rc::new(event_listener::Event::new());
        let listener = arrived.listen();
        let mut tasks = Vec::new();
        for (p, r) in partitions.iter().zip(results) {
            let shard = self.clone();
            let arrived = arrived.clone();
            let (topic, partition, offset) = (p.topic.clone(), p.partition, r.next_offset);
            tasks.push(glommio::spawn_local(async move {
                shard.wait_partition(topic, partition, offset, wait_ms).await;
                arrived.notify(usize::MAX);
            }));
        }
        futures_lite::future::or(listener, async {
            glommio::timer::sleep(Duration::from_millis(u64::from(wait_ms))).await;
        })
        .await;
        drop(tasks); // Cancels the other waiters.
    }

    async fn wait_partition(self: &Rc<Self>, topic: String, partition: u32, offset: u64, wait_ms: u32) {
        match self.topics.load().owner(&topic, partition) {
            Some(owner) if owner == self.id => self.wait_local(&topic, partition, offset, wait_ms).await,
            Some(owner) => {
                let _ = self.router.call(owner, ShardRequest::Wait { topic, partition, offset, wait_ms }).await;
            }
            None => glommio::timer::sleep(Duration::from_millis(u64::from(wait_ms))).await,
        }
    }

    pub async fn wait_local(&self, topic: &str, partition: u32, offset: u64, wait_ms: u32) {
        let Some(log) = self.log(topic, partition) else {
            return;
        };
        let shutdown = self.shutdown.listen();
        futures_lite::future::or(
            futures_lite::future::or(log.wait_for_offset(offset), async {
                glommio::timer::sleep(Duration::from_millis(u64::from(wait_ms))).await;
            }),
            shutdown,
        )
        .await;
    }

    pub(crate) async fn list_offsets(self: &Rc<Self>, partitions: Vec<ListOffsetsPartition>) -> Response {
        let table = self.topics.load_full();
        let calls = partitions.into_iter().map(|p| {
            let shard = self.clone();
            let owner = table.owner(&p.topic, p.partition);
            async move {
                match owner {
                    None => list_error(&p, ErrorCode::UnknownTopicOrPartition),
                    Some(owner) if owner == shard.id => shard.list_offsets_local(p).await,
                    Some(owner) => {
                        let fallback = list_error(&p, ErrorCode::ShuttingDown);
                        match shard.router.call(owner, ShardRequest::ListOffsets(p)).await {
                            Ok(ShardResponse::ListOffsets(result)) => result,
                            _ => fallback,
                        }
                    }
                }
            }
        });
        Response::ListOffsets { partitions: join_all(calls).await }
    }

    pub async fn list_offsets_local(&self, p: ListOffsetsPartition) -> ListOffsetsResult {
        let Some(log) = self.log(&p.topic, p.partition) else {
            return list_error(&p, ErrorCode::UnknownTopicOrPartition);
        };
        let offset = match p.spec {
            OffsetSpec::Earliest => Ok(log.log_start_offset() as i64),
            OffsetSpec::Latest => Ok(log.log_end_offset() as i64),
            OffsetSpec::Timestamp(ts) => log.offset_for_timestamp(ts).await.map(|o| o.map_or(-1, |o| o as i64)),
        };
        match offset {
            Ok(offset) => ListOffsetsResult { topic: p.topic, partition: p.partition, error: ErrorCode::None, offset },
            Err(_) => list_error(&p, ErrorCode::StorageError),
        }
    }

    // ---- requests from other shards ----------------------------------------------------

    /// Serves a request from another shard; `turn` orders a produce behind the ones that shard
    /// forwarded before it.
    async fn serve_shard_request(self: &Rc<Self>, request: ShardRequest, turn: Turn) -> ShardResponse {
        self.metrics.forwards_in.set(self.metrics.forwards_in.get() + 1);
        match request {
            ShardRequest::Produce { topic, partition, batches, acks } => {
                ShardResponse::Produce(self.produce_local(topic, partition, batches, acks, turn).await)
            }
            ShardRequest::Fetch(p) => ShardResponse::Fetch(self.fetch_local(p).await),
            ShardRequest::Wait { topic, partition, offset, wait_ms } => {
                self.wait_local(&topic, partition, offset, wait_ms).await;
                ShardResponse::Waited
            }
            ShardRequest::ListOffsets(p) => ShardResponse::ListOffsets(self.list_offsets_local(p).await),
            ShardRequest::Stats { topic, partition } => ShardResponse::Stats(self.local_stats(&topic, partition)),
            ShardRequest::OpenPartitions { topic, partitions, config } => {
                ShardResponse::Done(self.open_partitions(&topic, &partitions, &config).await)
            }
            ShardRequest::DropPartitions { topic, partitions } => {
                ShardResponse::Done(self.drop_partitions(&topic, &partitions).await)
            }
            ShardRequest::Coordinator(request) => ShardResponse::Coordinator(match &self.coordinator {
                Some(coordinator) => coordinator.handle(self, request).await,
                None => Response::status(ErrorCode::Internal, "not the coordinator shard"),
            }),
            ShardRequest::Metrics => ShardResponse::Metrics(Box::new(self.metrics_snapshot())),
            ShardRequest::Kafka(call) => ShardResponse::Kafka(crate::kafka::serve_shard_call(self, call, turn).await),
        }
    }

    /// Runs a partition operation on its owner (here or another shard), for the coordinator.
    pub async fn on_shard(self: &Rc<Self>, shard: usize, request: ShardRequest) -> Result<ShardResponse, String> {
        if shard == self.id {
            return Ok(Box::pin(self.serve_shard_request(request, Turn::unordered())).await);
        }
        self.router.call(shard, request).await.map_err(|e| e.to_string())
    }
}

/// Receives requests and replies from one peer shard, forever. Produces from the peer are
/// appended in the order they arrive (the order the peer's connections read them).
pub async fn serve_peer(shard: Rc<Shard>, receiver: ConnectedReceiver<Envelope>) {
    let order = AppendOrder::default();
    while let Some(envelope) = receiver.recv().await {
        match envelope {
            Envelope::Request { id, from, request } => {
                let turn = match request.produce_partition() {
                    Some((topic, partition)) => order.take(topic, partition),
                    None => Turn::unordered(),
                };
                let shard = shard.clone();
                glommio::spawn_local(async move {
                    let response = shard.serve_shard_request(request, turn).await;
                    shard.router.reply(from, id, response).await;
                })
                .detach();
            }
            Envelope::Response { id, response } => shard.router.complete(id, response),
        }
    }
}

/// Awaits futures concurrently on this executor, returning results in input order.
pub async fn join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let mut futures: Vec<F> = futures.into_iter().collect();
    if futures.len() == 1 {
        // The common single-partition request: no task to spawn.
        return match futures.pop() {
            Some(only) => vec![only.await],
            None => Vec::new(),
        };
    }
    let tasks: Vec<_> = futures.into_iter().map(glommio::spawn_local).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await);
    }
    out
}

fn append_error_code(e: &AppendError) -> ErrorCode {
    match e {
        AppendError::InvalidBatch { .. } | AppendError::Empty => ErrorCode::CorruptBatch,
        AppendError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
        AppendError::NoSpace(_) | AppendError::DiskFull { .. } => ErrorCode::DiskFull,
        AppendError::Closed => ErrorCode::ShuttingDown,
        _ => ErrorCode::StorageError,
    }
}

pub fn produce_error(topic: &str, partition: u32, error: ErrorCode, message: &str) -> ProducePartitionResult {
    ProducePartitionResult {
        topic: topic.to_owned(),
        partition,
        error,
        message: message.to_owned(),
        base_offsets: Vec::new(),
        log_end_offset: 0,
    }
}

fn fetch_error(p: &FetchPartition, error: ErrorCode) -> FetchPartitionResult {
    FetchPartitionResult {
        topic: p.topic.clone(),
        partition: p.partition,
        error,
        log_start_offset: 0,
        log_end_offset: 0,
        next_offset: p.offset,
        records: Vec::new(),
    }
}

fn list_error(p: &ListOffsetsPartition, error: ErrorCode) -> ListOffsetsResult {
    ListOffsetsResult { topic: p.topic.clone(), partition: p.partition, error, offset: -1 }
}
