//! The nemesis: a schedule of faults drawn from a seed, run against a [`Cluster`], with a
//! record of what it did and when.
//!
//! A schedule is a list of steps, each one fault held for a while and then undone, followed by
//! a calm period: at most one fault is in effect at a time, so a 3-node cluster keeps a
//! majority (except while a partition cuts a minority's links). The same seed and options give
//! the same schedule; timing is the machine's, so a replay repeats the faults, not the exact
//! interleaving.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::history::History;
use super::{Cluster, NodeId};

/// How often a nemesis sleep checks its stop flag.
const STOP_POLL: Duration = Duration::from_millis(10);

/// SplitMix64: a tiny seeded generator (no `rand` needed); the same as `crash_loop`'s.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (the slight modulo bias does not matter here).
    pub fn in_range(&mut self, range: &RangeInclusive<u64>) -> u64 {
        let (low, high) = (*range.start(), *range.end());
        assert!(low <= high, "empty range {range:?}");
        let span = high - low;
        if span == u64::MAX {
            return self.next_u64();
        }
        low + self.next_u64() % (span + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "pick from nothing");
        &items[self.in_range(&(0..=items.len() as u64 - 1)) as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// kill -9, then restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut two nodes apart, then heal them.
    Partition,
    /// Cut one node from all others, then heal it.
    Isolate,
    /// Cut clients from one node, then heal them.
    CutClients,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill(NodeId),
    Pause(NodeId),
    Partition(NodeId, NodeId),
    Isolate(NodeId),
    CutClients(NodeId),
}

impl Fault {
    pub fn nodes(&self) -> Vec<NodeId> {
        match *self {
            Fault::Kill(n) | Fault::Pause(n) | Fault::Isolate(n) | Fault::CutClients(n) => vec![n],
            Fault::Partition(a, b) => vec![a, b],
        }
    }

    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill(_) => FaultKind::Kill,
            Fault::Pause(_) => FaultKind::Pause,
            Fault::Partition(..) => FaultKind::Partition,
            Fault::Isolate(_) => FaultKind::Isolate,
            Fault::CutClients(_) => FaultKind::CutClients,
        }
    }

    /// Applies the fault to `cluster`.
    pub fn begin(&self, cluster: &Cluster) {
        match *self {
            Fault::Kill(n) => cluster.kill9(n),
            Fault::Pause(n) => cluster.pause(n),
            Fault::Partition(a, b) => cluster.partition(a, b),
            Fault::Isolate(n) => cluster.isolate(n),
            Fault::CutClients(n) => cluster.cut_clients(n),
        }
    }

    /// Undoes it.
    pub fn end(&self, cluster: &Cluster) {
        match *self {
            Fault::Kill(n) => cluster.restart(n),
            Fault::Pause(n) => cluster.resume(n),
            Fault::Partition(a, b) => cluster.heal_pair(a, b),
            Fault::Isolate(n) => cluster.heal_node(n),
            Fault::CutClients(n) => cluster.heal_clients(n),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(n) => write!(f, "kill -9 node {n}"),
            Fault::Pause(n) => write!(f, "pause node {n}"),
            Fault::Partition(a, b) => write!(f, "partition {a} | {b}"),
            Fault::Isolate(n) => write!(f, "isolate node {n}"),
            Fault::CutClients(n) => write!(f, "cut clients from node {n}"),
        }
    }
}

/// One fault, how long it lasts, then how long nothing happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub fault: Fault,
    pub hold: Duration,
    pub calm: Duration,
}

#[derive(Debug, Clone)]
pub struct NemesisOptions {
    pub seed: u64,
    /// Faults to draw from (uniformly).
    pub kinds: Vec<FaultKind>,
    pub steps: usize,
    pub hold_ms: RangeInclusive<u64>,
    pub calm_ms: RangeInclusive<u64>,
}

