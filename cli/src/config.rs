//! `shardlog serve` settings: a TOML file and command-line flags; flags win.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use broker::limits::SHARDS_MAX;
use broker::NodeId;
pub use kafka::KafkaAdvertise;

/// Flags of `shardlog serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Directory for the catalog and partition logs (a real file system, not tmpfs).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address every shard accepts connections on (SO_REUSEPORT spreads them over shards).
    #[arg(long)]
    pub listen: Option<String>,
    /// Number of shards (one executor pinned per core). Default: every core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// This broker's node id (0 for a single node). Kafka broker ids are derived from it and
    /// the shard: node × 1000 + shard.
    #[arg(long)]
    pub node_id: Option<u32>,
    /// Do not pin shards to cores (several brokers on one machine).
    #[arg(long)]
    pub no_pin: bool,
    /// TOML file with the same keys (data_dir, listen, shards, node_id, no_pin,
    /// metrics_listen, shard_base_port, disk_free_floor_bytes, batch_cache_bytes,
    /// group_initial_rebalance_delay_ms, kafka_*);
    /// flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus text metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Shard i also listens on port BASE + i (advertised in Metadata, for shard-aware
    /// clients). Default: the listen port + 1 + i, or free ports when listening on port 0.
    #[arg(long)]
    pub shard_base_port: Option<u16>,
    /// Refuse produces (error DiskFull) once the data directory's file system has fewer free
    /// bytes than this, so a full disk never stops fetches, retention or offset commits.
    /// Default 0: no floor (a full disk still fails produces cleanly, at fallocate).
    #[arg(long)]
    pub disk_free_floor_bytes: Option<u64>,
    /// Memory per shard for recent batches, served to consumers without disk reads; it also
    /// bounds the bytes a shard accepts before the disk has them. One budget for all of the
    /// shard's partitions, however many. Default: an eighth of the machine's memory shared by
    /// the shards (at most 4 GiB each).
    #[arg(long)]
    pub batch_cache_bytes: Option<u64>,
    /// An empty consumer group waits this long for more members before its first generation
    /// (Kafka's group.initial.rebalance.delay.ms), so consumers that start together get one
    /// rebalance, not one each. Default 3000.
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Host put in native metadata and advertised to the cluster in place of the bound IP
    /// (ports unchanged). Default: the bound IP.
    #[arg(long)]
    pub advertised_host: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Flags of a cluster node. Without `--cluster-listen` the broker is a single node.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Join a cluster: the address this node's cluster port (Raft and controller calls)
    /// listens on. Needs --node-id and --cluster-peers.
    #[arg(long)]
    pub cluster_listen: Option<String>,
    /// The metadata voters (3 by default): NODE=HOST:PORT,… with each voter's cluster address
    /// as the others reach it. A node not in the list joins as a learner (a broker without a
    /// vote).
    #[arg(long)]
    pub cluster_peers: Option<String>,
    /// Replicas per partition of topics created without a replication factor (Kafka's
    /// default.replication.factor). Default 1.
    #[arg(long)]
    pub default_replication_factor: Option<u32>,
}

/// Flags of the Kafka listener (`server/src/kafka/`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KafkaArgs {
    /// Also speak the Kafka protocol: the bootstrap address (any shard answers, forwarding
    /// what it does not own). Off unless set.
    #[arg(long)]
    pub kafka_listen: Option<String>,
    /// Shard i's own Kafka port is BASE + i (advertised as broker i in Metadata). Default:
    /// the Kafka port + 1 + i, or free ports when the Kafka port is 0.
    #[arg(long)]
    pub kafka_shard_base_port: Option<u16>,
    /// `shards`: every shard is a Kafka broker, leading the partitions it owns (default).
    /// `single`: only the bootstrap address is advertised, as broker 0 leading everything.
    #[arg(long)]
    pub kafka_advertise: Option<String>,
    /// Host name put in Metadata (clients reconnect to it). Default: the bound IP.
    #[arg(long)]
    pub kafka_advertised_host: Option<String>,
    /// Create a topic when a client asks Metadata for it (Kafka's
    /// auto.create.topics.enable). Default true.
    #[arg(long)]
    pub kafka_auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic, and of CreateTopics without a count (Kafka's
    /// num.partitions). Default 1.
    #[arg(long)]
    pub kafka_default_partitions: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    shards: Option<usize>,
    node_id: Option<u32>,
    no_pin: Option<bool>,
    metrics_listen: Option<String>,
    shard_base_port: Option<u16>,
    disk_free_floor_bytes: Option<u64>,
    batch_cache_bytes: Option<u64>,
    group_initial_rebalance_delay_ms: Option<u64>,
    kafka_listen: Option<String>,
    kafka_shard_base_port: Option<u16>,
    kafka_advertise: Option<String>,
    kafka_advertised_host: Option<String>,
    kafka_auto_create_topics: Option<bool>,
    kafka_default_partitions: Option<u32>,
    advertised_host: Option<String>,
    cluster_listen: Option<String>,
    cluster_peers: Option<String>,
    default_replication_factor: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub shards: usize,
    pub node: NodeId,
    /// Pin shard i to core i.
    pub pin_shards: bool,
    pub metrics_listen: Option<SocketAddr>,
    pub shard_base_port: Option<u16>,
    /// See `ServeArgs::disk_free_floor_bytes`; 0 = no floor.
    pub disk_free_floor_bytes: u64,
    /// See `ServeArgs::batch_cache_bytes`.
    pub batch_cache_bytes: u64,
    /// See `ServeArgs::group_initial_rebalance_delay_ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `None`: no Kafka listener.
    pub kafka: Option<KafkaConfig>,
    /// See `ServeArgs::advertised_host`.
    pub advertised_host: Option<String>,
    /// `None`: a single node.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub listen: SocketAddr,
    /// Voters: node id → cluster address as the others reach it.
    pub peers: BTreeMap<u32, String>,
    pub default_replication_factor: u32,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub listen: SocketAddr,
    pub shard_base_port: Option<u16>,
    pub advertise: KafkaAdvertise,
    pub advertised_host: Option<String>,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
}

