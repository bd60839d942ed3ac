//! `shardlog-bench`: raw-disk baselines, then the engine's benchmarks, each reported as a ratio
//! to raw measurements taken in the same run on the same data directory.
//!
//! These VMs are noisy: the raw write bandwidth moves by tens of percent within one run. So
//! besides the three baselines measured first, every engine case is *bracketed*: the matching
//! raw measurement is repeated right before and right after it, and the case's ratio is taken
//! against the mean of the two (the report shows both, so a case whose bracket moved a lot can
//! be read with that in mind).
//!
//! Order: baselines and cases A, C, D, E on one executor pinned to CPU 0; then case B on two
//! executors, bracketed by raw writes on a fresh executor; then (not with --quick) the broker
//! cases of `broker_cases.rs`, or only those with --broker.

mod broker_cases;
mod engine_cases;
mod report;
mod rows;

// The raw-disk and loopback baselines and the machine facts live in the load generator's
// library (`loadgen::baseline`), shared by both tools.
use loadgen::baseline::{disk as baseline, env, loopback};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use engine::Durability;
use glommio::{LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};
use hdrhistogram::Histogram;

use baseline::{gio, Throughput};
use report::Report;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const MIB: u64 = 1 << 20;

#[derive(Parser, Debug)]
#[command(name = "shardlog-bench", about = "shardlog engine benchmarks, as ratios to same-run raw-disk baselines")]
struct Args {
    /// Less data per case and fewer cases (about 15 s in all).
    #[arg(long)]
    quick: bool,
    /// Parent directory for the benchmark data (must not be tmpfs: O_DIRECT needs a real disk).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds per latency case (default: 2 with --quick, 10 without; 3 for the broker's).
    #[arg(long)]
    seconds: Option<u64>,
    /// Also write the report as markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Concurrent producers in the append-throughput cases.
    #[arg(long, default_value_t = 16)]
    producers: usize,
    /// Only the broker benchmarks (in-process broker and client, loopback TCP baselines).
    /// A full run includes them; --quick leaves them out.
    #[arg(long, conflicts_with = "quick")]
    broker: bool,
}

/// How much of everything to do; fixed by --quick.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub raw_bytes: u64,
    pub raw_syncs_count: u64,
    pub append_batch_bytes: Vec<usize>,
    /// Per append case, and per raw write bracketing it.
    pub append_bytes: u64,
    pub producers: usize,
    pub shard_bytes: u64,
    pub latency_producers: Vec<usize>,
    pub latency_duration: Duration,
    pub latency_batch_bytes: usize,
    pub cold_read_bytes: u64,
    pub cold_batch_bytes: usize,
    pub cold_readers: usize,
    pub tail_batch_bytes: usize,
    pub tail_resident_bytes: u64,
    pub tail_reread_bytes: u64,
    pub tail_appends_count: u64,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let quick = args.quick;
        let seconds = args.seconds.unwrap_or(if quick { 2 } else { 10 });
        Plan {
            quick,
            raw_bytes: if quick { 256 * MIB } else { 512 * MIB },
            raw_syncs_count: if quick { 200 } else { 1000 },
            append_batch_bytes: if quick { vec![256 << 10, 1 << 20] } else { vec![64 << 10, 256 << 10, 1 << 20] },
            // 256 MiB even in quick mode: at ~2 GB/s a 128 MiB case lasts ~60 ms, too short to
            // average out this disk's moment-to-moment swings, and it would not cross a roll.
            append_bytes: if quick { 256 * MIB } else { 512 * MIB },
            producers: args.producers.max(1),
            shard_bytes: if quick { 128 * MIB } else { 256 * MIB },
            latency_producers: vec![1, 8, 64],
            latency_duration: Duration::from_secs(seconds.max(1)),
            latency_batch_bytes: 16 << 10,
            cold_read_bytes: if quick { 256 * MIB } else { 512 * MIB },
            cold_batch_bytes: 256 << 10,
            // As many readers as the raw read baseline has reads in flight: like for like.
            cold_readers: baseline::IO_IN_FLIGHT,
            tail_batch_bytes: 16 << 10,
            // 8 MiB (what half the old per-partition tail cache was): far inside the shard's
            // cache budget (SHARD_CACHE_BYTES_DEFAULT), so nothing is evicted.
            tail_resident_bytes: (8 * MIB).min(engine::limits::SHARD_CACHE_BYTES_DEFAULT / 2),
            tail_reread_bytes: if quick { 1 << 30 } else { 4 << 30 },
            tail_appends_count: if quick { 5_000 } else { 20_000 },
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardlog-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> BenchResult<()> {
    let run_start = Instant::now();
    env::raise_memlock_limit();
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let fs_type = env::FsType::of(&parent)?;
    if fs_type.is_tmpfs() {
        return Err(format!(
            "{} is on tmpfs, where O_DIRECT silently does not happen; pass --dir on a real disk (e.g. ext4)",
            parent.display()
        )
        .into());
    }
    let data_dir = tempfile::Builder::new().prefix("shardlog-bench-").tempdir_in(&parent)?;
    env::set_data_disk(data_dir.path());
    let plan = Plan::new(args);

    let mut report = Report::default();
    rows::environment(&mut report, &plan, data_dir.path(), &fs_type);
    if !args.broker {
        let single = on_executor("bench-single", 0, {
            let (dir, plan) = (data_dir.path().to_path_buf(), plan.clone());
            move || async move { single_executor_cases(&dir, &plan).await }
        })?;
        let shards = two_shards_bracketed(data_dir.path(), &plan)?;
        rows::add_sections(&mut report, &single, &shards);
    }
    if args.broker || !plan.quick {
        let broker_plan = broker_cases::BrokerPlan::new(args.seconds);
        let results = broker_cases::run(data_dir.path(), &broker_plan)?;
        broker_cases::environment(&mut report, &broker_plan, args.broker);
        broker_cases::add_sections(&mut report, &broker_plan, &results);
    }
    report.env("total run time", format!("{:.1} s", run_start.elapsed().as_secs_f64()));
    print!("{}", report.to_text());
    if let Some(path) = &args.markdown {
        std::fs::write(path, report.to_markdown())?;
        println!("markdown written to {}", path.display());
    }
    Ok(())
}

fn progress(what: &str) {
    eprintln!("shardlog-bench: {what}");
}

/// Runs `make_future` on a new executor pinned to `cpu` and waits for it.
fn on_executor<T, G, F>(name: &str, cpu: usize, make_future: G) -> BenchResult<T>
where
    T: Send + 'static,
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = BenchResult<T>> + 'static,
{
    let cpu = cpu.min(env::cpu_count().saturating_sub(1));
    let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu)).name(name).spawn(make_future).map_err(gio)?;
    handle.join().map_err(gio)?
}

