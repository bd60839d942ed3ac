//! Starting and stopping the broker: one glommio executor thread per shard, the n × n
//! cross-shard channels, every protocol's listeners, graceful shutdown — and a shard that
//! panics takes the whole process down at once with a clear message, never leaving a
//! half-alive broker whose other shards go on serving.

use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::{IpAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use engine::catalog::Catalog;
use engine::group_offsets::GroupOffsets;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::calls::ShardCall;
use crate::catalog::CatalogService;
use crate::cluster::{BrokerInfo, ClusterControl, ClusterMetadata, ClusterService, ClusterStart, MetadataSink};
use crate::groups::{GroupCoordinator, OffsetStore};
use crate::ids::{shard_at, NodeId, ShardId, COORDINATOR_SHARD};
use crate::limits::{
    CONTROLLER_POLL_MS, GROUP_EXPIRY_CHECK_INTERVAL_MS, PRODUCE_MEMORY_BYTES_PER_SHARD_MAX, SHARD_CHANNEL_CAPACITY,
    SHUTDOWN_GRACE_MS, STOP_POLL_MS,
};
use crate::metrics;
use crate::net::into_glommio;
use crate::peer::serve_peer;
use crate::router::Router;
use crate::shard::{CoordinatorState, Shard, ShardSetup};
use crate::topics::{ClusterView, SharedTopics, TopicTable};

/// The exit status of a broker whose shard panicked (EX_SOFTWARE).
pub const SHARD_PANIC_EXIT_CODE: i32 = 70;

/// Names every shard thread; the panic hook recognises shard threads by it.
const SHARD_THREAD_PREFIX: &str = "shard-";

/// For the crash tests only: a shard whose id this variable names panics once it has
/// started, so the tests can check that the process exits (`server/tests/restart.rs`).
pub const TEST_PANIC_SHARD_ENV: &str = "SHARDLOG_TEST_PANIC_SHARD";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("{0}")]
    Config(String),
    #[error("catalog: {0}")]
    Catalog(#[from] engine::catalog::CatalogError),
    #[error(transparent)]
    Listen(#[from] crate::net::ListenError),
    #[error("shard {shard} failed to start: {reason}")]
    Shard { shard: ShardId, reason: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// What the broker core needs (the CLI's `serve` flags resolve into it).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub node: NodeId,
    pub shards: usize,
    /// Pin shard i to core i (modulo the cores). Off for several brokers on one machine.
    pub pin_shards: bool,
    /// Refuse produces once the data directory's file system has fewer free bytes than this.
    pub disk_free_floor_bytes: u64,
    /// Each shard's batch cache budget (recent batches served from memory; also bounds the
    /// bytes a shard accepts ahead of the disk): `engine::cache`.
    pub batch_cache_bytes: u64,
    /// Kafka's `group.initial.rebalance.delay.ms`: an empty consumer group waits this long
    /// for more members before its first generation.
    pub group_initial_rebalance_delay_ms: u64,
    /// Part of a cluster (`None`: a single node, its catalog the metadata).
    pub cluster: Option<ClusterSetup>,
}

/// How a broker joins a cluster.
#[derive(Clone)]
pub struct ClusterSetup {
    /// Starts Raft and the controller on the coordinator shard (the `cluster` crate).
    pub service: Arc<dyn ClusterService>,
    /// This broker as it registers itself (its advertised addresses, and an incarnation that
    /// is new at every start).
    pub broker: BrokerInfo,
    /// Connections to other nodes bind this source IP (this node's cluster IP).
    pub source_ip: Option<IpAddr>,
    /// Replicas per partition of a topic created without a replication factor (Kafka's
    /// default.replication.factor).
    pub default_replication_factor: u32,
}

impl std::fmt::Debug for ClusterSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSetup")
            .field("broker", &self.broker)
            .field("source_ip", &self.source_ip)
            .field("default_replication_factor", &self.default_replication_factor)
            .finish_non_exhaustive()
    }
}

/// Starts serving one protocol on a shard's listener; implemented by each protocol adapter.
/// Shared by the shard threads (`Send + Sync`); each call runs on one shard's executor.
pub trait Service: Send + Sync + 'static {
    /// Accepts connections on `listener` and serves them, until the returned future is
    /// dropped.
    fn serve(
        &self,
        shard: Rc<Shard>,
        listener: TcpListener,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
}

/// One protocol's listening sockets: for each shard, the sockets it accepts on.
pub struct Listeners {
    pub service: Arc<dyn Service>,
    pub per_shard: Vec<Vec<StdListener>>,
}