pub const LISTEN_DEFAULT: &str = "127.0.0.1:9292";

/// The smallest batch cache a shard may have: the shard-wide bound on unwritten bytes is a
/// share of it, and one append of the largest batch must still fit.
pub const BATCH_CACHE_BYTES_MIN: u64 = 2 * engine::limits::UNWRITTEN_BYTES_MAX;

/// By default the batch caches of all shards take 1/this of the machine's memory (Redpanda
/// likewise sizes its batch cache from the memory it has). Measured here (docs/benchmarks.md,
/// issue #11): a hot-tail consumer at ~900 MB/s of 1 KiB records kept up 25 % worse with
/// 256 MiB per shard than with 1 GiB, because it fell out of the cache.
pub const BATCH_CACHE_MEMORY_DIVISOR: u64 = 8;

/// The default never gives one shard more than this.
pub const BATCH_CACHE_DEFAULT_BYTES_MAX: u64 = 4 << 30;

const _: () = assert!(BATCH_CACHE_BYTES_MIN < BATCH_CACHE_DEFAULT_BYTES_MAX);

/// Each shard's default batch cache: an eighth of the machine's memory shared by `shards`,
/// within `BATCH_CACHE_BYTES_MIN..=BATCH_CACHE_DEFAULT_BYTES_MAX` (the engine's own default when
/// the memory size cannot be read).
pub fn default_batch_cache_bytes(shards: usize) -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page_bytes) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let (Ok(pages), Ok(page_bytes)) = (u64::try_from(pages), u64::try_from(page_bytes)) else {
        return engine::limits::SHARD_CACHE_BYTES_DEFAULT;
    };
    let share = pages.saturating_mul(page_bytes) / BATCH_CACHE_MEMORY_DIVISOR / (shards.max(1) as u64);
    share.clamp(BATCH_CACHE_BYTES_MIN, BATCH_CACHE_DEFAULT_BYTES_MAX)
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> Result<ServeConfig, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.clone().or(file.data_dir.clone()).ok_or("--data-dir is required")?;
        let listen = resolve_addr(args.listen.as_deref().or(file.listen.as_deref()).unwrap_or(LISTEN_DEFAULT))?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let shards = args.shards.or(file.shards).unwrap_or(cores);
        if shards == 0 || shards > SHARDS_MAX {
            return Err(format!("--shards must be 1..={SHARDS_MAX}, got {shards}"));
        }
        let metrics_listen = match args.metrics_listen.as_deref().or(file.metrics_listen.as_deref()) {
            Some(a) => Some(resolve_addr(a)?),
            None => None,
        };
        let kafka = KafkaConfig::resolve(&args.kafka, &file)?;
        let cluster = ClusterConfig::resolve(&args.cluster, &file)?;
        if cluster.is_some() && args.node_id.or(file.node_id).is_none() {
            return Err("--cluster-listen needs --node-id".into());
        }
        let batch_cache_bytes =
            args.batch_cache_bytes.or(file.batch_cache_bytes).unwrap_or(engine::limits::SHARD_CACHE_BYTES_DEFAULT);
        if batch_cache_bytes < BATCH_CACHE_BYTES_MIN {
            return Err(format!(
                "--batch-cache-bytes must be at least {BATCH_CACHE_BYTES_MIN} (twice the largest batch), got {batch_cache_bytes}"
            ));
        }
        let group_initial_rebalance_delay_ms = args
            .group_initial_rebalance_delay_ms
            .or(file.group_initial_rebalance_delay_ms)
            .unwrap_or(broker::limits::GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT);
        if group_initial_rebalance_delay_ms > broker::limits::REBALANCE_TIMEOUT_MS_MAX {
            return Err(format!(
                "--group-initial-rebalance-delay-ms must be at most {}, got {group_initial_rebalance_delay_ms}",
                broker::limits::REBALANCE_TIMEOUT_MS_MAX
            ));
        }
        Ok(ServeConfig {
            group_initial_rebalance_delay_ms,
            data_dir,
            listen,
            shards,
            node: NodeId::new(args.node_id.or(file.node_id).unwrap_or(0)),
            pin_shards: !(args.no_pin || file.no_pin.unwrap_or(false)),
            metrics_listen,
            shard_base_port: args.shard_base_port.or(file.shard_base_port),
            disk_free_floor_bytes: args.disk_free_floor_bytes.or(file.disk_free_floor_bytes).unwrap_or(0),
            batch_cache_bytes,
            kafka,
            advertised_host: args.advertised_host.clone().or(file.advertised_host.clone()),
            cluster,
        })
    }
}

