//! Where a run happened, recorded in every report: a figure means nothing without the machine
//! and the placement behind it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::baseline::env;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Environment {
    pub shardlog_version: String,
    /// `git rev-parse HEAD` of the working directory, when it is a checkout.
    pub git_rev: Option<String>,
    pub cpus: usize,
    pub kernel: String,
    /// File system of the data directory (embedded broker and disk baselines).
    pub data_dir_fs: Option<String>,
    pub memlock: String,
    /// "embedded" or the broker's address.
    pub broker: String,
    pub broker_shards: Option<usize>,
    pub broker_placement: Option<String>,
    pub loadgen_executors: usize,
    pub loadgen_placement: String,
    pub started_unix_s: u64,
}

impl Environment {
    pub fn probe(data_dir: Option<&Path>) -> Environment {
        Environment {
            shardlog_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_rev: git_rev(),
            cpus: env::cpu_count(),
            kernel: env::kernel(),
            data_dir_fs: data_dir.and_then(|d| env::FsType::of(d).ok()).map(|fs| fs.describe()),
            memlock: env::memlock_limit(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ..Environment::default()
        }
    }
}

fn git_rev() -> Option<String> {
    let output = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
