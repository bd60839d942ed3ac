//! Broker benchmarks: the in-process broker (`shardlog::Node`, 2 shards pinned to CPUs 0
//! and 1) driven by the Rust client from one more executor, each figure beside a baseline
//! measured in the same run:
//!
//! 1. loopback TCP between two pinned executors (`loopback.rs`): bandwidth and 128 B ping-pong;
//! 2. produce throughput, against the engine alone appending the same batches to the same
//!    number of logs on two executors pinned like the shards (measured right before and right
//!    after the broker case: the disk's speed moves within a run);
//! 3. fetch throughput, against the engine alone reading the same files (before and after);
//! 4. produce latency through forwarding and shard-aware routing, against the ping-pong.
//!
//! This VM has 2 CPUs: the client executor shares them with the two shards, so every broker
//! figure also pays for the client's own work, which a real deployment runs elsewhere. The
//! notes give each thread's CPU time, and the time it was runnable but waiting for a CPU
//! (`/proc/self/task/*/schedstat`), to show where the time went.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{
    Acks, Client, ClientOptions, FetchPartition, ListOffsetsPartition, OffsetSpec, ProducePartition,
    ProducePartitionResult, Routing, TopicSettings,
};
use engine::catalog::{partition_dir_name, TopicConfig};
use engine::{Durability, Log, LogConfig};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use protocol::codec::encode_response;
use protocol::frame::FRAME_PREFIX_BYTES;
use protocol::messages::Response;
use shardlog::config::{ServeArgs, ServeConfig};
use shardlog::Node as Broker;

use crate::baseline::{gio, latency_histogram, LatencyUs};
use crate::engine_cases::{build_batches, BatchSet, RECORD_VALUE_BYTES};
use crate::env::{self, BlockStat, DiskActivity};
use crate::loopback::{self, clamp_cpu, Bandwidth, PingPong};
use crate::report::{format_number, Report, Row, Target};
use crate::{progress, BenchResult, MIB};

/// The throughput and fetch cases' topic.
const TOPIC: &str = "bench";
/// The latency cases' topic.
const LATENCY_TOPIC: &str = "latency";
/// The produce target: broker throughput / engine-alone throughput.
const PRODUCE_RATIO_MIN: f64 = 0.8;
/// Bracket ends further apart than this (relative to their mean) are flagged, as in `rows.rs`.
const BRACKET_SPREAD_WARN: f64 = 0.20;

/// How much of everything the broker cases do.
#[derive(Debug, Clone)]
pub struct BrokerPlan {
    pub shards: usize,
    pub partitions: u32,
    /// The client executor's CPU (the VM has 2: it shares one with a shard).
    pub client_cpu: usize,
    pub loopback_duration: Duration,
    pub produce_duration: Duration,
    /// Stops a produce case early if the disk is faster than expected (bounds disk use).
    pub produce_bytes_max: u64,
    pub produce_batch_bytes: usize,
    /// Requests in flight per partition (the engine baseline: appends in flight per log).
    pub produce_in_flight_per_partition: usize,
    pub fetch_bytes_max: u32,
    /// Fetches in flight per partition, each over its own range of offsets.
    pub fetch_in_flight_per_partition: usize,
    pub latency_duration: Duration,
    pub latency_warmup: Duration,
    pub latency_batch_bytes: usize,
    pub latency_concurrency: Vec<usize>,
}

impl BrokerPlan {
    /// `seconds` (the `--seconds` flag) sets the latency cases' length; 3 s by default.
    pub fn new(seconds: Option<u64>) -> BrokerPlan {
        BrokerPlan {
            shards: 2,
            partitions: 8,
            client_cpu: 1,
            loopback_duration: Duration::from_secs(2),
            produce_duration: Duration::from_secs(4),
            produce_bytes_max: 12 << 30,
            produce_batch_bytes: 256 << 10,
            produce_in_flight_per_partition: 4,
            fetch_bytes_max: crate::engine_cases::READ_BYTES,
            fetch_in_flight_per_partition: 2,
            latency_duration: Duration::from_secs(seconds.unwrap_or(3).max(1)),
            latency_warmup: Duration::from_millis(300),
            latency_batch_bytes: 16 << 10,
            latency_concurrency: vec![1, 16],
        }
    }

    fn partitions_per_shard(&self) -> usize {
        self.partitions as usize / self.shards
    }
}

// ---- measurement windows ---------------------------------------------------------------------

/// On-CPU time and run-queue wait of one task (`/proc/PID/task/TID/schedstat`, ns: precise,
/// unlike the tick-sampled `/proc/stat`).
#[derive(Debug, Clone, Copy, Default)]
struct TaskTime {
    on_cpu: Duration,
    waiting: Duration,
}

/// Whose a task is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    /// A thread of this process, by thread group (see `thread_group`).
    Me(String),
    /// A kernel thread (kworkers completing direct I/O, ksoftirqd, ...).
    Kernel,
    /// Another process, by its name.
    Other(String),
}

/// Every task on the machine, by thread id (unique machine-wide), with its owner.
#[derive(Debug, Clone, Default)]
struct TaskTimes {
    by_tid: HashMap<u32, (Owner, TaskTime)>,
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

impl TaskTimes {
    fn sample() -> TaskTimes {
        let mut by_tid = HashMap::new();
        let me = std::process::id();
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return TaskTimes { by_tid };
        };
        for process in processes.flatten() {
            let Some(pid) = process.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let path = process.path();
            let owner = if pid == me {
                None
            } else {
                let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
                // The fields after the parenthesised name: state ppid pgrp session tty tpgid flags.
                let flags: Option<u64> =
                    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(6)?.parse().ok());
                Some(match flags {
                    Some(flags) if flags & PF_KTHREAD != 0 => Owner::Kernel,
                    _ => Owner::Other(std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_owned()),
                })
            };
            let Ok(tasks) = std::fs::read_dir(path.join("task")) else {
                continue; // Exited meanwhile.
            };
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                    continue;
                };
                let fields: Vec<u64> = schedstat.split_whitespace().filter_map(|f| f.parse().ok()).collect();
                let [on_cpu, waiting, ..] = fields[..] else {
                    continue;
                };
                let owner = match &owner {
                    Some(owner) => owner.clone(),
                    None => {
                        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                        Owner::Me(thread_group(comm.trim()))
                    }
                };
                let time = TaskTime { on_cpu: Duration::from_nanos(on_cpu), waiting: Duration::from_nanos(waiting) };
                by_tid.insert(tid, (owner, time));
            }
        }
        TaskTimes { by_tid }
    }

    /// Per owner: the time between `earlier` and this sample (tasks started meanwhile count
    /// from zero; tasks that ended meanwhile are lost).
    fn since(&self, earlier: &TaskTimes) -> BTreeMap<Owner, TaskTime> {
        let mut by_owner: BTreeMap<Owner, TaskTime> = BTreeMap::new();
        for (tid, (owner, now)) in &self.by_tid {
            let before = earlier.by_tid.get(tid).filter(|(o, _)| o == owner).map(|(_, t)| *t).unwrap_or_default();
            let entry = by_owner.entry(owner.clone()).or_default();
            entry.on_cpu += now.on_cpu.saturating_sub(before.on_cpu);
            entry.waiting += now.waiting.saturating_sub(before.waiting);
        }
        by_owner
    }
}

