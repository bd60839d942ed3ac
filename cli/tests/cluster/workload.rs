//! The workload driver: loops that produce unique values, read partitions forward, and commit
//! and fetch group offsets, recording every operation in a [`History`]. They take the client
//! as a trait ([`ProduceOne`], [`ReadFrom`], [`GroupOffsets`]; closures fit through
//! [`ProduceFn`] and [`ReadFn`]), so one workload runs on the native client, the Kafka client
//! ([`super::clients`]) or anything else.
//!
//! The loops are futures for a glommio executor (the clients are `!Send`): run several on one
//! executor (`glommio::spawn_local`, `futures_lite::future::zip`), on several executors
//! (`super::on_executor` each), all sharing one `Arc<History>` and one stop flag. Each loop is one Jepsen process: one operation in
//! flight at a time, each operation bounded by the loop's `op_timeout` (a timeout is `Info`).
//! Values are `c{client}-{seq}`, unique per run as long as client ids are.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checker::FinalLog;
use super::history::{History, Op, ProcessId, Ret};
use super::within;

/// Pause after a failed or unknown operation, so a loop does not spin on a fault.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// A client call's answer: done, certainly not done, or unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Ok(T),
    Fail(String),
    Unknown(String),
}

/// Sends one value and waits for its acknowledgement.
pub trait ProduceOne {
    /// `Ok(offset)`: acknowledged (the offset if the client reports one).
    fn produce(&self, topic: &str, partition: u32, value: &str) -> impl Future<Output = Answer<Option<u64>>>;

    /// The producer stores each value at most once however it retries (an idempotent Kafka
    /// producer); the checker then allows no duplicate at all.
    fn idempotent(&self) -> bool {
        false
    }
}

/// Records of a partition from an offset on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// (offset, value), in the order the broker returned them.
    pub records: Vec<(u64, String)>,
    pub high_watermark: u64,
}

/// Reads a partition from an offset (possibly nothing yet; may wait briefly for data).
pub trait ReadFrom {
    fn read(&self, topic: &str, partition: u32, offset: u64) -> impl Future<Output = Result<Fetched, String>>;
}

/// A group's committed offsets.
pub trait GroupOffsets {
    fn commit(&self, group: &str, topic: &str, partition: u32, offset: u64) -> impl Future<Output = Answer<()>>;
    /// `Ok(None)`: nothing committed.
    fn fetch(&self, group: &str, topic: &str, partition: u32) -> impl Future<Output = Answer<Option<u64>>>;
}

/// A closure `(topic, partition, value) -> future of Answer<Option<u64>>` as a [`ProduceOne`].
pub struct ProduceFn<F>(pub F);

impl<F, Fut> ProduceOne for ProduceFn<F>
where
    F: Fn(String, u32, String) -> Fut,
    Fut: Future<Output = Answer<Option<u64>>>,
{
    fn produce(&self, topic: &str, partition: u32, value: &str) -> impl Future<Output = Answer<Option<u64>>> {
        (self.0)(topic.to_owned(), partition, value.to_owned())
    }
}

/// A closure `(topic, partition, offset) -> future of Result<Fetched, String>` as a
/// [`ReadFrom`].
pub struct ReadFn<F>(pub F);

impl<F, Fut> ReadFrom for ReadFn<F>
where
    F: Fn(String, u32, u64) -> Fut,
    Fut: Future<Output = Result<Fetched, String>>,
{
    fn read(&self, topic: &str, partition: u32, offset: u64) -> impl Future<Output = Result<Fetched, String>> {
        (self.0)(topic.to_owned(), partition, offset)
    }
}

/// The value client `client` sends as its `seq`-th.
pub fn value_of(client: ProcessId, seq: u64) -> String {
    format!("c{client}-{seq}")
}

