//! The embedded broker: `server::broker::Broker` started in this process on 127.0.0.1 with
//! port 0 (no port to collide with), on a data directory inside the run's temp directory.
//! Shards are pinned by the broker to CPUs 0..n (shard i on CPU i mod cores).

use std::net::SocketAddr;
use std::path::Path;

use server::broker::Broker;
use server::config::ServeConfig;

use crate::error::{LoadgenError, LoadgenResult};

pub struct Embedded {
    broker: Broker,
    pub shards: usize,
}

impl Embedded {
    pub fn start(data_dir: &Path, shards: usize) -> LoadgenResult<Embedded> {
        assert!(shards > 0);
        let config = ServeConfig {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards,
            metrics_listen: None,
            shard_base_port: None,
            kafka: None,
            disk_free_floor_bytes: 0,
        };
        let broker = Broker::start(config).map_err(|e| LoadgenError::Broker(e.to_string()))?;
        Ok(Embedded { broker, shards })
    }

    pub fn bootstrap(&self) -> String {
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
