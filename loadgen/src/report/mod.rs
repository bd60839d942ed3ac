//! The report of one run: what was asked (`config`), where it ran (`environment`), the
//! same-run `baselines`, and what was measured (`results`, with ratios to the baselines). The
//! JSON form of [`RunReport`] is the stable schema documented in docs/benchmarks.md; a change
//! that removes or renames a field bumps [`SCHEMA_VERSION`].

pub mod hgrm;
pub mod json;
pub mod live;
pub mod markdown;
pub mod plot;
pub mod protocols;
pub mod ratios;
pub mod replication;
pub mod spread;
pub mod table;
pub mod targets;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::baseline::Baselines;
use crate::config::WorkloadConfig;
use crate::env_info::Environment;
use crate::histogram::Percentiles;
use crate::meter::Platform;

/// Version of the JSON schema. Readers refuse other versions (`compare` exits 2).
pub const SCHEMA_VERSION: u32 = 1;
pub const TOOL: &str = "shardlog-loadgen";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub tool: String,
    pub scenario: String,
    pub config: WorkloadConfig,
    pub environment: Environment,
    pub baselines: Option<Baselines>,
    pub results: Results,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producers on a fixed schedule; latency from intended send times.
    OpenLoop,
    /// `--rate max`: producers as fast as their buffers allow.
    ClosedLoop,
    /// A backlog written first, then read from offset 0.
    CatchUp,
}

/// Messages and value bytes over a measured span.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub msg_per_s: f64,
    /// Decimal megabytes of record values per second.
    pub mb_per_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub sent: u64,
    pub acked: u64,
    pub consumed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Errors {
    pub send: u64,
    pub ack: u64,
    pub consume: u64,
    /// The first few error texts.
    pub first: Vec<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.send + self.ack + self.consume
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub mode: Mode,
    /// Open loop: the total target rate.
    pub rate_target_msg_per_s: Option<f64>,
    /// `P%-of-max`: what the closed-loop probe sustained.
    pub rate_max_probe_msg_per_s: Option<f64>,
    /// Acknowledged in the measured window (catch-up: while writing the backlog).
    pub publish: Throughput,
    /// Read in the measured window (catch-up: the backlog read).
    pub consume: Throughput,
    /// Intended send → acknowledgement, messages intended inside the window.
    pub publish_latency_us: Percentiles,
    /// Intended send → actual send call: how far behind schedule producers ran.
    pub send_delay_us: Percentiles,
    /// Intended send → consumer receive (empty in catch-up mode and without consumers).
    pub end_to_end_latency_us: Percentiles,
    /// Acknowledged but unread messages (summed over groups) when the window opened / closed
    /// (catch-up: before the read / when it stopped).
    pub backlog_messages_window_start: u64,
    pub backlog_messages_end: u64,
    pub totals: Totals,
    pub errors: Errors,
    /// Figures divided by baselines (names in docs/benchmarks.md); only those whose baseline
    /// was measured.
    pub ratios: BTreeMap<String, f64>,
    pub notes: Vec<String>,
    /// The platform's stalls (hiccup meter, steal, iowait) and CPU per message over the
    /// publish window (`meter.rs`); absent in reports written before it existed.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// `P%-of-max`: the closed-loop probe's own figures (the maximum the run is a share of).
    #[serde(default)]
    pub probe: Option<Probe>,
}

/// The closed-loop probe of a `P%-of-max` run, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub publish: Throughput,
    pub consume: Throughput,
    pub publish_latency_us: Percentiles,
    pub end_to_end_latency_us: Percentiles,
    pub platform: Option<Platform>,
}
