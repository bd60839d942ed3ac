//! Runs one workload: creates its topics, starts the load-generator executors (each with its
//! own client, its share of the producers and consumers), fixes a common start time, and
//! watches the counters from the main thread: the live line every second, the measured
//! window's edges, the drain at the end.
//!
//! Executors are glommio executors that are not pinned (`PoolPlacement::Unbound`): an embedded
//! broker pins its shards to CPUs 0..n, and on a machine with few cores pinned load-generator
//! executors would fight them for fixed cores; unpinned, the scheduler moves them to whichever
//! core is idle. The count and placement are recorded in the report's environment.
//!
//! Two modes:
//! - live (the default): producers and consumers together; warm-up, then the measured window,
//!   then producers stop and consumers drain what was acknowledged;
//! - catch-up (`backlog_bytes > 0`): producers write the backlog with no consumer running;
//!   then consumers read it from offset 0 and the read is measured.

pub mod consumer;
pub mod driver;
pub mod kafka;
pub mod native;
pub mod payload;
pub mod producer;
pub mod rate;
pub mod stats;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, LocalExecutorPoolBuilder, Placement, PoolPlacement};

use crate::config::{Protocol, WorkloadConfig};
use crate::error::{LoadgenError, LoadgenResult};
use crate::histogram::latency_histogram;
use crate::meter::{self, BrokerCpu, HiccupMeter, Platform, Sample};
use crate::report::live::LiveLine;
use driver::{ConsumerSettings, Driver, ProducerSettings};
use native::NativeDriver;
use payload::PayloadGen;
use producer::{Local, ProducerTask};
use stats::{epoch_us_now, Recorders, Shared, Snapshot, Timeline, LIVE_MERGE_INTERVAL};

/// Executors need this long after the start is fixed to read it; the start is set this far
/// ahead so every producer's first message is on time.
const START_DELAY: Duration = Duration::from_millis(50);
/// How long consumers may take to read what was acknowledged after the producers stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The main thread's polling interval (the live line prints every `LIVE_INTERVAL`).
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
const LIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Catch-up mode: producers give up writing the backlog after this long.
const CATCH_UP_PRODUCE_MAX: Duration = Duration::from_secs(600);

/// What to run and where.
#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    pub config: WorkloadConfig,
    pub bootstrap: String,
    pub executors: usize,
    /// Total target rate; `None` is closed loop.
    pub rate_msg_per_s: Option<f64>,
    /// Unique per run, so a run never reads another run's records.
    pub topics: Vec<String>,
    pub group_prefix: String,
    pub live: bool,
    /// Shown at the start of the live line ("probe", a scenario name).
    pub label: String,
    /// A cluster's native bootstrap list, when the driver's own topic creation does not wait
    /// for the partitions to be in sync (Kafka): the run waits on it through the native client.
    pub native_bootstrap: Option<String>,
    /// Where the broker's CPU time is read for the per-message figure.
    pub broker_cpu: BrokerCpu,
}

/// A count over a measured span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Span {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl Span {
    pub fn msg_per_s(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }

    /// Decimal MB/s of record values.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9) / 1e6
    }
}

pub struct WorkloadOutcome {
    pub recorders: Recorders,
    pub publish: Span,
    pub consume: Span,
    pub totals: Snapshot,
    pub backlog_window_start: u64,
    pub backlog_window_end: u64,
    pub errors_send: u64,
    pub errors_ack: u64,
    pub errors_consume: u64,
    pub first_errors: Vec<String>,
    /// The platform and CPU over the publish window (`meter.rs`).
    pub platform: Option<Platform>,
}

pub fn run(plan: WorkloadPlan) -> LoadgenResult<WorkloadOutcome> {
    plan.config.validate()?;
    assert!(plan.executors > 0);
    match plan.config.protocol {
        Protocol::Native => run_with::<NativeDriver>(plan),
        Protocol::Kafka => run_with::<kafka::KafkaDriver>(plan),
    }
}

fn run_with<D: Driver + 'static>(plan: WorkloadPlan) -> LoadgenResult<WorkloadOutcome> {
    create_topics::<D>(&plan)?;
    let outcome = run_created::<D>(&plan);
    delete_topics::<D>(&plan);
    outcome
}

