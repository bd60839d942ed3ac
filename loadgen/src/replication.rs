//! `shardlog-loadgen replication`: acks=all produce with replication factor 1 against 3 (or
//! any list of factors) on the same cluster, in one run, side by side.
//!
//! One cluster (embedded, or `--broker LIST`), one set of baselines measured first, then two
//! phases, each a workload per factor on fresh topics created with that factor:
//!
//! 1. throughput: closed loop (`--rate max`): the highest acknowledged rate each factor
//!    sustains with the workload's producers;
//! 2. latency: open loop at one rate for every factor (`--latency-rate`: a fixed msg/s, or
//!    P % of the lowest rate phase 1 measured, so every factor can sustain it), latencies from
//!    each message's intended send time (coordinated omission corrected, `histogram.rs`).
//!
//! With `--rounds N` each phase repeats N times, the factors in turn and in reverse order on
//! every other round (1, 3, 3, 1, …), so a drift of the machine over the run weighs on every
//! factor alike. The summary takes the mean throughput over rounds and the latency
//! percentiles of all rounds' samples together (their histograms merged).
//!
//! The runs use the native protocol (the Rust client, which routes each partition to its
//! leader): the Kafka driver cannot ask for a replication factor per topic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::baseline::{BaselinePlan, Baselines};
use crate::config::{AckMode, Protocol, WorkloadConfig, REPLICATION_FACTOR_MAX};
use crate::env_info::Environment;
use crate::error::{LoadgenError, LoadgenResult};
use crate::histogram::Percentiles;
use crate::report::RunReport;
use crate::run::{data_parent, measure_baselines, run_on, settle, temp_data_dir, Target};
use crate::values::RateSpec;
use crate::workload::stats::Recorders;

/// Version of the comparison's JSON (`--json`); a removed or renamed field bumps it.
pub const REPLICATION_SCHEMA_VERSION: u32 = 1;
pub const REPLICATION_KIND: &str = "replication";
/// Rounds of each phase: more than this is a soak test, not a comparison.
pub const ROUNDS_MAX: u32 = 20;
/// Nodes of the embedded cluster when none is asked for: enough for RF 3.
pub const EMBEDDED_NODES_DEFAULT: u32 = 3;

/// What the comparison runs, beside the workload's own knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationPlan {
    /// Replication factors, in the order the first round runs them (the first is the one the
    /// others are divided by).
    pub factors: Vec<u32>,
    pub rounds: u32,
    /// The latency phase's rate; `max` skips the phase.
    pub latency_rate: RateSpec,
}

impl ReplicationPlan {
    pub fn validate(&self, config: &WorkloadConfig) -> LoadgenResult<()> {
        let bad = |m: String| Err(LoadgenError::Config(m));
        if self.factors.len() < 2 {
            return bad(format!("factors: give at least two to compare, got {:?}", self.factors));
        }
        let mut seen = self.factors.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != self.factors.len() {
            return bad(format!("factors: {:?} names one twice", self.factors));
        }
        if self.factors.iter().any(|&f| f == 0 || f > REPLICATION_FACTOR_MAX) {
            return bad(format!("factors must be 1..={REPLICATION_FACTOR_MAX}, got {:?}", self.factors));
        }
        if self.rounds == 0 || self.rounds > ROUNDS_MAX {
            return bad(format!("rounds must be 1..={ROUNDS_MAX}, got {}", self.rounds));
        }
        if config.rate != RateSpec::Max {
            return bad("the throughput phase is closed loop: leave --rate at max and set --latency-rate".to_owned());
        }
        if config.replication_factor.is_some() {
            return bad("--replication-factor is set per run by --factors".to_owned());
        }
        if config.protocol != Protocol::Native {
            return bad("the comparison runs over the native protocol: the Kafka driver cannot ask for a \
                         replication factor per topic"
                .to_owned());
        }
        if config.catch_up() {
            return bad("backlog-bytes (catch-up) does not apply: the comparison measures produce".to_owned());
        }
        if let Some(nodes) = config.embedded_cluster {
            let most = self.factors.iter().copied().max().unwrap_or(1);
            if most > nodes {
                return bad(format!("factor {most} needs at least {most} nodes; embedded-cluster is {nodes}"));
            }
        }
        Ok(())
    }

