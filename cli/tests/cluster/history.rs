//! A Jepsen-style history: what clients asked for and what they were told, in the order it
//! happened, independent of the client library.
//!
//! An operation is an `Invoke` entry, later completed by one `Ok`, `Fail` (it certainly did not
//! happen) or `Info` (unknown: timed out, connection lost) entry; an operation never completed
//! counts as `Info`. Consumer reads are observations (`Read`, one entry each), and the nemesis's
//! faults are entries too, so a report can show what happened around an anomaly.
//!
//! Order: entries are appended under one lock, so their indices are a real-time order — an
//! entry with a lower index happened before one with a higher index. The checker compares
//! indices, never clocks; the times (`at`, from the history's epoch) are for reports only.
//!
//! Thread-safe: share one `Arc<History>` between executors; recording is a lock and a push.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::NodeId;

/// A client (Jepsen's process): one operation in flight at a time.
pub type ProcessId = u64;
/// The process of nemesis entries.
pub const NEMESIS: ProcessId = u64::MAX;

/// An operation's invocation: its index in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub usize);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Append `value` (unique in the run) to `topic`-`partition`. `idempotent`: the producer
    /// promises the value is stored at most once however it retries.
    Produce { topic: String, partition: u32, value: String, idempotent: bool },
    /// Commit `offset` (the next offset to read) for `group` on `topic`-`partition`.
    Commit { group: String, topic: String, partition: u32, offset: u64 },
    /// Fetch `group`'s committed offset of `topic`-`partition`.
    FetchOffset { group: String, topic: String, partition: u32 },
}

/// What an `Ok` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ret {
    /// The offset the broker assigned, when the client reports it.
    Produced {
        offset: Option<u64>,
    },
    Committed,
    /// The committed offset (`None`: nothing committed).
    Fetched {
        offset: Option<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Invoke(Op),
    Ok {
        invoke: OpId,
        ret: Ret,
    },
    Fail {
        invoke: OpId,
        reason: String,
    },
    Info {
        invoke: OpId,
        reason: String,
    },
    /// A consumer read `value` at `offset`. `session`: one cursor's reads (offsets must rise).
    Read {
        session: u64,
        topic: String,
        partition: u32,
        offset: u64,
        value: String,
    },
    Nemesis {
        what: String,
        nodes: Vec<NodeId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: usize,
    /// Since the history's epoch.
    pub at: Duration,
    pub process: ProcessId,
    pub event: Event,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} +{:.3}s ", self.index, self.at.as_secs_f64())?;
        if self.process != NEMESIS {
            write!(f, "c{} ", self.process)?;
        }
        match &self.event {
            Event::Invoke(op) => write!(f, "invoke {op}"),
            Event::Ok { invoke, ret } => write!(f, "ok #{} {ret:?}", invoke.0),
            Event::Fail { invoke, reason } => write!(f, "fail #{}: {reason}", invoke.0),
            Event::Info { invoke, reason } => write!(f, "info (unknown) #{}: {reason}", invoke.0),
            Event::Read { session, topic, partition, offset, value } => {
                write!(f, "read (session {session}) {topic}-{partition}@{offset} = {value}")
            }
            Event::Nemesis { what, .. } => write!(f, "nemesis: {what}"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Produce { topic, partition, value, idempotent } => {
                write!(f, "produce {value} to {topic}-{partition}{}", if *idempotent { " (idempotent)" } else { "" })
            }
            Op::Commit { group, topic, partition, offset } => {
                write!(f, "commit {group} {topic}-{partition} = {offset}")
            }
            Op::FetchOffset { group, topic, partition } => write!(f, "fetch offset {group} {topic}-{partition}"),
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Ret),
    Fail(String),
    /// Unknown; also an operation never completed.
    Info(String),
}

/// An invocation with its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub invoke: OpId,
    pub process: ProcessId,
    pub op: Op,
    pub invoked_at: Duration,
    /// The completing entry's index (`None`: never completed).
    pub completion: Option<usize>,
    pub completed_at: Option<Duration>,
    pub outcome: Outcome,
}

impl Operation {
    /// The last index the operation may have taken effect at (never completed: the end).
    pub fn end_index(&self) -> usize {
        self.completion.unwrap_or(usize::MAX)
    }
}

pub struct History {
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    /// Invocations not completed yet → their process.
    open: HashMap<OpId, ProcessId>,
    next_session: u64,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> History {
        History::with_epoch(Instant::now())
    }

    /// Times from `epoch` (pass `Cluster::epoch()` to line them up with the harness's).
    pub fn with_epoch(epoch: Instant) -> History {
        History { epoch, inner: Mutex::new(Inner::default()) }
    }