fn run_created<D: Driver + 'static>(plan: &WorkloadPlan) -> LoadgenResult<WorkloadOutcome> {
    let plan = Arc::new(plan.clone());
    let shared = Arc::new(Shared::new(plan.executors)?);
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(plan.executors))
        .name("loadgen")
        .on_all_shards({
            let (plan, shared) = (plan.clone(), shared.clone());
            move || executor_body::<D>(plan, shared)
        })
        .map_err(|e| LoadgenError::Executor(e.to_string()))?;
    shared.barrier.wait(); // every executor connected (or failed to)
    let connected = shared.connect_failures.load(Ordering::SeqCst) == 0;
    if connected {
        let start = Instant::now() + START_DELAY;
        let config = &plan.config;
        let (measure_from, produce_until) = if config.catch_up() {
            (start, start + CATCH_UP_PRODUCE_MAX)
        } else {
            let warmup = Duration::from_secs_f64(config.warmup_s);
            (start + warmup, start + warmup + Duration::from_secs_f64(config.duration_s))
        };
        let start_epoch_us = epoch_us_now() + START_DELAY.as_micros() as u64;
        if let Ok(mut t) = shared.timeline.lock() {
            *t = Some(Timeline { start, start_epoch_us, measure_from, produce_until });
        }
        shared.consumers_go.store(!config.catch_up(), Ordering::SeqCst);
    } else {
        shared.stop_producing.store(true, Ordering::SeqCst);
        shared.stop_consuming.store(true, Ordering::SeqCst);
    }
    shared.barrier.wait(); // the start is fixed
    let watched = if connected { Some(watch(&plan, &shared)) } else { None };
    let mut recorders = Recorders::new()?;
    let mut first_error = None;
    for joined in handles.join_all() {
        match joined {
            Ok(Ok(r)) => recorders.merge(&r),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(e) => first_error = first_error.or(Some(LoadgenError::Executor(e.to_string()))),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let Some(watched) = watched else {
        return Err(LoadgenError::Executor("an executor could not connect".to_owned()));
    };
    let c = &shared.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::SeqCst);
    let totals = c.snapshot();
    Ok(WorkloadOutcome {
        recorders,
        publish: watched.publish,
        consume: watched.consume,
        totals,
        backlog_window_start: watched.backlog_window_start,
        backlog_window_end: watched.backlog_window_end,
        errors_send: get(&c.errors_send),
        errors_ack: get(&c.errors_ack),
        errors_consume: get(&c.errors_consume),
        first_errors: shared.first_errors.lock().map(|e| e.clone()).unwrap_or_default(),
        platform: watched.platform,
    })
}

/// Messages acknowledged and not yet read, summed over the groups.
fn backlog(s: &Snapshot, groups: usize) -> u64 {
    (s.acked * groups as u64).saturating_sub(s.consumed)
}

fn create_topics<D: Driver + 'static>(plan: &WorkloadPlan) -> LoadgenResult<()> {
    let (bootstrap, topics) = (plan.bootstrap.clone(), plan.topics.clone());
    let (partitions, durability) = (plan.config.partitions, plan.config.durability.clone());
    // The Kafka driver cannot ask for a factor: an embedded cluster was started with it as
    // its default (`config.rs` refuses the other cases).
    let factor = match plan.config.protocol {
        Protocol::Native => plan.config.replication_factor,
        Protocol::Kafka => None,
    };
    let (native, native_factor) = (plan.native_bootstrap.clone(), plan.config.replication_factor);
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-setup")
        .spawn(move || async move {
            let driver = D::connect(&bootstrap).await?;
            driver.create_topics(&topics, partitions, &durability, factor).await?;
            let Some(native) = native else {
                return Ok(());
            };
            let client = NativeDriver::connect(&native).await?;
            crate::cluster::wait_in_sync(client.client(), &topics, native_factor, crate::cluster::IN_SYNC_TIMEOUT).await
        })
        .map_err(|e| LoadgenError::Executor(e.to_string()))?
        .join()
        .map_err(|e| LoadgenError::Executor(e.to_string()))?
}

/// Deletes the run's topics, so that runs against one broker (a suite on a remote broker,
/// the replication comparison's runs on one cluster) do not fill its disk: a 10 s durable run
/// writes gigabytes, three times over with three replicas. A failure is only reported.
fn delete_topics<D: Driver + 'static>(plan: &WorkloadPlan) {
    let (bootstrap, topics) = (plan.bootstrap.clone(), plan.topics.clone());
    let deleted = LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-cleanup")
        .spawn(move || async move { D::connect(&bootstrap).await?.delete_topics(&topics).await })
        .map_err(|e| LoadgenError::Executor(e.to_string()))
        .and_then(|h| h.join().map_err(|e| LoadgenError::Executor(e.to_string())));
    if let Err(e) | Ok(Err(e)) = deleted {
        eprintln!("shardlog-loadgen: the run's topics were not deleted: {e}");
    }
}

