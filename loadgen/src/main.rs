//! `shardlog-loadgen`: with no subcommand, runs one workload (by default: 10 s plus a 2 s
//! warm-up against an embedded broker, with disk and loopback baselines). Subcommands:
//! `replication`, `compare`, `suite`, `report`. Exit codes: 0 success, 1 regression (`compare`), 2 bad input
//! or a failed run.

/// jemalloc, not glibc's malloc: with many partitions every message is its own batch, and
/// glibc's free-list upkeep (`malloc_consolidate`, `unlink_chunk`) on the broker's DMA chunks
/// and the client's batch and request buffers was a fifth of the CPU (docs/benchmarks.md,
/// "Many partitions"). mimalloc was tried first and was far worse with the 1 MiB aligned
/// DMA buffers.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start-up (a NUL-terminated C string; `_RJEM_MALLOC_CONF`
/// in the environment still overrides). Freed pages are kept for reuse rather than returned
/// to the OS after a decay time: purging and faulting them back in cost the broker ~5 % CPU
/// per message at 16 partitions (same-session A/B, docs/benchmarks.md), and the resident
/// size is bounded by the broker's own budgets (batch cache, unwritten bytes, request
/// memory), not by the allocator giving pages back.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use loadgen::baseline::{env, BaselineKind, BaselinePlan};
use loadgen::compare::{self, Thresholds};
use loadgen::replication::{self, ReplicationPlan};
use loadgen::report::{self, hgrm, json, markdown, plot, spread, table};
use loadgen::values::{ByteSize, RateSpec};
use loadgen::{run, suite, LoadgenError, LoadgenResult, WorkloadConfig};

const EXIT_REGRESSION: u8 = 1;
const EXIT_ERROR: u8 = 2;
/// `suite --repeat`: more runs than this is a unit mistake (hours of load).
const REPEAT_MAX: u32 = 100;

#[derive(Parser)]
#[command(
    name = "shardlog-loadgen",
    version,
    about = "shardlog load generator: open-loop workloads with same-run baselines",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    config: WorkloadConfig,
    #[command(flatten)]
    baseline: BaselineArgs,
    /// Write the report as JSON (schema in docs/benchmarks.md).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write HdrHistogram percentile distributions (.hgrm) into this directory.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Draw latency by percentile into this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No live line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct BaselineArgs {
    /// Same-run baselines to measure.
    #[arg(long, value_enum, default_value_t = BaselineKind::All)]
    baseline: BaselineKind,
    /// Bytes the disk bandwidth baselines write and read.
    #[arg(long, default_value = "512MiB")]
    baseline_disk_bytes: ByteSize,
    /// fdatasyncs timed by the fsync latency baseline.
    #[arg(long, default_value_t = 300)]
    baseline_fsyncs: u64,
}

impl BaselineArgs {
    fn plan(&self) -> BaselinePlan {
        BaselinePlan {
            disk_bytes: self.baseline_disk_bytes.0.max(1 << 20),
            fsync_count: self.baseline_fsyncs.max(1),
            ..BaselinePlan::new(self.baseline)
        }
    }
}

/// `replication`: the workload's knobs, with acks=all by default, plus the comparison's own.
#[derive(Args)]
struct ReplicationArgs {
    #[command(flatten)]
    config: WorkloadConfig,
    #[command(flatten)]
    baseline: BaselineArgs,
    /// Replication factors to compare, in the first round's order; ratios are to the first.
    #[arg(long, default_value = "1,3")]
    factors: String,
    /// Runs of each phase per factor (alternating the order every round).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// The open-loop latency phase's rate for every factor: msg/s, or P%-of-max (P % of the
    /// lowest rate the closed-loop phase sustained); `max` skips the phase.
    #[arg(long, default_value = "50%-of-max")]
    latency_rate: RateSpec,
    /// Write the comparison (every run's report and the summary) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also print the summary as a markdown table.
    #[arg(long)]
    markdown: bool,
    /// No live line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// acks=all produce throughput and latency with replication factor 1 vs 3 on one cluster,
    /// side by side (an embedded 3-node cluster unless --broker LIST is given).
    #[command(mut_arg("acks", |a| a.default_value("durable")))]
    Replication(Box<ReplicationArgs>),
    /// Compare two JSON reports; exit 1 on a regression.
    Compare {
        baseline: PathBuf,
        current: PathBuf,
        #[arg(long, default_value = "10%")]
        max_throughput_drop: String,
        #[arg(long, default_value = "20%")]
        max_latency_rise: String,
    },
    /// Run every *.toml scenario in a directory.
    Suite {
        dir: PathBuf,
        /// Write NAME.json per scenario here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Parent of the temporary data directories (default $SHARDLOG_TEST_DIR or the temp dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        baseline: BaselineArgs,
        #[arg(long)]
        quiet: bool,
        /// Run each scenario this many times (NAME-rK.json) and end with the spread of every
        /// figure across the runs.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=REPEAT_MAX as i64))]
        repeat: u32,
    },
    /// Print JSON reports (files, or every *.json in a directory) as tables or one markdown table.
    Report {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        markdown: bool,
    },
}

