//! Every workload knob, in one struct that is both the command line (clap) and a scenario file
//! (serde/TOML): one source of truth. Defaults live only in the clap attributes;
//! `WorkloadConfig::default()` parses an empty command line, and scenario files fill what they
//! leave out from it.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::LoadgenError;
use crate::values::{ByteSize, RateSpec, SizeSpec};

/// More topics than this is a typo, not a workload.
pub const TOPICS_MAX: u32 = 1000;
/// Partitions per topic (the broker's own limit may be lower and is reported by it).
pub const PARTITIONS_MAX: u32 = 100_000;
/// Producers and consumers are tasks; each holds a buffer, so bound them.
pub const PRODUCERS_MAX: usize = 4096;
pub const CONSUMERS_MAX: usize = 4096;
pub const GROUPS_MAX: usize = 64;
/// A record value larger than this would not fit a batch (engine::limits::BATCH_SIZE_BYTES_MAX)
/// with its header.
pub const MESSAGE_BYTES_MAX: u32 = 1 << 19;
/// The end-to-end timestamp header's value is 8 bytes; it travels in a header, so a message
/// may be smaller than that, but not empty.
pub const MESSAGE_BYTES_MIN: u32 = 1;
/// A day: longer runs are a mistake in units.
pub const DURATION_S_MAX: f64 = 86_400.0;
/// Nodes of an embedded cluster: each is a broker with its own shards, Raft and listeners in
/// this process; more than this on one machine measures the scheduler, not the cluster.
pub const CLUSTER_NODES_MAX: u32 = 7;
/// Replicas per partition: Kafka's own clusters rarely go past 5; more is a typo.
pub const REPLICATION_FACTOR_MAX: u32 = CLUSTER_NODES_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// shardlog's native protocol, through the Rust client.
    Native,
    /// Kafka's wire protocol (`workload/kafka/`): the embedded broker also listens for
    /// Kafka clients, or `--broker` names any Kafka-compatible broker's bootstrap address.
    Kafka,
}

/// How records are keyed, which decides their partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// No key: the client's sticky partitioner (Kafka's default for null keys).
    None,
    /// A random 16-byte key per record, partitioned by murmur2 as Kafka does.
    Random,
    /// No key; records go to the partitions in turn (explicit partition).
    RoundRobin,
}

/// What the producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// No response (Kafka acks=0): publish latency is only the time to enqueue and send.
    None,
    /// The partition accepted the batch, with the topic's durability (Kafka acks=1).
    Leader,
    /// After an fdatasync covering the batch, whatever the topic's durability (Kafka
    /// acks=all: in a cluster, once every in-sync replica has the batch, and with durability
    /// sync has fdatasync'ed it).
    Durable,
}