async fn executor_body<D: Driver + 'static>(plan: Arc<WorkloadPlan>, shared: Arc<Shared>) -> LoadgenResult<Recorders> {
    {
        crate::meter::precise_timers();
        let index = shared.next_executor.fetch_add(1, Ordering::SeqCst);
        let connected = D::connect(&plan.bootstrap).await;
        // Consumers get a client (and connections) of their own, as a consuming application
        // has: both protocols answer a connection's requests in order, so a consumer's fetch
        // long-polling for up to 500 ms on the producers' connection would hold their acks
        // back (at 1 000 msg/s with one group, publish p90 went from 1.8 ms to 119 ms).
        let has_consumers = (index..plan.config.consumers_total()).step_by(plan.executors).next().is_some();
        let consumer_connected = match (&connected, has_consumers) {
            (Ok(_), true) => Some(D::connect(&plan.bootstrap).await),
            _ => None,
        };
        let connected = match (connected, consumer_connected) {
            (Ok(driver), Some(Ok(consumer_driver))) => Ok((driver, Some(consumer_driver))),
            (Ok(_), Some(Err(e))) | (Err(e), _) => Err(e),
            (Ok(driver), None) => Ok((driver, None)),
        };
        if connected.is_err() {
            shared.connect_failures.fetch_add(1, Ordering::SeqCst);
        }
        // Blocking waits: every executor is its own thread, and nothing else runs yet.
        shared.barrier.wait();
        shared.barrier.wait();
        let result = match (connected, shared.timeline()) {
            (Ok((driver, consumer_driver)), Some(timeline)) => {
                run_tasks(driver, consumer_driver, index, &plan, &shared, timeline).await
            }
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(LoadgenError::Executor("the run was called off (another executor failed)".into())),
        };
        shared.executors_done.fetch_add(1, Ordering::SeqCst);
        result
    }
}

/// Runs this executor's producers and consumers (producer j and consumer c go to executor
/// j mod n and c mod n) and returns its latency histograms.
async fn run_tasks<D: Driver + 'static>(
    driver: D,
    consumer_driver: Option<D>,
    index: usize,
    plan: &WorkloadPlan,
    shared: &Arc<Shared>,
    timeline: Timeline,
) -> LoadgenResult<Recorders> {
    let config = &plan.config;
    let local = Rc::new(Local { recorders: RefCell::new(Recorders::new()?), live: RefCell::new(latency_histogram()?) });
    let live_done = Rc::new(std::cell::Cell::new(false));
    let live_task = glommio::spawn_local({
        let (shared, local, live_done) = (shared.clone(), local.clone(), live_done.clone());
        async move {
            while !live_done.get() {
                glommio::timer::sleep(LIVE_MERGE_INTERVAL).await;
                shared.merge_live(&mut local.live.borrow_mut());
            }
        }
    });
    let topics = Rc::new(plan.topics.clone());
    let settings = ProducerSettings {
        acks: config.acks,
        linger_ms: config.linger_ms,
        batch_bytes: config.batch_bytes.0 as usize,
        buffer_bytes: config.buffer_bytes.0 as usize,
    };
    let mut tasks = Vec::new();
    for j in (index..config.producers).step_by(plan.executors) {
        let task = ProducerTask {
            topics: topics.clone(),
            rate_msg_per_s: plan.rate_msg_per_s.map(|r| r / config.producers as f64),
            backlog_bytes: config.catch_up().then_some(config.backlog_bytes.0),
            payload: PayloadGen::new(
                j as u64 + 1,
                config.message_size,
                config.random_ratio,
                config.keys,
                config.partitions,
            ),
            send_spin: Duration::from_micros(config.send_spin_us),
        };
        let producer = driver.producer(&settings);
        let (shared, local) = (shared.clone(), local.clone());
        tasks.push(glommio::spawn_local(producer::run_producer(producer, task, timeline, shared, local)));
    }
    for c in (index..config.consumers_total()).step_by(plan.executors) {
        let settings = ConsumerSettings {
            group: format!("{}-g{}", plan.group_prefix, c / config.consumers.max(1)),
            topics: plan.topics.clone(),
            from_beginning: true,
            member: c % config.consumers.max(1),
            members: config.consumers.max(1),
        };
        let consumer = consumer_driver.as_ref().unwrap_or(&driver).consumer(&settings);
        let (shared, local) = (shared.clone(), local.clone());
        let end_to_end = !config.catch_up();
        tasks.push(glommio::spawn_local(consumer::run_consumer(consumer, timeline, shared, local, end_to_end)));
    }
    for task in tasks {
        task.await;
    }
    live_done.set(true);
    live_task.await;
    shared.merge_live(&mut local.live.borrow_mut());
    let recorders = std::mem::replace(&mut *local.recorders.borrow_mut(), Recorders::new()?);
    Ok(recorders)
}

struct Watched {
    publish: Span,
    consume: Span,
    backlog_window_start: u64,
    backlog_window_end: u64,
    platform: Option<Platform>,
}

