//! Checks a [`History`](super::history::History) against the cluster's final state.
//!
//! Inputs besides the history: per partition, the [`FinalLog`] read from its leader after the
//! faults were healed (offset → value, up to the high watermark), and per partition the
//! [`ReplicaBatches`] every replica holds below the high watermark, read from the data
//! directories after `stop_all`.
//!
//! The checks (each a [`CheckReport`] that names the values, offsets, history entries and
//! the nemesis events around each violation):
//! - [`Check::NoLostAcks`]: every acknowledged produce's value is in the final log, at the
//!   acknowledged offset when the client reported one;
//! - [`Check::NoDuplicates`]: a value is in the final logs at most once (more only if a
//!   non-idempotent producer was asked more than once to send it), and only values some
//!   client produced are there at all;
//! - [`Check::ReadsStable`]: within one read session a partition's offsets only rise, and
//!   every (offset, value) a consumer read is what the final log holds at that offset (no
//!   read saw data that was later truncated or replaced);
//! - [`Check::ReplicasIdentical`]: every replica's batches below the high watermark are
//!   byte-identical to the leader's (and the leader's decode to the final log);
//! - [`Check::CommitsMonotonic`]: an offset fetch never returns less than a commit that was
//!   acknowledged before the fetch started, nor an offset that no commit wrote. It assumes the
//!   workload commits non-decreasing offsets per group and partition, and reports it when not.
//!
//! Order between operations is the history's entry order (see `history`), never clocks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::Bytes;
use engine::batch::Batch;

use super::history::{operations, Entry, Event, History, Op, Operation, Outcome, Ret};
use super::NodeId;

/// Violations shown per check (all are counted).
const VIOLATIONS_SHOWN_MAX: usize = 20;
/// Nemesis entries shown around one violation.
const NEMESIS_SHOWN_MAX: usize = 8;

/// A partition's log as read from its leader at the end: offset → value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalLog {
    pub topic: String,
    pub partition: u32,
    /// Offsets below this are gone (retention); nothing is checked there.
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub records: BTreeMap<u64, String>,
}

impl FinalLog {
    pub fn new(topic: &str, partition: u32, records: impl IntoIterator<Item = (u64, String)>) -> FinalLog {
        let records: BTreeMap<u64, String> = records.into_iter().collect();
        let high_watermark = records.keys().next_back().map_or(0, |&last| last + 1);
        FinalLog { topic: topic.to_owned(), partition, log_start_offset: 0, high_watermark, records }
    }
}

/// The batches each replica of one partition holds, as read from its data directory after
/// `stop_all`: per node, (base offset, whole batch bytes) in offset order. Batches at or past
/// `high_watermark` may be included; they are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaBatches {
    pub topic: String,
    pub partition: u32,
    pub high_watermark: u64,
    /// The replica the others are compared with.
    pub leader: NodeId,
    pub replicas: BTreeMap<NodeId, Vec<(u64, Bytes)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    NoLostAcks,
    NoDuplicates,
    ReadsStable,
    ReplicasIdentical,
    CommitsMonotonic,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::NoLostAcks => "(a) no acknowledged record lost",
            Check::NoDuplicates => "(b) no duplicates, no unknown values",
            Check::ReadsStable => "(c) reads monotonic and stable",
            Check::ReplicasIdentical => "(d) replicas identical below the high watermark",
            Check::CommitsMonotonic => "(e) committed offsets never go backwards",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub message: String,
    /// History entries involved.
    pub entries: Vec<usize>,
    /// Those entries and the nemesis events around them, rendered.
    pub context: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub check: Check,
    /// Items checked (acknowledged produces, values, reads, batches, offset fetches).
    pub checked: usize,
    /// Items that could not be checked (below the log start).
    pub skipped: usize,
    pub violations: Vec<Violation>,
}

impl CheckReport {
    fn new(check: Check) -> CheckReport {
        CheckReport { check, checked: 0, skipped: 0, violations: Vec::new() }
    }

    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.is_valid() { "ok  " } else { "FAIL" };
        write!(f, "[{status}] {}: {} checked", self.check, self.checked)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        if !self.is_valid() {
            write!(f, ", {} violation(s)", self.violations.len())?;
        }
        writeln!(f)?;
        for violation in self.violations.iter().take(VIOLATIONS_SHOWN_MAX) {
            writeln!(f, "  - {}", violation.message)?;
            for line in &violation.context {
                writeln!(f, "      {line}")?;
            }
        }
        if self.violations.len() > VIOLATIONS_SHOWN_MAX {
            writeln!(f, "  ... and {} more", self.violations.len() - VIOLATIONS_SHOWN_MAX)?;
        }
        Ok(())
    }
}