/// A thread's name without the suffix that tells threads of one kind apart: glommio names an
/// executor thread "NAME-ID" (cut to 15 bytes, possibly inside the id), the kernel names
/// io_uring's workers "iou-wrk-TID".
fn thread_group(comm: &str) -> String {
    match comm.rsplit_once('-') {
        Some((group, suffix)) if suffix.bytes().all(|b| b.is_ascii_digit()) && !group.is_empty() => group.to_owned(),
        _ => comm.to_owned(),
    }
}

/// What the machine did during a measured window.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    pub elapsed: Duration,
    tasks: BTreeMap<Owner, TaskTime>,
    pub disk: Option<DiskActivity>,
}

impl Activity {
    /// "kernel threads 0.10, other processes 0.30 (shardlog 0.28) of 2 CPUs": CPU time outside
    /// this process (another session's load lands in every figure).
    pub fn outside(&self) -> String {
        let wall = self.elapsed.as_secs_f64().max(1e-9);
        let cpus = |t: &TaskTime| t.on_cpu.as_secs_f64() / wall;
        let kernel = self.tasks.get(&Owner::Kernel).map_or(0.0, cpus);
        let mut others: BTreeMap<&str, f64> = BTreeMap::new();
        for (owner, t) in &self.tasks {
            if let Owner::Other(name) = owner {
                *others.entry(name).or_default() += cpus(t);
            }
        }
        let others_total: f64 = others.values().sum();
        let mut top: Vec<(&str, f64)> = others.into_iter().filter(|(_, c)| *c >= 0.02).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = top.iter().take(3).map(|(name, c)| format!("{name} {c:.2}")).collect();
        let mut out = format!("kernel threads {kernel:.2}, other processes {others_total:.2}");
        if !top.is_empty() {
            out.push_str(&format!(" ({})", top.join(", ")));
        }
        out.push_str(&format!(" of {} CPUs", env::cpu_count()));
        out
    }

    /// "threads (...): shard-0 53/9, bench-client 44/23, ...; this process 1.51 CPUs, kernel
    /// threads 0.10, other processes 0.30 (shardlog 0.28) of 2 CPUs; disk ...": per thread of
    /// this process, the share of wall time it ran and the share it was runnable but not
    /// running; then `outside`. Threads that ended before the window closed are not counted.
    pub fn describe(&self) -> String {
        let wall = self.elapsed.as_secs_f64().max(1e-9);
        let cpus = |t: &TaskTime| t.on_cpu.as_secs_f64() / wall;
        let mut mine: Vec<(&String, &TaskTime)> = self
            .tasks
            .iter()
            .filter_map(|(owner, t)| match owner {
                Owner::Me(name) => Some((name, t)),
                _ => None,
            })
            .collect();
        let mine_total: f64 = mine.iter().map(|(_, t)| cpus(t)).sum();
        mine.sort_by_key(|(_, t)| std::cmp::Reverse(t.on_cpu));
        let listed: Vec<String> = mine
            .iter()
            .filter(|(_, t)| cpus(t) >= 0.01)
            .map(|(name, t)| format!("{name} {:.0}/{:.0}", cpus(t) * 100.0, t.waiting.as_secs_f64() / wall * 100.0))
            .collect();
        let mut out = format!(
            "threads (% of wall time running/runnable but not running: behind another thread, or its halted vCPU \
             being woken): {}; this process {mine_total:.2} CPUs, {}",
            listed.join(", "),
            self.outside()
        );
        if let Some(disk) = &self.disk {
            out.push_str("; ");
            out.push_str(&disk.describe());
        }
        out
    }
}

/// The clocks of one measured window: wall time, every task's CPU time, the data disk.
struct Window {
    start: Instant,
    tasks: TaskTimes,
    disk: Option<BlockStat>,
}

impl Window {
    fn open() -> Window {
        let (tasks, disk) = (TaskTimes::sample(), env::data_disk().and_then(|d| d.sample()));
        Window { start: Instant::now(), tasks, disk }
    }

    fn close(&self) -> Activity {
        let elapsed = self.start.elapsed();
        let disk = match (&self.disk, env::data_disk().and_then(|d| d.sample())) {
            (Some(before), Some(after)) => Some(DiskActivity::between(before, &after, elapsed)),
            _ => None,
        };
        Activity { elapsed, tasks: TaskTimes::sample().since(&self.tasks), disk }
    }
}

/// Bytes moved in a measured time.
#[derive(Debug, Clone)]
pub struct Measured {
    pub bytes_total: u64,
    /// Appends, produce requests, reads or fetches.
    pub ops_count: u64,
    pub elapsed: Duration,
    pub activity: Activity,
}

impl Measured {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes_total as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    fn describe(&self, op: &str) -> String {
        format!(
            "{} MiB in {:.0} ms, {} {op}; {}",
            self.bytes_total / MIB,
            self.elapsed.as_secs_f64() * 1e3,
            self.ops_count,
            self.activity.describe()
        )
    }
}

// ---- results -------------------------------------------------------------------------------

pub struct ProduceCase {
    pub engine_before: Measured,
    pub broker: Measured,
    pub engine_after: Measured,
    pub batch_bytes: usize,
    pub records_per_batch: u64,
}

pub struct FetchCase {
    pub engine_before: Measured,
    pub broker: Measured,
    pub engine_after: Measured,
    /// Largest Fetch response frame body the client read, in bytes.
    pub response_frame_bytes: usize,
}

pub struct LatencyCase {
    pub routing: Routing,
    pub concurrency: usize,
    pub latency: LatencyUs,
    /// p50 in µs by the shard owning the partition.
    pub p50_by_shard: Vec<f64>,
    pub requests_count: u64,
    /// Requests each shard forwarded to another (the broker's `forwards_out_total`).
    pub forwarded_by_shard: BTreeMap<u32, u64>,
    pub activity: Activity,
}

pub struct BrokerResults {
    pub bandwidth: Bandwidth,
    pub ping_cross: PingPong,
    pub ping_same: PingPong,
    /// Bandwidth, cross-core and same-core ping-pong, each including its executors' start and stop.
    pub loopback_activity: [Activity; 3],
    pub produce: ProduceCase,
    pub fetch: FetchCase,
    pub latencies: Vec<LatencyCase>,
}

// ---- the run -------------------------------------------------------------------------------

/// Everything a shard-like executor needs for one engine-alone case.
#[derive(Clone)]
struct PartContext {
    k: usize,
    dir: PathBuf,
    partitions: Vec<u32>,
    start: Arc<Barrier>,
    end: Arc<Barrier>,
    plan: BrokerPlan,
}