#[derive(clap::Args, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Name of the run (a scenario file's name by default); labels reports.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text describing the scenario.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Wire protocol of the workload driver.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// Run against this broker (HOST:PORT) instead of an embedded one; a cluster's bootstrap
    /// list is HOST:PORT,HOST:PORT,… (tried in order until one answers).
    #[arg(long, conflicts_with_all = ["embedded", "embedded_cluster"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// The process id of the `--broker` (e.g. a `shardlog serve` or a Kafka broker started
    /// beside the run): its CPU time per message is reported (from /proc/PID/stat).
    #[arg(long, requires = "broker")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_pid: Option<u32>,
    /// Start the broker in this process (the default when no --broker is given).
    #[arg(long, conflicts_with = "embedded_cluster")]
    pub embedded: bool,
    /// Start a cluster of this many nodes in this process instead of one broker: each node on
    /// free loopback ports with its own data directory, unpinned shards (`--shards` per node,
    /// default 1), the metadata voters being every node.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_cluster: Option<u32>,
    /// Replicas per partition of the run's topics (a cluster; default: the cluster's
    /// default.replication.factor). With --protocol kafka only on an embedded cluster, which
    /// is started with this as its default.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    /// Parent of the temporary data directory (embedded broker and disk baselines); default
    /// $SHARDLOG_TEST_DIR, else the system temp dir. Must be a real disk, not tmpfs.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Embedded broker shards (default: one per CPU; shards are pinned to CPUs 0..n). With
    /// --embedded-cluster: shards per node (default 1, unpinned).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Load-generator executors (default: one per CPU; they are not pinned, so on a small
    /// machine the scheduler places them beside the broker's shards).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadgen_cores: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Record value size: fixed (1KiB) or uniform:MIN-MAX.
    #[arg(long, default_value = "1KiB")]
    pub message_size: SizeSpec,
    /// Share of each value that is random bytes (the rest is zeroes): 1.0 is incompressible.
    #[arg(long, default_value_t = 1.0)]
    pub random_ratio: f64,
    #[arg(long, value_enum, default_value_t = KeyMode::None)]
    pub keys: KeyMode,
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Consumers per group.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Consumer groups, each reading every topic (0: no consumers).
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Producer batch size (Kafka's batch.size).
    #[arg(long, default_value = "128KiB")]
    pub batch_bytes: ByteSize,
    /// Producer linger (Kafka's linger.ms).
    #[arg(long, default_value_t = 1)]
    pub linger_ms: u64,
    /// Producer buffer per producer (Kafka's buffer.memory); `enqueue` waits when it is full.
    #[arg(long, default_value = "8MiB")]
    pub buffer_bytes: ByteSize,
    #[arg(long, value_enum, default_value_t = AckMode::Leader)]
    pub acks: AckMode,
    /// Open loop: up to this many µs before each intended send are waited for by yielding
    /// instead of a timer, so the load generator's own send delay stays far below what it
    /// measures (at most an eighth of each producer's interval; 0: timers only; costs CPU,
    /// see `workload/producer.rs`).
    #[arg(long, default_value_t = 200)]
    pub send_spin_us: u64,
    /// Topic durability: sync (ack after fdatasync), none, or interval:MS.
    #[arg(long, default_value = "sync")]
    pub durability: String,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Target publish rate over all producers: max, messages per second, or P%-of-max.
    #[arg(long, default_value = "max")]
    pub rate: RateSpec,
    /// Seconds of the closed-loop probe that P%-of-max measures first.
    #[arg(long, default_value_t = 3.0)]
    pub probe_s: f64,
    /// Catch-up mode: produce this much first with no consumer, then consume it from offset 0
    /// and measure the read (0: consumers run beside the producers).
    #[arg(long, default_value = "0")]
    pub backlog_bytes: ByteSize,
    /// A target checked in reports, e.g. `publish_to_disk_write>=0.9` (repeatable).
    #[arg(long = "target")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    config: WorkloadConfig,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        // The clap defaults are literals checked by `defaults_are_valid`; parsing an empty
        // command line cannot fail unless one of them is malformed.
        DefaultsOnly::try_parse_from(["shardlog-loadgen"]).map(|d| d.config).expect("clap defaults parse")
    }
}

impl WorkloadConfig {
    /// Whether the producers' acks wait for an fdatasync.
    pub fn durable_acks(&self) -> bool {
        match self.acks {
            AckMode::Durable => true,
            AckMode::Leader => self.durability == "sync",
            AckMode::None => false,
        }
    }

    pub fn catch_up(&self) -> bool {
        self.backlog_bytes.0 > 0
    }