    /// The configuration of one run: `config` with this factor, phase and rate.
    pub fn run_config(
        config: &WorkloadConfig,
        factor: u32,
        phase: Phase,
        round: u32,
        rate: RateSpec,
    ) -> WorkloadConfig {
        let base = config.name.clone().unwrap_or_else(|| REPLICATION_KIND.to_owned());
        WorkloadConfig {
            name: Some(format!("{base}-rf{factor}-{}-r{}", phase.name(), round + 1)),
            replication_factor: Some(factor),
            rate,
            targets: Vec::new(),
            ..config.clone()
        }
    }

    /// The factors of round `round`: in order, reversed on every other round.
    pub fn order(&self, round: u32) -> Vec<u32> {
        let mut order = self.factors.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        order
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Closed loop: the highest sustained acknowledged rate.
    Throughput,
    /// Open loop at one rate for every factor.
    Latency,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Throughput => "throughput",
            Phase::Latency => "latency",
        }
    }
}

/// One workload of the comparison, with its full report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationRun {
    pub phase: Phase,
    pub replication_factor: u32,
    /// 0-based.
    pub round: u32,
    pub report: RunReport,
}

/// One factor's figures: a column of the side-by-side table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FactorSummary {
    pub replication_factor: u32,
    /// Throughput phase: acknowledged msg/s and MB/s (values), mean over rounds.
    pub publish_msg_per_s: f64,
    pub publish_mb_per_s: f64,
    /// Throughput phase: consumed MB/s (0 without consumers), mean over rounds.
    pub consume_mb_per_s: f64,
    /// Latency phase (absent when skipped): acknowledged msg/s, mean over rounds, and the
    /// latencies of every round's samples together.
    pub latency_phase_msg_per_s: Option<f64>,
    pub publish_latency_us: Option<Percentiles>,
    pub end_to_end_latency_us: Option<Percentiles>,
    /// Over every run of this factor: records acknowledged and errors.
    pub acked: u64,
    pub errors: u64,
    /// Figures divided by same-run baselines (names in docs/benchmarks.md).
    pub ratios: BTreeMap<String, f64>,
    /// Figures divided by the first factor's same figure (for the first factor: empty).
    pub ratios_to_first: BTreeMap<String, f64>,
}

/// The comparison's report (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationReport {
    pub schema_version: u32,
    pub tool: String,
    pub kind: String,
    pub name: String,
    pub factors: Vec<u32>,
    pub rounds: u32,
    /// The workload every run shares (its factor, rate and name set per run).
    pub config: WorkloadConfig,
    /// The latency phase's rate, msg/s (absent when skipped).
    pub latency_rate_msg_per_s: Option<f64>,
    pub environment: Environment,
    pub baselines: Option<Baselines>,
    /// In the order they ran.
    pub runs: Vec<ReplicationRun>,
    /// One per factor, in `factors` order.
    pub summary: Vec<FactorSummary>,
    pub notes: Vec<String>,
}

/// Runs the comparison: baselines, the cluster (started here unless `--broker`), then both
/// phases. `config` is the shared workload (validated with `plan`).
pub fn run(
    config: &WorkloadConfig,
    plan: &ReplicationPlan,
    baseline_plan: &BaselinePlan,
    live: bool,
) -> LoadgenResult<ReplicationReport> {
    let mut config = config.clone();
    if config.broker.is_none() && config.embedded_cluster.is_none() {
        let most = plan.factors.iter().copied().max().unwrap_or(1);
        config.embedded_cluster = Some(most.max(EMBEDDED_NODES_DEFAULT));
    }
    plan.validate(&config)?;
    config.validate()?;
    let parent = data_parent(config.dir.as_deref())?;
    let data_dir = temp_data_dir(&parent)?;
    let mut environment = Environment::probe(Some(data_dir.path()));
    let baselines = measure_baselines(baseline_plan, &parent)?;
    let target = Target::start(&config, data_dir.path())?;
    target.describe(&mut environment);
    let mut done = Done::default();
    let result = run_phases(&config, plan, &target, &baselines, &environment, live, &mut done);
    drop(target); // graceful shutdown of an embedded cluster before its directory goes
    result?;
    let Done { runs, latency_histograms, latency_rate } = done;
    // The runs recorded the load generator's side too (executors, placement).
    if let Some(first) = runs.first() {
        environment = first.report.environment.clone();
    }
    let summary = summarize(plan, &runs, &latency_histograms, baselines.as_ref());
    let notes = notes(&config, plan, &runs, latency_rate);
    Ok(ReplicationReport {
        schema_version: REPLICATION_SCHEMA_VERSION,
        tool: crate::report::TOOL.to_owned(),
        kind: REPLICATION_KIND.to_owned(),
        name: config.name.clone().unwrap_or_else(|| REPLICATION_KIND.to_owned()),
        factors: plan.factors.clone(),
        rounds: plan.rounds,
        config,
        latency_rate_msg_per_s: latency_rate,
        environment,
        baselines,
        runs,
        summary,
        notes,
    })
}

