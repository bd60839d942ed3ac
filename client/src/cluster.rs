//! [`Client`]: the metadata cache, one connection per shard, request routing and the typed
//! helpers for every request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use rustc_hash::FxHashMap;

use super::connection::{Connection, REQUEST_TIMEOUT_MS_DEFAULT};
use super::error::ClientError;
use super::join_all;
use protocol::messages::{
    Acks, Assignor, CommitOffset, ErrorCode, FetchPartition, FetchPartitionResult, FetchedOffset, GroupListing,
    GroupMember, ListOffsetsPartition, ListOffsetsResult, PartitionError, ProducePartition, ProducePartitionResult,
    ReassignmentEntry, Request, Response, ShardInfo, TopicConfigEntry, TopicMetadata, TopicPartition, TopicSettings,
};

/// How partition requests reach their partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Everything goes to the bootstrap address; the broker forwards to the owning shard.
    Forward,
    /// Each partition's Produce / Fetch / ListOffsets goes straight to its owning shard's own
    /// listener (advertised in Metadata): no cross-core hop in the broker.
    #[default]
    ShardAware,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub routing: Routing,
    /// How long a call waits for its response (a Fetch: this plus its long-poll wait).
    pub request_timeout_ms: u64,
    /// Cached metadata older than this is refreshed before it is used for partition counts.
    pub metadata_max_age_ms: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            routing: Routing::ShardAware,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            metadata_max_age_ms: 5 * 60 * 1000,
        }
    }
}

/// A Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub shards: Vec<ShardInfo>,
    pub topics: Vec<TopicMetadata>,
}

/// A successful JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub generation_id: i32,
    pub member_id: String,
    pub assignment: Vec<TopicPartition>,
}

/// Where a partition request is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    Bootstrap,
    Shard(u32),
    /// A cluster: the leader's shard (node, shard), at the address Metadata gave.
    Leader {
        node: u32,
        shard: u32,
    },
    /// A cluster: the node serving consumer groups.
    Coordinator,
}

#[derive(Debug, Default)]
struct MetadataCache {
    /// Shard id → the address a client connects to.
    shards: HashMap<u32, String>,
    /// Topic → the owning shard of each partition (index = partition). Looked up per produced
    /// record: a faster hasher than SipHash (topic names are the application's own).
    topics: FxHashMap<String, Vec<u32>>,
    /// A cluster: topic → each partition's leader (node, shard), `None` while none leads.
    leaders: HashMap<String, Vec<Option<(u32, u32)>>>,
    /// A cluster: (node, shard) → its native address.
    leader_addresses: HashMap<(u32, u32), String>,
    /// A cluster: the native address of the node serving groups.
    coordinator: Option<String>,
    refreshed: Option<Instant>,
    /// `partition_count` lookups left before it checks the cache's age again.
    lookups_until_age_check: u32,
}

/// `partition_count` checks the metadata cache's age once per this many lookups, not on every
/// produced record (a clock read each was ~2 % of the load generator's CPU): the cache may
/// outlive `metadata_max_age_ms` by up to this many lookups. Only when the max age is at
/// least `AGE_CHECK_SPARSE_MIN_MS`: a short one (a test waiting for a moved leader) is checked
/// on every lookup.
const LOOKUPS_PER_AGE_CHECK: u32 = 64;
const AGE_CHECK_SPARSE_MIN_MS: u64 = 60_000;

/// How long a shard whose own listener refused a connection is reached through the bootstrap
/// connection instead, before the client tries its listener again.
const SHARD_RETRY_AFTER: Duration = Duration::from_secs(10);

