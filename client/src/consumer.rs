//! [`Consumer`]: reads the partitions of a set of topics.
//!
//! Without a group it reads every partition of its topics (or the chosen ones), starting at
//! the earliest or latest offset. With a group it joins it, reads the partitions the broker
//! assigns, heartbeats in a background task, rejoins when the group rebalances, and commits
//! its positions (automatically every `auto_commit_interval_ms` and on close, if
//! `auto_commit`). A position comes from the group's committed offset, else from the earliest
//! or latest offset (`from_beginning`, Kafka's `auto.offset.reset`), and is reset the same way
//! when it falls out of the log's range.
//!
//! Fetching: one Fetch per shard is in flight at a time (each long-polls on its own shard), so
//! a busy shard's records are returned as soon as they arrive instead of waiting for a quiet
//! one. [`Consumer::poll`] returns whatever arrived (possibly nothing, after the long-poll
//! wait).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use format::batch::{split_batches, BatchError, Header};
use glommio::Task;

use super::cluster::Client;
use super::error::ClientError;
use protocol::messages::{
    Assignor, CommitOffset, ErrorCode, FetchPartition, FetchPartitionResult, ListOffsetsPartition, OffsetSpec,
    TopicPartition,
};

/// After a fetch found a partition's leader moved, the consumer waits this long before it
/// refreshes the metadata and fetches again (an election takes a moment).
const LEADER_MOVED_PAUSE_MS: u64 = 100;

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Consumer group to join; `None` reads every partition of `topics` on its own.
    pub group: Option<String>,
    pub topics: Vec<String>,
    /// Without a group: read only these partitions of each topic.
    pub partitions: Option<Vec<u32>>,
    /// Where to start without a committed offset: earliest (`true`) or latest.
    pub from_beginning: bool,
    /// Largest Fetch response per shard.
    pub fetch_bytes_max: u32,
    /// Largest share of one partition in a Fetch response.
    pub partition_fetch_bytes_max: u32,
    /// How long a Fetch waits on the broker for new records.
    pub fetch_wait_ms_max: u32,
    pub session_timeout_ms: u32,
    pub heartbeat_interval_ms: u64,
    pub assignor: Assignor,
    /// Commit positions every `auto_commit_interval_ms` (checked in `poll`) and on `close`.
    pub auto_commit: bool,
    pub auto_commit_interval_ms: u64,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            group: None,
            topics: Vec::new(),
            partitions: None,
            from_beginning: false,
            fetch_bytes_max: 16 << 20,
            partition_fetch_bytes_max: 1 << 20,
            fetch_wait_ms_max: 500,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            assignor: Assignor::Range,
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }
}

/// One record, its byte fields sharing the fetched buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Rc<str>,
    pub partition: u32,
    pub offset: u64,
    /// Producer-assigned timestamp (Kafka's CreateTime), ms since the epoch.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

type Tp = (Rc<str>, u32);

/// A finished Fetch, waiting for `poll` to take it.
struct FetchOutcome {
    epoch: u64,
    /// (partition, offset it was fetched at), in request order.
    requested: Vec<(Tp, u64)>,
    result: Result<Vec<FetchPartitionResult>, ClientError>,
}

/// State shared with the heartbeat and fetch tasks.
struct Shared {
    client: Rc<Client>,
    options: ConsumerOptions,
    member_id: RefCell<String>,
    generation: Cell<i32>,
    /// The heartbeat saw a rebalance (or lost membership): rejoin before the next fetch.
    rejoin: Cell<bool>,
    outcomes: RefCell<VecDeque<FetchOutcome>>,
    /// Notified when a fetch finishes or a rejoin is needed.
    arrived: event_listener::Event,
}

#[derive(Default)]
struct State {
    /// Joined the group (or, without a group, resolved the partitions).
    assigned: bool,
    assignment: Vec<Tp>,
    positions: HashMap<Tp, u64>,
    /// Partitions whose position must come from earliest/latest, not the committed offset.
    reset: HashSet<Tp>,
    /// After a rejoin, the positions we had reached in the partitions we kept: the new
    /// position is the larger of this and the committed offset.
    floors: HashMap<Tp, u64>,
    in_flight: HashSet<Tp>,
    /// Bumped on every (re)assignment; fetches of older epochs are ignored.
    epoch: u64,
    last_commit: Option<Instant>,
    topics: HashMap<String, Rc<str>>,
    closed: bool,
}

