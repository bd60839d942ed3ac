//! One run from start to report: the data directory, the baselines, the broker (`Target`:
//! embedded, an embedded cluster, or remote), the max-rate probe when the rate is
//! `P%-of-max`, the workload, and the report with its ratios.

use std::path::{Path, PathBuf};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

use crate::baseline::{self, env, BaselinePlan, Baselines};
use crate::config::{Protocol, WorkloadConfig};
use crate::embedded::{Embedded, EmbeddedCluster};
use crate::env_info::Environment;
use crate::error::{LoadgenError, LoadgenResult};
use crate::histogram::Percentiles;
use crate::meter::BrokerCpu;
use crate::report::{ratios, Errors, Mode, Probe, Results, RunReport, Throughput, Totals, SCHEMA_VERSION, TOOL};
use crate::values::RateSpec;
use crate::workload::driver::Driver;
use crate::workload::native::NativeDriver;
use crate::workload::stats::Recorders;
use crate::workload::{self, Span, WorkloadPlan};

/// The probe's warm-up, at most (a third of the probe when shorter).
const PROBE_WARMUP_S_MAX: f64 = 1.0;

pub struct RunOutcome {
    pub report: RunReport,
    pub histograms: Recorders,
}

/// Where the run's temporary data goes: `--dir`, else $SHARDLOG_TEST_DIR, else the system temp
/// dir. Refuses tmpfs, where O_DIRECT silently does not happen.
pub fn data_parent(dir: Option<&Path>) -> LoadgenResult<PathBuf> {
    let parent = dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SHARDLOG_TEST_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(LoadgenError::file(&parent))?;
    let fs = env::FsType::of(&parent).map_err(LoadgenError::Baseline)?;
    if fs.is_tmpfs() {
        return Err(LoadgenError::Config(format!(
            "{} is on tmpfs, where O_DIRECT silently does not happen; pass --dir on a real disk (e.g. ext4)",
            parent.display()
        )));
    }
    Ok(parent)
}

pub fn temp_data_dir(parent: &Path) -> LoadgenResult<tempfile::TempDir> {
    tempfile::Builder::new().prefix("shardlog-loadgen-").tempdir_in(parent).map_err(LoadgenError::file(parent))
}

/// Measures baselines in a temp directory under `parent`.
pub fn measure_baselines(plan: &BaselinePlan, parent: &Path) -> LoadgenResult<Option<Baselines>> {
    if plan.kind == baseline::BaselineKind::None {
        return Ok(None);
    }
    let dir = temp_data_dir(parent)?;
    env::set_data_disk(dir.path());
    eprintln!("shardlog-loadgen: measuring baselines ({:?})", plan.kind);
    Ok(Some(baseline::measure(plan, dir.path())?))
}

/// The broker a run drives: started in this process (one broker or a cluster), or named by
/// `--broker`. Dropping it stops what was started, gracefully.
pub enum Target {
    Remote(String),
    Single(Embedded),
    Cluster(EmbeddedCluster),
}

impl Target {
    /// Starts the embedded broker or cluster `config` asks for in `data_dir`; for a cluster,
    /// also waits until it has a metadata leader and every node registered.
    pub fn start(config: &WorkloadConfig, data_dir: &Path) -> LoadgenResult<Target> {
        let kafka = config.protocol == Protocol::Kafka;
        if let Some(broker) = &config.broker {
            return Ok(Target::Remote(broker.clone()));
        }
        let Some(nodes) = config.embedded_cluster else {
            let shards = config.shards.unwrap_or_else(env::cpu_count).max(1);
            return Ok(Target::Single(Embedded::start_with(&data_dir.join("broker"), shards, kafka)?));
        };
        let shards = config.shards.unwrap_or(1).max(1);
        let default_factor = config.replication_factor.unwrap_or(1);
        eprintln!("shardlog-loadgen: starting an embedded cluster of {nodes} nodes");
        let cluster = EmbeddedCluster::start(&data_dir.join("cluster"), nodes, shards, kafka, default_factor)?;
        wait_cluster_ready(&cluster.native_bootstrap(), nodes)?;
        Ok(Target::Cluster(cluster))
    }

    /// The address (or list) clients start from.
    pub fn bootstrap(&self) -> String {
        match self {
            Target::Remote(list) => list.clone(),
            Target::Single(e) => e.bootstrap(),
            Target::Cluster(c) => c.bootstrap(),
        }
    }