/// Where the produce case left its data, for the fetch case and the engine reads.
#[derive(Debug, Clone)]
struct DataLayout {
    dir: PathBuf,
    /// Log end offset of each partition.
    end_offsets: Vec<u64>,
    /// Owning shard of each partition.
    owners: Vec<usize>,
    records_per_batch: u64,
    batch_bytes: u64,
}

impl DataLayout {
    /// Bytes of whole benchmark batches (the final one-record batch of each partition is not
    /// read back: reads stop at a batch count, so every range's bytes follow from offsets).
    fn expected_bytes(&self) -> u64 {
        self.end_offsets.iter().map(|end| end / self.records_per_batch * self.batch_bytes).sum()
    }
}

/// Runs every broker case in `parent` (a directory on the data disk). Blocks the calling thread.
pub fn run(parent: &Path, plan: &BrokerPlan) -> BenchResult<BrokerResults> {
    if env::cpu_count() < plan.shards {
        progress(&format!("broker: only {} CPUs for {} shards; shards share cores", env::cpu_count(), plan.shards));
    }
    progress("broker 1: loopback bandwidth, CPU 0 -> CPU 1");
    let window = Window::open();
    let bandwidth = loopback::bandwidth(0, 1, plan.loopback_duration)?;
    let bandwidth_activity = window.close();
    progress("broker 1: loopback 128 B ping-pong, CPU 0 <-> CPU 1");
    let window = Window::open();
    let ping_cross = loopback::ping_pong(0, 1, plan.loopback_duration)?;
    let ping_cross_activity = window.close();
    progress(&format!("broker 1: loopback 128 B ping-pong, CPU {0} <-> CPU {0}", plan.client_cpu));
    let window = Window::open();
    let ping_same = loopback::ping_pong(plan.client_cpu, plan.client_cpu, plan.loopback_duration)?;
    let ping_same_activity = window.close();
    let loopback_activity = [bandwidth_activity, ping_cross_activity, ping_same_activity];

    let set = Arc::new(build_batches(plan.produce_batch_bytes, plan.partitions as usize * 4)?);
    let last = build_batches(RECORD_VALUE_BYTES + 128, 1)?.batches[0].clone();
    let data_dir = parent.join("broker-data");

    progress("broker 2: engine alone, append (bracket before)");
    let engine_before = engine_append(parent, plan, &set, &last)?;
    progress("broker 2: broker produce");
    let mut broker = start_broker(&data_dir, plan.shards)?;
    let addr = broker.listen.to_string();
    let produced = {
        let (plan, set, last) = (plan.clone(), set.clone(), last.clone());
        crate::on_executor("bench-client", plan.client_cpu, move || async move {
            broker_produce(addr, plan, set, last).await
        })
    };
    broker.shutdown();
    let (produced, end_offsets, owners) = produced?;
    progress("broker 2: engine alone, append (bracket after)");
    let engine_after = engine_append(parent, plan, &set, &last)?;
    let produce = ProduceCase {
        engine_before,
        broker: produced,
        engine_after,
        batch_bytes: set.batch_bytes,
        records_per_batch: set.records_per_batch,
    };

    let layout = DataLayout {
        dir: data_dir.clone(),
        end_offsets,
        owners,
        records_per_batch: set.records_per_batch,
        batch_bytes: set.batch_bytes as u64,
    };
    progress("broker 3: engine alone, read the broker's files (bracket before)");
    let engine_before = engine_read(plan, &layout)?;
    progress("broker 3: broker fetch (restarted: tail caches empty)");
    let mut broker = start_broker(&data_dir, plan.shards)?;
    let addr = broker.listen.to_string();
    let fetched =
        {
            let (plan, layout) = (plan.clone(), layout.clone());
            crate::on_executor("bench-client", plan.client_cpu, move || async move {
                broker_fetch(addr, plan, layout).await
            })
        };
    broker.shutdown();
    let (broker_fetched, response_frame_bytes) = fetched?;
    progress("broker 3: engine alone, read the broker's files (bracket after)");
    let engine_after = engine_read(plan, &layout)?;
    std::fs::remove_dir_all(&data_dir)?;
    let fetch = FetchCase { engine_before, broker: broker_fetched, engine_after, response_frame_bytes };

    progress("broker 4: produce latency, forward vs shard-aware");
    let latency_dir = parent.join("broker-latency");
    let mut broker = start_broker(&latency_dir, plan.shards)?;
    let addr = broker.listen.to_string();
    let metrics_addr = broker.metrics_listen.ok_or("the broker did not start its metrics endpoint")?;
    let latencies = {
        let plan = plan.clone();
        crate::on_executor("bench-client", plan.client_cpu, move || async move {
            broker_latency(addr, metrics_addr, plan).await
        })
    };
    broker.shutdown();
    std::fs::remove_dir_all(&latency_dir)?;
    let latencies = latencies?;

    Ok(BrokerResults { bandwidth, ping_cross, ping_same, loopback_activity, produce, fetch, latencies })
}

fn start_broker(data_dir: &Path, shards: usize) -> BenchResult<Broker> {
    let args = ServeArgs {
        data_dir: Some(data_dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        // Read around the latency cases for each shard's count of forwarded requests.
        metrics_listen: Some("127.0.0.1:0".into()),
        ..ServeArgs::default()
    };
    Ok(Broker::start(ServeConfig::resolve(&args)?)?)
}

/// Runs `make(context for executor k)` on `plan.shards` executors, executor k pinned to CPU k
/// (as the broker pins shard k), partitions spread as `owners` says. Returns each one's `Part`.
fn on_shard_cores<G, F>(name: &str, dir: &Path, plan: &BrokerPlan, owners: &[usize], make: G) -> BenchResult<Vec<Part>>
where
    G: Fn(PartContext) -> F + Send + Clone + 'static,
    F: Future<Output = BenchResult<Part>> + 'static,
{
    let (start, end) = (Arc::new(Barrier::new(plan.shards)), Arc::new(Barrier::new(plan.shards)));
    let mut handles = Vec::with_capacity(plan.shards);
    for k in 0..plan.shards {
        let partitions = (0..plan.partitions).filter(|&p| owners.get(p as usize) == Some(&k)).collect();
        let context = PartContext {
            k,
            dir: dir.to_path_buf(),
            partitions,
            start: start.clone(),
            end: end.clone(),
            plan: plan.clone(),
        };
        let make = make.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(clamp_cpu(k)))
            .name(&format!("{name}-{k}"))
            .spawn(move || make(context))
            .map_err(gio)?;
        handles.push(handle);
    }
    let mut parts = Vec::with_capacity(handles.len());
    for handle in handles {
        parts.push(handle.join().map_err(gio)??);
    }
    Ok(parts)
}

/// One executor's share of an engine-alone case.
struct Part {
    start: Instant,
    end: Instant,
    bytes_total: u64,
    ops_count: u64,
    /// Sampled by executor 0, between the shared start and end barriers.
    activity: Option<Activity>,
}