/// What the phases produced so far.
#[derive(Default)]
struct Done {
    /// In the order they ran.
    runs: Vec<ReplicationRun>,
    /// Latency phase: each factor's histograms, every round merged.
    latency_histograms: BTreeMap<u32, Recorders>,
    latency_rate: Option<f64>,
}

/// Both phases; every finished run is kept in `done`.
fn run_phases(
    config: &WorkloadConfig,
    plan: &ReplicationPlan,
    target: &Target,
    baselines: &Option<Baselines>,
    environment: &Environment,
    live: bool,
    done: &mut Done,
) -> LoadgenResult<()> {
    let one = |done: &mut Done, phase: Phase, factor: u32, round: u32, rate: RateSpec| -> LoadgenResult<()> {
        let run_config = ReplicationPlan::run_config(config, factor, phase, round, rate);
        eprintln!("shardlog-loadgen: replication factor {factor}, {} phase, round {}", phase.name(), round + 1);
        let outcome = run_on(&run_config, target, baselines.clone(), environment.clone(), live)?;
        if phase == Phase::Latency {
            match done.latency_histograms.get_mut(&factor) {
                Some(merged) => merged.merge(&outcome.histograms),
                None => {
                    done.latency_histograms.insert(factor, outcome.histograms);
                }
            }
        }
        done.runs.push(ReplicationRun { phase, replication_factor: factor, round, report: outcome.report });
        settle();
        Ok(())
    };
    for round in 0..plan.rounds {
        for factor in plan.order(round) {
            one(done, Phase::Throughput, factor, round, RateSpec::Max)?;
        }
    }
    let rate = match plan.latency_rate {
        RateSpec::Max => return Ok(()),
        RateSpec::Fixed { msg_per_s } => msg_per_s,
        RateSpec::PercentOfMax { percent } => {
            let sustained = lowest_sustained_msg_per_s(config, plan, &done.runs);
            if sustained <= 0.0 {
                return Err(LoadgenError::Client("the throughput phase acknowledged nothing".to_owned()));
            }
            sustained * percent / 100.0
        }
    };
    done.latency_rate = Some(rate);
    for round in 0..plan.rounds {
        for factor in plan.order(round) {
            one(done, Phase::Latency, factor, round, RateSpec::Fixed { msg_per_s: rate })?;
        }
    }
    Ok(())
}

/// The lowest, over factors, of the mean sustained rate of the throughput phase. With
/// consumers a rate is sustained only if they keep up too (as `run.rs`'s probe rules).
fn lowest_sustained_msg_per_s(config: &WorkloadConfig, plan: &ReplicationPlan, runs: &[ReplicationRun]) -> f64 {
    let sustained = |r: &RunReport| {
        let publish = r.results.publish.msg_per_s;
        match config.groups {
            0 => publish,
            groups => publish.min(r.results.consume.msg_per_s / groups as f64),
        }
    };
    plan.factors
        .iter()
        .map(|&f| {
            mean(runs.iter().filter(|r| r.phase == Phase::Throughput && r.replication_factor == f), |r| {
                sustained(&r.report)
            })
        })
        .fold(f64::INFINITY, f64::min)
}