/// Every check's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub reports: Vec<CheckReport>,
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        self.reports.iter().all(CheckReport::is_valid)
    }

    pub fn report(&self, check: Check) -> Option<&CheckReport> {
        self.reports.iter().find(|r| r.check == check)
    }

    /// Panics with every report (and `context`: the seed, the nemesis's record) unless valid.
    pub fn assert_valid(&self, context: &str) {
        assert!(self.is_valid(), "the history is not valid\n{self}{context}");
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.reports.iter().filter(|r| !r.is_valid()).count();
        writeln!(f, "checker: {} checks, {failed} failed", self.reports.len())?;
        for report in &self.reports {
            write!(f, "{report}")?;
        }
        Ok(())
    }
}

/// Runs every check.
pub fn check_all(history: &History, logs: &[FinalLog], replicas: &[ReplicaBatches]) -> Verdict {
    check_entries(&history.entries(), logs, replicas)
}

/// Runs every check on a history's entries.
pub fn check_entries(entries: &[Entry], logs: &[FinalLog], replicas: &[ReplicaBatches]) -> Verdict {
    Verdict {
        reports: vec![
            no_lost_acks(entries, logs),
            no_duplicates(entries, logs),
            reads_stable(entries, logs),
            replicas_identical(entries, replicas, logs),
            commits_monotonic(entries),
        ],
    }
}

type Tp = (String, u32);

fn logs_by_partition(logs: &[FinalLog]) -> HashMap<Tp, &FinalLog> {
    logs.iter().map(|log| ((log.topic.clone(), log.partition), log)).collect()
}

/// A record's place: (topic, partition, offset).
type Position<'a> = (&'a str, u32, u64);

/// Where each value is in the final logs.
fn value_positions(logs: &[FinalLog]) -> HashMap<&str, Vec<Position<'_>>> {
    let mut positions: HashMap<&str, Vec<Position<'_>>> = HashMap::new();
    for log in logs {
        for (&offset, value) in &log.records {
            positions.entry(value.as_str()).or_default().push((log.topic.as_str(), log.partition, offset));
        }
    }
    positions
}

fn show_positions(positions: Option<&Vec<Position<'_>>>) -> String {
    match positions {
        None => "nowhere in the final logs".to_owned(),
        Some(list) => {
            let at: Vec<String> = list.iter().map(|(t, p, o)| format!("{t}-{p}@{o}")).collect();
            format!("at {}", at.join(", "))
        }
    }
}

/// Renders the involved entries and the nemesis events around them.
struct Context<'a> {
    entries: &'a [Entry],
    /// Indices of nemesis entries.
    nemesis: Vec<usize>,
}