/// All executors' bytes over the span from the first start to the last end.
fn combine(parts: Vec<Part>) -> BenchResult<Measured> {
    let start = parts.iter().map(|p| p.start).min();
    let end = parts.iter().map(|p| p.end).max();
    let (Some(start), Some(end)) = (start, end) else {
        return Err("no executor reported".into());
    };
    Ok(Measured {
        bytes_total: parts.iter().map(|p| p.bytes_total).sum(),
        ops_count: parts.iter().map(|p| p.ops_count).sum(),
        elapsed: end - start,
        activity: parts.into_iter().find_map(|p| p.activity).unwrap_or_default(),
    })
}

fn log_config() -> LogConfig {
    // What the broker gives a topic created with default settings.
    LogConfig::from_topic(&TopicConfig::default())
}

async fn open_logs(dir: &Path, partitions: &[u32]) -> BenchResult<Vec<(u32, Log)>> {
    let mut logs = Vec::with_capacity(partitions.len());
    for &p in partitions {
        logs.push((p, Log::open(&dir.join(partition_dir_name(TOPIC, p)), log_config()).await?));
    }
    Ok(logs)
}

async fn close_logs(logs: Vec<(u32, Log)>) -> BenchResult<()> {
    for (_, log) in logs {
        log.close().await?;
    }
    Ok(())
}

/// Opens the logs, waits for the other executors, runs `body` between the shared barriers
/// (executor 0 samples the machine meanwhile), closes the logs. The barriers are passed even
/// when something fails, so no executor waits forever for one that gave up.
async fn between_barriers<B, BF>(context: &PartContext, body: B) -> BenchResult<Part>
where
    B: FnOnce(Rc<Vec<(u32, Log)>>) -> BF,
    BF: Future<Output = BenchResult<(Instant, Instant, u64, u64)>>,
{
    let opened = match crate::baseline::prime_direct_io(&context.dir).await {
        Ok(()) => open_logs(&context.dir, &context.partitions).await,
        Err(e) => Err(e.into()),
    };
    let logs = match opened {
        Ok(logs) => Rc::new(logs),
        Err(e) => {
            context.start.wait();
            context.end.wait();
            return Err(e);
        }
    };
    context.start.wait();
    let window = (context.k == 0).then(Window::open);
    let result = body(logs.clone()).await;
    context.end.wait();
    let activity = window.map(|w| w.close());
    let logs = Rc::try_unwrap(logs).map_err(|_| "a log is still in use")?;
    close_logs(logs).await?;
    let (start, end, bytes_total, ops_count) = result?;
    Ok(Part { start, end, bytes_total, ops_count, activity })
}

/// Case 2's baseline: per executor, its partitions' logs, `produce_in_flight_per_partition`
/// appends (Durability::None) in flight per log for `produce_duration`, then one Sync append
/// per log (one fdatasync covering everything, as the broker case's final acks=durable produce).
fn engine_append(parent: &Path, plan: &BrokerPlan, set: &Arc<BatchSet>, last: &Bytes) -> BenchResult<Measured> {
    let dir = parent.join("engine-append");
    std::fs::create_dir_all(&dir)?;
    let owners: Vec<usize> = (0..plan.partitions as usize).map(|p| p % plan.shards).collect();
    let (set, last) = (set.clone(), last.clone());
    let parts = on_shard_cores("bench-append", &dir, plan, &owners, move |context| {
        let (set, last) = (set.clone(), last.clone());
        async move {
            let plan = context.plan.clone();
            between_barriers(&context, |logs| append_for(logs, set, last, plan)).await
        }
    })?;
    std::fs::remove_dir_all(&dir)?;
    combine(parts)
}

async fn append_for(
    logs: Rc<Vec<(u32, Log)>>,
    set: Arc<BatchSet>,
    last: Bytes,
    plan: BrokerPlan,
) -> BenchResult<(Instant, Instant, u64, u64)> {
    let budget = Rc::new(Cell::new(plan.produce_bytes_max / plan.shards as u64));
    let start = Instant::now();
    let deadline = start + plan.produce_duration;
    let mut tasks = Vec::new();
    for (i, (_, log)) in logs.iter().enumerate() {
        for t in 0..plan.produce_in_flight_per_partition {
            let batch = set.batches[(i * plan.produce_in_flight_per_partition + t) % set.batches.len()].clone();
            tasks.push(glommio::spawn_local(append_until(log.clone(), batch, deadline, budget.clone())));
        }
    }
    let mut appends_count = 0u64;
    for task in tasks {
        appends_count += task.await?;
    }
    let mut bytes_total = appends_count * set.batch_bytes as u64;
    let syncs: Vec<_> = logs
        .iter()
        .map(|(_, log)| {
            let (log, batches) = (log.clone(), [last.clone()]);
            glommio::spawn_local(async move { log.append(&batches, Durability::Sync).await })
        })
        .collect();
    for sync in syncs {
        sync.await?;
        appends_count += 1;
        bytes_total += last.len() as u64;
    }
    Ok((start, Instant::now(), bytes_total, appends_count))
}

async fn append_until(log: Log, batch: Bytes, deadline: Instant, budget: Rc<Cell<u64>>) -> BenchResult<u64> {
    let batch_bytes = batch.len() as u64;
    let batches = [batch];
    let mut appends_count = 0u64;
    while Instant::now() < deadline && budget.get() >= batch_bytes {
        budget.set(budget.get() - batch_bytes);
        log.append(&batches, Durability::None).await?;
        appends_count += 1;
    }
    Ok(appends_count)
}

/// Case 3's baseline: the broker's partition logs opened by the engine alone (broker stopped),
/// on executors pinned like their shards, read from offset 0 with the broker fetch's layout:
/// `fetch_in_flight_per_partition` readers per log over disjoint ranges, `fetch_bytes_max` each.
fn engine_read(plan: &BrokerPlan, layout: &DataLayout) -> BenchResult<Measured> {
    let shared = Arc::new(layout.clone());
    let parts = on_shard_cores("bench-read", &layout.dir, plan, &layout.owners, move |context| {
        let layout = shared.clone();
        async move {
            let plan = context.plan.clone();
            between_barriers(&context, |logs| read_logs(logs, layout, plan)).await
        }
    })?;
    let measured = combine(parts)?;
    if measured.bytes_total != layout.expected_bytes() {
        return Err(format!("engine read {} bytes, expected {}", measured.bytes_total, layout.expected_bytes()).into());
    }
    Ok(measured)
}