/// A running broker. Dropping it does not stop it; call `shutdown`.
pub struct Broker {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Starts every shard and returns once all of them accept connections. `listeners` were
    /// bound by the caller (`net::listen`), so every port is known before anything starts.
    pub fn start(
        config: BrokerConfig,
        listeners: Vec<Listeners>,
        metrics_listener: Option<StdListener>,
    ) -> Result<Broker, BrokerError> {
        install_panic_hook();
        std::fs::create_dir_all(&config.data_dir)?;
        let catalog = Catalog::open(&config.data_dir, config.shards as u32)?;
        let table = match &config.cluster {
            // A cluster's topics come from its metadata once this node has it (an empty table
            // until then); the catalog file stays unused.
            Some(_) => TopicTable::from_cluster(
                ClusterView { node: config.node, metadata: Arc::new(ClusterMetadata::default()), controller: None },
                config.shards as u32,
            ),
            None => TopicTable::from_catalog(&catalog),
        };
        let topics: SharedTopics = Arc::new(ArcSwap::from_pointee(table));
        let topics_changed = Arc::new(event_listener::Event::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<ShardId, (ShardId, String)>>();
        let mut channels = Channels::new(config.shards);
        let mut catalog = Some(catalog);
        let mut metrics_listener = metrics_listener;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut per_shard: Vec<Vec<(Arc<dyn Service>, StdListener)>> = (0..config.shards).map(|_| Vec::new()).collect();
        for set in listeners {
            assert_eq!(set.per_shard.len(), config.shards, "one listener set per shard");
            for (shard, sockets) in set.per_shard.into_iter().enumerate() {
                per_shard[shard].extend(sockets.into_iter().map(|s| (set.service.clone(), s)));
            }
        }
        let mut threads = Vec::with_capacity(config.shards);
        for (index, listeners) in per_shard.into_iter().enumerate() {
            let id = shard_at(index);
            let plan = ShardPlan {
                start: ShardStart {
                    id,
                    config: config.clone(),
                    topics: topics.clone(),
                    topics_changed: topics_changed.clone(),
                    catalog: if id == COORDINATOR_SHARD { catalog.take() } else { None },
                    senders: channels.take_senders(index),
                    receivers: channels.take_receivers(index),
                },
                listeners,
                metrics: if id == COORDINATOR_SHARD { metrics_listener.take() } else { None },
                stop: stop.clone(),
                ready: ready_tx.clone(),
            };
            let placement = if config.pin_shards { Placement::Fixed(index % cores) } else { Placement::Unbound };
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("{SHARD_THREAD_PREFIX}{index}"))
                .spawn(move || run_shard(plan))
                .map_err(|e| BrokerError::Shard { shard: id, reason: e.to_string() })?;
            threads.push(std::thread::spawn(move || {
                if let Err(e) = handle.join() {
                    tracing::error!(shard = %id, error = ?e, "shard thread failed");
                }
            }));
        }
        drop(ready_tx);
        let mut broker = Broker { stop, threads };
        for _ in 0..config.shards {
            let failure = match ready_rx.recv() {
                Ok(Ok(_)) => continue,
                Ok(Err((shard, reason))) => BrokerError::Shard { shard, reason },
                Err(_) => BrokerError::Config("a shard exited during startup".into()),
            };
            broker.shutdown();
            return Err(failure);
        }
        tracing::info!(shards = config.shards, node = %config.node, data_dir = %config.data_dir.display(), "broker started");
        Ok(broker)
    }

    /// The flag that stops the broker when set (signal handlers set it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until the broker stops (after `stop_flag` is set).
    pub fn wait(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Stops accepting, finishes in-flight requests, syncs and closes every log cleanly.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wait();
    }
}

/// After the default report, a panic on a shard thread exits the process: its partitions
/// would be unreachable while the other shards go on serving, and every request forwarded to
/// it would wait for its deadline. Panics on other threads (tests, embedding programs) keep
/// the default behaviour.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            let thread = std::thread::current();
            // glommio appends its executor id to the name: "shard-<index>-<executor id>".
            let shard = thread.name().and_then(|n| n.strip_prefix(SHARD_THREAD_PREFIX));
            if let Some(shard) = shard.and_then(|rest| rest.split('-').next()) {
                // Not `eprintln!`: it panics when stderr cannot be written (a full disk), and a
                // panic inside the panic hook aborts instead of exiting with the status below.
                let _ = writeln!(
                    std::io::stderr(),
                    "fatal: shard {shard} panicked; the broker exits (status {SHARD_PANIC_EXIT_CODE}) rather than \
                     serve with a shard missing"
                );
                std::process::exit(SHARD_PANIC_EXIT_CODE);
            }
        }));
    });
}