impl State {
    fn tp(&mut self, topic: &str, partition: u32) -> Tp {
        let name = self.topics.entry(topic.to_owned()).or_insert_with(|| Rc::from(topic)).clone();
        (name, partition)
    }
}

/// A consumer. `!Send`; lives on one executor.
pub struct Consumer {
    shared: Rc<Shared>,
    state: RefCell<State>,
    heartbeat: RefCell<Option<Task<()>>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("options", &self.shared.options).finish_non_exhaustive()
    }
}

impl Consumer {
    /// Creates the consumer; it joins its group (or resolves its partitions) on the first
    /// `poll`.
    pub fn new(client: Rc<Client>, options: ConsumerOptions) -> Consumer {
        let shared = Rc::new(Shared {
            client,
            options,
            member_id: RefCell::new(String::new()),
            generation: Cell::new(-1),
            rejoin: Cell::new(false),
            outcomes: RefCell::new(VecDeque::new()),
            arrived: event_listener::Event::new(),
        });
        Consumer { shared, state: RefCell::new(State::default()), heartbeat: RefCell::new(None) }
    }

    pub fn options(&self) -> &ConsumerOptions {
        &self.shared.options
    }

    /// The partitions this consumer reads (empty before the first `poll`).
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let state = self.state.borrow();
        state.assignment.iter().map(|(t, p)| TopicPartition { topic: t.to_string(), partition: *p }).collect()
    }

    /// The next offset `poll` returns from a partition, once known.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        let mut state = self.state.borrow_mut();
        let tp = state.tp(topic, partition);
        state.positions.get(&tp).copied()
    }

    /// The group generation and member id (generation -1 before joining).
    pub fn membership(&self) -> (i32, String) {
        (self.shared.generation.get(), self.shared.member_id.borrow().clone())
    }

    /// Continues a partition from `offset` (its records before `offset` are not returned;
    /// a fetch in flight for it is discarded).
    pub fn seek(&self, topic: &str, partition: u32, offset: u64) {
        let mut state = self.state.borrow_mut();
        let tp = state.tp(topic, partition);
        state.reset.remove(&tp);
        state.floors.remove(&tp);
        state.positions.insert(tp, offset);
    }

    /// Returns the records that arrived, waiting up to about `fetch_wait_ms_max` for some.
    pub async fn poll(&self) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.state.borrow().closed {
            return Err(ClientError::Closed);
        }
        self.ensure_assignment().await?;
        self.ensure_positions().await?;
        self.maybe_auto_commit().await;
        let listener = self.shared.arrived.listen();
        let launched = self.launch_fetches();
        if self.shared.outcomes.borrow().is_empty() && !self.shared.rejoin.get() {
            if launched == 0 && self.state.borrow().in_flight.is_empty() {
                // Nothing to read (no partitions assigned): wait for a rebalance, briefly.
                let wait = Duration::from_millis(u64::from(self.shared.options.fetch_wait_ms_max.max(1)));
                futures_lite::future::or(listener, glommio::timer::sleep(wait)).await;
            } else {
                listener.await;
            }
        }
        self.take_outcomes()
    }

    /// Commits the current positions of every assigned partition (needs a group).
    ///
    /// A commit refused because the group moved to a new generation (a member joined or left)
    /// rejoins and commits again the positions of the partitions this consumer still owns.
    pub async fn commit(&self) -> Result<(), ClientError> {
        match self.commit_once().await {
            Err(e) if matches!(e.code(), Some(ErrorCode::IllegalGeneration | ErrorCode::RebalanceInProgress)) => {
                self.shared.rejoin.set(true);
                self.ensure_assignment().await?;
                self.commit_once().await
            }
            other => other,
        }
    }

    async fn commit_once(&self) -> Result<(), ClientError> {
        let Some(group) = self.shared.options.group.clone() else {
            return Err(ClientError::InvalidArgument("commit needs a consumer group".to_owned()));
        };
        let offsets: Vec<CommitOffset> = {
            let state = self.state.borrow();
            state
                .assignment
                .iter()
                .filter_map(|tp| {
                    let position = state.positions.get(tp).or_else(|| state.floors.get(tp));
                    position.map(|&offset| CommitOffset {
                        topic: tp.0.to_string(),
                        partition: tp.1,
                        offset,
                        metadata: String::new(),
                    })
                })
                .collect()
        };
        if offsets.is_empty() {
            return Ok(());
        }
        let generation = self.shared.generation.get();
        let member_id = self.shared.member_id.borrow().clone();
        let results = self.shared.client.commit_offsets(&group, generation, &member_id, offsets).await?;
        self.state.borrow_mut().last_commit = Some(Instant::now());
        match results.into_iter().find(|r| !r.error.is_ok()) {
            None => Ok(()),
            Some(failed) => {
                if matches!(
                    failed.error,
                    ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId | ErrorCode::RebalanceInProgress
                ) {
                    self.shared.rejoin.set(true);
                }
                Err(ClientError::broker(failed.error, format!("committing {}-{}", failed.topic, failed.partition)))
            }
        }
    }

    /// Commits (if `auto_commit`) and leaves the group. Further polls fail.
    pub async fn close(&self) -> Result<(), ClientError> {
        if std::mem::replace(&mut self.state.borrow_mut().closed, true) {
            return Ok(());
        }
        let Some(group) = self.shared.options.group.clone() else {
            return Ok(());
        };
        if !self.state.borrow().assigned {
            return Ok(());
        }
        let committed = if self.shared.options.auto_commit { self.commit().await } else { Ok(()) };
        self.heartbeat.borrow_mut().take(); // Stops the heartbeat task.
        let member_id = self.shared.member_id.borrow().clone();
        let left = self.shared.client.leave_group(&group, &member_id).await;
        committed.and(left)
    }

    // ---- assignment and positions ----------------------------------------------------------

    async fn ensure_assignment(&self) -> Result<(), ClientError> {
        let options = &self.shared.options;
        let Some(group) = &options.group else {
            if self.state.borrow().assigned {
                return Ok(());
            }
            let mut partitions = self.shared.client.partitions(&options.topics).await?;
            if let Some(only) = &options.partitions {
                for &p in only {
                    for topic in &options.topics {
                        if !partitions.iter().any(|tp| &tp.topic == topic && tp.partition == p) {
                            return Err(ClientError::broker(
                                ErrorCode::UnknownTopicOrPartition,
                                format!("{topic}-{p}"),
                            ));
                        }
                    }
                }
                partitions.retain(|tp| only.contains(&tp.partition));
            }
            let mut state = self.state.borrow_mut();
            state.assignment = partitions.iter().map(|tp| state.tp(&tp.topic, tp.partition)).collect::<Vec<_>>();
            state.assigned = true;
            state.epoch += 1;
            return Ok(());
        };
        if self.state.borrow().assigned && !self.shared.rejoin.get() {
            return Ok(());
        }
        if !self.state.borrow().assigned {
            // Fail clearly on a topic that does not exist (the broker would assign nothing).
            self.shared.client.partitions(&options.topics).await?;
        }
        self.shared.rejoin.set(false);
        let member_id = self.shared.member_id.borrow().clone();
        let joined = match self.join(group, &member_id).await {
            Err(e) if e.code() == Some(ErrorCode::UnknownMemberId) && !member_id.is_empty() => {
                self.join(group, "").await? // Our membership expired: join as a new member.
            }
            other => other?,
        };
        tracing::debug!(%group, generation = joined.generation_id, member = %joined.member_id,
            partitions = joined.assignment.len(), "joined group");
        self.shared.generation.set(joined.generation_id);
        *self.shared.member_id.borrow_mut() = joined.member_id;
        let mut state = self.state.borrow_mut();
        let assignment: Vec<Tp> = joined.assignment.iter().map(|tp| state.tp(&tp.topic, tp.partition)).collect();
        // Partitions we keep: our position becomes a floor for the committed offset (another
        // member may have owned them meanwhile and got further; we did process everything
        // before our position). Partitions we lost: forgotten.
        let keep: HashSet<&Tp> = assignment.iter().collect();
        let positions = std::mem::take(&mut state.positions);
        state.floors.retain(|tp, _| keep.contains(tp));
        for (tp, offset) in positions {
            if keep.contains(&tp) {
                state.floors.insert(tp, offset);
            }
        }
        state.reset.clear();
        state.assignment = assignment;
        state.assigned = true;
        state.epoch += 1;
        state.in_flight.clear();
        drop(state);
        if self.heartbeat.borrow().is_none() {
            *self.heartbeat.borrow_mut() = Some(glommio::spawn_local(heartbeat_loop(self.shared.clone())));
        }
        Ok(())
    }

    async fn join(&self, group: &str, member_id: &str) -> Result<super::JoinResult, ClientError> {
        let options = &self.shared.options;
        let topics = options.topics.clone();
        self.shared.client.join_group(group, member_id, topics, options.session_timeout_ms, options.assignor).await
    }

    /// Gives every assigned partition a position: with a group, the committed offset (or our
    /// floor from before a rejoin, whichever is larger); else earliest / latest.
    async fn ensure_positions(&self) -> Result<(), ClientError> {
        let (missing, reset): (Vec<Tp>, Vec<Tp>) = {
            let state = self.state.borrow();
            state
                .assignment
                .iter()
                .filter(|tp| !state.positions.contains_key(*tp))
                .cloned()
                .partition(|tp| !state.reset.contains(tp))
        };
        if missing.is_empty() && reset.is_empty() {
            return Ok(());
        }
        let epoch = self.state.borrow().epoch;
        let mut from_log = reset;
        let mut found: Vec<(Tp, u64)> = Vec::new();
        match &self.shared.options.group {
            Some(group) if !missing.is_empty() => {
                let asked =
                    missing.iter().map(|(t, p)| TopicPartition { topic: t.to_string(), partition: *p }).collect();
                let committed = self.shared.client.fetch_offsets(group, Some(asked)).await?;
                let floors = self.state.borrow().floors.clone();
                for tp in missing {
                    let offset = committed.iter().find(|c| *c.topic == *tp.0 && c.partition == tp.1 && c.error.is_ok());
                    let committed = offset.and_then(|c| u64::try_from(c.offset).ok());
                    match committed.max(floors.get(&tp).copied()) {
                        Some(offset) => found.push((tp, offset)),
                        None => from_log.push(tp),
                    }
                }
            }
            _ => from_log.extend(missing),
        }
        if !from_log.is_empty() {
            let spec = if self.shared.options.from_beginning { OffsetSpec::Earliest } else { OffsetSpec::Latest };
            let asked = from_log
                .iter()
                .map(|(t, p)| ListOffsetsPartition { topic: t.to_string(), partition: *p, spec })
                .collect();
            let listed = self.shared.client.list_offsets(asked).await?;
            for (tp, result) in from_log.into_iter().zip(listed) {
                if !result.error.is_ok() {
                    return Err(ClientError::broker(result.error, format!("{}-{}", tp.0, tp.1)));
                }
                found.push((tp, u64::try_from(result.offset).unwrap_or(0)));
            }
        }
        let mut state = self.state.borrow_mut();
        if state.epoch != epoch {
            return Ok(()); // Reassigned meanwhile; the next poll starts over.
        }
        for (tp, offset) in found {
            state.reset.remove(&tp);
            state.floors.remove(&tp);
            state.positions.entry(tp).or_insert(offset);
        }
        Ok(())
    }

    async fn maybe_auto_commit(&self) {
        let options = &self.shared.options;
        if options.group.is_none() || !options.auto_commit {
            return;
        }
        let due = {
            let mut state = self.state.borrow_mut();
            let interval = Duration::from_millis(options.auto_commit_interval_ms);
            match state.last_commit {
                Some(at) => at.elapsed() >= interval,
                None => {
                    state.last_commit = Some(Instant::now());
                    false
                }
            }
        };
        if due {
            if let Err(error) = self.commit().await {
                tracing::warn!(%error, "auto-commit failed");
            }
        }
    }

    // ---- fetching --------------------------------------------------------------------------

    /// Starts a Fetch per shard for the assigned partitions that have none in flight. Returns
    /// how many fetches were started.
    fn launch_fetches(&self) -> usize {
        let options = &self.shared.options;
        let mut state = self.state.borrow_mut();
        let idle: Vec<(Tp, u64)> = state
            .assignment
            .iter()
            .filter(|tp| !state.in_flight.contains(*tp))
            .filter_map(|tp| state.positions.get(tp).map(|&offset| (tp.clone(), offset)))
            .collect();
        if idle.is_empty() {
            return 0;
        }
        for (tp, _) in &idle {
            state.in_flight.insert(tp.clone());
        }
        let epoch = state.epoch;
        drop(state);
        let groups = self.shared.client.group_by_route(idle, |(tp, _)| (&tp.0, tp.1));
        let launched = groups.len();
        for (_, _, requested) in groups {
            let shared = self.shared.clone();
            let partitions = requested
                .iter()
                .map(|((topic, partition), offset)| FetchPartition {
                    topic: topic.to_string(),
                    partition: *partition,
                    offset: *offset,
                    bytes_max: options.partition_fetch_bytes_max,
                })
                .collect();
            let (wait, bytes_max) = (options.fetch_wait_ms_max, options.fetch_bytes_max);
            glommio::spawn_local(async move {
                let result = shared.client.fetch(wait, 1, bytes_max, partitions).await;
                // A cluster's leader moved (or its node is gone): learn the new leaders before
                // the next fetch, after a pause so a leaderless partition is not spun on.
                let moved = match &result {
                    Ok(results) => results.iter().any(|r| ClientError::broker(r.error, "").is_retriable()),
                    Err(e) => e.is_retriable(),
                };
                if moved {
                    glommio::timer::sleep(Duration::from_millis(LEADER_MOVED_PAUSE_MS)).await;
                    if let Err(error) = shared.client.refresh_metadata().await {
                        tracing::debug!(%error, "metadata refresh after a moved leader failed");
                    }
                }
                shared.outcomes.borrow_mut().push_back(FetchOutcome { epoch, requested, result });
                shared.arrived.notify(usize::MAX);
            })
            .detach();
        }
        launched
    }

    /// Turns every finished fetch into records and new positions.
    fn take_outcomes(&self) -> Result<Vec<ConsumerRecord>, ClientError> {
        let outcomes: Vec<FetchOutcome> = self.shared.outcomes.borrow_mut().drain(..).collect();
        let mut records = Vec::new();
        let mut first_error = None;
        let mut state = self.state.borrow_mut();
        for outcome in outcomes {
            if outcome.epoch != state.epoch {
                continue; // Fetched under an older assignment; its partitions were cleared.
            }
            for (tp, _) in &outcome.requested {
                state.in_flight.remove(tp);
            }
            let results = match outcome.result {
                Ok(results) => results,
                // Transient: the fetch task refreshed the metadata; the next poll fetches again.
                Err(error) if error.is_retriable() => continue,
                Err(error) => {
                    first_error.get_or_insert(error);
                    continue;
                }
            };
            for ((tp, offset), result) in outcome.requested.into_iter().zip(results) {
                if state.positions.get(&tp) != Some(&offset) {
                    continue; // Seeked meanwhile.
                }
                match result.error {
                    ErrorCode::None => match decode_records(&tp, offset, &result, &mut records) {
                        Ok(next) => {
                            state.positions.insert(tp, next);
                        }
                        Err(error) => {
                            first_error.get_or_insert(error);
                        }
                    },
                    ErrorCode::OffsetOutOfRange => {
                        tracing::info!(topic = %tp.0, partition = tp.1, offset, start = result.log_start_offset,
                            end = result.log_end_offset, "offset out of range; resetting");
                        state.positions.remove(&tp);
                        state.floors.remove(&tp);
                        state.reset.insert(tp);
                    }
                    // Transient: the next poll fetches again (after a metadata refresh when the
                    // leader moved).
                    code if code == ErrorCode::RequestTimedOut || ClientError::broker(code, "").is_retriable() => {}
                    code => {
                        first_error.get_or_insert(ClientError::broker(code, format!("{}-{}", tp.0, tp.1)));
                    }
                }
            }
        }
        match first_error {
            // Records already taken are not lost: positions moved past them, so return them
            // and report the error on the next poll only if it persists.
            Some(error) if records.is_empty() => Err(error),
            Some(error) => {
                tracing::warn!(%error, "fetch failed for some partitions");
                Ok(records)
            }
            None => Ok(records),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.heartbeat.get_mut().take();
    }
}