/// A client of one broker. Cheap to share behind an `Rc`; every method takes `&self`.
pub struct Client {
    bootstrap: String,
    options: ClientOptions,
    bootstrap_connection: RefCell<Option<Rc<Connection>>>,
    shard_connections: RefCell<HashMap<u32, Rc<Connection>>>,
    /// A cluster's connections to leaders' shards and to the group coordinator, by address.
    address_connections: RefCell<HashMap<String, Rc<Connection>>>,
    unreachable_shards: RefCell<HashMap<u32, Instant>>,
    /// One connect at a time, so concurrent callers share the new connection.
    connecting: Semaphore,
    metadata: RefCell<MetadataCache>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.bootstrap)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `bootstrap` (`host:port`) and loads the metadata of every topic.
    pub async fn connect(bootstrap: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let client = Client {
            bootstrap: bootstrap.to_owned(),
            options,
            bootstrap_connection: RefCell::new(None),
            shard_connections: RefCell::new(HashMap::new()),
            address_connections: RefCell::new(HashMap::new()),
            unreachable_shards: RefCell::new(HashMap::new()),
            connecting: Semaphore::new(1),
            metadata: RefCell::new(MetadataCache::default()),
        };
        client.connection(Route::Bootstrap).await?;
        client.refresh_metadata().await?;
        Ok(client)
    }

    /// A client that has not connected, with the given metadata cached (for tests).
    #[cfg(test)]
    pub(crate) fn offline(
        bootstrap: &str,
        options: ClientOptions,
        shards: &[ShardInfo],
        topics: &[TopicMetadata],
    ) -> Client {
        let client = Client {
            bootstrap: bootstrap.to_owned(),
            options,
            bootstrap_connection: RefCell::new(None),
            shard_connections: RefCell::new(HashMap::new()),
            address_connections: RefCell::new(HashMap::new()),
            unreachable_shards: RefCell::new(HashMap::new()),
            connecting: Semaphore::new(1),
            metadata: RefCell::new(MetadataCache::default()),
        };
        client.update_cache(shards, topics, true);
        client
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.options.request_timeout_ms.max(1))
    }

    // ---- metadata ------------------------------------------------------------------------

    /// Reloads the metadata of every topic into the cache.
    pub async fn refresh_metadata(&self) -> Result<(), ClientError> {
        self.metadata(None, false).await.map(|_| ())
    }

    /// Metadata of `topics` (`None`: every topic), with each partition's offsets and size if
    /// `with_offsets`. Unknown topics come back with `error: UnknownTopicOrPartition`. The
    /// cache learns the partitions and shards.
    pub async fn metadata(&self, topics: Option<Vec<String>>, with_offsets: bool) -> Result<Metadata, ClientError> {
        let all = topics.is_none();
        let response = self.call(Request::Metadata { topics, with_offsets }).await?;
        let Response::Metadata { shards, topics, coordinator_address } = response else {
            return Err(self.unexpected(&response, "Metadata"));
        };
        self.update_cache(&shards, &topics, all);
        self.metadata.borrow_mut().coordinator = coordinator_address.map(|a| self.reachable_address(&a));
        Ok(Metadata { shards, topics })
    }

    fn update_cache(&self, shards: &[ShardInfo], topics: &[TopicMetadata], all: bool) {
        let mut cache = self.metadata.borrow_mut();
        cache.shards = shards.iter().map(|s| (s.shard, self.reachable_address(&s.address))).collect();
        if all {
            cache.topics.clear();
            cache.leaders.clear();
        }
        for t in topics {
            if t.error.is_ok() {
                let mut owners = vec![0; t.partitions.len()];
                let mut leaders = vec![None; t.partitions.len()];
                let mut cluster = false;
                for p in &t.partitions {
                    if let Some(slot) = owners.get_mut(p.partition as usize) {
                        *slot = p.shard;
                    }
                    // A cluster names each partition's replicas, and its leader's address.
                    if p.replica_nodes.is_empty() {
                        continue;
                    }
                    cluster = true;
                    if let (Some(address), Ok(node)) = (&p.leader_address, u32::try_from(p.leader_node)) {
                        let address = self.reachable_address(address);
                        cache.leader_addresses.insert((node, p.shard), address);
                        if let Some(slot) = leaders.get_mut(p.partition as usize) {
                            *slot = Some((node, p.shard));
                        }
                    }
                }
                cache.topics.insert(t.name.clone(), owners);
                if cluster {
                    cache.leaders.insert(t.name.clone(), leaders);
                } else {
                    cache.leaders.remove(&t.name);
                }
            } else {
                cache.topics.remove(&t.name);
                cache.leaders.remove(&t.name);
            }
        }
        if all {
            cache.refreshed = Some(Instant::now());
        }
    }

    /// A shard listening on the unspecified address (0.0.0.0 / ::) advertises it as is; reach
    /// it at the bootstrap host instead.
    fn reachable_address(&self, advertised: &str) -> String {
        match advertised.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_unspecified() => match self.bootstrap.rsplit_once(':') {
                Some((host, _)) => format!("{host}:{}", addr.port()),
                None => advertised.to_owned(),
            },
            _ => advertised.to_owned(),
        }
    }

    /// Number of partitions of `topic`, from the cache (refreshed when the topic is unknown or
    /// the cache is older than `metadata_max_age_ms`).
    pub async fn partition_count(&self, topic: &str) -> Result<u32, ClientError> {
        // Called once per produced record: one lookup when the cache is fresh.
        let fresh = {
            let mut cache = self.metadata.borrow_mut();
            let fresh_cache = if cache.lookups_until_age_check > 0 {
                cache.lookups_until_age_check -= 1;
                cache.refreshed.is_some()
            } else {
                let max_age = Duration::from_millis(self.options.metadata_max_age_ms);
                let fresh = cache.refreshed.is_some_and(|at| at.elapsed() <= max_age);
                if fresh && self.options.metadata_max_age_ms >= AGE_CHECK_SPARSE_MIN_MS {
                    cache.lookups_until_age_check = LOOKUPS_PER_AGE_CHECK - 1;
                }
                fresh
            };
            cache.topics.get(topic).filter(|_| fresh_cache).map(|owners| owners.len() as u32)
        };
        if let Some(count) = fresh {
            return Ok(count);
        }
        self.refresh_metadata().await?;
        match self.metadata.borrow().topics.get(topic) {
            Some(owners) => Ok(owners.len() as u32),
            None => Err(ClientError::broker(ErrorCode::UnknownTopicOrPartition, topic)),
        }
    }

    /// Partitions of each topic (refreshing the cache for topics it does not know). Fails on
    /// the first unknown topic.
    pub async fn partitions(&self, topics: &[String]) -> Result<Vec<TopicPartition>, ClientError> {
        let mut out = Vec::new();
        for topic in topics {
            let n = self.partition_count(topic).await?;
            out.extend((0..n).map(|partition| TopicPartition { topic: topic.clone(), partition }));
        }
        Ok(out)
    }

    /// The owning shard of a partition, from the cache.
    pub fn shard_of(&self, topic: &str, partition: u32) -> Option<u32> {
        self.metadata.borrow().topics.get(topic)?.get(partition as usize).copied()
    }

    pub(crate) fn route(&self, topic: &str, partition: u32) -> Route {
        if self.options.routing == Routing::Forward {
            return Route::Bootstrap;
        }
        let leader = self.metadata.borrow().leaders.get(topic).and_then(|l| l.get(partition as usize).copied());
        match leader {
            Some(Some((node, shard))) => return Route::Leader { node, shard },
            // A cluster partition without a leader: the bootstrap node answers (an error the
            // caller retries after refreshing metadata).
            Some(None) => return Route::Bootstrap,
            None => {}
        }
        match self.shard_of(topic, partition) {
            Some(shard) => Route::Shard(shard),
            None => Route::Bootstrap, // The broker answers UnknownTopicOrPartition.
        }
    }

    // ---- connections -----------------------------------------------------------------------

    /// The connection for a route, opened (or reopened, if broken) on demand. A shard whose
    /// listener cannot be reached is served through the bootstrap connection for a while.
    pub(crate) async fn connection(&self, route: Route) -> Result<Rc<Connection>, ClientError> {
        let route = match route {
            Route::Shard(shard) if self.recently_unreachable(shard) => Route::Bootstrap,
            route => route,
        };
        if let Some(connection) = self.cached_connection(route) {
            return Ok(connection);
        }
        let permit = self.connecting.acquire_permit(1).await;
        if let Some(connection) = self.cached_connection(route) {
            return Ok(connection);
        }
        match route {
            Route::Bootstrap => {
                let connection =
                    Rc::new(Connection::connect_with_timeout(&self.bootstrap, self.request_timeout()).await?);
                *self.bootstrap_connection.borrow_mut() = Some(connection.clone());
                Ok(connection)
            }
            Route::Leader { .. } | Route::Coordinator => {
                let Some(address) = self.address_of(route) else {
                    drop(permit);
                    return Box::pin(self.connection(Route::Bootstrap)).await;
                };
                let connection = Rc::new(Connection::connect_with_timeout(&address, self.request_timeout()).await?);
                self.address_connections.borrow_mut().insert(address, connection.clone());
                Ok(connection)
            }
            Route::Shard(shard) => {
                let address = self.metadata.borrow().shards.get(&shard).cloned();
                let connected = match address {
                    Some(address) => Connection::connect_with_timeout(&address, self.request_timeout()).await,
                    None => Err(ClientError::InvalidArgument(format!("no address known for shard {shard}"))),
                };
                match connected {
                    Ok(connection) => {
                        let connection = Rc::new(connection);
                        self.shard_connections.borrow_mut().insert(shard, connection.clone());
                        self.unreachable_shards.borrow_mut().remove(&shard);
                        Ok(connection)
                    }
                    Err(error) => {
                        tracing::debug!(shard, %error, "shard listener unreachable; going through the bootstrap address");
                        self.unreachable_shards.borrow_mut().insert(shard, Instant::now());
                        drop(permit);
                        Box::pin(self.connection(Route::Bootstrap)).await
                    }
                }
            }
        }
    }

    fn cached_connection(&self, route: Route) -> Option<Rc<Connection>> {
        match route {
            Route::Bootstrap => self.bootstrap_connection.borrow().as_ref().filter(|c| !c.is_broken()).cloned(),
            Route::Shard(shard) => self.shard_connections.borrow().get(&shard).filter(|c| !c.is_broken()).cloned(),
            Route::Leader { .. } | Route::Coordinator => {
                let address = self.address_of(route)?;
                self.address_connections.borrow().get(&address).filter(|c| !c.is_broken()).cloned()
            }
        }
    }

    /// The address of a cluster route, from the cached metadata.
    fn address_of(&self, route: Route) -> Option<String> {
        let cache = self.metadata.borrow();
        match route {
            Route::Leader { node, shard } => cache.leader_addresses.get(&(node, shard)).cloned(),
            Route::Coordinator => cache.coordinator.clone(),
            Route::Bootstrap | Route::Shard(_) => None,
        }
    }

    /// A group request: to the cluster's group coordinator when Metadata named one (the
    /// bootstrap address otherwise); after NotCoordinator, once more after a metadata refresh.
    async fn group_call(&self, request: Request) -> Result<Response, ClientError> {
        let not_coordinator = |r: &Response| match r {
            Response::Status { error, .. }
            | Response::JoinGroup { error, .. }
            | Response::OffsetFetch { error, .. } => *error == ErrorCode::NotCoordinator,
            Response::OffsetCommit { partitions } => partitions.iter().any(|p| p.error == ErrorCode::NotCoordinator),
            _ => false,
        };
        let route = || if self.metadata.borrow().coordinator.is_some() { Route::Coordinator } else { Route::Bootstrap };
        let response = self.connection(route()).await?.call(request.clone()).await?;
        if !not_coordinator(&response) {
            return Ok(response);
        }
        self.refresh_metadata().await?;
        self.connection(route()).await?.call(request).await
    }

    fn recently_unreachable(&self, shard: u32) -> bool {
        self.unreachable_shards.borrow().get(&shard).is_some_and(|at| at.elapsed() < SHARD_RETRY_AFTER)
    }

    /// Sends a request over the bootstrap connection.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        self.connection(Route::Bootstrap).await?.call(request).await
    }

    async fn call_on(&self, route: Route, request: Request, timeout: Duration) -> Result<Response, ClientError> {
        self.connection(route).await?.call_with_timeout(request, timeout).await
    }

    /// Splits `items` by route, keeping each group in input order; groups are in order of
    /// first appearance. Each item keeps its input index.
    pub(crate) fn group_by_route<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> (&str, u32),
    ) -> Vec<(Route, Vec<usize>, Vec<T>)> {
        let mut groups: Vec<(Route, Vec<usize>, Vec<T>)> = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let (topic, partition) = key(&item);
            let route = self.route(topic, partition);
            match groups.iter_mut().find(|(r, _, _)| *r == route) {
                Some((_, indexes, group)) => {
                    indexes.push(index);
                    group.push(item);
                }
                None => groups.push((route, vec![index], vec![item])),
            }
        }
        groups
    }

    /// Sends one request per route concurrently and puts the per-partition results back in
    /// input order.
    async fn scatter<T, R>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> (&str, u32),
        timeout: Duration,
        request: impl Fn(Vec<T>) -> Request,
        results: impl Fn(Response) -> Result<Vec<R>, Response>,
        kind: &'static str,
    ) -> Result<Vec<R>, ClientError> {
        let total = items.len();
        let groups = self.group_by_route(items, key);
        let calls: Vec<_> = groups
            .into_iter()
            .map(|(route, indexes, group)| {
                let request = request(group);
                async move { (indexes, self.call_on(route, request, timeout).await) }
            })
            .collect();
        let mut merged: Vec<Option<R>> = (0..total).map(|_| None).collect();
        for (indexes, response) in join_all(calls).await {
            let response = response?;
            let list = results(response).map_err(|other| self.unexpected(&other, kind))?;
            if list.len() != indexes.len() {
                return Err(ClientError::protocol(
                    &self.bootstrap,
                    format!("{kind} response has {} partitions, the request {}", list.len(), indexes.len()),
                ));
            }
            for (index, result) in indexes.into_iter().zip(list) {
                merged[index] = Some(result);
            }
        }
        Ok(merged.into_iter().flatten().collect())
    }

    /// The error for a response of the wrong kind: the broker's error if it is a failed
    /// Status, a protocol error otherwise.
    fn unexpected(&self, response: &Response, expected: &str) -> ClientError {
        match response {
            Response::Status { error, message } if !error.is_ok() => ClientError::broker(*error, message.clone()),
            other => ClientError::protocol(&self.bootstrap, format!("expected a {expected} response, got {other:?}")),
        }
    }

    // ---- partition requests ----------------------------------------------------------------

    /// Appends batches. One request per owning shard, sent concurrently; the results are in
    /// the order of `partitions`, each with its own error code. With `Acks::None` nothing is
    /// answered and the result is empty once every request is written.
    pub async fn produce(
        &self,
        acks: Acks,
        partitions: Vec<ProducePartition>,
    ) -> Result<Vec<ProducePartitionResult>, ClientError> {
        let timeout_ms = self.options.request_timeout_ms.min(u64::from(u32::MAX)) as u32;
        if acks == Acks::None {
            let groups = self.group_by_route(partitions, |p| (&p.topic, p.partition));
            let sends: Vec<_> = groups
                .into_iter()
                .map(|(route, _, partitions)| async move {
                    let request = Request::Produce { acks, timeout_ms, partitions };
                    self.connection(route).await?.send_no_response(request).await
                })
                .collect();
            for sent in join_all(sends).await {
                sent?;
            }
            return Ok(Vec::new());
        }
        self.scatter(
            partitions,
            |p| (&p.topic, p.partition),
            self.request_timeout(),
            |partitions| Request::Produce { acks, timeout_ms, partitions },
            |response| match response {
                Response::Produce { partitions } => Ok(partitions),
                other => Err(other),
            },
            "Produce",
        )
        .await
    }

    /// Reads from each partition at its offset, waiting up to `wait_ms_max` for at least
    /// `bytes_min` bytes. One request per owning shard, concurrently (each shard waits on its
    /// own); results in the order of `partitions`.
    pub async fn fetch(
        &self,
        wait_ms_max: u32,
        bytes_min: u32,
        bytes_max: u32,
        partitions: Vec<FetchPartition>,
    ) -> Result<Vec<FetchPartitionResult>, ClientError> {
        let timeout = self.request_timeout() + Duration::from_millis(u64::from(wait_ms_max));
        self.scatter(
            partitions,
            |p| (&p.topic, p.partition),
            timeout,
            |partitions| Request::Fetch { wait_ms_max, bytes_min, bytes_max, partitions },
            |response| match response {
                Response::Fetch { partitions } => Ok(partitions),
                other => Err(other),
            },
            "Fetch",
        )
        .await
    }

    /// Earliest / latest / by-timestamp offsets, routed like Produce.
    pub async fn list_offsets(
        &self,
        partitions: Vec<ListOffsetsPartition>,
    ) -> Result<Vec<ListOffsetsResult>, ClientError> {
        self.scatter(
            partitions,
            |p| (&p.topic, p.partition),
            self.request_timeout(),
            |partitions| Request::ListOffsets { partitions },
            |response| match response {
                Response::ListOffsets { partitions } => Ok(partitions),
                other => Err(other),
            },
            "ListOffsets",
        )
        .await
    }

    // ---- admin -------------------------------------------------------------------------------

    pub async fn create_topic(&self, name: &str, partitions: u32, settings: TopicSettings) -> Result<(), ClientError> {
        let request = Request::CreateTopic { name: name.to_owned(), partitions, settings };
        self.status(request, name).await?;
        self.refresh_metadata().await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.status(Request::DeleteTopic { name: name.to_owned() }, name).await?;
        self.refresh_metadata().await
    }

    /// Grows `name` to `total` partitions.
    pub async fn add_partitions(&self, name: &str, total: u32) -> Result<(), ClientError> {
        self.status(Request::CreatePartitions { name: name.to_owned(), total }, name).await?;
        self.refresh_metadata().await
    }

    /// A request answered by a Status. For errors about the topic itself the message is the
    /// topic's name ("unknown topic or partition: users").
    async fn status(&self, request: Request, topic: &str) -> Result<(), ClientError> {
        match self.call(request).await? {
            Response::Status { error: ErrorCode::None, .. } => Ok(()),
            Response::Status {
                error: code @ (ErrorCode::UnknownTopicOrPartition | ErrorCode::TopicAlreadyExists),
                ..
            } => Err(ClientError::broker(code, topic)),
            Response::Status { error, message } => Err(ClientError::broker(error, message)),
            other => Err(self.unexpected(&other, "Status")),
        }
    }

    /// Every Kafka topic config of `name`, with its value.
    pub async fn describe_topic_config(&self, name: &str) -> Result<Vec<TopicConfigEntry>, ClientError> {
        match self.call(Request::DescribeTopicConfig { name: name.to_owned() }).await? {
            Response::TopicConfig { error: ErrorCode::None, configs, .. } => Ok(configs),
            Response::TopicConfig { error, .. } => Err(ClientError::broker(error, name)),
            other => Err(self.unexpected(&other, "TopicConfig")),
        }
    }

    /// Sets `set` (name, value) on topic `name` and returns `reset` to their defaults.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: Vec<(String, String)>,
        reset: Vec<String>,
    ) -> Result<(), ClientError> {
        self.status(Request::AlterTopicConfig { name: name.to_owned(), set, reset }, name).await
    }

    // ---- moving partitions (a cluster) -------------------------------------------------------

    /// Starts moving `topic`/`partition` onto the replicas on `replicas` (node ids, the first
    /// preferred leader); `None` cancels the reassignment under way.
    pub async fn reassign(&self, topic: &str, partition: u32, replicas: Option<Vec<u32>>) -> Result<(), ClientError> {
        let request = Request::Reassign { topic: topic.to_owned(), partition, replicas };
        self.status(request, topic).await
    }

    /// The reassignments under way.
    pub async fn reassignments(&self) -> Result<Vec<ReassignmentEntry>, ClientError> {
        self.reassignments_of(Request::ListReassignments).await
    }

    /// Moves `topic`/`partition`'s leadership to its preferred replica.
    pub async fn elect_preferred_leader(&self, topic: &str, partition: u32) -> Result<(), ClientError> {
        self.status(Request::ElectLeader { topic: topic.to_owned(), partition }, topic).await
    }

    /// Drains `node` (its replicas move elsewhere, no new ones are placed there): the moves
    /// started. `draining` false clears the mark.
    pub async fn drain(&self, node: u32, draining: bool) -> Result<Vec<ReassignmentEntry>, ClientError> {
        self.reassignments_of(Request::Drain { node, draining }).await
    }

    async fn reassignments_of(&self, request: Request) -> Result<Vec<ReassignmentEntry>, ClientError> {
        match self.call(request).await? {
            Response::Reassignments { error: ErrorCode::None, reassignments, .. } => Ok(reassignments),
            Response::Reassignments { error, message, .. } | Response::Status { error, message } => {
                Err(ClientError::broker(error, message))
            }
            other => Err(self.unexpected(&other, "Reassignments")),
        }
    }

    // ---- groups ------------------------------------------------------------------------------

    /// Every group with members or committed offsets.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        match self.call(Request::ListGroups).await? {
            Response::ListGroups { groups } => Ok(groups),
            Response::Status { error, message } => Err(ClientError::broker(error, message)),
            other => Err(self.unexpected(&other, "ListGroups")),
        }
    }

    /// A group's state and members (state "Dead" for a group that does not exist).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        match self.call(Request::DescribeGroup { group: group.to_owned() }).await? {
            Response::DescribeGroup(d) if d.error == ErrorCode::None => {
                let d = *d;
                Ok(GroupDescription {
                    state: d.state,
                    protocol_type: d.protocol_type,
                    protocol: d.protocol,
                    generation_id: d.generation_id,
                    members: d.members,
                })
            }
            Response::DescribeGroup(d) => Err(ClientError::broker(d.error, group)),
            Response::Status { error, message } => Err(ClientError::broker(error, message)),
            other => Err(self.unexpected(&other, "DescribeGroup")),
        }
    }

    /// Deletes a group without members, and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        match self.call(Request::DeleteGroup { group: group.to_owned() }).await? {
            Response::Status { error: ErrorCode::None, .. } => Ok(()),
            Response::Status { error, message } => Err(ClientError::broker(error, message)),
            other => Err(self.unexpected(&other, "Status")),
        }
    }

    /// Commits offsets; `generation_id` -1 commits outside any group generation. Per-partition
    /// errors are in the result.
    pub async fn commit_offsets(
        &self,
        group: &str,
        generation_id: i32,
        member_id: &str,
        offsets: Vec<CommitOffset>,
    ) -> Result<Vec<PartitionError>, ClientError> {
        let request =
            Request::OffsetCommit { group: group.to_owned(), generation_id, member_id: member_id.to_owned(), offsets };
        match self.group_call(request).await? {
            Response::OffsetCommit { partitions } => Ok(partitions),
            other => Err(self.unexpected(&other, "OffsetCommit")),
        }
    }

    /// Committed offsets of a group (`partitions: None` = everything it committed); offset -1
    /// where nothing is committed.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<Vec<FetchedOffset>, ClientError> {
        match self.group_call(Request::OffsetFetch { group: group.to_owned(), partitions }).await? {
            Response::OffsetFetch { error: ErrorCode::None, offsets } => Ok(offsets),
            Response::OffsetFetch { error, .. } => Err(ClientError::broker(error, group)),
            other => Err(self.unexpected(&other, "OffsetFetch")),
        }
    }

    /// Joins (`member_id` empty: as a new member) or rejoins a group.
    pub async fn join_group(
        &self,
        group: &str,
        member_id: &str,
        topics: Vec<String>,
        session_timeout_ms: u32,
        assignor: Assignor,
    ) -> Result<JoinResult, ClientError> {
        let request = Request::JoinGroup {
            group: group.to_owned(),
            member_id: member_id.to_owned(),
            topics,
            session_timeout_ms,
            assignor,
        };
        match self.group_call(request).await? {
            Response::JoinGroup { error: ErrorCode::None, generation_id, member_id, assignment } => {
                Ok(JoinResult { generation_id, member_id, assignment })
            }
            Response::JoinGroup { error, .. } => Err(ClientError::broker(error, group)),
            other => Err(self.unexpected(&other, "JoinGroup")),
        }
    }

    pub async fn heartbeat(&self, group: &str, generation_id: i32, member_id: &str) -> Result<(), ClientError> {
        let request = Request::Heartbeat { group: group.to_owned(), generation_id, member_id: member_id.to_owned() };
        self.plain_status(request).await
    }

    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), ClientError> {
        self.plain_status(Request::LeaveGroup { group: group.to_owned(), member_id: member_id.to_owned() }).await
    }

    async fn plain_status(&self, request: Request) -> Result<(), ClientError> {
        match self.group_call(request).await? {
            Response::Status { error: ErrorCode::None, .. } => Ok(()),
            Response::Status { error, message } => Err(ClientError::broker(error, message)),
            other => Err(self.unexpected(&other, "Status")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(routing: Routing) -> Client {
        let shards = vec![
            ShardInfo { shard: 0, address: "0.0.0.0:9293".to_owned() },
            ShardInfo { shard: 1, address: "10.0.0.2:9294".to_owned() },
        ];
        let topic = TopicMetadata {
            name: "t".to_owned(),
            error: ErrorCode::None,
            id: 1,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 1 << 20,
            durability: "sync".to_owned(),
            partitions: (0..4)
                .map(|p| protocol::messages::PartitionMetadata {
                    shard: p % 2,
                    ..protocol::messages::PartitionMetadata::single(p)
                })
                .collect(),
        };
        Client::offline("10.0.0.1:9292", ClientOptions { routing, ..ClientOptions::default() }, &shards, &[topic])
    }

    #[test]
    fn shard_aware_groups_by_owner_in_order() {
        let c = client(Routing::ShardAware);
        let items = vec![("t", 0u32), ("t", 1), ("t", 2), ("x", 0), ("t", 3)];
        let groups = c.group_by_route(items, |(t, p)| (t, *p));
        let summary: Vec<(Route, Vec<usize>)> = groups.into_iter().map(|(r, i, _)| (r, i)).collect();
        assert_eq!(
            summary,
            vec![(Route::Shard(0), vec![0, 2]), (Route::Shard(1), vec![1, 4]), (Route::Bootstrap, vec![3])]
        );
        assert_eq!(c.metadata.borrow().shards[&0], "10.0.0.1:9293", "unspecified address → bootstrap host");
        assert_eq!(c.metadata.borrow().shards[&1], "10.0.0.2:9294");
    }

    #[test]
    fn forward_sends_everything_to_bootstrap() {
        let c = client(Routing::Forward);
        let groups = c.group_by_route(vec![("t", 0u32), ("t", 1)], |(t, p)| (t, *p));
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0, Route::Bootstrap);
    }
}

/// A group as `Client::describe_group` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Kafka's state names, and "Dead" for a group that does not exist.
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub generation_id: i32,
    pub members: Vec<GroupMember>,
}