/// The n × n channel ends, handed out to the shard threads.
struct Channels {
    senders: Vec<Vec<Option<SharedSender<ShardCall>>>>,
    receivers: Vec<Vec<SharedReceiver<ShardCall>>>,
}

impl Channels {
    fn new(n: usize) -> Channels {
        let mut senders: Vec<Vec<Option<SharedSender<ShardCall>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<SharedReceiver<ShardCall>>> = (0..n).map(|_| Vec::new()).collect();
        for (from, row) in senders.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate() {
                if from != to {
                    let (tx, rx) = shared_channel::new_bounded(SHARD_CHANNEL_CAPACITY);
                    *slot = Some(tx);
                    receivers[to].push(rx);
                }
            }
        }
        Channels { senders, receivers }
    }

    fn take_senders(&mut self, shard: usize) -> Vec<Option<SharedSender<ShardCall>>> {
        std::mem::take(&mut self.senders[shard])
    }

    fn take_receivers(&mut self, shard: usize) -> Vec<SharedReceiver<ShardCall>> {
        std::mem::take(&mut self.receivers[shard])
    }
}

/// What a shard's thread starts from.
struct ShardPlan {
    start: ShardStart,
    listeners: Vec<(Arc<dyn Service>, StdListener)>,
    metrics: Option<StdListener>,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<ShardId, (ShardId, String)>>,
}

/// What building the shard itself takes (before it serves anything).
struct ShardStart {
    id: ShardId,
    config: BrokerConfig,
    topics: SharedTopics,
    topics_changed: Arc<event_listener::Event>,
    catalog: Option<Catalog>,
    senders: Vec<Option<SharedSender<ShardCall>>>,
    receivers: Vec<SharedReceiver<ShardCall>>,
}

async fn run_shard(plan: ShardPlan) {
    let ShardPlan { start, listeners, metrics: metrics_listener, stop, ready } = plan;
    let id = start.id;
    match start_shard(start).await {
        Ok(shard) => {
            let accepting: Vec<glommio::Task<()>> = listeners
                .into_iter()
                .map(|(service, listener)| glommio::spawn_local(service.serve(shard.clone(), into_glommio(listener))))
                .collect();
            if let Some(listener) = metrics_listener {
                glommio::spawn_local(serve_metrics(shard.clone(), into_glommio(listener))).detach();
            }
            panic_if_asked(id);
            let _ = ready.send(Ok(id));
            drop(ready);
            serve_until_stopped(shard, accepting, stop).await;
        }
        Err(reason) => {
            tracing::error!(shard = %id, %reason, "shard failed to start");
            let _ = ready.send(Err((id, reason)));
        }
    }
}

async fn start_shard(start: ShardStart) -> Result<Rc<Shard>, String> {
    let ShardStart { id, config, topics, topics_changed, catalog, senders, receivers } = start;
    // This executor's cache budget, before any log opens.
    engine::cache::set_shard_budget_bytes(config.batch_cache_bytes);
    // Each end of a shared channel waits in `connect` for the other end, so connect every
    // end at once: receivers in background tasks, then the senders.
    let receivers: Vec<_> =
        receivers.into_iter().map(|rx| glommio::spawn_local(async move { rx.connect().await })).collect();
    let mut connected = Vec::with_capacity(senders.len());
    for s in senders {
        connected.push(match s {
            Some(s) => Some(s.connect().await),
            None => None,
        });
    }
    let mut connected_receivers = Vec::with_capacity(receivers.len());
    for rx in receivers {
        connected_receivers.push(rx.await);
    }
    let coordinator = match catalog {
        Some(catalog) => {
            let offsets = GroupOffsets::open(&config.data_dir).await.map_err(|e| e.to_string())?;
            let cluster = match &config.cluster {
                Some(setup) => Some(start_cluster(&config, setup, &topics, &topics_changed).await?),
                None => None,
            };
            Some(CoordinatorState {
                catalog: CatalogService::new(catalog),
                groups: GroupCoordinator::new(Duration::from_millis(config.group_initial_rebalance_delay_ms)),
                offsets: OffsetStore::new(offsets),
                cluster,
            })
        }
        None => None,
    };
    let shard = Rc::new(Shard::new(ShardSetup {
        id,
        shard_count: config.shards,
        node: config.node,
        data_dir: config.data_dir.clone(),
        topics,
        router: Router::new(id, connected),
        coordinator,
        request_memory_bytes: PRODUCE_MEMORY_BYTES_PER_SHARD_MAX,
        disk_free_floor_bytes: config.disk_free_floor_bytes,
        topics_changed,
        source_ip: config.cluster.as_ref().and_then(|c| c.source_ip),
        default_replication_factor: config.cluster.as_ref().map_or(1, |c| c.default_replication_factor),
        incarnation: config.cluster.as_ref().map(|c| c.broker.incarnation),
    }));
    for receiver in connected_receivers {
        glommio::spawn_local(serve_peer(shard.clone(), receiver)).detach();
    }
    if config.cluster.is_some() {
        glommio::spawn_local(shard.clone().reconcile_loop()).detach();
        glommio::spawn_local(shard.clone().replica_housekeeping()).detach();
    } else {
        shard.open_owned_partitions().await.map_err(|e| e.to_string())?;
    }
    glommio::spawn_local(shard.clone().retention_loop()).detach();
    if shard.coordinator().is_some() {
        glommio::spawn_local(expire_groups(shard.clone())).detach();
    }
    Ok(shard)
}

