//! The embedded broker: `shardlog::Node` (the broker core with its native and Kafka
//! listeners) started in this process on 127.0.0.1 with
//! port 0 (no port to collide with), on a data directory inside the run's temp directory.
//! Shards are pinned by the broker to CPUs 0..n (shard i on CPU i mod cores).
//!
//! With `--protocol kafka` the broker also serves Kafka on 127.0.0.1 port 0, every shard
//! advertised as its own broker (`KafkaAdvertise::Shards`, as `serve --kafka-listen` does by
//! default), and the run bootstraps from the Kafka address.
//!
//! `EmbeddedCluster` (`--embedded-cluster N`) starts N such nodes as one cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use shardlog::config::{ClusterConfig, KafkaAdvertise, KafkaConfig, ServeConfig};
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
        let kafka_config = kafka.then(kafka_config);
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

/// Each cluster node refuses produces (DiskFull) once its file system has less free than
/// this: every byte is written once per replica into one shared disk, and a full disk would
/// stop the machine's other users too, not only the run.
pub const CLUSTER_DISK_FREE_FLOOR_BYTES: u64 = 1 << 30;

/// How many times a cluster start is tried with fresh ports: the free ports are found by
/// binding port 0 and closing it, and another process may take one before its node binds it.
const CLUSTER_START_ATTEMPTS: usize = 3;

/// An embedded cluster (`--embedded-cluster N`): N `shardlog::Node`s in this process, node ids
/// 1..=N, every one a metadata voter, each on 127.0.0.1 with port 0 for its native (and Kafka)
/// listeners and a free loopback port for its cluster port, its own data directory
/// `node-ID` under the run's, and unpinned shards (N brokers on a few cores: pinning would
/// stack every node's shard 0 on CPU 0).
pub struct EmbeddedCluster {
    nodes: Vec<Node>,
    pub shards_per_node: usize,
    kafka: bool,
}

impl EmbeddedCluster {
    /// Starts every node; returns once each node's shards accept connections (the cluster
    /// elects its metadata leader and registers the brokers in the background: see
    /// `cluster::wait_ready`). `default_replication_factor` is what the Kafka driver's topics
    /// get (it cannot ask for a factor).
    pub fn start(
        data_dir: &Path,
        nodes: u32,
        shards_per_node: usize,
        kafka: bool,
        default_replication_factor: u32,
    ) -> LoadgenResult<EmbeddedCluster> {
        assert!(nodes > 0 && shards_per_node > 0);
        assert!(default_replication_factor > 0 && default_replication_factor <= nodes);
        let mut last_error = String::new();
        for _ in 0..CLUSTER_START_ATTEMPTS {
            match Self::start_once(data_dir, nodes, shards_per_node, kafka, default_replication_factor) {
                Ok(cluster) => return Ok(cluster),
                // A node that bound its ports and then failed was shut down by `start_once`.
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(LoadgenError::Broker(format!("embedded cluster did not start: {last_error}")))
    }

    fn start_once(
        data_dir: &Path,
        nodes: u32,
        shards_per_node: usize,
        kafka: bool,
        default_replication_factor: u32,
    ) -> LoadgenResult<EmbeddedCluster> {
        let ports = free_loopback_ports(nodes as usize)?;
        let peers: BTreeMap<u32, String> =
            (1..=nodes).zip(&ports).map(|(id, port)| (id, format!("127.0.0.1:{port}"))).collect();
        let mut cluster = EmbeddedCluster { nodes: Vec::with_capacity(nodes as usize), shards_per_node, kafka };
        for (id, port) in (1..=nodes).zip(&ports) {
            let config = ServeConfig {
                data_dir: data_dir.join(format!("node-{id}")),
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                shards: shards_per_node,
                node: broker::NodeId::new(id),
                pin_shards: false,
                metrics_listen: None,
                shard_base_port: None,
                kafka: kafka.then(kafka_config),
                disk_free_floor_bytes: CLUSTER_DISK_FREE_FLOOR_BYTES,
                batch_cache_bytes: shardlog::config::default_batch_cache_bytes(shards_per_node * nodes as usize),
                // The workload's consumers start within the warm-up (as in the single-node run).
                group_initial_rebalance_delay_ms: 0,
                advertised_host: None,
                cluster: Some(ClusterConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], *port)),
                    peers: peers.clone(),
                    default_replication_factor,
                }),
            };
            // On failure `cluster` drops here, shutting down the nodes already started.
            let node = Node::start(config).map_err(|e| LoadgenError::Broker(format!("node {id}: {e}")))?;
            if kafka && node.kafka_listen.is_none() {
                return Err(LoadgenError::Broker(format!("node {id}: the Kafka listener did not start")));
            }
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's client address (Kafka's when it was asked for), as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        let address = |n: &Node| match (self.kafka, n.kafka_listen) {
            (true, Some(kafka)) => kafka.to_string(),
            _ => n.listen.to_string(),
        };
        self.nodes.iter().map(address).collect::<Vec<_>>().join(",")
    }

    /// Every node's native address, as a bootstrap list.
    pub fn native_bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.listen.to_string()).collect::<Vec<_>>().join(",")
    }

    pub fn placement(&self) -> String {
        format!(
            "embedded cluster: {} nodes (ids 1..={}) × {} unpinned shard(s), one process, one disk",
            self.nodes.len(),
            self.nodes.len(),
            self.shards_per_node
        )
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        // Graceful, in reverse: the first node is usually the first metadata leader, so the
        // others stop before it and never wait on an election.
        for node in self.nodes.iter_mut().rev() {
            node.shutdown();
        }
    }
}

/// The Kafka listener of an embedded broker: 127.0.0.1 port 0, every shard advertised as its
/// own broker, no auto-creation (the driver creates its topics; a typo must not create one).
fn kafka_config() -> KafkaConfig {
    KafkaConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shard_base_port: None,
        advertise: KafkaAdvertise::Shards,
        advertised_host: None,
        auto_create_topics: false,
        default_partitions: 1,
    }
}

/// `count` distinct loopback ports free right now: bound together at port 0, then released.
/// The voters' list needs every cluster address before the first node starts, so port 0 cannot
/// be handed to the nodes themselves.
fn free_loopback_ports(count: usize) -> LoadgenResult<Vec<u16>> {
    let listeners = (0..count).map(|_| std::net::TcpListener::bind(("127.0.0.1", 0))).collect::<Result<Vec<_>, _>>()?;
    let ports = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<Vec<_>, _>>()?;
    Ok(ports)
}