impl<'a> Context<'a> {
    fn new(entries: &'a [Entry]) -> Context<'a> {
        let nemesis = entries.iter().filter(|e| matches!(e.event, Event::Nemesis { .. })).map(|e| e.index).collect();
        Context { entries, nemesis }
    }

    fn violation(&self, message: String, involved: &[usize]) -> Violation {
        let mut involved: Vec<usize> = involved.iter().copied().filter(|&i| i < self.entries.len()).collect();
        involved.sort_unstable();
        involved.dedup();
        let mut context: Vec<String> = involved.iter().map(|&i| self.entries[i].to_string()).collect();
        if let (Some(&low), Some(&high)) = (involved.first(), involved.last()) {
            // The fault in effect before, those during, and the next one after.
            let before = self.nemesis.iter().rev().find(|&&n| n < low);
            let during = self.nemesis.iter().filter(|&&n| n > low && n < high);
            let after = self.nemesis.iter().find(|&&n| n > high);
            let around: Vec<usize> = before.into_iter().chain(during).chain(after).copied().collect();
            if !around.is_empty() {
                context.push("nemesis around it:".to_owned());
                let shown = around.len().min(NEMESIS_SHOWN_MAX);
                context.extend(around[..shown].iter().map(|&n| format!("  {}", self.entries[n])));
                if around.len() > shown {
                    context.push(format!("  ... and {} more", around.len() - shown));
                }
            }
        }
        Violation { message, entries: involved, context }
    }

    /// Nemesis events naming `node`.
    fn node_violation(&self, message: String, node: NodeId) -> Violation {
        let mut context = Vec::new();
        let about: Vec<&Entry> = self
            .nemesis
            .iter()
            .map(|&n| &self.entries[n])
            .filter(|e| matches!(&e.event, Event::Nemesis { nodes, .. } if nodes.contains(&node)))
            .collect();
        if !about.is_empty() {
            context.push(format!("nemesis events of node {node}:"));
            context.extend(about.iter().take(NEMESIS_SHOWN_MAX).map(|e| format!("  {e}")));
            if about.len() > NEMESIS_SHOWN_MAX {
                context.push(format!("  ... and {} more", about.len() - NEMESIS_SHOWN_MAX));
            }
        }
        Violation { message, entries: Vec::new(), context }
    }
}

fn involved(op: &Operation) -> Vec<usize> {
    op.completion.into_iter().chain([op.invoke.0]).collect()
}

/// (a) Every acknowledged produce's value is in the final log, at its acknowledged offset.
pub fn no_lost_acks(entries: &[Entry], logs: &[FinalLog]) -> CheckReport {
    let context = Context::new(entries);
    let by_partition = logs_by_partition(logs);
    let positions = value_positions(logs);
    let mut report = CheckReport::new(Check::NoLostAcks);
    for op in operations(entries) {
        let (Op::Produce { topic, partition, value, .. }, Outcome::Ok(Ret::Produced { offset })) =
            (&op.op, &op.outcome)
        else {
            continue;
        };
        report.checked += 1;
        let Some(log) = by_partition.get(&(topic.clone(), *partition)) else {
            let message = format!("acknowledged {value} to {topic}-{partition}, but there is no final log of it");
            report.violations.push(context.violation(message, &involved(&op)));
            continue;
        };
        let found = positions.get(value.as_str());
        match offset {
            Some(offset) if *offset < log.log_start_offset => report.skipped += 1,
            Some(offset) => {
                if log.records.get(offset) != Some(value) {
                    let there = match log.records.get(offset) {
                        Some(other) => format!("holds {other} there"),
                        None => format!("has nothing there (high watermark {})", log.high_watermark),
                    };
                    let message = format!(
                        "lost: {value} acknowledged at {topic}-{partition}@{offset}; the final log {there}; \
                         {value} is {}",
                        show_positions(found)
                    );
                    report.violations.push(context.violation(message, &involved(&op)));
                }
            }
            None => {
                let here = found.is_some_and(|l| l.iter().any(|(t, p, _)| t == topic && p == partition));
                if !here {
                    let message = format!(
                        "lost: {value} acknowledged (no offset reported) to {topic}-{partition}, not in its final log \
                         (high watermark {}); it is {}",
                        log.high_watermark,
                        show_positions(found)
                    );
                    report.violations.push(context.violation(message, &involved(&op)));
                }
            }
        }
    }
    report
}

/// (b) No value twice in the final logs (unless a non-idempotent producer was asked more than
/// once), and no value nobody produced.
pub fn no_duplicates(entries: &[Entry], logs: &[FinalLog]) -> CheckReport {
    let context = Context::new(entries);
    let positions = value_positions(logs);
    // Value → (invocations, any idempotent, their entries).
    let mut produced: HashMap<&str, (usize, bool, Vec<usize>)> = HashMap::new();
    for entry in entries {
        if let Event::Invoke(Op::Produce { value, idempotent, .. }) = &entry.event {
            let slot = produced.entry(value.as_str()).or_default();
            slot.0 += 1;
            slot.1 |= *idempotent;
            slot.2.push(entry.index);
        }
    }
    let mut report = CheckReport::new(Check::NoDuplicates);
    let mut values: Vec<(&&str, &Vec<Position<'_>>)> = positions.iter().collect();
    values.sort();
    for (value, at) in values {
        report.checked += 1;
        let Some((invoked, idempotent, invokes)) = produced.get(*value) else {
            let message = format!("{value} is in the final log {} but no client produced it", show_positions(Some(at)));
            report.violations.push(context.violation(message, &[]));
            continue;
        };
        let allowed = if *idempotent || *invoked <= 1 { 1 } else { *invoked };
        if at.len() > allowed {
            let message = format!(
                "duplicate: {value} is in the final log {} times ({}), produced {invoked} time(s){}",
                at.len(),
                show_positions(Some(at)),
                if *idempotent { " by an idempotent producer" } else { "" }
            );
            report.violations.push(context.violation(message, invokes));
        }
    }
    report
}

/// (c) Offsets rise within a read session, and every read matches the final log.
pub fn reads_stable(entries: &[Entry], logs: &[FinalLog]) -> CheckReport {
    let context = Context::new(entries);
    let by_partition = logs_by_partition(logs);
    let mut report = CheckReport::new(Check::ReadsStable);
    // (session, topic, partition) → (last offset, its entry).
    let mut last: HashMap<(u64, &str, u32), (u64, usize)> = HashMap::new();
    for entry in entries {
        let Event::Read { session, topic, partition, offset, value } = &entry.event else { continue };
        report.checked += 1;
        let key = (*session, topic.as_str(), *partition);
        if let Some(&(previous, previous_entry)) = last.get(&key) {
            if *offset <= previous {
                let message = format!(
                    "offsets went backwards in read session {session} of {topic}-{partition}: {offset} after {previous}"
                );
                report.violations.push(context.violation(message, &[previous_entry, entry.index]));
            }
        }
        last.insert(key, (*offset, entry.index));
        let Some(log) = by_partition.get(&(topic.clone(), *partition)) else {
            let message = format!("read {topic}-{partition}@{offset}, but there is no final log of it");
            report.violations.push(context.violation(message, &[entry.index]));
            continue;
        };
        if *offset < log.log_start_offset {
            report.skipped += 1;
            continue;
        }
        if log.records.get(offset) != Some(value) {
            let there = match log.records.get(offset) {
                Some(other) => format!("holds {other} there"),
                None => format!("has nothing there (high watermark {})", log.high_watermark),
            };
            let message = format!(
                "unstable read: {value} read at {topic}-{partition}@{offset}, but the final log {there} \
                 (the read saw data that was later truncated or replaced)"
            );
            report.violations.push(context.violation(message, &[entry.index]));
        }
    }
    report
}

/// The name of the RecordBatch v2 header field at byte `position` (or "records").
fn batch_field(position: usize) -> &'static str {
    const FIELDS: [(usize, &str); 15] = [
        (0, "baseOffset"),
        (8, "batchLength"),
        (12, "partitionLeaderEpoch"),
        (16, "magic"),
        (17, "crc"),
        (21, "attributes"),
        (23, "lastOffsetDelta"),
        (27, "baseTimestamp"),
        (35, "maxTimestamp"),
        (43, "producerId"),
        (51, "producerEpoch"),
        (53, "baseSequence"),
        (57, "recordsCount"),
        (61, "records"),
        (usize::MAX, "records"),
    ];
    FIELDS.windows(2).find(|w| position >= w[0].0 && position < w[1].0).map_or("records", |w| w[0].1)
}

/// (d) Every replica's batches below the high watermark are byte-identical to the leader's.
///
/// `replicas` holds batches already read from each node's data directory (with the engine,
/// after `stop_all`): this compares, it does not read files. The leader's batches are also
/// validated (CRC, framing), must be contiguous, must reach the high watermark, must carry
/// their listed base offset, and — where `logs` has the partition — must decode to the final
/// log's values.
pub fn replicas_identical(entries: &[Entry], replicas: &[ReplicaBatches], logs: &[FinalLog]) -> CheckReport {
    let context = Context::new(entries);
    let by_partition = logs_by_partition(logs);
    let mut report = CheckReport::new(Check::ReplicasIdentical);
    for partition in replicas {
        let name = format!("{}-{}", partition.topic, partition.partition);
        let hw = partition.high_watermark;
        let below = |list: &'_ [(u64, Bytes)]| -> Vec<(u64, Bytes)> {
            list.iter().filter(|(offset, _)| *offset < hw).cloned().collect()
        };
        let Some(leader_list) = partition.replicas.get(&partition.leader) else {
            let message = format!("{name}: no batches of the leader, node {}", partition.leader);
            report.violations.push(context.node_violation(message, partition.leader));
            continue;
        };
        let leader = below(leader_list);
        if let Err(message) =
            check_leader_batches(&name, hw, &leader, by_partition.get(&(partition.topic.clone(), partition.partition)))
        {
            report.violations.push(context.node_violation(message, partition.leader));
        }
        for (&node, list) in &partition.replicas {
            if node == partition.leader {
                continue;
            }
            let follower = below(list);
            report.checked += follower.len();
            if let Some(message) = first_difference(&name, node, partition.leader, &follower, &leader) {
                report.violations.push(context.node_violation(message, node));
            }
        }
        report.checked += leader.len();
    }
    report
}