/// The main thread during the run: live line, window edges, drain, stop.
fn watch(plan: &WorkloadPlan, shared: &Shared) -> Watched {
    let config = &plan.config;
    let Some(timeline) = shared.timeline() else {
        return Watched {
            publish: Span::default(),
            consume: Span::default(),
            backlog_window_start: 0,
            backlog_window_end: 0,
            platform: None,
        };
    };
    let groups = config.groups;
    let total =
        if config.catch_up() { None } else { Some(Duration::from_secs_f64(config.warmup_s + config.duration_s)) };
    let mut live = LiveLine::new(&plan.label, total, plan.live);
    let mut next_live = timeline.start + LIVE_INTERVAL;
    let snap = || shared.counters.snapshot();
    let mut window_start: Option<(Instant, Snapshot)> = None;
    let mut window_end: Option<(Instant, Snapshot)> = None;
    let mut consume_start: Option<(Instant, Snapshot)> = None;
    let mut consume_end: Option<(Instant, Snapshot)> = None;
    let mut drain_deadline: Option<Instant> = None;
    // The platform meter spans the publish window: its start and end samples are taken with
    // the window's edges, the hiccup thread runs in between.
    let mut meter_window: Option<(Sample, HiccupMeter)> = None;
    let mut platform: Option<Platform> = None;
    let mut window_edge = |opening: bool, acked: u64| {
        if opening {
            meter_window = Some((Sample::take(plan.broker_cpu), HiccupMeter::start()));
        } else if let Some((start, hiccups)) = meter_window.take() {
            let hiccups = hiccups.stop();
            platform = Some(meter::platform(&start, &Sample::take(plan.broker_cpu), acked, hiccups.as_ref()));
        }
    };
    let producers_done = || shared.producers_done.load(Ordering::SeqCst) >= config.producers;
    loop {
        std::thread::sleep(WATCH_INTERVAL);
        let now = Instant::now();
        if now >= next_live {
            live.print(now - timeline.start, &snap(), shared.take_live_p99_us(), groups);
            next_live += LIVE_INTERVAL;
        }
        if config.catch_up() {
            if window_start.is_none() {
                window_edge(true, 0);
            }
            if window_end.is_none() && producers_done() {
                window_end = Some((now, snap()));
                window_edge(false, snap().acked);
                consume_start = Some((now, snap()));
                shared.consumers_go.store(true, Ordering::SeqCst);
            }
            if let (Some((t0, _)), None) = (consume_start, consume_end) {
                let s = snap();
                let cap = Duration::from_secs_f64(config.duration_s);
                if backlog(&s, groups) == 0 || now - t0 >= cap {
                    consume_end = Some((now, s));
                    shared.stop_consuming.store(true, Ordering::SeqCst);
                }
            }
            window_start.get_or_insert((timeline.start, Snapshot::default()));
        } else {
            if window_start.is_none() && now >= timeline.measure_from {
                window_start = Some((now, snap()));
                window_edge(true, 0);
            }
            if window_end.is_none() && now >= timeline.produce_until {
                let s = snap();
                window_end = Some((now, s));
                let acked_in_window = window_start.map_or(s.acked, |(_, w0)| s.acked - w0.acked);
                window_edge(false, acked_in_window);
            }
            if window_end.is_some() && producers_done() && drain_deadline.is_none() {
                drain_deadline = Some(now + DRAIN_TIMEOUT);
            }
            if let Some(deadline) = drain_deadline {
                if groups == 0 || backlog(&snap(), groups) == 0 || now >= deadline {
                    shared.stop_consuming.store(true, Ordering::SeqCst);
                }
            }
            consume_start = window_start;
            consume_end = window_end;
        }
        if shared.executors_done.load(Ordering::SeqCst) >= plan.executors {
            break;
        }
    }
    let end = (Instant::now(), snap());
    let (w0, w1) = (window_start.unwrap_or((timeline.start, Snapshot::default())), window_end.unwrap_or(end));
    let (c0, c1) = (consume_start.unwrap_or(w0), consume_end.unwrap_or(end));
    live.finish();
    Watched {
        publish: Span {
            messages: w1.1.acked - w0.1.acked,
            bytes: w1.1.acked_bytes - w0.1.acked_bytes,
            seconds: (w1.0 - w0.0).as_secs_f64(),
        },
        consume: Span {
            messages: c1.1.consumed - c0.1.consumed,
            bytes: c1.1.consumed_bytes - c0.1.consumed_bytes,
            seconds: (c1.0 - c0.0).as_secs_f64(),
        },
        backlog_window_start: backlog(&w0.1, groups),
        backlog_window_end: backlog(&w1.1, groups),
        platform,
    }
}