/// The main job (no arguments at all): the closed-loop maximum with consumers reading along
/// (the probe), then a steady state at this share of it, where consumers keep up and
/// latencies mean something. Any argument runs exactly what it asks (`--rate max` for the
/// closed loop alone).
const MAIN_JOB_RATE_PERCENT_OF_MAX: f64 = 50.0;
/// The main job's probe: long enough for a steady closed-loop figure.
const MAIN_JOB_PROBE_S: f64 = 5.0;

fn main() -> ExitCode {
    let main_job = std::env::args_os().len() == 1;
    let mut cli = Cli::parse();
    if main_job {
        cli.run.config.rate = RateSpec::PercentOfMax { percent: MAIN_JOB_RATE_PERCENT_OF_MAX };
        cli.run.config.probe_s = MAIN_JOB_PROBE_S;
    }
    env::raise_memlock_limit();
    let result = match cli.command {
        None => run_default(cli.run).map(|()| 0),
        Some(Command::Replication(args)) => run_replication(&args).map(|()| 0),
        Some(Command::Compare { baseline, current, max_throughput_drop, max_latency_rise }) => {
            run_compare(&baseline, &current, &max_throughput_drop, &max_latency_rise)
        }
        Some(Command::Suite { dir, out, data_dir, baseline, quiet, repeat }) => {
            let options = suite::SuiteOptions { out, data_dir, baseline: baseline.plan(), live: !quiet, repeat };
            suite::run(&dir, &options).map(|_| 0)
        }
        Some(Command::Report { paths, markdown }) => run_report(&paths, markdown).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("shardlog-loadgen: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run_default(args: RunArgs) -> LoadgenResult<()> {
    let outcome = run::run_one(&args.config, None, &args.baseline.plan(), !args.quiet)?;
    print!("{}", table::render(&outcome.report));
    if let Some(path) = &args.json {
        json::write(path, &outcome.report)?;
        println!("json written to {}", path.display());
    }
    if let Some(dir) = &args.hgrm {
        hgrm::write_all(dir, &format!("{}-", outcome.report.scenario), &outcome.histograms)?;
        println!("hgrm files written to {}", dir.display());
    }
    if let Some(path) = &args.plot {
        let h = &outcome.histograms;
        let title = format!("{}: latency by percentile", outcome.report.scenario);
        plot::write(path, &title, &[("publish (ack)", &h.publish), ("end to end", &h.end_to_end)])?;
        println!("plot written to {}", path.display());
    }
    Ok(())
}

fn run_replication(args: &ReplicationArgs) -> LoadgenResult<()> {
    let plan = ReplicationPlan {
        factors: replication::parse_factors(&args.factors).map_err(LoadgenError::Config)?,
        rounds: args.rounds,
        latency_rate: args.latency_rate,
    };
    let report = replication::run(&args.config, &plan, &args.baseline.plan(), !args.quiet)?;
    print!("{}", report::replication::render(&report));
    if args.markdown {
        print!("\n{}", report::replication::markdown(&report));
    }
    if let Some(path) = &args.json {
        replication::write_json(path, &report)?;
        println!("json written to {}", path.display());
    }
    Ok(())
}

fn run_compare(old: &Path, new: &Path, drop: &str, rise: &str) -> LoadgenResult<u8> {
    let thresholds = Thresholds {
        throughput_drop: compare::parse_percent(drop).map_err(LoadgenError::Config)?,
        latency_rise: compare::parse_percent(rise).map_err(LoadgenError::Config)?,
    };
    let (a, b) = (json::read(old)?, json::read(new)?);
    let comparison = compare::compare(&a, &b, thresholds);
    print!("{}", compare::render(&comparison, &old.display().to_string(), &new.display().to_string(), thresholds));
    Ok(if comparison.regressed() { EXIT_REGRESSION } else { 0 })
}

fn run_report(paths: &[PathBuf], as_markdown: bool) -> LoadgenResult<()> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(LoadgenError::file(path))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let reports = files.iter().map(|p| json::read(p)).collect::<LoadgenResult<Vec<_>>>()?;
    if as_markdown {
        print!("{}", markdown::render(&reports));
        // A repeated suite's runs (NAME-rK): the spread across them too.
        if reports.iter().any(|r| spread::scenario_of(&r.scenario) != r.scenario) {
            print!("\n{}", spread::render(&reports));
        }
    } else {
        for r in &reports {
            print!("{}", table::render(r));
        }
    }
    Ok(())
}
