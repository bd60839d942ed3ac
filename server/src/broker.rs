//! Starting and stopping the broker: one executor thread per shard, pinned to a core; the
//! cross-shard channels; every shard's listeners; graceful shutdown.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use engine::catalog::Catalog;
use engine::group_offsets::GroupOffsets;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::ServeConfig;
use crate::coordinator::Coordinator;
use crate::limits::{
    GROUP_EXPIRY_CHECK_INTERVAL_MS, PRODUCE_MEMORY_BYTES_PER_SHARD_MAX, SHARD_CHANNEL_CAPACITY, SHUTDOWN_GRACE_MS,
};
use crate::metrics;
use crate::router::{Envelope, Router, ShardRequest, ShardResponse};
use crate::shard::{serve_peer, Shard};
use crate::topics::{SharedTopics, TopicTable};

/// How often a shard checks the stop flag (signals are caught on another thread).
const STOP_POLL_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{0}")]
    Config(String),
    #[error("catalog: {0}")]
    Catalog(#[from] engine::catalog::CatalogError),
    #[error("shard {shard} failed to start: {reason}")]
    Shard { shard: usize, reason: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A running broker. Dropping it does not stop it; call `shutdown`.
pub struct Broker {
    pub listen: SocketAddr,
    pub shard_addresses: Vec<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    /// The Kafka bootstrap address and each shard's own Kafka address, with `--kafka-listen`.
    pub kafka_listen: Option<SocketAddr>,
    pub kafka_shard_addresses: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Starts every shard and returns once all of them accept connections.
    pub fn start(config: ServeConfig) -> Result<Broker, BrokerError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let catalog = Catalog::open(&config.data_dir, config.shards as u32)?;
        let topics: SharedTopics = Arc::new(ArcSwap::from_pointee(TopicTable::from_catalog(&catalog)));
        // Bind every socket here, before any shard starts, so a port conflict is one clear
        // error and port 0 resolves once for all shards.
        let (shared_listeners, listen) = bind_shared(config.listen, config.shards)?;
        let own_listeners = bind_own(&config, listen)?;
        let shard_addresses: Vec<SocketAddr> =
            own_listeners.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?;
        let kafka = match &config.kafka {
            Some(kafka) => Some(bind_kafka(kafka, config.shards)?),
            None => None,
        };
        let (kafka_listen, kafka_shard_addresses) = match &kafka {
            Some(k) => (Some(k.listen), k.shard_addresses.clone()),
            None => (None, Vec::new()),
        };
        let (kafka_listeners, kafka_settings) = match kafka {
            Some(k) => (k.listeners, Some(k.settings)),
            None => (Vec::new(), None),
        };
        let metrics = config.metrics_listen.map(bind_exclusive).transpose()?;
        let metrics_listen = metrics.as_ref().map(StdListener::local_addr).transpose()?;
        let mut metrics = metrics;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, (usize, String)>>();
        let mut channels = Channels::new(config.shards);
        let mut catalog = Some(catalog);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut threads = Vec::with_capacity(config.shards);
        let mut shared_listeners = shared_listeners.into_iter();
        let mut own_listeners = own_listeners.into_iter();
        let mut kafka_listeners = kafka_listeners.into_iter();
        for shard_id in 0..config.shards {
            let mut listeners = Vec::new();
            listeners.extend(shared_listeners.next());
            listeners.extend(own_listeners.next());
            let plan = ShardPlan {
                id: shard_id,
                shard_count: config.shards,
                data_dir: config.data_dir.clone(),
                topics: topics.clone(),
                catalog: if shard_id == 0 { catalog.take() } else { None },
                senders: channels.take_senders(shard_id),
                receivers: channels.take_receivers(shard_id),
                listeners,
                kafka_listeners: kafka_listeners.next().unwrap_or_default(),
                kafka: kafka_settings.clone(),
                shard_addresses: shard_addresses.iter().map(|a| a.to_string()).collect(),
                metrics: if shard_id == 0 { metrics.take() } else { None },
                disk_free_floor_bytes: config.disk_free_floor_bytes,
                stop: stop.clone(),
                ready: ready_tx.clone(),
            };
            let handle = LocalExecutorBuilder::new(Placement::Fixed(shard_id % cores))
                .name(&format!("shard-{shard_id}"))
                .spawn(move || run_shard(plan))
                .map_err(|e| BrokerError::Shard { shard: shard_id, reason: e.to_string() })?;
            threads.push(std::thread::spawn(move || {
                if let Err(e) = handle.join() {
                    tracing::error!(shard = shard_id, error = ?e, "shard thread failed");
                }
            }));
        }
        drop(ready_tx);
        let mut broker =
            Broker { listen, shard_addresses, metrics_listen, kafka_listen, kafka_shard_addresses, stop, threads };
        for _ in 0..config.shards {
            match ready_rx.recv() {
                Ok(Ok(_)) => {}
                Ok(Err((shard, reason))) => {
                    broker.shutdown();
                    return Err(BrokerError::Shard { shard, reason });
                }
                Err(_) => {
                    broker.shutdown();
                    return Err(BrokerError::Shard {
                        shard: usize::MAX,
                        reason: "a shard exited during startup".into(),
                    });
                }
            }
        }
        tracing::info!(%listen, shards = config.shards, data_dir = %config.data_dir.display(), "broker started");
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

/// The address every shard accepts on: one SO_REUSEPORT socket per shard, so the kernel
/// spreads connections. SO_REUSEPORT would also let another process join the port, so first
/// make sure nobody listens there.
fn bind_shared(addr: SocketAddr, shards: usize) -> Result<(Vec<StdListener>, SocketAddr), BrokerError> {
    if addr.port() != 0 {
        drop(bind_exclusive(addr)?);
    }
    let first = bind_reuse_port(addr)?;
    let actual = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(bind_reuse_port(actual)?);
    }
    Ok((listeners, actual))
}

fn bind_reuse_port(addr: SocketAddr) -> Result<StdListener, BrokerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let in_use = |e: std::io::Error| BrokerError::Config(format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(in_use)?;
    socket.set_reuse_port(true).map_err(in_use)?;
    socket.bind(&addr.into()).map_err(in_use)?;
    socket.listen(1024).map_err(in_use)?;
    Ok(socket.into())
}

fn bind_exclusive(addr: SocketAddr) -> Result<StdListener, BrokerError> {
    StdListener::bind(addr).map_err(|e| BrokerError::Config(format!("cannot listen on {addr}: {e}")))
}

/// Each shard's own listener (advertised in Metadata).
fn bind_own(config: &ServeConfig, listen: SocketAddr) -> Result<Vec<StdListener>, BrokerError> {
    (0..config.shards)
        .map(|i| {
            let port = match (config.shard_base_port, config.listen.port()) {
                (Some(base), _) => base.checked_add(i as u16),
                (None, 0) => Some(0),
                (None, p) => p.checked_add(1 + i as u16),
            }
            .ok_or_else(|| BrokerError::Config("shard port overflows".into()))?;
            bind_exclusive(SocketAddr::new(listen.ip(), port))
        })
        .collect()
}

/// The Kafka sockets: per shard, its share of the bootstrap address and its own port.
struct KafkaBound {
    listen: SocketAddr,
    shard_addresses: Vec<SocketAddr>,
    listeners: Vec<Vec<StdListener>>,
    settings: Arc<crate::kafka::KafkaSettings>,
}

fn bind_kafka(config: &crate::config::KafkaConfig, shards: usize) -> Result<KafkaBound, BrokerError> {
    let (shared, listen) = bind_shared(config.listen, shards)?;
    let own: Vec<StdListener> = (0..shards)
        .map(|i| {
            let port = match (config.shard_base_port, listen.port(), config.listen.port()) {
                (Some(base), _, _) => base.checked_add(i as u16),
                (None, _, 0) => Some(0),
                (None, p, _) => p.checked_add(1 + i as u16),
            }
            .ok_or_else(|| BrokerError::Config("Kafka shard port overflows".into()))?;
            bind_exclusive(SocketAddr::new(listen.ip(), port))
        })
        .collect::<Result<_, _>>()?;
    let shard_addresses: Vec<SocketAddr> = own.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?;
    let settings = Arc::new(crate::kafka::KafkaSettings::new(config, listen, &shard_addresses));
    let listeners = shared.into_iter().zip(own).map(|(shared, own)| vec![shared, own]).collect();
    Ok(KafkaBound { listen, shard_addresses, listeners, settings })
}

/// The n × n channel ends, handed out to the shard threads.
struct Channels {
    senders: Vec<Vec<Option<SharedSender<Envelope>>>>,
    receivers: Vec<Vec<SharedReceiver<Envelope>>>,
}

impl Channels {
    fn new(n: usize) -> Channels {
        let mut senders: Vec<Vec<Option<SharedSender<Envelope>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<SharedReceiver<Envelope>>> = (0..n).map(|_| Vec::new()).collect();
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

    fn take_senders(&mut self, shard: usize) -> Vec<Option<SharedSender<Envelope>>> {
        std::mem::take(&mut self.senders[shard])
    }

    fn take_receivers(&mut self, shard: usize) -> Vec<SharedReceiver<Envelope>> {
        std::mem::take(&mut self.receivers[shard])
    }
}

struct ShardPlan {
    id: usize,
    shard_count: usize,
    data_dir: std::path::PathBuf,
    topics: SharedTopics,
    catalog: Option<Catalog>,
    senders: Vec<Option<SharedSender<Envelope>>>,
    receivers: Vec<SharedReceiver<Envelope>>,
    /// The shared listener and this shard's own, bound by `Broker::start`.
    listeners: Vec<StdListener>,
    /// The shared Kafka listener and this shard's own, with `--kafka-listen`.
    kafka_listeners: Vec<StdListener>,
    kafka: Option<Arc<crate::kafka::KafkaSettings>>,
    shard_addresses: Vec<String>,
    metrics: Option<StdListener>,
    disk_free_floor_bytes: u64,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<usize, (usize, String)>>,
}

async fn run_shard(plan: ShardPlan) {
    let id = plan.id;
    let ready = plan.ready.clone();
    match start_shard(plan).await {
        Ok((shard, listeners, kafka_listeners, stop)) => {
            let _ = ready.send(Ok(id));
            drop(ready);
            serve_until_stopped(shard, listeners, kafka_listeners, stop).await;
        }
        Err(reason) => {
            tracing::error!(shard = id, %reason, "shard failed to start");
            let _ = ready.send(Err((id, reason)));
        }
    }
}

type Started = (Rc<Shard>, Vec<TcpListener>, Vec<TcpListener>, Arc<AtomicBool>);

async fn start_shard(plan: ShardPlan) -> Result<Started, String> {
    // Each end of a shared channel waits in `connect` for the other end, so connect every
    // end at once: receivers in background tasks, then the senders.
    let receivers: Vec<_> =
        plan.receivers.into_iter().map(|rx| glommio::spawn_local(async move { rx.connect().await })).collect();
    let mut senders = Vec::with_capacity(plan.senders.len());
    for s in plan.senders {
        senders.push(match s {
            Some(s) => Some(s.connect().await),
            None => None,
        });
    }
    let mut connected_receivers = Vec::with_capacity(receivers.len());
    for rx in receivers {
        connected_receivers.push(rx.await);
    }
    let coordinator = match plan.catalog {
        Some(catalog) => {
            let offsets = GroupOffsets::open(&plan.data_dir).await.map_err(|e| e.to_string())?;
            Some(Coordinator::new(catalog, offsets))
        }
        None => None,
    };
    let shard = Rc::new(Shard::new(
        plan.id,
        plan.shard_count,
        plan.data_dir.clone(),
        plan.topics,
        Router::new(plan.id, senders),
        coordinator,
        PRODUCE_MEMORY_BYTES_PER_SHARD_MAX,
        plan.shard_addresses,
    ));
    shard.disk_free_floor_bytes.set(plan.disk_free_floor_bytes);
    for receiver in connected_receivers {
        glommio::spawn_local(serve_peer(shard.clone(), receiver)).detach();
    }
    shard.open_owned_partitions().await?;
    let listeners: Vec<TcpListener> = plan.listeners.into_iter().map(into_glommio).collect();
    let kafka_listeners: Vec<TcpListener> = plan.kafka_listeners.into_iter().map(into_glommio).collect();
    if let Some(settings) = plan.kafka {
        crate::kafka::start_on_shard(&shard, settings);
    }
    glommio::spawn_local(shard.clone().retention_loop()).detach();
    if shard.coordinator.is_some() {
        glommio::spawn_local(expire_groups(shard.clone())).detach();
    }
    if let Some(listener) = plan.metrics {
        glommio::spawn_local(serve_metrics(shard.clone(), into_glommio(listener))).detach();
    }
    Ok((shard, listeners, kafka_listeners, plan.stop))
}

/// Hands a socket bound on the main thread to this shard's executor.
fn into_glommio(listener: StdListener) -> TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the fd comes from a listening socket we own and give up here; glommio takes
    // ownership and closes it.
    unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) }
}