/// A case's result with the raw measurement taken right before and right after it.
pub struct Bracketed<T, R> {
    pub case: T,
    pub raw_before: R,
    pub raw_after: R,
}

pub struct AppendCase {
    pub batch_bytes: usize,
    pub durability: Durability,
    pub outcome: engine_cases::AppendOutcome,
}

/// Everything measured on the single pinned executor.
pub struct SingleResults {
    pub raw_write: Throughput,
    pub raw_fsync: Histogram<u64>,
    pub raw_read: Throughput,
    pub appends: Vec<Bracketed<AppendCase, Throughput>>,
    /// Latency cases share one bracket: raw fsync runs before the first and after the last.
    pub latencies: Bracketed<Vec<(usize, engine_cases::LatencyOutcome)>, Histogram<u64>>,
    pub cold: Bracketed<engine_cases::ColdReadOutcome, Throughput>,
    pub tail: engine_cases::TailReadOutcome,
    pub tail_after_append: engine_cases::AppendThenReadOutcome,
}

async fn single_executor_cases(dir: &Path, plan: &Plan) -> BenchResult<SingleResults> {
    baseline::prime_direct_io(dir).await?;
    progress("baseline 1: raw O_DIRECT write");
    // Kept until case D, whose reads are bracketed by raw reads of this file.
    let (raw_write, read_path) = baseline::raw_write(dir, "raw-read.dat", plan.raw_bytes).await?;
    progress("baseline 2: raw 4 KiB write + fdatasync");
    let raw_fsync = baseline::raw_fsync_latency(dir, plan.raw_syncs_count).await?;
    progress("baseline 3: raw O_DIRECT read");
    let raw_read = baseline::raw_read(&read_path).await?;

    let appends = append_cases(dir, plan).await?;
    let latencies = latency_cases(dir, plan).await?;

    progress("D: cold read, bracketed by raw reads");
    let cold_set = engine_cases::build_batches(plan.cold_batch_bytes, 4)?;
    let raw_before = baseline::raw_read(&read_path).await?;
    let cold_dir = dir.join("cold-read");
    let case = engine_cases::cold_read(&cold_dir, &cold_set, plan.cold_read_bytes, plan.cold_readers).await?;
    let raw_after = baseline::raw_read(&read_path).await?;
    std::fs::remove_file(&read_path)?;
    let cold = Bracketed { case, raw_before, raw_after };

    progress("E: tail reads");
    let tail_set = engine_cases::build_batches(plan.tail_batch_bytes, 16)?;
    let tail_dir = dir.join("tail-reread");
    let tail =
        engine_cases::tail_reread(&tail_dir, &tail_set, plan.tail_resident_bytes, plan.tail_reread_bytes).await?;
    let tail_dir = dir.join("tail-after-append");
    let tail_after_append = engine_cases::append_then_read(&tail_dir, &tail_set, plan.tail_appends_count).await?;

    Ok(SingleResults { raw_write, raw_fsync, raw_read, appends, latencies, cold, tail, tail_after_append })
}