#[derive(Debug, Clone)]
pub struct ProduceLoop {
    pub client: ProcessId,
    pub topic: String,
    /// Values go to these partitions in turn.
    pub partitions: Vec<u32>,
    /// Stop after this many values (or when the stop flag is set).
    pub values_max: u64,
    pub op_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

/// Produces `c{client}-0`, `c{client}-1`, … one at a time until `stop` or `values_max`.
pub async fn produce_loop<P: ProduceOne>(
    producer: &P,
    history: &History,
    plan: &ProduceLoop,
    stop: &AtomicBool,
) -> LoopStats {
    assert!(!plan.partitions.is_empty());
    let mut stats = LoopStats::default();
    for seq in 0..plan.values_max {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let partition = plan.partitions[(seq % plan.partitions.len() as u64) as usize];
        let value = value_of(plan.client, seq);
        let op = Op::Produce {
            topic: plan.topic.clone(),
            partition,
            value: value.clone(),
            idempotent: producer.idempotent(),
        };
        let id = history.invoke(plan.client, op);
        let answer = within(plan.op_timeout, producer.produce(&plan.topic, partition, &value)).await;
        let acknowledged = matches!(answer, Some(Answer::Ok(_)));
        match answer {
            Some(Answer::Ok(offset)) => {
                history.ok(id, Ret::Produced { offset });
                stats.ok += 1;
            }
            Some(Answer::Fail(reason)) => {
                history.fail(id, reason);
                stats.failed += 1;
            }
            Some(Answer::Unknown(reason)) => {
                history.info(id, reason);
                stats.unknown += 1;
            }
            None => {
                history.info(id, format!("no answer within {:?}", plan.op_timeout));
                stats.unknown += 1;
            }
        }
        if !acknowledged {
            // A fault, or not up yet: do not spin.
            glommio::timer::sleep(RETRY_PAUSE).await;
        }
    }
    stats
}

#[derive(Debug, Clone)]
pub struct ReadLoop {
    pub client: ProcessId,
    pub topic: String,
    pub partitions: Vec<u32>,
    pub op_timeout: Duration,
    /// Pause after an empty or failed read of every partition.
    pub idle_pause: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub records: u64,
    pub errors: u64,
}

/// Reads every partition forward from offset 0 in one session (one cursor per partition),
/// recording each record read, until `stop`. Records below the cursor (a fetch may start at
/// the beginning of the batch holding it) are skipped; the rest are recorded as returned, so
/// the checker sees it if offsets go backwards.
pub async fn read_loop<R: ReadFrom>(reader: &R, history: &History, plan: &ReadLoop, stop: &AtomicBool) -> ReadStats {
    let session = history.new_session();
    let mut positions = vec![0u64; plan.partitions.len()];
    let mut stats = ReadStats::default();
    while !stop.load(Ordering::SeqCst) {
        let mut progressed = false;
        for (i, &partition) in plan.partitions.iter().enumerate() {
            match within(plan.op_timeout, reader.read(&plan.topic, partition, positions[i])).await {
                Some(Ok(fetched)) => {
                    let from = positions[i];
                    for (offset, value) in fetched.records.iter().filter(|(o, _)| *o >= from) {
                        history.read(plan.client, session, &plan.topic, partition, *offset, value);
                        positions[i] = positions[i].max(offset + 1);
                        stats.records += 1;
                        progressed = true;
                    }
                }
                Some(Err(_)) | None => stats.errors += 1,
            }
        }
        if !progressed {
            glommio::timer::sleep(plan.idle_pause).await;
        }
    }
    stats
}

#[derive(Debug, Clone)]
pub struct CommitLoop {
    pub client: ProcessId,
    pub group: String,
    pub topic: String,
    pub partitions: Vec<u32>,
    pub op_timeout: Duration,
    /// Pause between rounds.
    pub pause: Duration,
    /// Commit (rising offsets 1, 2, 3, … per partition, then fetch back) or only fetch.
    pub commit: bool,
}

/// Round after round until `stop`: for each partition, commit the round number as its
/// offset (offsets are opaque to the group coordinator; they only have to rise), then fetch
/// the committed offset back. With `commit: false` only fetches (a second client on another
/// node, to see other nodes' commits).
pub async fn commit_loop<G: GroupOffsets>(
    offsets: &G,
    history: &History,
    plan: &CommitLoop,
    stop: &AtomicBool,
) -> LoopStats {
    let mut stats = LoopStats::default();
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        for &partition in &plan.partitions {
            if plan.commit {
                let op = Op::Commit { group: plan.group.clone(), topic: plan.topic.clone(), partition, offset: round };
                let id = history.invoke(plan.client, op);
                match within(plan.op_timeout, offsets.commit(&plan.group, &plan.topic, partition, round)).await {
                    Some(Answer::Ok(())) => {
                        history.ok(id, Ret::Committed);
                        stats.ok += 1;
                    }
                    Some(Answer::Fail(reason)) => {
                        history.fail(id, reason);
                        stats.failed += 1;
                    }
                    Some(Answer::Unknown(reason)) => {
                        history.info(id, reason);
                        stats.unknown += 1;
                    }
                    None => {
                        history.info(id, format!("no answer within {:?}", plan.op_timeout));
                        stats.unknown += 1;
                    }
                }
            }
            let op = Op::FetchOffset { group: plan.group.clone(), topic: plan.topic.clone(), partition };
            let id = history.invoke(plan.client, op);
            match within(plan.op_timeout, offsets.fetch(&plan.group, &plan.topic, partition)).await {
                Some(Answer::Ok(offset)) => history.ok(id, Ret::Fetched { offset }),
                Some(Answer::Fail(reason)) => history.fail(id, reason),
                Some(Answer::Unknown(reason)) => history.info(id, reason),
                None => history.info(id, format!("no answer within {:?}", plan.op_timeout)),
            }
        }
        glommio::timer::sleep(plan.pause).await;
    }
    stats
}

/// A stop flag shared by the loops of every executor.
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// Reads a whole partition (from offset 0 to the high watermark) into a [`FinalLog`]: run it
/// after the faults are healed and the workload stopped, on the partition's leader. Retries
/// failed or empty reads until `timeout`.
pub async fn read_final_log<R: ReadFrom>(
    reader: &R,
    topic: &str,
    partition: u32,
    timeout: Duration,
) -> Result<FinalLog, String> {
    let deadline = Instant::now() + timeout;
    let mut log = FinalLog { topic: topic.to_owned(), partition, ..FinalLog::default() };
    let mut offset = 0u64;
    let mut high_watermark: Option<u64> = None;
    let mut last_error = String::new();
    loop {
        if high_watermark.is_some_and(|hw| offset >= hw) {
            log.high_watermark = high_watermark.unwrap_or(0);
            return Ok(log);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{topic}-{partition}: read up to {offset} of high watermark {high_watermark:?} in {timeout:?}; last error: \
                 {last_error}"
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match within(left, reader.read(topic, partition, offset)).await {
            Some(Ok(fetched)) => {
                high_watermark = Some(fetched.high_watermark);
                let before = offset;
                for (at, value) in fetched.records.into_iter().filter(|(at, _)| *at >= before) {
                    if let Some(previous) = log.records.insert(at, value.clone()) {
                        return Err(format!("{topic}-{partition}@{at} read twice: {previous}, then {value}"));
                    }
                    offset = offset.max(at + 1);
                }
                if offset == before {
                    glommio::timer::sleep(RETRY_PAUSE).await;
                }
            }
            Some(Err(e)) => {
                last_error = e;
                glommio::timer::sleep(RETRY_PAUSE).await;
            }
            None => {}
        }
    }
}