async fn serve_until_stopped(
    shard: Rc<Shard>,
    listeners: Vec<TcpListener>,
    kafka_listeners: Vec<TcpListener>,
    stop: Arc<AtomicBool>,
) {
    let mut accepting: Vec<_> =
        listeners.into_iter().map(|l| glommio::spawn_local(accept_loop(shard.clone(), l))).collect();
    accepting
        .extend(kafka_listeners.into_iter().map(|l| glommio::spawn_local(crate::kafka::accept_loop(shard.clone(), l))));
    while !stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(STOP_POLL_MS)).await;
    }
    tracing::info!(shard = shard.id, "shutting down");
    shard.shutting_down.set(true);
    shard.shutdown.notify(usize::MAX);
    drop(accepting); // Cancels the accept loops: no new connections.
                     // Let in-flight requests finish (connections close after their current request).
    let deadline = std::time::Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while shard.metrics.connections.get() > 0 && std::time::Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.close_all().await;
    tracing::info!(shard = shard.id, "stopped");
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(crate::connection::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn expire_groups(shard: Rc<Shard>) {
    while !shard.shutting_down.get() {
        glommio::timer::sleep(Duration::from_millis(GROUP_EXPIRY_CHECK_INTERVAL_MS)).await;
        if let Some(c) = &shard.coordinator {
            c.groups.expire(&shard.topics.load());
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
            let mut snapshots = vec![shard.metrics_snapshot()];
            for other in (0..shard.shard_count).filter(|&s| s != shard.id) {
                if let Ok(ShardResponse::Metrics(s)) = shard.router.call(other, ShardRequest::Metrics).await {
                    snapshots.push(*s);
                }
            }
            snapshots.sort_by_key(|s| s.shard);
            let body = metrics::render(&snapshots);
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