async fn read_logs(
    logs: Rc<Vec<(u32, Log)>>,
    layout: Arc<DataLayout>,
    plan: BrokerPlan,
) -> BenchResult<(Instant, Instant, u64, u64)> {
    for (p, log) in logs.iter() {
        let expected = layout.end_offsets[*p as usize];
        if log.log_end_offset().get() != expected {
            return Err(
                format!("partition {p}: log end {} on disk, broker said {expected}", log.log_end_offset()).into()
            );
        }
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (p, log) in logs.iter() {
        for range in
            ranges(layout.end_offsets[*p as usize], layout.records_per_batch, plan.fetch_in_flight_per_partition)
        {
            let (log, shape) = (log.clone(), Shape::of(&layout, plan.fetch_bytes_max));
            tasks.push(glommio::spawn_local(async move {
                read_range(range, shape, |offset, bytes_max| {
                    let log = log.clone();
                    async move {
                        let read = log.read(engine::ids::Offset::new(offset), bytes_max).await?;
                        let bytes: u64 = read.chunks.iter().map(|c| c.len() as u64).sum();
                        Ok((bytes, read.next_offset.get()))
                    }
                })
                .await
            }));
        }
    }
    let (mut bytes_total, mut reads_count) = (0u64, 0u64);
    for task in tasks {
        let (bytes, reads) = task.await?;
        bytes_total += bytes;
        reads_count += reads;
    }
    Ok((start, Instant::now(), bytes_total, reads_count))
}

/// `in_flight` disjoint offset ranges of whole benchmark batches covering a partition.
fn ranges(end_offset: u64, records_per_batch: u64, in_flight: usize) -> Vec<(u64, u64)> {
    let batches_total = end_offset / records_per_batch;
    let n = (in_flight as u64).clamp(1, batches_total.max(1));
    (0..n)
        .map(|i| (batches_total * i / n * records_per_batch, batches_total * (i + 1) / n * records_per_batch))
        .filter(|(start, end)| start < end)
        .collect()
}

/// The batch shape a range reader needs to ask for no more than its range holds.
#[derive(Debug, Clone, Copy)]
struct Shape {
    records_per_batch: u64,
    batch_bytes: u64,
    bytes_max: u32,
}

impl Shape {
    fn of(layout: &DataLayout, bytes_max: u32) -> Shape {
        Shape { records_per_batch: layout.records_per_batch, batch_bytes: layout.batch_bytes, bytes_max }
    }
}

/// Reads `[range.0, range.1)` with `read(offset, bytes_max) -> (bytes, next_offset)`; the last
/// read asks for no more than the range holds, so ranges never overlap. Returns (bytes, reads).
async fn read_range<R, RF>(range: (u64, u64), shape: Shape, read: R) -> BenchResult<(u64, u64)>
where
    R: Fn(u64, u32) -> RF,
    RF: Future<Output = BenchResult<(u64, u64)>>,
{
    let (mut offset, end_offset) = range;
    let (mut bytes_total, mut reads_count) = (0u64, 0u64);
    while offset < end_offset {
        let left_bytes = (end_offset - offset) / shape.records_per_batch * shape.batch_bytes;
        let bytes_max = left_bytes.min(u64::from(shape.bytes_max)) as u32;
        let (bytes, next_offset) = read(offset, bytes_max).await?;
        if bytes == 0 || next_offset > end_offset || next_offset <= offset {
            return Err(format!(
                "read at {offset} returned {bytes} bytes up to {next_offset} (range end {end_offset})"
            )
            .into());
        }
        bytes_total += bytes;
        reads_count += 1;
        offset = next_offset;
    }
    Ok((bytes_total, reads_count))
}

fn check_produced(results: &[ProducePartitionResult]) -> BenchResult<()> {
    match results.iter().find(|r| !r.error.is_ok()) {
        Some(r) => Err(format!("produce to {}-{}: {:?} {}", r.topic, r.partition, r.error, r.message).into()),
        None => Ok(()),
    }
}

fn produce_request(topic: &str, partition: u32, batch: Bytes) -> Vec<ProducePartition> {
    vec![ProducePartition { topic: topic.to_owned(), partition, batches: vec![batch] }]
}

async fn connect(addr: &str, routing: Routing) -> BenchResult<Rc<Client>> {
    Ok(Rc::new(Client::connect(addr, ClientOptions { routing, ..ClientOptions::default() }).await?))
}

async fn create_topic(client: &Client, name: &str, partitions: u32) -> BenchResult<Vec<usize>> {
    let settings = TopicSettings { durability: Some("none".into()), ..TopicSettings::default() };
    client.create_topic(name, partitions, settings).await?;
    (0..partitions)
        .map(|p| client.shard_of(name, p).map(|s| s as usize).ok_or_else(|| format!("no owner for {name}-{p}").into()))
        .collect()
}

/// Case 2: shard-aware client, `produce_in_flight_per_partition` tasks per partition each
/// sending one batch per request (acks=leader; the topic's durability is none) for
/// `produce_duration`; the clock stops when a final acks=durable produce to every partition
/// returns. Returns the measurement, each partition's log end offset and owning shard.
async fn broker_produce(
    addr: String,
    plan: BrokerPlan,
    set: Arc<BatchSet>,
    last: Bytes,
) -> BenchResult<(Measured, Vec<u64>, Vec<usize>)> {
    let client = connect(&addr, Routing::ShardAware).await?;
    let owners = create_topic(&client, TOPIC, plan.partitions).await?;
    // Warm-up, not timed: opens the connection to each shard.
    let warmup: Vec<ProducePartition> = (0..plan.partitions)
        .map(|p| ProducePartition { topic: TOPIC.to_owned(), partition: p, batches: vec![set.batches[0].clone()] })
        .collect();
    check_produced(&client.produce(Acks::Leader, warmup).await?)?;

    let window = Window::open();
    let budget = Rc::new(Cell::new(plan.produce_bytes_max));
    let deadline = Instant::now() + plan.produce_duration;
    let mut tasks = Vec::new();
    for p in 0..plan.partitions {
        for t in 0..plan.produce_in_flight_per_partition {
            let i = p as usize * plan.produce_in_flight_per_partition + t;
            let batch = set.batches[i % set.batches.len()].clone();
            tasks.push(glommio::spawn_local(produce_until(client.clone(), p, batch, deadline, budget.clone())));
        }
    }
    let mut requests_count = 0u64;
    for task in tasks {
        requests_count += task.await?;
    }
    let mut bytes_total = requests_count * set.batch_bytes as u64;
    let finals: Vec<ProducePartition> = (0..plan.partitions)
        .map(|p| ProducePartition { topic: TOPIC.to_owned(), partition: p, batches: vec![last.clone()] })
        .collect();
    let results = client.produce(Acks::Durable, finals).await?;
    let activity = window.close();
    check_produced(&results)?;
    bytes_total += last.len() as u64 * u64::from(plan.partitions);
    requests_count += 1;
    let mut end_offsets = vec![0u64; plan.partitions as usize];
    for r in &results {
        end_offsets[r.partition as usize] = r.log_end_offset;
    }
    let measured = Measured { bytes_total, ops_count: requests_count, elapsed: activity.elapsed, activity };
    Ok((measured, end_offsets, owners))
}

async fn produce_until(
    client: Rc<Client>,
    partition: u32,
    batch: Bytes,
    deadline: Instant,
    budget: Rc<Cell<u64>>,
) -> BenchResult<u64> {
    let batch_bytes = batch.len() as u64;
    let mut requests_count = 0u64;
    while Instant::now() < deadline && budget.get() >= batch_bytes {
        budget.set(budget.get() - batch_bytes);
        check_produced(&client.produce(Acks::Leader, produce_request(TOPIC, partition, batch.clone())).await?)?;
        requests_count += 1;
    }
    Ok(requests_count)
}

/// Case 3: a fresh shard-aware client reads every partition from offset 0 with
/// `fetch_in_flight_per_partition` tasks per partition over disjoint ranges, one partition and
/// at most `fetch_bytes_max` per Fetch, no long-poll. Returns the measurement and the largest
/// response frame body seen.
async fn broker_fetch(addr: String, plan: BrokerPlan, layout: DataLayout) -> BenchResult<(Measured, usize)> {
    let client = connect(&addr, Routing::ShardAware).await?;
    // Warm-up, not timed: opens each shard's connection and checks the data is all there.
    let latest: Vec<ListOffsetsPartition> = (0..plan.partitions)
        .map(|p| ListOffsetsPartition { topic: TOPIC.to_owned(), partition: p, spec: OffsetSpec::Latest })
        .collect();
    for r in client.list_offsets(latest).await? {
        let expected = layout.end_offsets[r.partition as usize];
        if !r.error.is_ok() || r.offset != expected as i64 {
            return Err(format!(
                "partition {}: latest offset {} ({:?}), expected {expected}",
                r.partition, r.offset, r.error
            )
            .into());
        }
    }
    let largest_frame = Rc::new(Cell::new((0usize, 0usize)));
    let window = Window::open();
    let mut tasks = Vec::new();
    for p in 0..plan.partitions {
        let end_offset = layout.end_offsets[p as usize];
        for range in ranges(end_offset, layout.records_per_batch, plan.fetch_in_flight_per_partition) {
            let (client, largest_frame, shape) =
                (client.clone(), largest_frame.clone(), Shape::of(&layout, plan.fetch_bytes_max));
            tasks.push(glommio::spawn_local(async move {
                read_range(range, shape, |offset, bytes_max| {
                    let (client, largest_frame) = (client.clone(), largest_frame.clone());
                    async move { fetch_once(&client, p, offset, bytes_max, &largest_frame).await }
                })
                .await
            }));
        }
    }
    let (mut bytes_total, mut fetches_count) = (0u64, 0u64);
    for task in tasks {
        let (bytes, fetches) = task.await?;
        bytes_total += bytes;
        fetches_count += fetches;
    }
    let activity = window.close();
    if bytes_total != layout.expected_bytes() {
        return Err(format!("broker fetch returned {bytes_total} bytes, expected {}", layout.expected_bytes()).into());
    }
    let measured = Measured { bytes_total, ops_count: fetches_count, elapsed: activity.elapsed, activity };
    Ok((measured, largest_frame.get().1))
}

async fn fetch_once(
    client: &Client,
    partition: u32,
    offset: u64,
    bytes_max: u32,
    largest_frame: &Cell<(usize, usize)>,
) -> BenchResult<(u64, u64)> {
    let request = vec![FetchPartition { topic: TOPIC.to_owned(), partition, offset, bytes_max }];
    let results = client.fetch(0, 0, bytes_max, request).await?;
    let Some(r) = results.first() else {
        return Err(format!("fetch {TOPIC}-{partition} at {offset}: empty response").into());
    };
    if !r.error.is_ok() {
        return Err(format!("fetch {TOPIC}-{partition} at {offset}: {:?}", r.error).into());
    }
    let bytes: usize = r.records.iter().map(Bytes::len).sum();
    let (largest_records, _) = largest_frame.get();
    if bytes > largest_records {
        // The frame body the broker sent: the same response encoded again (the records are
        // chunks, not copied), less the length prefix.
        let response = Response::Fetch { partitions: results.clone() };
        let frame_bytes = encode_response(0, &response).iter().map(Bytes::len).sum::<usize>() - FRAME_PREFIX_BYTES;
        largest_frame.set((bytes, frame_bytes));
    }
    Ok((bytes as u64, r.next_offset))
}

/// Case 4: for each concurrency, forward then shard-aware, a fresh client sends one 16 KiB batch
/// per request (acks=leader, durability none), each of `concurrency` tasks waiting for its answer
/// before the next, partitions in turn (so half the requests go to each shard).
async fn broker_latency(addr: String, metrics_addr: SocketAddr, plan: BrokerPlan) -> BenchResult<Vec<LatencyCase>> {
    let setup = connect(&addr, Routing::ShardAware).await?;
    let owners = Rc::new(create_topic(&setup, LATENCY_TOPIC, plan.partitions).await?);
    drop(setup);
    let set = build_batches(plan.latency_batch_bytes, 64)?;
    let batches = Rc::new(set.batches);
    let mut cases = Vec::new();
    for &concurrency in &plan.latency_concurrency {
        for routing in [Routing::Forward, Routing::ShardAware] {
            let client = connect(&addr, routing).await?;
            let run = ClosedLoop {
                client,
                batches: batches.clone(),
                owners: owners.clone(),
                concurrency,
                shards: plan.shards,
            };
            run.run(plan.latency_warmup).await?;
            let forwards_before = forwards_out(metrics_addr).await?;
            let window = Window::open();
            let (all, by_shard) = run.run(plan.latency_duration).await?;
            let activity = window.close();
            let forwards_after = forwards_out(metrics_addr).await?;
            let forwarded_by_shard = forwards_after
                .iter()
                .map(|(shard, n)| (*shard, n.saturating_sub(forwards_before.get(shard).copied().unwrap_or(0))))
                .collect();
            cases.push(LatencyCase {
                routing,
                concurrency,
                latency: LatencyUs::from_histogram(&all),
                p50_by_shard: by_shard.iter().map(|h| h.value_at_quantile(0.5) as f64).collect(),
                requests_count: all.len(),
                forwarded_by_shard,
                activity,
            });
        }
    }
    Ok(cases)
}

/// Each shard's `shardlog_forwards_out_total` from the broker's metrics endpoint (HTTP/1.0).
async fn forwards_out(metrics_addr: SocketAddr) -> BenchResult<BTreeMap<u32, u64>> {
    let mut stream = glommio::net::TcpStream::connect(metrics_addr).await.map_err(gio)?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        // shardlog_forwards_out_total{shard="1"} 123
        let Some(rest) = line.strip_prefix("shardlog_forwards_out_total{shard=\"") else {
            continue;
        };
        let parsed = rest.split_once("\"} ").and_then(|(shard, n)| Some((shard.parse().ok()?, n.trim().parse().ok()?)));
        let Some((shard, n)) = parsed else {
            return Err(format!("unreadable metrics line {line:?}").into());
        };
        counts.insert(shard, n);
    }
    if counts.is_empty() {
        return Err(format!("no forwards_out_total in the metrics from {metrics_addr}").into());
    }
    Ok(counts)
}

