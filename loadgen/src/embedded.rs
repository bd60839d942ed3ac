//! The embedded broker: `shardlog::Node` (the broker core with its native and Kafka
//! listeners) started in this process on 127.0.0.1 with
//! port 0 (no port to collide with), on a data directory inside the run's temp directory.
//! Shards are pinned by the broker to CPUs 0..n (shard i on CPU i mod cores).
//!
//! With `--protocol kafka` the broker also serves Kafka on 127.0.0.1 port 0, every shard
//! advertised as its own broker (`KafkaAdvertise::Shards`, as `serve --kafka-listen` does by
//! default), and the run bootstraps from the Kafka address.

use std::net::SocketAddr;
use std::path::Path;

use shardlog::config::{KafkaAdvertise, KafkaConfig, ServeConfig};
use shardlog::Node;

use crate::error::{LoadgenError, LoadgenResult};

pub struct Embedded {
    broker: Node,
    pub shards: usize,
    kafka: bool,
}

impl Embedded {
    pub fn start(data_dir: &Path, shards: usize) -> LoadgenResult<Embedded> {
        Embedded::start_with(data_dir, shards, false)
    }

    /// `kafka`: also serve the Kafka protocol, and bootstrap from it.
    pub fn start_with(data_dir: &Path, shards: usize, kafka: bool) -> LoadgenResult<Embedded> {
        assert!(shards > 0);
        let kafka_config = kafka.then(|| KafkaConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shard_base_port: None,
            advertise: KafkaAdvertise::Shards,
            advertised_host: None,
            // The driver creates its topics; a typo must not create one.
            auto_create_topics: false,
            default_partitions: 1,
        });
        let config = ServeConfig {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards,
            node: broker::NodeId::default(),
            pin_shards: true,
            metrics_listen: None,
            shard_base_port: None,
            kafka: kafka_config,
            disk_free_floor_bytes: 0,
            batch_cache_bytes: shardlog::config::default_batch_cache_bytes(shards),
            // The workload's consumers start within the warm-up; waiting for more members
            // would only shorten what the warm-up measures.
            group_initial_rebalance_delay_ms: 0,
            advertised_host: None,
            cluster: None,
        };
        let broker = Node::start(config).map_err(|e| LoadgenError::Broker(e.to_string()))?;
        if kafka && broker.kafka_listen.is_none() {
            return Err(LoadgenError::Broker("the Kafka listener did not start".to_owned()));
        }
        Ok(Embedded { broker, shards, kafka })
    }

    /// The address clients start from: the Kafka listener when it was asked for.
    pub fn bootstrap(&self) -> String {
        match (self.kafka, self.broker.kafka_listen) {
            (true, Some(kafka)) => kafka.to_string(),
            _ => self.broker.listen.to_string(),
        }
    }

    /// The native protocol's address (also served when the Kafka listener is on).
    pub fn native_bootstrap(&self) -> String {
        self.broker.listen.to_string()
    }

    pub fn placement(&self) -> String {
        let cpus = crate::baseline::env::cpu_count();
        format!(
            "{} shards pinned to CPUs {}",
            self.shards,
            (0..self.shards).map(|i| (i % cpus).to_string()).collect::<Vec<_>>().join(",")
        )
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Graceful: finishes in-flight requests, syncs and closes every log.
        self.broker.shutdown();
    }
}
