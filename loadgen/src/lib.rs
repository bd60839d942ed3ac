//! shardlog load generator (`shardlog-loadgen`): open-loop producers and consumers against an
//! embedded or remote broker, HdrHistogram latencies corrected for coordinated omission, every
//! figure also as a ratio to baselines measured in the same run, JSON / .hgrm / SVG output, a
//! regression gate (`compare`) and scenario suites.
//!
//! Map: `config.rs` (every knob, CLI and TOML), `values.rs` (sizes, rates), `scenario.rs`,
//! `workload/` (driver seam, native driver, producers, consumers, schedule, counters),
//! `histogram.rs` (percentiles, coordinated omission), `meter.rs`
//! (hiccup meter, steal/iowait, CPU per message), `baseline/` (raw disk, loopback,
//! machine facts; shared with `benches/`), `embedded.rs` (one broker or a cluster in
//! process), `cluster.rs` (waiting for a cluster and its topics), `run.rs` (one run),
//! `replication.rs` (RF 1 vs 3 in one run), `report/` (table, JSON, hgrm, plot, live line,
//! markdown, ratios, targets, replication), `compare.rs`, `suite.rs`.

pub mod baseline;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod embedded;
pub mod env_info;
pub mod error;
pub mod histogram;
pub mod meter;
pub mod replication;
pub mod report;
pub mod run;
pub mod scenario;
pub mod suite;
pub mod values;
pub mod workload;

pub use config::WorkloadConfig;
pub use error::{LoadgenError, LoadgenResult};