/// The leader's batches below the high watermark: valid, at their offsets, contiguous, up to
/// the high watermark, and matching the final log.
fn check_leader_batches(name: &str, hw: u64, batches: &[(u64, Bytes)], log: Option<&&FinalLog>) -> Result<(), String> {
    let mut next: Option<u64> = None;
    for (offset, bytes) in batches {
        let batch = Batch::validate(bytes.clone())
            .map_err(|e| format!("{name}: the leader's batch at {offset} is invalid: {e}"))?;
        if batch.base_offset() != *offset as i64 {
            return Err(format!(
                "{name}: the leader's batch listed at {offset} says baseOffset {}",
                batch.base_offset()
            ));
        }
        if let Some(expected) = next {
            if *offset != expected {
                return Err(format!("{name}: the leader's batches jump from {expected} to {offset}"));
            }
        }
        next = Some(batch.last_offset() as u64 + 1);
        let Some(log) = log else { continue };
        for record in batch.records() {
            let record = record.map_err(|e| format!("{name}: the leader's batch at {offset}: {e}"))?;
            let at = record.offset as u64;
            if at >= hw || at < log.log_start_offset {
                continue;
            }
            let value = record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            if log.records.get(&at).map(String::as_str) != Some(&*value) {
                return Err(format!(
                    "{name}: the leader's batch holds {value} at {at}, the final log {:?}",
                    log.records.get(&at)
                ));
            }
        }
    }
    match next {
        Some(end) if end < hw => {
            Err(format!("{name}: the leader's batches end at {end}, below the high watermark {hw}"))
        }
        None if hw > 0 => Err(format!("{name}: the leader has no batch below the high watermark {hw}")),
        _ => Ok(()),
    }
}