    pub fn invoke(&self, process: ProcessId, op: Op) -> OpId {
        assert_ne!(process, NEMESIS, "process id {NEMESIS} is the nemesis's");
        let mut inner = self.lock();
        let id = OpId(inner.entries.len());
        inner.open.insert(id, process);
        self.push(&mut inner, process, Event::Invoke(op));
        id
    }

    pub fn ok(&self, invoke: OpId, ret: Ret) {
        let mut inner = self.lock();
        let process = Self::complete(&mut inner, invoke);
        let Event::Invoke(op) = &inner.entries[invoke.0].event else { unreachable!("checked by complete") };
        let fits = matches!(
            (op, &ret),
            (Op::Produce { .. }, Ret::Produced { .. })
                | (Op::Commit { .. }, Ret::Committed)
                | (Op::FetchOffset { .. }, Ret::Fetched { .. })
        );
        assert!(fits, "{ret:?} does not complete {op}");
        self.push(&mut inner, process, Event::Ok { invoke, ret });
    }

    /// The operation certainly did not take effect.
    pub fn fail(&self, invoke: OpId, reason: impl Into<String>) {
        let mut inner = self.lock();
        let process = Self::complete(&mut inner, invoke);
        self.push(&mut inner, process, Event::Fail { invoke, reason: reason.into() });
    }

    /// The operation may or may not have taken effect.
    pub fn info(&self, invoke: OpId, reason: impl Into<String>) {
        let mut inner = self.lock();
        let process = Self::complete(&mut inner, invoke);
        self.push(&mut inner, process, Event::Info { invoke, reason: reason.into() });
    }

    /// A fresh read-session id (one per consumer cursor).
    pub fn new_session(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_session += 1;
        inner.next_session
    }

    pub fn read(&self, process: ProcessId, session: u64, topic: &str, partition: u32, offset: u64, value: &str) {
        let mut inner = self.lock();
        let event = Event::Read { session, topic: topic.to_owned(), partition, offset, value: value.to_owned() };
        self.push(&mut inner, process, event);
    }

    pub fn nemesis(&self, what: &str, nodes: Vec<NodeId>) {
        let mut inner = self.lock();
        self.push(&mut inner, NEMESIS, Event::Nemesis { what: what.to_owned(), nodes });
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every entry, in order.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.clone()
    }

    /// Every invocation with its completion, in invocation order.
    pub fn operations(&self) -> Vec<Operation> {
        operations(&self.entries())
    }

    /// Entries `from..to` (clamped), one per line, for reports.
    pub fn render(&self, from: usize, to: usize) -> String {
        let inner = self.lock();
        let to = to.min(inner.entries.len());
        inner.entries[from.min(to)..to].iter().map(|e| format!("{e}\n")).collect()
    }

    fn complete(inner: &mut Inner, invoke: OpId) -> ProcessId {
        let is_invoke = matches!(inner.entries.get(invoke.0), Some(Entry { event: Event::Invoke(_), .. }));
        assert!(is_invoke, "#{} is not an invocation", invoke.0);
        inner.open.remove(&invoke).unwrap_or_else(|| panic!("operation #{} completed twice", invoke.0))
    }

    fn push(&self, inner: &mut Inner, process: ProcessId, event: Event) {
        let index = inner.entries.len();
        inner.entries.push(Entry { index, at: self.epoch.elapsed(), process, event });
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A client task that panicked mid-record must not take the history down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pairs each invocation in `entries` with its completion.
pub fn operations(entries: &[Entry]) -> Vec<Operation> {
    let mut completions: HashMap<OpId, &Entry> = HashMap::new();
    for entry in entries {
        if let Event::Ok { invoke, .. } | Event::Fail { invoke, .. } | Event::Info { invoke, .. } = &entry.event {
            completions.insert(*invoke, entry);
        }
    }
    entries
        .iter()
        .filter_map(|entry| {
            let Event::Invoke(op) = &entry.event else { return None };
            let id = OpId(entry.index);
            let done = completions.get(&id);
            let outcome = match done.map(|e| &e.event) {
                Some(Event::Ok { ret, .. }) => Outcome::Ok(ret.clone()),
                Some(Event::Fail { reason, .. }) => Outcome::Fail(reason.clone()),
                Some(Event::Info { reason, .. }) => Outcome::Info(reason.clone()),
                _ => Outcome::Info("never completed".to_owned()),
            };
            Some(Operation {
                invoke: id,
                process: entry.process,
                op: op.clone(),
                invoked_at: entry.at,
                completion: done.map(|e| e.index),
                completed_at: done.map(|e| e.at),
                outcome,
            })
        })
        .collect()
}