    pub fn consumers_total(&self) -> usize {
        self.consumers * self.groups
    }

    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| "default".to_owned())
    }

    /// Checks every knob; the error names the knob and its limit.
    pub fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |m: String| Err(LoadgenError::Config(m));
        if self.topics == 0 || self.topics > TOPICS_MAX {
            return bad(format!("topics must be 1..={TOPICS_MAX}, got {}", self.topics));
        }
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return bad(format!("partitions must be 1..={PARTITIONS_MAX}, got {}", self.partitions));
        }
        let size_max = self.message_size.max_bytes();
        let size_min = match self.message_size {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Uniform { min_bytes, .. } => min_bytes,
        };
        if size_min < MESSAGE_BYTES_MIN || size_max > MESSAGE_BYTES_MAX {
            return bad(format!("message-size must be within {MESSAGE_BYTES_MIN}..={MESSAGE_BYTES_MAX} bytes"));
        }
        if !(0.0..=1.0).contains(&self.random_ratio) {
            return bad(format!("random-ratio must be within 0..=1, got {}", self.random_ratio));
        }
        if self.producers == 0 || self.producers > PRODUCERS_MAX {
            return bad(format!("producers must be 1..={PRODUCERS_MAX}, got {}", self.producers));
        }
        if self.consumers > CONSUMERS_MAX || self.groups > GROUPS_MAX {
            return bad(format!("at most {CONSUMERS_MAX} consumers per group and {GROUPS_MAX} groups"));
        }
        if self.catch_up() && self.consumers_total() == 0 {
            return bad("backlog-bytes (catch-up mode) needs at least one consumer".to_owned());
        }
        engine::Durability::from_str(&self.durability).map_err(|e| LoadgenError::Config(format!("durability: {e}")))?;
        for (knob, seconds) in [("duration-s", self.duration_s), ("warmup-s", self.warmup_s), ("probe-s", self.probe_s)]
        {
            if !(seconds.is_finite() && (0.0..=DURATION_S_MAX).contains(&seconds)) {
                return bad(format!("{knob} must be within 0..={DURATION_S_MAX}, got {seconds}"));
            }
        }
        if self.duration_s <= 0.0 {
            return bad("duration-s must be positive".to_owned());
        }
        if self.batch_bytes.0 == 0 || self.buffer_bytes.0 < u64::from(size_max) {
            return bad("batch-bytes must be positive and buffer-bytes at least one message".to_owned());
        }
        for target in &self.targets {
            crate::report::targets::Target::parse(target).map_err(LoadgenError::Config)?;
        }
        self.validate_cluster()
    }

    /// The cluster knobs: node count, replication factor, and what they need.
    fn validate_cluster(&self) -> Result<(), LoadgenError> {
        let bad = |m: String| Err(LoadgenError::Config(m));
        if let Some(nodes) = self.embedded_cluster {
            if nodes == 0 || nodes > CLUSTER_NODES_MAX {
                return bad(format!("embedded-cluster must be 1..={CLUSTER_NODES_MAX} nodes, got {nodes}"));
            }
        }
        if let Some(broker) = &self.broker {
            if bootstrap_list(broker).is_empty() {
                return bad(format!("broker: no HOST:PORT in {broker:?}"));
            }
        }
        let Some(factor) = self.replication_factor else {
            return Ok(());
        };
        if factor == 0 || factor > REPLICATION_FACTOR_MAX {
            return bad(format!("replication-factor must be 1..={REPLICATION_FACTOR_MAX}, got {factor}"));
        }
        if self.protocol == Protocol::Kafka && !self.is_embedded_cluster() {
            // client::kafka::Cluster::create_topics asks for the broker's default factor; an
            // embedded cluster is started with that default set to the factor asked for.
            return bad("replication-factor with --protocol kafka needs --embedded-cluster (the Kafka driver \
                        creates topics with the broker's default replication factor)"
                .to_owned());
        }
        match (self.embedded_cluster, &self.broker) {
            (Some(nodes), _) if factor > nodes => {
                bad(format!("replication-factor {factor} needs at least {factor} nodes; embedded-cluster is {nodes}"))
            }
            (None, None) if factor > 1 => {
                bad("replication-factor above 1 needs a cluster: --embedded-cluster N or --broker LIST".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// Whether the run's broker is a cluster this process starts.
    pub fn is_embedded_cluster(&self) -> bool {
        self.broker.is_none() && self.embedded_cluster.is_some()
    }
}

/// The addresses of a bootstrap list (`HOST:PORT,HOST:PORT`), blanks dropped, in order.
pub fn bootstrap_list(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).filter(|a| !a.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = WorkloadConfig::default();
        config.validate().unwrap();
        assert_eq!(config.rate, RateSpec::Max);
        assert!(config.broker.is_none());
    }

    #[test]
    fn cluster_knobs_are_checked() {
        let cluster = WorkloadConfig { embedded_cluster: Some(3), replication_factor: Some(3), ..Default::default() };
        cluster.validate().unwrap();
        assert!(cluster.is_embedded_cluster());
        let too_many = WorkloadConfig { replication_factor: Some(4), ..cluster.clone() };
        assert!(too_many.validate().is_err(), "more replicas than nodes");
        let single = WorkloadConfig { embedded_cluster: None, ..cluster.clone() };
        assert!(single.validate().is_err(), "RF 3 on one embedded broker");
        WorkloadConfig { protocol: Protocol::Kafka, ..cluster.clone() }.validate().unwrap();
        let remote = WorkloadConfig { embedded_cluster: None, broker: Some("a:1, b:2,".into()), ..cluster };
        remote.validate().unwrap();
        let kafka = WorkloadConfig { protocol: Protocol::Kafka, ..remote.clone() };
        assert!(kafka.validate().is_err(), "the Kafka driver cannot ask a remote cluster for a factor");
        assert_eq!(bootstrap_list(remote.broker.as_deref().unwrap()), ["a:1", "b:2"]);
        assert!(WorkloadConfig { broker: Some(" , ".into()), ..Default::default() }.validate().is_err());
        assert!(WorkloadConfig { embedded_cluster: Some(0), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn kafka_is_accepted() {
        let config = WorkloadConfig { protocol: Protocol::Kafka, ..WorkloadConfig::default() };
        config.validate().unwrap();
    }
}