impl Default for NemesisOptions {
    fn default() -> Self {
        NemesisOptions {
            seed: 1,
            kinds: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Isolate],
            steps: 8,
            hold_ms: 300..=1_500,
            calm_ms: 200..=1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Begin,
    End,
}

/// What the nemesis did; `at` is from the cluster's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NemesisEvent {
    pub at: Duration,
    pub phase: Phase,
    pub fault: Fault,
}

impl fmt::Display for NemesisEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Begin => "begin",
            Phase::End => "end",
        };
        write!(f, "+{:.3}s {phase} {}", self.at.as_secs_f64(), self.fault)
    }
}

pub struct Nemesis {
    options: NemesisOptions,
    schedule: Vec<Step>,
    events: Mutex<Vec<NemesisEvent>>,
}

impl Nemesis {
    /// Draws the schedule for `nodes` from `options.seed`.
    pub fn new(options: NemesisOptions, nodes: &[NodeId]) -> Nemesis {
        assert!(!options.kinds.is_empty(), "a nemesis needs fault kinds");
        assert!(!nodes.is_empty());
        if options.kinds.contains(&FaultKind::Partition) {
            assert!(nodes.len() >= 2, "a partition needs two nodes");
        }
        let mut rng = Rng::new(options.seed);
        let schedule = (0..options.steps)
            .map(|_| {
                let fault = match *rng.pick(&options.kinds) {
                    FaultKind::Kill => Fault::Kill(*rng.pick(nodes)),
                    FaultKind::Pause => Fault::Pause(*rng.pick(nodes)),
                    FaultKind::Isolate => Fault::Isolate(*rng.pick(nodes)),
                    FaultKind::CutClients => Fault::CutClients(*rng.pick(nodes)),
                    FaultKind::Partition => {
                        let a = *rng.pick(nodes);
                        let others: Vec<NodeId> = nodes.iter().copied().filter(|&n| n != a).collect();
                        Fault::Partition(a, *rng.pick(&others))
                    }
                };
                let hold = Duration::from_millis(rng.in_range(&options.hold_ms));
                let calm = Duration::from_millis(rng.in_range(&options.calm_ms));
                Step { fault, hold, calm }
            })
            .collect();
        Nemesis { options, schedule, events: Mutex::new(Vec::new()) }
    }

    pub fn options(&self) -> &NemesisOptions {
        &self.options
    }

    pub fn schedule(&self) -> &[Step] {
        &self.schedule
    }

    /// Runs the schedule until its end or until `stop` is set, recording each begin and end
    /// (also into `history`, if given). A fault begun is always ended, even after `stop`.
    pub fn run(&self, cluster: &Cluster, stop: &AtomicBool, history: Option<&History>) {
        for step in &self.schedule {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            self.apply(cluster, step.fault, Phase::Begin, history);
            sleep_unless(stop, step.hold);
            self.apply(cluster, step.fault, Phase::End, history);
            sleep_unless(stop, step.calm);
        }
    }

    fn apply(&self, cluster: &Cluster, fault: Fault, phase: Phase, history: Option<&History>) {
        // Recorded first: a fault that fails to apply still shows in the failure message.
        let event = NemesisEvent { at: cluster.epoch().elapsed(), phase, fault };
        if let Some(history) = history {
            history.nemesis(&event.to_string(), fault.nodes());
        }
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        match phase {
            Phase::Begin => fault.begin(cluster),
            Phase::End => fault.end(cluster),
        }
    }

    pub fn events(&self) -> Vec<NemesisEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The seed, the schedule and what ran, for failure messages.
    pub fn report(&self) -> String {
        let mut text = format!("nemesis: seed {} ({} steps)\n", self.options.seed, self.schedule.len());
        for event in self.events() {
            text.push_str(&format!("  {event}\n"));
        }
        text
    }
}

/// Sleeps `duration`, returning early once `stop` is set.
fn sleep_unless(stop: &AtomicBool, duration: Duration) {
    let deadline = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(STOP_POLL));
    }
}