    /// What the report's environment says about the broker.
    pub fn describe(&self, environment: &mut Environment) {
        let (broker, shards, placement) = match self {
            Target::Remote(list) => (list.clone(), None, None),
            Target::Single(e) => ("embedded".to_owned(), Some(e.shards), Some(e.placement())),
            Target::Cluster(c) => {
                (format!("embedded-cluster:{}", c.nodes()), Some(c.shards_per_node), Some(c.placement()))
            }
        };
        environment.broker = broker;
        environment.broker_shards = shards;
        environment.broker_placement = placement;
    }
}

/// Waits (on a setup executor) until the cluster behind `native_bootstrap` has a metadata
/// leader and `brokers` registered brokers (`cluster::wait_ready`).
pub fn wait_cluster_ready(native_bootstrap: &str, brokers: u32) -> LoadgenResult<()> {
    let bootstrap = native_bootstrap.to_owned();
    let probe = format!("lg-{}-{}-ready", std::process::id(), crate::workload::stats::epoch_us_now());
    let started = std::time::Instant::now();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-ready")
        .spawn(move || async move {
            let driver = NativeDriver::connect(&bootstrap).await?;
            crate::cluster::wait_ready(driver.client(), brokers, &probe, crate::cluster::READY_TIMEOUT).await
        })
        .map_err(|e| LoadgenError::Executor(e.to_string()))?
        .join()
        .map_err(|e| LoadgenError::Executor(e.to_string()))??;
    eprintln!(
        "shardlog-loadgen: cluster ready ({brokers} brokers registered) after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `config`. `baselines`: measured once by the caller (a suite), or `None` to measure them
/// here with `plan`.
pub fn run_one(
    config: &WorkloadConfig,
    baselines: Option<Baselines>,
    plan: &BaselinePlan,
    live: bool,
) -> LoadgenResult<RunOutcome> {
    config.validate()?;
    let parent = data_parent(config.dir.as_deref())?;
    let data_dir = temp_data_dir(&parent)?;
    let environment = Environment::probe(Some(data_dir.path()));
    let baselines = match baselines {
        Some(b) => Some(b),
        None => measure_baselines(plan, &parent)?,
    };
    let target = Target::start(config, data_dir.path())?;
    let outcome = run_on(config, &target, baselines, environment, live);
    drop(target); // graceful broker shutdown before the temp dir goes
    outcome
}

/// Runs `config` against a started `target` (its probe, then its workload, on fresh topics)
/// and builds the report.
pub fn run_on(
    config: &WorkloadConfig,
    target: &Target,
    baselines: Option<Baselines>,
    mut environment: Environment,
    live: bool,
) -> LoadgenResult<RunOutcome> {
    config.validate()?;
    let bootstrap = target.bootstrap();
    let executors = config.loadgen_cores.unwrap_or_else(env::cpu_count).max(1);
    target.describe(&mut environment);
    environment.loadgen_executors = executors;
    environment.loadgen_placement = "unpinned glommio executors (PoolPlacement::Unbound)".to_owned();

    // The Kafka driver's topic creation waits for leaders only; an embedded cluster's topics
    // are also waited on over its native listeners, until in sync.
    let native_bootstrap = match target {
        Target::Cluster(c) if config.protocol == Protocol::Kafka => Some(c.native_bootstrap()),
        _ => None,
    };
    let run_tag = format!("lg-{}-{}", std::process::id(), crate::workload::stats::epoch_us_now());
    let plan_for = |cfg: &WorkloadConfig, rate: Option<f64>, tag: &str, label: &str| WorkloadPlan {
        config: cfg.clone(),
        bootstrap: bootstrap.clone(),
        executors,
        rate_msg_per_s: rate,
        topics: (0..cfg.topics).map(|i| format!("{run_tag}-{tag}-t{i}")).collect(),
        group_prefix: format!("{run_tag}-{tag}"),
        live,
        label: label.to_owned(),
        native_bootstrap: native_bootstrap.clone(),
        broker_cpu: match (target, config.broker_pid) {
            (Target::Remote(_), Some(pid)) => BrokerCpu::Pid(pid),
            (Target::Remote(_), None) => BrokerCpu::Unknown,
            (Target::Single(_) | Target::Cluster(_), _) => BrokerCpu::Embedded,
        },
    };
    let label = config.label();
    let (rate, probe_rate, probe_summary) = match config.rate {
        RateSpec::Max => (None, None, None),
        RateSpec::Fixed { msg_per_s } => (Some(msg_per_s), None, None),
        RateSpec::PercentOfMax { percent } => {
            let probe = WorkloadConfig {
                rate: RateSpec::Max,
                duration_s: config.probe_s.max(0.5),
                warmup_s: (config.probe_s / 3.0).min(PROBE_WARMUP_S_MAX),
                backlog_bytes: Default::default(),
                ..config.clone()
            };
            eprintln!("shardlog-loadgen: {label}: probing the max rate for {:.1} s", probe.duration_s);
            let outcome = workload::run(plan_for(&probe, None, "probe", &format!("{label} probe")))?;
            // Sustainable means the consumers keep up too: a closed-loop probe lets the backlog
            // grow (consumers starved of CPU leave it to the producers), so the publish rate
            // alone overstates what the machine sustains with consumers reading along, and an
            // open-loop run at P % of it queued (p99.9 of 254 ms at "50 %" in the first run).
            let publish = outcome.publish.msg_per_s();
            let max = match probe.groups {
                0 => publish,
                groups => publish.min(outcome.consume.msg_per_s() / groups as f64),
            };
            if max <= 0.0 {
                return Err(LoadgenError::Client("the max-rate probe acknowledged nothing".to_owned()));
            }
            let summary = Probe {
                publish: throughput(&outcome.publish),
                consume: throughput(&outcome.consume),
                publish_latency_us: Percentiles::of(&outcome.recorders.publish),
                end_to_end_latency_us: Percentiles::of(&outcome.recorders.end_to_end),
                platform: outcome.platform,
            };
            (Some(max * percent / 100.0), Some(max), Some(summary))
        }
    };
    let outcome = workload::run(plan_for(config, rate, "run", &label))?;

    let mode = if config.catch_up() {
        Mode::CatchUp
    } else if rate.is_some() {
        Mode::OpenLoop
    } else {
        Mode::ClosedLoop
    };
    let mut results = Results {
        mode,
        rate_target_msg_per_s: rate,
        rate_max_probe_msg_per_s: probe_rate,
        publish: throughput(&outcome.publish),
        consume: throughput(&outcome.consume),
        publish_latency_us: Percentiles::of(&outcome.recorders.publish),
        send_delay_us: Percentiles::of(&outcome.recorders.send_delay),
        end_to_end_latency_us: Percentiles::of(&outcome.recorders.end_to_end),
        backlog_messages_window_start: outcome.backlog_window_start,
        backlog_messages_end: outcome.backlog_window_end,
        totals: Totals { sent: outcome.totals.sent, acked: outcome.totals.acked, consumed: outcome.totals.consumed },
        errors: Errors {
            send: outcome.errors_send,
            ack: outcome.errors_ack,
            consume: outcome.errors_consume,
            first: outcome.first_errors.clone(),
        },
        ratios: Default::default(),
        notes: Vec::new(),
        platform: outcome.platform,
        probe: probe_summary,
    };
    results.notes = notes(config, &results);
    if let Some(b) = &baselines {
        results.ratios = ratios::compute(&results, b);
    }
    let report = RunReport {
        schema_version: SCHEMA_VERSION,
        tool: TOOL.to_owned(),
        scenario: label,
        config: config.clone(),
        environment,
        baselines,
        results,
    };
    Ok(RunOutcome { report, histograms: outcome.recorders })
}

fn throughput(span: &Span) -> Throughput {
    Throughput {
        messages: span.messages,
        bytes: span.bytes,
        seconds: span.seconds,
        msg_per_s: span.msg_per_s(),
        mb_per_s: span.mb_per_s(),
    }
}

fn notes(config: &WorkloadConfig, r: &Results) -> Vec<String> {
    let mut notes = Vec::new();
    match r.mode {
        Mode::ClosedLoop => notes.push(
            "closed loop (--rate max): the publish rate is the sustained maximum; latencies are at saturation and \
             include waits for producer buffer space"
                .to_owned(),
        ),
        Mode::CatchUp => notes.push(format!(
            "catch-up: {:.0} MB written first with no consumer, then read from offset 0 (consume = the read)",
            config.backlog_bytes.0 as f64 / 1e6
        )),
        Mode::OpenLoop => {
            if let Some(target) = r.rate_target_msg_per_s {
                if r.publish.msg_per_s < 0.95 * target {
                    notes.push(format!(
                        "the broker did not keep up: {:.0} msg/s acked of {target:.0} targeted",
                        r.publish.msg_per_s
                    ));
                }
            }
        }
    }
    let grown = r.backlog_messages_end.saturating_sub(r.backlog_messages_window_start);
    if config.groups > 0 && r.mode != Mode::CatchUp && grown as f64 > r.publish.msg_per_s.max(1.0) {
        notes.push(format!("consumers fell behind: backlog grew by {grown} messages"));
    }
    if r.errors.total() > 0 {
        notes.push(format!("{} errors (first: {})", r.errors.total(), r.errors.first.join("; ")));
    }
    notes
}

/// A short pause so a previous run's broker threads are gone before the next starts.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}