fn mean<'a>(runs: impl Iterator<Item = &'a ReplicationRun>, figure: impl Fn(&ReplicationRun) -> f64) -> f64 {
    let (sum, n) = runs.fold((0.0, 0usize), |(sum, n), r| (sum + figure(r), n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

fn summarize(
    plan: &ReplicationPlan,
    runs: &[ReplicationRun],
    latency: &BTreeMap<u32, Recorders>,
    baselines: Option<&Baselines>,
) -> Vec<FactorSummary> {
    let mut out: Vec<FactorSummary> = plan
        .factors
        .iter()
        .map(|&factor| {
            let of = |phase: Phase| runs.iter().filter(move |r| r.replication_factor == factor && r.phase == phase);
            let histograms = latency.get(&factor);
            let mut s = FactorSummary {
                replication_factor: factor,
                publish_msg_per_s: mean(of(Phase::Throughput), |r| r.report.results.publish.msg_per_s),
                publish_mb_per_s: mean(of(Phase::Throughput), |r| r.report.results.publish.mb_per_s),
                consume_mb_per_s: mean(of(Phase::Throughput), |r| r.report.results.consume.mb_per_s),
                latency_phase_msg_per_s: histograms
                    .map(|_| mean(of(Phase::Latency), |r| r.report.results.publish.msg_per_s)),
                publish_latency_us: histograms.map(|h| Percentiles::of(&h.publish)),
                end_to_end_latency_us: histograms.map(|h| Percentiles::of(&h.end_to_end)),
                acked: runs
                    .iter()
                    .filter(|r| r.replication_factor == factor)
                    .map(|r| r.report.results.totals.acked)
                    .sum(),
                errors: runs
                    .iter()
                    .filter(|r| r.replication_factor == factor)
                    .map(|r| r.report.results.errors.total())
                    .sum(),
                ..FactorSummary::default()
            };
            if let Some(b) = baselines {
                s.ratios = baseline_ratios(&s, b);
            }
            s
        })
        .collect();
    if let Some(first) = out.first().cloned() {
        for s in out.iter_mut().skip(1) {
            s.ratios_to_first = ratios_to(s, &first);
        }
    }
    out
}

/// The summary's figures by name (the keys of `ratios_to_first`).
pub fn figures(s: &FactorSummary) -> Vec<(&'static str, f64)> {
    let mut out = vec![("publish_msg_per_s", s.publish_msg_per_s), ("publish_mb_per_s", s.publish_mb_per_s)];
    if let Some(p) = &s.publish_latency_us {
        out.extend([
            ("publish_p50_us", p.p50_us as f64),
            ("publish_p99_us", p.p99_us as f64),
            ("publish_p999_us", p.p999_us as f64),
        ]);
    }
    if let Some(p) = s.end_to_end_latency_us.filter(|p| p.count > 0) {
        out.extend([("e2e_p50_us", p.p50_us as f64), ("e2e_p99_us", p.p99_us as f64)]);
    }
    out
}

fn ratios_to(s: &FactorSummary, first: &FactorSummary) -> BTreeMap<String, f64> {
    let base: BTreeMap<&str, f64> = figures(first).into_iter().collect();
    figures(s)
        .into_iter()
        .filter_map(|(name, value)| {
            let b = base.get(name).copied().filter(|b| *b > 0.0)?;
            Some((name.to_owned(), value / b))
        })
        .collect()
}

/// | ratio | figure ÷ baseline |
/// |---|---|
/// | `publish_to_disk_write` | throughput phase MB/s ÷ raw O_DIRECT write MB/s |
/// | `publish_pNN_to_fsync_pNN` | latency phase publish pNN ÷ 4 KiB write + fdatasync pNN (50, 99, 99.9) |
/// | `publish_p50_to_rtt_p50`, `publish_p999_to_rtt_p999` | publish pNN ÷ loopback 128 B round trip pNN |
fn baseline_ratios(s: &FactorSummary, b: &Baselines) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, figure: f64, base: Option<f64>| {
        if let Some(base) = base.filter(|v| *v > 0.0) {
            if figure > 0.0 {
                out.insert(name.to_owned(), figure / base);
            }
        }
    };
    put("publish_to_disk_write", s.publish_mb_per_s, b.disk_write_mb_per_s);
    if let Some(p) = &s.publish_latency_us {
        let fsync = b.fsync_latency_us.as_ref();
        let rtt = b.loopback_rtt_us.as_ref();
        put("publish_p50_to_fsync_p50", p.p50_us as f64, fsync.map(|f| f.p50_us as f64));
        put("publish_p99_to_fsync_p99", p.p99_us as f64, fsync.map(|f| f.p99_us as f64));
        put("publish_p999_to_fsync_p999", p.p999_us as f64, fsync.map(|f| f.p999_us as f64));
        put("publish_p50_to_rtt_p50", p.p50_us as f64, rtt.map(|r| r.p50_us as f64));
        put("publish_p999_to_rtt_p999", p.p999_us as f64, rtt.map(|r| r.p999_us as f64));
    }
    out
}

fn notes(config: &WorkloadConfig, plan: &ReplicationPlan, runs: &[ReplicationRun], rate: Option<f64>) -> Vec<String> {
    let mut notes = Vec::new();
    if config.acks != AckMode::Durable {
        notes.push(format!("acks {:?}, not acks=all (durable): replicas do not delay the ack", config.acks));
    }
    if config.is_embedded_cluster() {
        notes.push(
            "embedded cluster: every replica runs in this process on the same cores and disk as the others and the \
             load generator, so RF 3 pays three times the writes and fetches on one machine"
                .to_owned(),
        );
    }
    if let (Some(rate), RateSpec::PercentOfMax { percent }) = (rate, plan.latency_rate) {
        notes.push(format!(
            "latency phase at {rate:.0} msg/s for every factor: {percent}% of the lowest sustained rate of the \
             throughput phase"
        ));
    }
    for r in runs {
        for note in &r.report.results.notes {
            if !note.starts_with("closed loop") {
                notes.push(format!("{}: {note}", r.report.scenario));
            }
        }
    }
    notes
}

/// Writes the report as pretty JSON (creating the parent directory).
pub fn write_json(path: &std::path::Path, report: &ReplicationReport) -> LoadgenResult<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LoadgenError::file(parent))?;
    }
    // Plain data with string keys: serializing cannot fail.
    let text = serde_json::to_string_pretty(report).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(LoadgenError::file(path))
}

