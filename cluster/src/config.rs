//! A node's cluster settings: who it is, where it listens, who the voters are, and the timing
//! of heartbeats, sessions and elections (defaults in `limits.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::SnapshotPolicy;

use crate::error::ConfigError;
use crate::limits::{
    BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT, BROKER_SESSION_TIMEOUT_MS_DEFAULT, RAFT_ELECTION_TIMEOUT_MAX_MS_DEFAULT,
    RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT, RAFT_HEARTBEAT_INTERVAL_MS_DEFAULT, RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS,
    RAFT_PAYLOAD_ENTRIES_MAX, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_LOGS_KEPT_DEFAULT, SNAPSHOT_LOGS_SINCE_LAST_DEFAULT,
};

/// How this node takes part in the cluster.
#[derive(Debug)]
pub struct ClusterConfig {
    /// This node's id (the broker's node id).
    pub node: u32,
    /// The cluster port, already bound (Raft and controller RPCs arrive here). When it is
    /// bound to a specific IP, outgoing cluster connections come from that IP too.
    pub listen: std::net::TcpListener,
    /// This node's cluster address as peers reach it (`host:port`).
    pub advertised: String,
    /// The voters: node id → advertised cluster address. A node not listed here joins as a
    /// learner (it receives the metadata but does not vote).
    pub peers: BTreeMap<u32, String>,
    /// How often this broker heartbeats the controller.
    pub heartbeat_interval_ms: u64,
    /// A broker silent this long is fenced by the controller.
    pub session_timeout_ms: u64,
    /// A follower that hears no leader for a random time in [min, max) starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// The Raft leader's heartbeat to its followers.
    pub raft_heartbeat_ms: u64,
    /// A snapshot is built every this many applied entries, and the log purged behind it.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the snapshot (for followers slightly behind).
    pub snapshot_logs_kept: u64,
}

impl ClusterConfig {
    /// A config with the default timing.
    pub fn new(
        node: u32,
        listen: std::net::TcpListener,
        advertised: String,
        peers: BTreeMap<u32, String>,
    ) -> ClusterConfig {
        ClusterConfig {
            node,
            listen,
            advertised,
            peers,
            heartbeat_interval_ms: BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
            session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            election_timeout_min_ms: RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: RAFT_ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            raft_heartbeat_ms: RAFT_HEARTBEAT_INTERVAL_MS_DEFAULT,
            snapshot_logs_since_last: SNAPSHOT_LOGS_SINCE_LAST_DEFAULT,
            snapshot_logs_kept: SNAPSHOT_LOGS_KEPT_DEFAULT,
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError::Invalid(reason));
        if self.peers.is_empty() {
            return invalid("no voters (peers) given".into());
        }
        if let Some(listed) = self.peers.get(&self.node) {
            if *listed != self.advertised {
                return invalid(format!(
                    "node {} is listed among the voters at {listed} but advertises {}",
                    self.node, self.advertised
                ));
            }
        }
        if self.advertised.is_empty() {
            return invalid("no advertised cluster address".into());
        }
        if self.heartbeat_interval_ms == 0 || self.session_timeout_ms < 2 * self.heartbeat_interval_ms {
            return invalid(format!(
                "the session timeout ({} ms) must be at least two heartbeat intervals ({} ms)",
                self.session_timeout_ms, self.heartbeat_interval_ms
            ));
        }
        if self.raft_heartbeat_ms == 0
            || self.election_timeout_min_ms <= self.raft_heartbeat_ms
            || self.election_timeout_max_ms <= self.election_timeout_min_ms
        {
            return invalid(format!(
                "need 0 < raft heartbeat ({} ms) < election timeout min ({} ms) < max ({} ms)",
                self.raft_heartbeat_ms, self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.snapshot_logs_since_last == 0 {
            return invalid("snapshot_logs_since_last must be positive".into());
        }
        Ok(())
    }

    /// openraft's config for this node.
    pub fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let config = openraft::Config {
            cluster_name: "shardlog-metadata".to_string(),
            heartbeat_interval: self.raft_heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS,
            max_payload_entries: RAFT_PAYLOAD_ENTRIES_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            max_in_snapshot_log_to_keep: self.snapshot_logs_kept,
            ..openraft::Config::default()
        };
        config.validate().map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// Parses voters given as `id=host:port,id=host:port` (the CLI's `--cluster-peers`).
pub fn parse_peers(text: &str) -> Result<BTreeMap<u32, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((id, address)) = item.split_once('=') else {
            return Err(ConfigError::Invalid(format!("peer {item:?} is not id=host:port")));
        };
        let id: u32 = id.trim().parse().map_err(|_| ConfigError::Invalid(format!("peer id {id:?} is not a number")))?;
        let address = address.trim();
        if address.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
            return Err(ConfigError::Invalid(format!("peer address {address:?} is not host:port")));
        }
        if peers.insert(id, address.to_string()).is_some() {
            return Err(ConfigError::Invalid(format!("peer {id} given twice")));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_configs_validate() {
        let peers = parse_peers("1=127.0.1.1:9100, 2=127.0.1.2:9100,3=host:9100").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "127.0.1.2:9100");
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("1=a").is_err());

        let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = ClusterConfig::new(1, listen, "127.0.1.1:9100".into(), peers);
        config.validate().unwrap();
        config.raft_config().unwrap();
        config.advertised = "elsewhere:1".into();
        assert!(config.validate().is_err(), "a voter advertising another address than its peers entry");
        config.advertised = "127.0.1.1:9100".into();
        config.election_timeout_max_ms = config.election_timeout_min_ms;
        assert!(config.validate().is_err());
    }
}
