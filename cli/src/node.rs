//! One broker process: binds every listener (so a port conflict is one clear error before
//! anything starts, and port 0 resolves once for every shard), builds what each protocol
//! advertises from the bound addresses, and starts the broker core.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use broker::native::{NativeService, NativeSettings};
use broker::net::{bind_exclusive, bind_per_shard, bind_shared};
use broker::{Broker, BrokerConfig, BrokerError, Listeners};
use kafka::{KafkaOptions, KafkaService, KafkaSettings};

use crate::config::ServeConfig;

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
}

impl Node {
    /// Binds every listener and starts every shard; returns once all of them accept.
    pub fn start(config: ServeConfig) -> Result<Node, BrokerError> {
        let shards = config.shards;
        let (shared, listen) = bind_shared(config.listen, shards)?;
        let own = bind_per_shard(listen.ip(), listen, config.listen.port(), config.shard_base_port, shards)?;
        let shard_addresses: Vec<SocketAddr> = own.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?;
        let native = NativeService::new(NativeSettings {
            shard_addresses: shard_addresses.iter().map(SocketAddr::to_string).collect(),
        });
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
        let broker_config = BrokerConfig {
            data_dir: config.data_dir.clone(),
            node: config.node,
            shards,
            pin_shards: config.pin_shards,
            disk_free_floor_bytes: config.disk_free_floor_bytes,
            batch_cache_bytes: config.batch_cache_bytes,
            group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
        };
        let broker = Broker::start(broker_config, listeners, metrics)?;
        Ok(Node { broker, listen, shard_addresses, metrics_listen, kafka_listen, kafka_shard_addresses })
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
