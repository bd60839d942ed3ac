//! Port numbers: one layout shared by every node (each on its own addresses), reserved among
//! concurrently running tests.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};

use super::proxy::{advertised_ip, node_ip, NodeId};

/// Ports are reserved in blocks of this many (as `tests/common::PortBlock`, whose lock files
/// these are).
pub const PORT_BLOCK: u16 = 8;
/// Ports per node at most: cluster, native bootstrap, Kafka bootstrap, metrics, and a native
/// and a Kafka port per shard.
pub const PORTS_PER_NODE_MAX: u16 = 4 * PORT_BLOCK;
/// Shards per node at most, for `PORTS_PER_NODE_MAX`.
pub const SHARDS_MAX: u32 = (PORTS_PER_NODE_MAX as u32 - 4) / 2;

/// Where each port of a node is; every node has the same numbers on its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortLayout {
    pub cluster: u16,
    pub native: u16,
    /// Shard i listens natively on `native_shard_base + i`.
    pub native_shard_base: u16,
    pub kafka: Option<u16>,
    pub kafka_shard_base: Option<u16>,
    pub metrics: Option<u16>,
    pub shards: u16,
}

/// What a port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    Cluster,
    Native,
    NativeShard(u16),
    Kafka,
    KafkaShard(u16),
    Metrics,
}

impl PortLayout {
    /// Ports from `base` on: cluster, native, native shards, then Kafka and its shards, then
    /// metrics.
    pub fn new(base: u16, shards: u16, kafka: bool, metrics: bool) -> PortLayout {
        let native_shard_base = base + 2;
        let kafka_base = native_shard_base + shards;
        let after_kafka = if kafka { kafka_base + 1 + shards } else { kafka_base };
        PortLayout {
            cluster: base,
            native: base + 1,
            native_shard_base,
            kafka: kafka.then_some(kafka_base),
            kafka_shard_base: kafka.then_some(kafka_base + 1),
            metrics: metrics.then_some(after_kafka),
            shards,
        }
    }

    pub fn count(shards: u16, kafka: bool, metrics: bool) -> u16 {
        2 + shards + if kafka { 1 + shards } else { 0 } + u16::from(metrics)
    }

    /// Every port with what it is for.
    pub fn all(&self) -> Vec<(PortKind, u16)> {
        let mut ports = vec![(PortKind::Cluster, self.cluster), (PortKind::Native, self.native)];
        ports.extend((0..self.shards).map(|i| (PortKind::NativeShard(i), self.native_shard_base + i)));
        if let (Some(kafka), Some(base)) = (self.kafka, self.kafka_shard_base) {
            ports.push((PortKind::Kafka, kafka));
            ports.extend((0..self.shards).map(|i| (PortKind::KafkaShard(i), base + i)));
        }
        ports.extend(self.metrics.map(|port| (PortKind::Metrics, port)));
        ports
    }
}

/// A node's addresses on one IP (advertised: through the proxy; bound: direct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    pub cluster: SocketAddr,
    pub native: SocketAddr,
    pub native_shards: Vec<SocketAddr>,
    pub kafka: Option<SocketAddr>,
    pub kafka_shards: Vec<SocketAddr>,
    /// Only ever on the bound address (metrics are not proxied).
    pub metrics: Option<SocketAddr>,
}

impl NodeAddrs {
    pub fn on(ip: Ipv4Addr, ports: &PortLayout) -> NodeAddrs {
        let at = |port: u16| SocketAddr::V4(SocketAddrV4::new(ip, port));
        NodeAddrs {
            cluster: at(ports.cluster),
            native: at(ports.native),
            native_shards: (0..ports.shards).map(|i| at(ports.native_shard_base + i)).collect(),
            kafka: ports.kafka.map(at),
            kafka_shards: ports.kafka_shard_base.map_or(Vec::new(), |b| (0..ports.shards).map(|i| at(b + i)).collect()),
            metrics: ports.metrics.map(at),
        }
    }
}

/// Ports reserved for a run: held until dropped.
pub struct PortLocks {
    pub base: u16,
    _locks: Vec<File>,
}

/// Reserves `count` consecutive ports free on every node's own and advertised address, as
/// whole blocks of `tests/common`'s port locks (same directory and names, so single-node
/// tests running at the same time stay off them).
pub fn reserve_ports(count: u16, nodes: &[NodeId]) -> PortLocks {
    assert!(count <= PORTS_PER_NODE_MAX);
    let blocks_needed = count.div_ceil(PORT_BLOCK);
    let (first, last) = port_region();
    let dir = std::env::temp_dir().join("shardlog-itest-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let blocks = (last - first) / PORT_BLOCK;
    assert!(blocks > blocks_needed);
    let start = (std::process::id() as u16).wrapping_mul(6007) % (blocks - blocks_needed);
    let ips: Vec<Ipv4Addr> = nodes.iter().flat_map(|&n| [node_ip(n), advertised_ip(n)]).collect();
    for i in 0..blocks - blocks_needed {
        let index = (start + i) % (blocks - blocks_needed);
        let base = first + index * PORT_BLOCK;
        let mut locks = Vec::new();
        for b in 0..blocks_needed {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("ports-{}.lock", base + b * PORT_BLOCK)))
                .unwrap();
            if lock.try_lock().is_err() {
                break; // Another test holds this block.
            }
            locks.push(lock);
        }
        if locks.len() < blocks_needed as usize {
            continue;
        }
        let free = (base..base + count).all(|port| ips.iter().all(|&ip| TcpListener::bind((ip, port)).is_ok()));
        if free {
            return PortLocks { base, _locks: locks };
        }
    }
    panic!("no {count} free ports on {ips:?} in {first}..{last}");
}

/// Ports outside the kernel's ephemeral range (the same region as `tests/common`).
fn port_region() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().filter_map(|v| v.parse::<u16>().ok());
    let (low, high) = (bounds.next().unwrap_or(32768), bounds.next().unwrap_or(60999));
    if low >= 12_000 {
        (10_000, low - 1)
    } else {
        assert!(high < 60_000, "no port region outside the ephemeral range {low}..{high}");
        (high + 1, 65_000)
    }
}