struct ClosedLoop {
    client: Rc<Client>,
    batches: Rc<Vec<Bytes>>,
    owners: Rc<Vec<usize>>,
    concurrency: usize,
    shards: usize,
}

type Histograms = (Histogram<u64>, Vec<Histogram<u64>>);

impl ClosedLoop {
    /// Every task sends until `duration` has passed. Returns the latencies (µs), all and by
    /// owning shard.
    async fn run(&self, duration: Duration) -> BenchResult<Histograms> {
        let histograms = Rc::new(RefCell::new((
            latency_histogram()?,
            (0..self.shards).map(|_| latency_histogram().map_err(Into::into)).collect::<BenchResult<Vec<_>>>()?,
        )));
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = (0..self.concurrency)
            .map(|i| {
                let (client, batches, owners) = (self.client.clone(), self.batches.clone(), self.owners.clone());
                let histograms = histograms.clone();
                glommio::spawn_local(async move {
                    let mut k = i;
                    while Instant::now() < deadline {
                        let partition = k % owners.len();
                        let batch = batches[k % batches.len()].clone();
                        k += 1;
                        let sent = Instant::now();
                        let request = produce_request(LATENCY_TOPIC, partition as u32, batch);
                        check_produced(&client.produce(Acks::Leader, request).await?)?;
                        let micros = sent.elapsed().as_micros() as u64;
                        let mut h = histograms.borrow_mut();
                        h.0.saturating_record(micros);
                        if let Some(shard) = h.1.get_mut(owners[partition]) {
                            shard.saturating_record(micros);
                        }
                    }
                    BenchResult::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let histograms = Rc::try_unwrap(histograms).map_err(|_| "latency histograms still shared")?;
        Ok(histograms.into_inner())
    }
}

// ---- report --------------------------------------------------------------------------------

/// Environment lines. With `--broker` the engine plan lines do not apply and are replaced.
pub fn environment(report: &mut Report, plan: &BrokerPlan, broker_only: bool) {
    if broker_only {
        report.env.retain(|(key, _)| key != "plan" && key != "method");
        for (key, value) in &mut report.env {
            if key == "mode" {
                *value = "broker only (--broker)".to_owned();
            }
        }
    }
    report.env(
        "broker plan",
        format!(
            "{} shards pinned to CPUs 0..{}, topic of {} partitions (durability none); client executor pinned to \
             CPU {}; produce {} s, {} KiB batches, {} requests in flight per partition; fetch {} KiB, {} in flight \
             per partition; latency {} s per case, {} KiB batches",
            plan.shards,
            plan.shards - 1,
            plan.partitions,
            plan.client_cpu,
            plan.produce_duration.as_secs(),
            plan.produce_batch_bytes >> 10,
            plan.produce_in_flight_per_partition,
            plan.fetch_bytes_max >> 10,
            plan.fetch_in_flight_per_partition,
            plan.latency_duration.as_secs(),
            plan.latency_batch_bytes >> 10,
        ),
    );
    report.env(
        "broker method",
        format!(
            "client and broker share this machine's {} CPUs (the client is not free, as it would be on another \
             host); produce and fetch are bracketed by the engine alone doing the same work on executors pinned \
             like the shards, ratio = broker / mean(before, after); latency beside a loopback ping-pong of the \
             same run",
            env::cpu_count()
        ),
    );
}

pub fn add_sections(report: &mut Report, plan: &BrokerPlan, r: &BrokerResults) {
    report.section("broker 1: loopback TCP between two glommio executors (127.0.0.1)", loopback_rows(r));
    let rows = produce_rows(report, plan, r);
    report.section(
        &format!(
            "broker 2: produce throughput, 1 KiB records in {} KiB batches, acks=leader, durability none, {} shards, \
             {} partitions",
            r.produce.batch_bytes >> 10,
            plan.shards,
            plan.partitions
        ),
        rows,
    );
    let rows = fetch_rows(report, plan, r);
    report.section("broker 3: fetch throughput from offset 0, after a broker restart (every fetch reads disk)", rows);
    report.section(
        &format!(
            "broker 4: produce latency, {} KiB batches, acks=leader, durability none, closed loop",
            plan.latency_batch_bytes >> 10
        ),
        latency_rows(plan, r),
    );
}

fn loopback_rows(r: &BrokerResults) -> Vec<Row> {
    let b = &r.bandwidth;
    let mut rows = vec![Row::new(
        format!("bandwidth, 1 MiB writes, CPU {} -> CPU {}", b.sender_cpu_index, b.receiver_cpu_index),
        b.mb_per_s() / 1e3,
        "GB/s",
    )
    .note(format!(
        "{} MiB in {:.0} ms; sender thread CPU {:.0}%, receiver {:.0}%; the kernel copies every byte twice (into \
         the socket on send, out on recv); meanwhile outside this process: {}",
        b.bytes_total / MIB,
        b.elapsed.as_secs_f64() * 1e3,
        b.sender_cpu.as_secs_f64() / b.elapsed.as_secs_f64().max(1e-9) * 100.0,
        b.receiver_cpu.as_secs_f64() / b.elapsed.as_secs_f64().max(1e-9) * 100.0,
        r.loopback_activity[0].outside(),
    ))];
    for (ping, label, activity) in
        [(&r.ping_cross, "cross-core", &r.loopback_activity[1]), (&r.ping_same, "same core", &r.loopback_activity[2])]
    {
        let l = LatencyUs::from_histogram(&ping.histogram);
        let name =
            format!("128 B ping-pong, {label} (CPU {} <-> CPU {})", ping.client_cpu_index, ping.server_cpu_index);
        rows.push(Row::new(format!("{name}, p50"), l.p50, "us").note(format!(
            "{} round trips ({} /s), max {} us; meanwhile outside this process: {}",
            l.count,
            format_number(ping.round_trips_per_s()),
            l.max,
            activity.outside()
        )));
        rows.push(Row::new(format!("{name}, p99"), l.p99, "us"));
        rows.push(Row::new(format!("{name}, p99.9"), l.p999, "us"));
    }
    rows
}

/// The bracket's mean and a note with both ends (flagged, with a report warning, when they
/// disagree by more than `BRACKET_SPREAD_WARN`).
fn bracket(report: &mut Report, case: &str, before: f64, after: f64, unit: &str) -> (f64, String) {
    let mean = (before + after) / 2.0;
    let mut note = format!("engine alone before/after {}/{} {unit}", format_number(before), format_number(after));
    let spread = if mean > 0.0 { (before - after).abs() / mean } else { 0.0 };
    if spread > BRACKET_SPREAD_WARN {
        report.warnings.push(format!(
            "{case}: the engine-alone baseline moved {:.0}% across this case; its ratio is uncertain by about that much",
            spread * 100.0
        ));
        note.push_str(&format!(" (NOISY: moved {:.0}%)", spread * 100.0));
    }
    (mean, note)
}

fn produce_rows(report: &mut Report, plan: &BrokerPlan, r: &BrokerResults) -> Vec<Row> {
    let p = &r.produce;
    let in_flight = plan.partitions as usize * plan.produce_in_flight_per_partition;
    let name = format!("broker, shard-aware client on CPU {}, {in_flight} requests in flight", plan.client_cpu);
    let (baseline, bracket_note) =
        bracket(report, "broker 2 (produce)", p.engine_before.mb_per_s(), p.engine_after.mb_per_s(), "MB/s");
    let engine_name = format!(
        "engine alone: {} executors x {} logs, append(None), {} in flight per log",
        plan.shards,
        plan.partitions_per_shard(),
        plan.produce_in_flight_per_partition
    );
    vec![
        Row::new(format!("{engine_name}, before"), p.engine_before.mb_per_s(), "MB/s")
            .note(format!("{}; clock stops when a Sync append per log returns", p.engine_before.describe("appends"))),
        Row::new(name.clone(), p.broker.mb_per_s(), "MB/s")
            .against("engine alone, same batches", baseline)
            .target(Target::RatioAtLeast(PRODUCE_RATIO_MIN))
            .note(format!(
                "{bracket_note}; {}; {} records per batch, one batch per request; clock stops when a final \
                 acks=durable produce per partition returns",
                p.broker.describe("requests"),
                p.records_per_batch
            )),
        Row::new(format!("{engine_name}, after"), p.engine_after.mb_per_s(), "MB/s")
            .note(p.engine_after.describe("appends")),
        Row::new(format!("{name} (same figure)"), p.broker.mb_per_s(), "MB/s")
            .against("loopback 1 MiB writes", r.bandwidth.mb_per_s())
            .note(
                "user-space copies per produced byte (from the code): the broker reads each request frame into a \
                 zero-filled buffer (connection.rs: 1 memset + the kernel's recv copy; the client's send is the \
                 other kernel copy) and the engine copies the batch into its DMA write buffer (appender copy_in: 1 \
                 memcpy) and CRC-checks it (1 read pass); the disk write is DMA. So 3 copies + 1 memset per byte \
                 against the loopback baseline's 2 copies, and the client's CPU comes out of the same 2 CPUs",
            ),
    ]
}

fn fetch_rows(report: &mut Report, plan: &BrokerPlan, r: &BrokerResults) -> Vec<Row> {
    let f = &r.fetch;
    let in_flight = plan.partitions as usize * plan.fetch_in_flight_per_partition;
    let name = format!(
        "broker fetch, {} KiB per partition per fetch, {in_flight} in flight (client on CPU {})",
        plan.fetch_bytes_max >> 10,
        plan.client_cpu
    );
    let (baseline, bracket_note) =
        bracket(report, "broker 3 (fetch)", f.engine_before.mb_per_s(), f.engine_after.mb_per_s(), "MB/s");
    let engine_name = format!(
        "engine alone: log.read {} KiB, {} executors x {} logs x {} readers",
        plan.fetch_bytes_max >> 10,
        plan.shards,
        plan.partitions_per_shard(),
        plan.fetch_in_flight_per_partition
    );
    let regrow = if f.response_frame_bytes > (1 << 20) {
        format!(
            "; the client's frame reader starts at a 1 MiB buffer and this response (~{} bytes) outgrows it, so it \
             regrows and copies the first MiB once more",
            f.response_frame_bytes
        )
    } else {
        format!(
            "; the largest response (~{} bytes) fits the client's 1 MiB initial read buffer, so no regrow copy",
            f.response_frame_bytes
        )
    };
    vec![
        Row::new(format!("{engine_name}, before"), f.engine_before.mb_per_s(), "MB/s")
            .note(f.engine_before.describe("reads")),
        Row::new(name.clone(), f.broker.mb_per_s(), "MB/s").against("engine alone, same files", baseline).note(
            format!(
                "{bracket_note}; {}. Copies per fetched byte (read from the code, not measured): the disk read is \
                 DMA into glommio's buffer, the engine copies it once into a Bytes (segment/reader.rs, the read \
                 window incl. up to one index interval skipped) and CRC-checks each batch (1 read pass); the broker \
                 sends those Bytes as they are (codec: no copy; across shards they move as Bytes), then 2 kernel \
                 copies (send, recv) and a memset of the client's zero-filled frame buffer{regrow}. So about 1 user \
                 copy + 2 kernel copies per byte from disk; from the tail cache 0 user copies (a 16-byte head per \
                 batch)",
                f.broker.describe("fetches")
            ),
        ),
        Row::new(format!("{engine_name}, after"), f.engine_after.mb_per_s(), "MB/s")
            .note(f.engine_after.describe("reads")),
        Row::new(format!("{name} (same figure)"), f.broker.mb_per_s(), "MB/s")
            .against("loopback 1 MiB writes", r.bandwidth.mb_per_s()),
    ]
}

fn routing_label(routing: Routing) -> &'static str {
    match routing {
        Routing::Forward => "forward (bootstrap connection)",
        Routing::ShardAware => "shard-aware",
    }
}

fn latency_rows(plan: &BrokerPlan, r: &BrokerResults) -> Vec<Row> {
    let ping = LatencyUs::from_histogram(&r.ping_cross.histogram);
    let ping_rate = r.ping_cross.round_trips_per_s();
    let mut rows = Vec::new();
    for case in &r.latencies {
        let l = &case.latency;
        let name = format!("{}, {} in flight", routing_label(case.routing), case.concurrency);
        let elapsed = case.activity.elapsed.as_secs_f64().max(1e-9);
        let rate = case.requests_count as f64 / elapsed;
        let by_shard: Vec<String> = case
            .p50_by_shard
            .iter()
            .enumerate()
            .map(|(shard, p50)| format!("shard {shard} {} us", format_number(*p50)))
            .collect();
        let forwarded: Vec<String> =
            case.forwarded_by_shard.iter().map(|(shard, n)| format!("shard {shard} {n}")).collect();
        let forwarded_total: u64 = case.forwarded_by_shard.values().sum();
        let how = match case.routing {
            Routing::Forward => {
                "; the bootstrap connection lands on one shard (SO_REUSEPORT), which forwards the other shard's \
                 partitions: one more cross-core hop each way"
            }
            Routing::ShardAware => "; each request goes straight to its owner's listener",
        };
        rows.push(Row::new(format!("{name}: p50"), l.p50, "us").against("ping-pong cross-core p50", ping.p50).note(
            format!(
                "p50 by the partition's owning shard: {}; forwarded to the other shard (broker metrics): {forwarded_total} \
                 of {} requests ({:.0}%; by forwarding shard: {}){how}",
                by_shard.join(", "),
                case.requests_count,
                forwarded_total as f64 / case.requests_count.max(1) as f64 * 100.0,
                forwarded.join(", "),
            ),
        ));
        rows.push(Row::new(format!("{name}: p99"), l.p99, "us").against("ping-pong cross-core p99", ping.p99));
        rows.push(
            Row::new(format!("{name}: p99.9"), l.p999, "us")
                .against("ping-pong cross-core p99.9", ping.p999)
                .note(format!("max {} us", l.max)),
        );
        rows.push(Row::new(format!("{name}: rate"), rate, "req/s").against("ping-pong round trips/s", ping_rate).note(
            format!(
                "{} requests, {} MB/s; {}",
                case.requests_count,
                format_number(rate * plan.latency_batch_bytes as f64 / 1e6),
                case.activity.describe()
            ),
        ));
    }
    rows
}