impl ClusterConfig {
    fn resolve(args: &ClusterArgs, file: &FileConfig) -> Result<Option<ClusterConfig>, String> {
        let Some(listen) = args.cluster_listen.as_deref().or(file.cluster_listen.as_deref()) else {
            if args.cluster_peers.is_some() || file.cluster_peers.is_some() {
                return Err("--cluster-peers needs --cluster-listen".into());
            }
            return Ok(None);
        };
        let peers_text = args
            .cluster_peers
            .as_deref()
            .or(file.cluster_peers.as_deref())
            .ok_or("--cluster-listen needs --cluster-peers (the voters: NODE=HOST:PORT,…)")?;
        let peers = parse_peers(peers_text)?;
        let default_replication_factor =
            args.default_replication_factor.or(file.default_replication_factor).unwrap_or(1);
        if default_replication_factor == 0 {
            return Err("--default-replication-factor must be at least 1".into());
        }
        Ok(Some(ClusterConfig { listen: resolve_addr(listen)?, peers, default_replication_factor }))
    }
}

/// `1=host:port,2=host:port` → {1: "host:port", 2: "host:port"}.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u32, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, address) =
            item.split_once('=').ok_or_else(|| format!("bad peer {item:?}: expected NODE=HOST:PORT"))?;
        let id: u32 = id.trim().parse().map_err(|_| format!("bad peer {item:?}: the node id must be a number"))?;
        let address = address.trim();
        if address.rsplit_once(':').and_then(|(_, port)| port.parse::<u16>().ok()).is_none() {
            return Err(format!("bad peer {item:?}: expected HOST:PORT after '='"));
        }
        if peers.insert(id, address.to_owned()).is_some() {
            return Err(format!("node {id} is listed twice in the peers"));
        }
    }
    if peers.is_empty() {
        return Err("--cluster-peers lists no voter".into());
    }
    Ok(peers)
}

impl KafkaConfig {
    fn resolve(args: &KafkaArgs, file: &FileConfig) -> Result<Option<KafkaConfig>, String> {
        let Some(listen) = args.kafka_listen.as_deref().or(file.kafka_listen.as_deref()) else {
            return Ok(None);
        };
        let advertise = match args.kafka_advertise.as_deref().or(file.kafka_advertise.as_deref()).unwrap_or("shards") {
            "shards" => KafkaAdvertise::Shards,
            "single" => KafkaAdvertise::Single,
            other => return Err(format!("--kafka-advertise must be shards or single, got {other:?}")),
        };
        let default_partitions = args.kafka_default_partitions.or(file.kafka_default_partitions).unwrap_or(1);
        if default_partitions == 0 || default_partitions > engine::limits::PARTITIONS_PER_TOPIC_MAX {
            return Err(format!(
                "--kafka-default-partitions must be 1..={}, got {default_partitions}",
                engine::limits::PARTITIONS_PER_TOPIC_MAX
            ));
        }
        Ok(Some(KafkaConfig {
            listen: resolve_addr(listen)?,
            shard_base_port: args.kafka_shard_base_port.or(file.kafka_shard_base_port),
            advertise,
            advertised_host: args.kafka_advertised_host.clone().or(file.kafka_advertised_host.clone()),
            auto_create_topics: args.kafka_auto_create_topics.or(file.kafka_auto_create_topics).unwrap_or(true),
            default_partitions,
        }))
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn resolve_addr(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("bad address {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address {text:?}: resolves to nothing"))
}
