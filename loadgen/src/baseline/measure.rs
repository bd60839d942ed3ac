//! Runs the baselines a report asks for (`--baseline disk|net|all|none`) and keeps the figures
//! the ratios need.

use std::path::Path;
use std::time::Duration;

use clap::ValueEnum;
use glommio::{LocalExecutorBuilder, Placement};
use serde::{Deserialize, Serialize};

use super::{disk, loopback, BaselineError, BaselineResult};
use crate::histogram::Percentiles;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineKind {
    /// Raw disk: O_DIRECT write and read bandwidth, fdatasync latency.
    Disk,
    /// Loopback TCP: bandwidth and 128-byte round trips.
    Net,
    All,
    None,
}

/// How much each baseline does.
#[derive(Debug, Clone, Copy)]
pub struct BaselinePlan {
    pub kind: BaselineKind,
    /// Written (and read back) by the bandwidth baselines.
    pub disk_bytes: u64,
    /// 4 KiB write + fdatasync pairs timed.
    pub fsync_count: u64,
    /// Per loopback baseline.
    pub net_duration: Duration,
}

impl BaselinePlan {
    pub fn new(kind: BaselineKind) -> BaselinePlan {
        BaselinePlan { kind, disk_bytes: 512 << 20, fsync_count: 300, net_duration: Duration::from_secs(1) }
    }

    fn disk(&self) -> bool {
        matches!(self.kind, BaselineKind::Disk | BaselineKind::All)
    }

    fn net(&self) -> bool {
        matches!(self.kind, BaselineKind::Net | BaselineKind::All)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Baselines {
    /// Raw O_DIRECT sequential write into a preallocated file, 1 MiB × 8 in flight, then one
    /// fdatasync; decimal MB/s.
    pub disk_write_mb_per_s: Option<f64>,
    /// Raw O_DIRECT sequential read of that file, 1 MiB × 8 in flight.
    pub disk_read_mb_per_s: Option<f64>,
    /// 4 KiB O_DIRECT write + fdatasync, one after the other.
    pub fsync_latency_us: Option<Percentiles>,
    /// One TCP stream between two executors pinned to CPUs 0 and 1.
    pub loopback_mb_per_s: Option<f64>,
    /// 128-byte request/response round trips between those executors.
    pub loopback_rtt_us: Option<Percentiles>,
    /// The data directory the disk baselines used.
    pub disk_bytes: u64,
}

impl Baselines {
    pub fn is_empty(&self) -> bool {
        self.disk_write_mb_per_s.is_none() && self.loopback_mb_per_s.is_none()
    }
}

/// Measures the chosen baselines in `dir` (a real disk) and over loopback.
pub fn measure(plan: &BaselinePlan, dir: &Path) -> BaselineResult<Baselines> {
    let mut out = Baselines::default();
    if plan.disk() {
        let (dir, plan) = (dir.to_path_buf(), *plan);
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name("baseline-disk")
            .spawn(move || async move {
                disk::prime_direct_io(&dir).await?;
                let (write, path) = disk::raw_write(&dir, "baseline-raw.dat", plan.disk_bytes).await?;
                let fsync = disk::raw_fsync_latency(&dir, plan.fsync_count).await?;
                let read = disk::raw_read(&path).await?;
                std::fs::remove_file(&path)?;
                Ok::<_, BaselineError>((write, Percentiles::of(&fsync), read))
            })
            .map_err(|e| BaselineError::Executor(e.to_string()))?;
        let (write, fsync, read) = handle.join().map_err(|e| BaselineError::Executor(e.to_string()))??;
        out.disk_write_mb_per_s = Some(write.gb_per_s() * 1000.0);
        out.disk_read_mb_per_s = Some(read.gb_per_s() * 1000.0);
        out.fsync_latency_us = Some(fsync);
        out.disk_bytes = plan.disk_bytes;
    }
    if plan.net() {
        let bandwidth = loopback::bandwidth(0, 1, plan.net_duration)?;
        out.loopback_mb_per_s = Some(bandwidth.mb_per_s());
        let ping = loopback::ping_pong(0, 1, plan.net_duration)?;
        out.loopback_rtt_us = Some(Percentiles::of(&ping.histogram));
    }
    Ok(out)
}