/// Where `follower`'s batches first differ from the leader's, if they do.
fn first_difference(
    name: &str,
    node: NodeId,
    leader_node: NodeId,
    follower: &[(u64, Bytes)],
    leader: &[(u64, Bytes)],
) -> Option<String> {
    let differing = follower.iter().zip(leader).filter(|(f, l)| f != l).count();
    for ((offset, bytes), (leader_offset, leader_bytes)) in follower.iter().zip(leader) {
        if offset != leader_offset {
            return Some(format!(
                "{name}: node {node} has a batch at {offset} where the leader (node {leader_node}) has one at \
                 {leader_offset} ({differing} differing batch(es))"
            ));
        }
        if bytes != leader_bytes {
            let positions: Vec<usize> = bytes
                .iter()
                .zip(leader_bytes.iter())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i)
                .collect();
            let mut fields: Vec<&str> = positions.iter().map(|&p| batch_field(p)).collect();
            fields.dedup();
            let at = match positions.first() {
                Some(p) => format!("first at byte {p}, in fields {}", fields.join(", ")),
                None => "one is a prefix of the other".to_owned(),
            };
            return Some(format!(
                "{name}: node {node}'s batch at {offset} differs from the leader's (node {leader_node}): {} vs {} \
                 bytes, {at} ({differing} differing batch(es))",
                bytes.len(),
                leader_bytes.len()
            ));
        }
    }
    if follower.len() != leader.len() {
        let (shorter, missing_at) = if follower.len() < leader.len() {
            (format!("node {node}"), leader[follower.len()].0)
        } else {
            (format!("the leader (node {leader_node})"), follower[leader.len()].0)
        };
        return Some(format!(
            "{name}: node {node} has {} batch(es) below the high watermark, the leader (node {leader_node}) {}; \
             {shorter} lacks the one at {missing_at}",
            follower.len(),
            leader.len()
        ));
    }
    None
}