/// Installs each committed cluster metadata as every shard's topic table (with the current
/// controller, which changes without a metadata change when Raft elects another leader).
struct TableSink {
    topics: SharedTopics,
    changed: Arc<event_listener::Event>,
    node: NodeId,
    shard_count: u32,
    metadata: RefCell<Arc<ClusterMetadata>>,
    controller: Cell<Option<NodeId>>,
}

impl TableSink {
    fn install(&self) {
        let view = ClusterView {
            node: self.node,
            metadata: self.metadata.borrow().clone(),
            controller: self.controller.get(),
        };
        self.topics.store(Arc::new(TopicTable::from_cluster(view, self.shard_count)));
        self.changed.notify(usize::MAX);
    }
}

impl MetadataSink for TableSink {
    fn publish(&self, metadata: Arc<ClusterMetadata>) {
        *self.metadata.borrow_mut() = metadata;
        self.install();
    }
}

/// Starts this node's part of the cluster on the coordinator shard, and a task that republishes
/// the table when the controller changes.
async fn start_cluster(
    config: &BrokerConfig,
    setup: &ClusterSetup,
    topics: &SharedTopics,
    changed: &Arc<event_listener::Event>,
) -> Result<Rc<dyn ClusterControl>, String> {
    let sink = Rc::new(TableSink {
        topics: topics.clone(),
        changed: changed.clone(),
        node: config.node,
        shard_count: config.shards as u32,
        metadata: RefCell::new(Arc::new(ClusterMetadata::default())),
        controller: Cell::new(None),
    });
    let start = ClusterStart {
        node: config.node,
        data_dir: config.data_dir.clone(),
        broker: setup.broker.clone(),
        sink: sink.clone(),
    };
    let control = setup.service.start(start).await?;
    let watched = control.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(CONTROLLER_POLL_MS)).await;
            let controller = watched.controller();
            if controller != sink.controller.get() {
                tracing::info!(?controller, "metadata controller changed");
                sink.controller.set(controller);
                sink.install();
            }
        }
    })
    .detach();
    Ok(control)
}

/// See `TEST_PANIC_SHARD_ENV`.
fn panic_if_asked(id: ShardId) {
    if std::env::var(TEST_PANIC_SHARD_ENV).ok().and_then(|v| v.parse::<u32>().ok()) == Some(id.get()) {
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(500)).await;
            panic!("{TEST_PANIC_SHARD_ENV} asked shard {id} to panic");
        })
        .detach();
    }
}

async fn serve_until_stopped(shard: Rc<Shard>, accepting: Vec<glommio::Task<()>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
    tracing::info!(shard = %shard.id(), "shutting down");
    shard.stop();
    drop(accepting); // Cancels the accept loops: no new connections.
                     // Let in-flight requests finish (connections close after their current request).
    let deadline = std::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while shard.metrics().connections.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.close_all().await;
    tracing::info!(shard = %shard.id(), "stopped");
}

async fn expire_groups(shard: Rc<Shard>) {
    while !shard.is_stopping() {
        glommio::timer::sleep(Duration::from_millis(GROUP_EXPIRY_CHECK_INTERVAL_MS)).await;
        if let Some(c) = shard.coordinator() {
            c.groups.expire(std::time::Instant::now());
        }
    }
}

/// A minimal HTTP/1.0 endpoint: any request gets the Prometheus text of every shard.
async fn serve_metrics(shard: Rc<Shard>, listener: TcpListener) {
    while let Ok(mut stream) = listener.accept().await {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = metrics::render(&shard.metrics_all().await);
            let head = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.close().await;
        })
        .detach();
    }
}

/// Accepts connections on `listener` and hands each to `serve`, until dropped.
pub async fn accept_loop<F, Fut>(shard: Rc<Shard>, listener: TcpListener, serve: F)
where
    F: Fn(Rc<Shard>, glommio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = %shard.id(), error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