/// `1,3` → [1, 3].
pub fn parse_factors(text: &str) -> Result<Vec<u32>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| f.parse::<u32>().map_err(|_| format!("`{f}` is not a replication factor")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ReplicationPlan {
        ReplicationPlan { factors: vec![1, 3], rounds: 2, latency_rate: RateSpec::PercentOfMax { percent: 50.0 } }
    }

    #[test]
    fn plans_are_checked_and_rounds_alternate() {
        let config = WorkloadConfig { embedded_cluster: Some(3), ..WorkloadConfig::default() };
        plan().validate(&config).unwrap();
        assert_eq!(plan().order(0), [1, 3]);
        assert_eq!(plan().order(1), [3, 1]);
        let small = WorkloadConfig { embedded_cluster: Some(2), ..config.clone() };
        assert!(plan().validate(&small).is_err(), "RF 3 on 2 nodes");
        assert!(ReplicationPlan { factors: vec![3], ..plan() }.validate(&config).is_err());
        assert!(ReplicationPlan { factors: vec![3, 3], ..plan() }.validate(&config).is_err());
        assert!(ReplicationPlan { rounds: 0, ..plan() }.validate(&config).is_err());
        let open = WorkloadConfig { rate: RateSpec::Fixed { msg_per_s: 10.0 }, ..config.clone() };
        assert!(plan().validate(&open).is_err(), "the throughput phase is closed loop");
        let run = ReplicationPlan::run_config(&config, 3, Phase::Latency, 1, RateSpec::Fixed { msg_per_s: 5.0 });
        assert_eq!(run.replication_factor, Some(3));
        assert_eq!(run.name.as_deref(), Some("replication-rf3-latency-r2"));
        run.validate().unwrap();
        assert_eq!(parse_factors("1, 3"), Ok(vec![1, 3]));
        assert!(parse_factors("1,x").is_err());
    }
}