/// Appends the records at or after `offset` of one partition's fetch result; returns the new
/// position.
fn decode_records(
    tp: &Tp,
    offset: u64,
    result: &FetchPartitionResult,
    out: &mut Vec<ConsumerRecord>,
) -> Result<u64, ClientError> {
    if result.records.is_empty() {
        return Ok(offset.max(result.next_offset));
    }
    let corrupt = |e: BatchError| {
        ClientError::broker(ErrorCode::CorruptStoredData, format!("{}-{} at offset {offset}: {e}", tp.0, tp.1))
    };
    let mut position = offset;
    for batch in batch_runs(&result.records).into_iter().flat_map(split_batches) {
        let batch = batch.map_err(corrupt)?;
        let next = u64::try_from(batch.last_offset().saturating_add(1)).unwrap_or(0);
        if batch.header().is_control() {
            position = position.max(next);
            continue;
        }
        for record in batch.records() {
            let record = match record {
                Ok(record) => record,
                Err(BatchError::Compressed) => {
                    tracing::warn!(topic = %tp.0, partition = tp.1, base_offset = batch.base_offset(),
                        "skipping a compressed batch (this client reads uncompressed batches only)");
                    break;
                }
                Err(e) => return Err(corrupt(e)),
            };
            let Ok(record_offset) = u64::try_from(record.offset) else { continue };
            if record_offset < offset {
                continue; // The fetch started inside this batch.
            }
            out.push(ConsumerRecord {
                topic: tp.0.clone(),
                partition: tp.1,
                offset: record_offset,
                timestamp: record.timestamp,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
        }
        position = position.max(next);
    }
    Ok(position)
}

/// The fetched chunks as runs of whole batches, in order: a run ends where a chunk ends on a
/// batch boundary, so a chunk holding whole batches is used as it is and only chunks that a
/// batch spans (the broker may send a rewritten head and the stored body apart) are copied
/// into one buffer. Splitting each run gives exactly the batches of the chunks joined: where
/// the walk cannot tell (a length field cut by a chunk end, a bad length) everything from
/// there on is one joined run, and `split_batches` reports or stops as it would have.
/// (Joining every fetch was a visible copy in consumer profiles: docs/benchmarks.md.)
fn batch_runs(chunks: &[Bytes]) -> Vec<Bytes> {
    fn join(chunks: &[Bytes]) -> Bytes {
        match chunks {
            [one] => one.clone(),
            many => {
                let mut all = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                for chunk in many {
                    all.extend_from_slice(chunk);
                }
                all.freeze()
            }
        }
    }
    let mut runs = Vec::new();
    let mut run_first = 0; // index of the current run's first chunk
    let mut chunk_start = 0usize; // offset of chunk i in the joined stream
    let mut next_batch = 0usize; // offset of the next batch's start in the joined stream
    for (i, chunk) in chunks.iter().enumerate() {
        let chunk_end = chunk_start + chunk.len();
        while next_batch >= chunk_start && next_batch < chunk_end {
            match format::batch::peek_batch_size(&chunk[next_batch - chunk_start..]) {
                Ok(Some(size_bytes)) if size_bytes > 0 => next_batch += size_bytes,
                _ => {
                    runs.push(join(&chunks[run_first..]));
                    return runs;
                }
            }
        }
        if next_batch == chunk_end {
            runs.push(join(&chunks[run_first..=i]));
            run_first = i + 1;
        }
        chunk_start = chunk_end;
    }
    if run_first < chunks.len() {
        runs.push(join(&chunks[run_first..])); // ends inside a batch: a partial batch at the end
    }
    runs
}

async fn heartbeat_loop(shared: Rc<Shared>) {
    let Some(group) = shared.options.group.clone() else {
        return;
    };
    let interval = Duration::from_millis(shared.options.heartbeat_interval_ms.max(1));
    loop {
        glommio::timer::sleep(interval).await;
        if shared.rejoin.get() {
            continue; // `poll` rejoins; heartbeats resume with the new generation.
        }
        let generation = shared.generation.get();
        let member_id = shared.member_id.borrow().clone();
        let result = shared.client.heartbeat(&group, generation, &member_id).await;
        if shared.generation.get() != generation {
            continue; // Rejoined while this heartbeat was in flight.
        }
        match result.as_ref().map_err(ClientError::code) {
            Ok(()) => {}
            Err(Some(ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId)) => {
                tracing::debug!(%group, generation, "group changed; rejoining");
                shared.rejoin.set(true);
                shared.arrived.notify(usize::MAX);
            }
            Err(_) => {
                if let Err(error) = result {
                    tracing::warn!(%group, %error, "heartbeat failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use format::batch::BatchBuilder;

    fn fetched(base_offset: i64, values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new().base_offset(base_offset);
        for v in values {
            b.push(Some(b"k"), Some(v.as_bytes()), 1_000, &[]);
        }
        b.build().unwrap()
    }

    fn result(chunks: Vec<Bytes>, next_offset: u64) -> FetchPartitionResult {
        FetchPartitionResult {
            topic: "t".into(),
            partition: 0,
            error: ErrorCode::None,
            log_start_offset: 0,
            log_end_offset: next_offset,
            next_offset,
            records: chunks,
        }
    }

    #[test]
    fn records_before_the_position_are_skipped_and_chunks_are_joined() {
        let tp: Tp = (Rc::from("t"), 0);
        let first = fetched(10, &["a", "b", "c"]);
        let second = fetched(13, &["d"]);
        // The head of the second batch arrives as its own chunk.
        let chunks = vec![first, second.slice(..16), second.slice(16..)];
        let mut out = Vec::new();
        let next = decode_records(&tp, 11, &result(chunks, 14), &mut out).unwrap();
        assert_eq!(next, 14);
        let got: Vec<(u64, &[u8])> = out.iter().map(|r| (r.offset, r.value.as_deref().unwrap())).collect();
        assert_eq!(got, vec![(11, &b"b"[..]), (12, b"c"), (13, b"d")]);
        assert_eq!(&*out[0].topic, "t");
        assert_eq!(out[0].timestamp, 1_000);
    }

    #[test]
    fn chunks_are_copied_only_where_a_batch_spans_them() {
        let (a, b, c) = (fetched(0, &["a"]), fetched(1, &["b", "b2"]), fetched(3, &["c"]));
        // Whole batches per chunk: used as they are (same memory, no copy).
        let whole = batch_runs(&[a.clone(), b.clone()]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].as_ptr(), a.as_ptr());
        // b split across two chunks: only those two are joined.
        let split = batch_runs(&[a.clone(), b.slice(..20), b.slice(20..), c.clone()]);
        assert_eq!(split.iter().map(Bytes::len).collect::<Vec<_>>(), vec![a.len(), b.len(), c.len()]);
        assert_eq!(split[1], b);
        // A length field cut by a chunk end, and a partial batch at the end: joined from there.
        let cut = batch_runs(&[a.clone(), b.slice(..5), b.slice(5..), c.slice(..30)]);
        let mut tail = b.to_vec();
        tail.extend_from_slice(&c[..30]);
        assert_eq!(cut, vec![a.clone(), Bytes::from(tail)]);
        // Every split decodes to the same records as the joined stream.
        let tp: Tp = (Rc::from("t"), 0);
        let joined = [a.clone(), b.clone(), c.clone()].concat();
        let (mut one, mut many) = (Vec::new(), Vec::new());
        let n1 = decode_records(&tp, 0, &result(vec![Bytes::from(joined)], 4), &mut one).unwrap();
        let chunks = vec![a.slice(..3), a.slice(3..), b, c.slice(..40), c.slice(40..)];
        let n2 = decode_records(&tp, 0, &result(chunks, 4), &mut many).unwrap();
        assert_eq!((n1, one.len()), (n2, many.len()));
        assert_eq!(one, many);
    }

    #[test]
    fn empty_fetch_keeps_or_advances_the_position() {
        let tp: Tp = (Rc::from("t"), 0);
        let mut out = Vec::new();
        assert_eq!(decode_records(&tp, 5, &result(Vec::new(), 5), &mut out).unwrap(), 5);
        assert!(out.is_empty());
    }

    #[test]
    fn corrupt_fetch_is_an_error() {
        let tp: Tp = (Rc::from("t"), 0);
        let mut bad = fetched(0, &["a"]).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let mut out = Vec::new();
        let error = decode_records(&tp, 0, &result(vec![Bytes::from(bad)], 1), &mut out).unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::CorruptStoredData));
    }
}
