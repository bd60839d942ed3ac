//! One broker process: binds every listener (so a port conflict is one clear error before
//! anything starts, and port 0 resolves once for every shard), builds what each protocol
//! advertises from the bound addresses, and starts the broker core.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use broker::broker::ClusterSetup;
use broker::cluster::BrokerInfo;
use broker::native::{NativeService, NativeSettings};
use broker::net::{bind_exclusive, bind_per_shard, bind_shared};
use broker::{Broker, BrokerConfig, BrokerError, Listeners};
use kafka::{KafkaOptions, KafkaService, KafkaSettings};

use crate::config::{ClusterConfig, ServeConfig};

/// A running broker and the addresses it listens on. Dropping it does not stop it; call
/// `shutdown`.
pub struct Node {
    broker: Broker,
    /// The native address every shard accepts on.
    pub listen: SocketAddr,
    /// Each shard's own native listener (advertised in Metadata).
    pub shard_addresses: Vec<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    /// The Kafka bootstrap address and each shard's own Kafka address, with `--kafka-listen`.
    pub kafka_listen: Option<SocketAddr>,
    pub kafka_shard_addresses: Vec<SocketAddr>,
    /// A cluster node's cluster port.
    pub cluster_listen: Option<SocketAddr>,
}

/// `address` with its host replaced by `host` (the advertised name), port unchanged.
fn advertised(address: &SocketAddr, host: Option<&str>) -> String {
    match host {
        Some(host) => format!("{host}:{}", address.port()),
        None => address.to_string(),
    }
}

impl Node {
    /// Binds every listener and starts every shard; returns once all of them accept.
    pub fn start(config: ServeConfig) -> Result<Node, BrokerError> {
        let shards = config.shards;
        let (shared, listen) = bind_shared(config.listen, shards)?;
        let own = bind_per_shard(listen.ip(), listen, config.listen.port(), config.shard_base_port, shards)?;
        let shard_addresses: Vec<SocketAddr> = own.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?;
        let host = config.advertised_host.as_deref();
        let native_advertised: Vec<String> = shard_addresses.iter().map(|a| advertised(a, host)).collect();
        let native = NativeService::new(NativeSettings { shard_addresses: native_advertised.clone() });
        let mut listeners = vec![Listeners {
            service: Arc::new(native),
            per_shard: shared.into_iter().zip(own).map(|(shared, own)| vec![shared, own]).collect(),
        }];
        let (mut kafka_listen, mut kafka_shard_addresses) = (None, Vec::new());
        if let Some(kafka) = &config.kafka {
            let (shared, bootstrap) = bind_shared(kafka.listen, shards)?;
            let own = bind_per_shard(bootstrap.ip(), bootstrap, kafka.listen.port(), kafka.shard_base_port, shards)?;
            kafka_shard_addresses = own.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?;
            let options = KafkaOptions {
                advertise: kafka.advertise,
                advertised_host: kafka.advertised_host.clone(),
                auto_create_topics: kafka.auto_create_topics,
                default_partitions: kafka.default_partitions,
                cluster: config.cluster.is_some(),
            };
            let settings = KafkaSettings::new(&options, config.node, bootstrap, &kafka_shard_addresses);
            listeners.push(Listeners {
                service: Arc::new(KafkaService::new(settings)),
                per_shard: shared.into_iter().zip(own).map(|(shared, own)| vec![shared, own]).collect(),
            });
            kafka_listen = Some(bootstrap);
        }
        let metrics = config.metrics_listen.map(bind_exclusive).transpose()?;
        let metrics_listen = metrics.as_ref().map(std::net::TcpListener::local_addr).transpose()?;
        let (mut cluster, mut cluster_listen) = (None, None);
        if let Some(cluster_config) = &config.cluster {
            let kafka_host =
                config.kafka.as_ref().and_then(|k| k.advertised_host.as_deref()).or(config.advertised_host.as_deref());
            let kafka_advertised = kafka_shard_addresses.iter().map(|a| advertised(a, kafka_host)).collect();
            let (setup, bound) = cluster_setup(&config, cluster_config, native_advertised, kafka_advertised)?;
            cluster = Some(setup);
            cluster_listen = Some(bound);
        }
        let broker_config = BrokerConfig {
            data_dir: config.data_dir.clone(),
            node: config.node,
            shards,
            pin_shards: config.pin_shards,
            disk_free_floor_bytes: config.disk_free_floor_bytes,
            batch_cache_bytes: config.batch_cache_bytes,
            group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            cluster,
        };
        let broker = Broker::start(broker_config, listeners, metrics)?;
        Ok(Node {
            broker,
            listen,
            shard_addresses,
            metrics_listen,
            kafka_listen,
            kafka_shard_addresses,
            cluster_listen,
        })
    }

    /// The flag that stops the broker when set (signal handlers set it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.broker.stop_flag()
    }

    /// Waits until the broker stops (after `stop_flag` is set).
    pub fn wait(&mut self) {
        self.broker.wait();
    }

    /// Stops accepting, finishes in-flight requests, syncs and closes every log cleanly.
    pub fn shutdown(&mut self) {
        self.broker.shutdown();
    }
}

/// Binds the cluster port and describes this broker to the cluster: its advertised cluster,
/// native and Kafka addresses (the voters' list gives its cluster address as the others reach
/// it; a learner advertises its bound address with the advertised host).
fn cluster_setup(
    config: &ServeConfig,
    cluster: &ClusterConfig,
    native_addresses: Vec<String>,
    kafka_addresses: Vec<String>,
) -> Result<(ClusterSetup, SocketAddr), BrokerError> {
    let listener = bind_exclusive(cluster.listen)?;
    let bound = listener.local_addr()?;
    let node = config.node.get();
    let cluster_address =
        cluster.peers.get(&node).cloned().unwrap_or_else(|| advertised(&bound, config.advertised_host.as_deref()));
    let broker = BrokerInfo {
        node,
        incarnation: new_incarnation(),
        cluster_address: cluster_address.clone(),
        native_addresses,
        kafka_addresses,
        fenced: false,
        draining: false,
    };
    let source_ip = (!bound.ip().is_unspecified()).then_some(bound.ip());
    let service = crate::cluster::service(node, listener, cluster_address, cluster.peers.clone());
    let setup =
        ClusterSetup { service, broker, source_ip, default_replication_factor: cluster.default_replication_factor };
    Ok((setup, bound))
}

/// A random, non-zero incarnation for this start of the process (std's per-process random
/// hash keys; no dependency needed for an id that only has to differ between starts).
fn new_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}