/// Case A, each case between two raw writes of the same size (one raw write sits between two
/// consecutive cases and serves both).
async fn append_cases(dir: &Path, plan: &Plan) -> BenchResult<Vec<Bracketed<AppendCase, Throughput>>> {
    let mut cases = Vec::new();
    progress("A: raw write bracket");
    let mut raw_before = raw_write_once(dir, plan.append_bytes).await?;
    for &batch_bytes in &plan.append_batch_bytes {
        let set = engine_cases::build_batches(batch_bytes, plan.producers)?;
        for durability in [Durability::Sync, Durability::None] {
            progress(&format!("A: append {} KiB batches, {durability:?}", batch_bytes >> 10));
            let case_dir = dir.join(format!("append-{batch_bytes}-{durability:?}"));
            let outcome =
                engine_cases::append_throughput(&case_dir, &set, plan.append_bytes, plan.producers, durability).await?;
            progress("A: raw write bracket");
            let raw_after = raw_write_once(dir, plan.append_bytes).await?;
            let case = AppendCase { batch_bytes, durability, outcome };
            cases.push(Bracketed { case, raw_before, raw_after });
            raw_before = raw_after;
        }
    }
    Ok(cases)
}

/// Case C, between two raw fsync runs.
async fn latency_cases(
    dir: &Path,
    plan: &Plan,
) -> BenchResult<Bracketed<Vec<(usize, engine_cases::LatencyOutcome)>, Histogram<u64>>> {
    progress("C: raw fsync bracket");
    let raw_before = baseline::raw_fsync_latency(dir, plan.raw_syncs_count).await?;
    let set = engine_cases::build_batches(plan.latency_batch_bytes, 64)?;
    let mut case = Vec::new();
    for &producers in &plan.latency_producers {
        progress(&format!("C: Sync append latency, {producers} producers"));
        let case_dir = dir.join(format!("latency-{producers}"));
        let outcome = engine_cases::append_latency(&case_dir, &set, producers, plan.latency_duration).await?;
        case.push((producers, outcome));
    }
    progress("C: raw fsync bracket");
    let raw_after = baseline::raw_fsync_latency(dir, plan.raw_syncs_count).await?;
    Ok(Bracketed { case, raw_before, raw_after })
}

async fn raw_write_once(dir: &Path, bytes_total: u64) -> BenchResult<Throughput> {
    let (throughput, path) = baseline::raw_write(dir, "raw-bracket.dat", bytes_total).await?;
    std::fs::remove_file(&path)?;
    Ok(throughput)
}

/// A raw write on a fresh executor (each executor primes glommio's direct-I/O probe first).
fn raw_write_on_new_executor(dir: &Path, bytes_total: u64) -> BenchResult<Throughput> {
    let dir = dir.to_path_buf();
    on_executor("bench-raw", 0, move || async move {
        baseline::prime_direct_io(&dir).await?;
        raw_write_once(&dir, bytes_total).await
    })
}

/// Case B: two executors pinned apart, each with its own log, started together. Aggregate
/// throughput is all bytes over the span from the first start to the last finish.
pub struct ShardResults {
    pub aggregate: Throughput,
    pub appends_count: u64,
    pub syncs_count: u64,
}

fn two_shards_bracketed(dir: &Path, plan: &Plan) -> BenchResult<Bracketed<ShardResults, Throughput>> {
    progress("B: raw write bracket");
    let raw_before = raw_write_on_new_executor(dir, plan.shard_bytes * 2)?;
    progress("B: two shards");
    let case = two_shards(dir, plan)?;
    progress("B: raw write bracket");
    let raw_after = raw_write_on_new_executor(dir, plan.shard_bytes * 2)?;
    Ok(Bracketed { case, raw_before, raw_after })
}

fn two_shards(dir: &Path, plan: &Plan) -> BenchResult<ShardResults> {
    let barrier = Arc::new(Barrier::new(2));
    let (dir, bytes_total, producers) = (dir.to_path_buf(), plan.shard_bytes, plan.producers);
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(2, None))
        .name("bench-shard")
        .on_all_shards(move || async move {
            let shard_dir = dir.join(format!("shard-{}", glommio::executor().id()));
            engine_cases::shard_append(&shard_dir, bytes_total, producers, &barrier).await
        })
        .map_err(gio)?;
    let mut outcomes = Vec::new();
    for joined in handles.join_all() {
        outcomes.push(joined.map_err(gio)??);
    }
    let start = outcomes.iter().map(|(o, _)| o.start).min();
    let end = outcomes.iter().map(|(o, _)| o.end).max();
    // The shard that ran longest saw (nearly) all of the other's disk activity too.
    let longest = outcomes.iter().map(|(o, _)| o.measured).max_by_key(|m| m.elapsed);
    let (Some(start), Some(end), Some(longest)) = (start, end, longest) else {
        return Err("no shard reported".into());
    };
    Ok(ShardResults {
        aggregate: Throughput {
            bytes_total: outcomes.iter().map(|(o, _)| o.measured.bytes_total).sum(),
            elapsed: end - start,
            cpu: outcomes.iter().map(|(o, _)| o.measured.cpu).sum(),
            disk: longest.disk,
        },
        appends_count: outcomes.iter().map(|(o, _)| o.appends_count).sum(),
        syncs_count: outcomes.iter().map(|(_, s)| s.syncs_count).sum(),
    })
}