/// (e) An offset fetch never returns less than a commit acknowledged before it started, nor
/// an offset no commit wrote; acknowledged commits must not decrease (workload precondition).
pub fn commits_monotonic(entries: &[Entry]) -> CheckReport {
    let context = Context::new(entries);
    let mut report = CheckReport::new(Check::CommitsMonotonic);
    // (group, topic, partition) → its commits and fetches.
    let mut commits: HashMap<(&str, &str, u32), Vec<Operation>> = HashMap::new();
    let mut fetches: HashMap<(&str, &str, u32), Vec<Operation>> = HashMap::new();
    let ops = operations(entries);
    for op in &ops {
        match &op.op {
            Op::Commit { group, topic, partition, .. } => {
                commits.entry((group.as_str(), topic.as_str(), *partition)).or_default().push(op.clone())
            }
            Op::FetchOffset { group, topic, partition } => {
                fetches.entry((group.as_str(), topic.as_str(), *partition)).or_default().push(op.clone())
            }
            Op::Produce { .. } => {}
        }
    }
    let mut keys: Vec<_> = commits.keys().chain(fetches.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let (group, topic, partition) = key;
        let all = commits.get(&key).map_or(&[][..], Vec::as_slice);
        let acked = AckedCommits::new(all);
        // Precondition: each acknowledged commit is at least every one acknowledged before it
        // was invoked.
        for commit in all.iter().filter(|c| matches!(c.outcome, Outcome::Ok(_))) {
            let offset = commit_offset(commit);
            if let Some((bound, by)) = acked.max_completed_before(commit.invoke.0) {
                if offset < bound {
                    let message = format!(
                        "the workload committed backwards on {group} {topic}-{partition}: {offset} after {bound} was \
                         acknowledged (this check assumes commits never decrease)"
                    );
                    report.violations.push(context.violation(message, &[by, commit.invoke.0]));
                }
            }
        }
        for fetch in fetches.get(&key).map_or(&[][..], Vec::as_slice) {
            let Outcome::Ok(Ret::Fetched { offset: fetched }) = &fetch.outcome else { continue };
            report.checked += 1;
            let mut involved_entries = involved(fetch);
            if let Some((bound, by)) = acked.max_completed_before(fetch.invoke.0) {
                if fetched.is_none_or(|f| f < bound) {
                    involved_entries.push(by);
                    let message = format!(
                        "committed offset went backwards: {group} {topic}-{partition} fetched {} after a commit of \
                         {bound} was acknowledged",
                        fetched.map_or("nothing".to_owned(), |f| f.to_string())
                    );
                    report.violations.push(context.violation(message, &involved_entries));
                    continue;
                }
            }
            if let Some(fetched) = fetched {
                // Some commit of that offset must have started before the fetch completed.
                let written = all.iter().any(|c| commit_offset(c) == *fetched && c.invoke.0 < fetch.end_index());
                if !written {
                    let message = format!(
                        "{group} {topic}-{partition} fetched offset {fetched}, which no commit (invoked before the \
                         fetch completed) wrote"
                    );
                    report.violations.push(context.violation(message, &involved_entries));
                }
            }
        }
    }
    report
}

fn commit_offset(op: &Operation) -> u64 {
    match op.op {
        Op::Commit { offset, .. } => offset,
        _ => unreachable!("only commits here"),
    }
}

/// Acknowledged commits by completion index, with the running maximum offset.
struct AckedCommits {
    /// (completion index, running max offset, the entry of that max's invocation).
    by_completion: Vec<(usize, u64, usize)>,
}

impl AckedCommits {
    fn new(commits: &[Operation]) -> AckedCommits {
        let mut acked: Vec<(usize, u64, usize)> = commits
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Ok(_)))
            .filter_map(|c| c.completion.map(|done| (done, commit_offset(c), c.invoke.0)))
            .collect();
        acked.sort_unstable();
        let mut max: Option<(u64, usize)> = None;
        for item in &mut acked {
            if max.is_none_or(|(m, _)| item.1 > m) {
                max = Some((item.1, item.2));
            }
            let (m, by) = max.unwrap_or((item.1, item.2));
            *item = (item.0, m, by);
        }
        AckedCommits { by_completion: acked }
    }

    /// The largest offset acknowledged before entry `index`, and the invocation that wrote it.
    fn max_completed_before(&self, index: usize) -> Option<(u64, usize)> {
        let count = self.by_completion.partition_point(|&(done, _, _)| done < index);
        count.checked_sub(1).map(|last| (self.by_completion[last].1, self.by_completion[last].2))
    }
}
