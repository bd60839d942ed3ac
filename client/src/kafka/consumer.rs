//! A Kafka consumer with static assignment (member m of n in a group reads every
//! n-th partition of the group's topics, counted over topics then partitions), start offsets
//! from ListOffsets, then one fetch task per leader broker that long-polls (Fetch,
//! `FETCH_WAIT_MS_MAX`) for all of that broker's partitions and queues what arrives. `poll`
//! takes what is queued, waiting briefly when nothing is. Kafka's group protocol
//! (JoinGroup/SyncGroup/Heartbeat) is not used: the load generator fixes membership for a
//! run, so no rebalance can happen, and offsets are not committed (positions live here).
//!
//! Each record is handed to the consumer's `map` as it is taken out of its batch, and the
//! consumer queues what `map` returns: a caller that needs only a record's size and a header
//! keeps no record bytes alive.
//!
//! Bounds: a fetch task stops fetching while `BUFFERED_RECORDS_MAX` records wait to be
//! polled; a fetch asks for at most `FETCH_BYTES_MAX` (1 MiB per partition). Fetched
//! batches are validated (framing, CRC, every record) before a record is handed out.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use format::batch::{split_batches, Record};
use glommio::Task;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;

use super::cluster::{topic_name, Cluster, OFFSET_EARLIEST, OFFSET_LATEST, REQUEST_TIMEOUT};
use super::error::{codes, KafkaError};

/// How long a fetch waits on the broker for data (the native driver's value).
pub const FETCH_WAIT_MS_MAX: i32 = 100;
/// Bytes per fetch and per partition in a fetch: the native consumer's defaults.
pub const FETCH_BYTES_MAX: i32 = 16 << 20;
pub const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
/// Records fetched and not yet polled, per consumer, before fetch tasks pause.
pub const BUFFERED_RECORDS_MAX: usize = 1 << 16;
/// Errors kept for `poll` to report; later ones are counted in the last.
const ERRORS_KEPT_MAX: usize = 16;
/// After a failed fetch, wait this long: a broken broker must not become a busy loop.
const FETCH_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Which partitions a consumer reads and where it starts.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub topics: Vec<String>,
    /// This member's index in its group, and the group's size.
    pub member: usize,
    pub members: usize,
    pub from_beginning: bool,
}

/// What a consumer keeps of each record.
pub type RecordMap<T> = Rc<dyn Fn(&Record) -> T>;

struct Shared<T> {
    cluster: Rc<Cluster>,
    map: RecordMap<T>,
    buffer: RefCell<VecDeque<T>>,
    errors: RefCell<VecDeque<String>>,
    /// A fetch task queued records or an error.
    arrived: event_listener::Event,
    /// `poll` took records: paused fetch tasks may go on.
    drained: event_listener::Event,
}

impl<T> Shared<T> {
    fn error(&self, error: String) {
        let mut errors = self.errors.borrow_mut();
        if errors.len() < ERRORS_KEPT_MAX {
            errors.push_back(error);
        }
        drop(errors);
        self.arrived.notify(usize::MAX);
    }
}

pub struct KafkaConsumer<T> {
    shared: Rc<Shared<T>>,
    assignment: Assignment,
    started: Cell<bool>,
    fetchers: RefCell<Vec<Task<()>>>,
}

impl<T: 'static> KafkaConsumer<T> {
    /// A consumer of `assignment` that queues `map(record)` for every record it reads.
    pub fn new(cluster: Rc<Cluster>, assignment: Assignment, map: RecordMap<T>) -> KafkaConsumer<T> {
        assert!(assignment.member < assignment.members.max(1));
        let shared = Rc::new(Shared {
            cluster,
            map,
            buffer: RefCell::new(VecDeque::new()),
            errors: RefCell::new(VecDeque::new()),
            arrived: event_listener::Event::new(),
            drained: event_listener::Event::new(),
        });
        KafkaConsumer { shared, assignment, started: Cell::new(false), fetchers: RefCell::new(Vec::new()) }
    }

    /// Moves the records that arrived into `out`, waiting up to the fetch wait for some.
    pub async fn poll(&self, out: &mut Vec<T>) -> Result<(), KafkaError> {
        if !self.started.get() {
            self.start().await?;
            self.started.set(true);
        }
        let shared = &self.shared;
        if shared.buffer.borrow().is_empty() && shared.errors.borrow().is_empty() {
            let arrived = shared.arrived.listen();
            if shared.buffer.borrow().is_empty() && shared.errors.borrow().is_empty() {
                let wait = glommio::timer::sleep(Duration::from_millis(FETCH_WAIT_MS_MAX as u64));
                futures_lite::future::or(arrived, wait).await;
            }
        }
        if let Some(error) = shared.errors.borrow_mut().pop_front() {
            return Err(KafkaError::Metadata(error));
        }
        out.extend(shared.buffer.borrow_mut().drain(..));
        shared.drained.notify(usize::MAX);
        Ok(())
    }

    /// Stops the fetch tasks.
    pub fn close(&self) {
        self.fetchers.borrow_mut().clear();
    }

    /// Assigns partitions, asks their leaders for the start offsets, starts a fetch task per
    /// leader.
    async fn start(&self) -> Result<(), KafkaError> {
        let a = &self.assignment;
        let cluster = &self.shared.cluster;
        let mut by_node: HashMap<i32, Vec<Position>> = HashMap::new();
        let mut index = 0usize;
        for topic in &a.topics {
            let leaders = cluster.leaders(topic).await?;
            let topic: Rc<str> = Rc::from(topic.as_str());
            let mut mine: HashMap<i32, Vec<u32>> = HashMap::new();
            for (partition, &node) in leaders.iter().enumerate() {
                if index % a.members.max(1) == a.member {
                    mine.entry(node).or_default().push(partition as u32);
                }
                index += 1;
            }
            let at = if a.from_beginning { OFFSET_EARLIEST } else { OFFSET_LATEST };
            for (node, partitions) in mine {
                for (partition, offset) in cluster.list_offsets(node, &topic, &partitions, at).await? {
                    by_node.entry(node).or_default().push(Position { topic: topic.clone(), partition, offset });
                }
            }
        }
        let mut fetchers = self.fetchers.borrow_mut();
        for (node, positions) in by_node {
            fetchers.push(glommio::spawn_local(fetch_loop(self.shared.clone(), node, positions)));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Position {
    topic: Rc<str>,
    partition: u32,
    /// The next offset to read.
    offset: i64,
}

async fn fetch_loop<T>(shared: Rc<Shared<T>>, node: i32, mut positions: Vec<Position>) {
    let version = shared.cluster.versions.fetch;
    let timeout = REQUEST_TIMEOUT + Duration::from_millis(FETCH_WAIT_MS_MAX as u64);
    loop {
        loop {
            let drained = shared.drained.listen();
            if shared.buffer.borrow().len() < BUFFERED_RECORDS_MAX {
                break;
            }
            drained.await;
        }
        let request = fetch_request(&positions);
        let result =
            async { shared.cluster.connection(node).await?.call_with_timeout(&request, version, timeout).await };
        match result.await {
            Ok(answer) if answer.error_code != codes::NONE => {
                shared.error(KafkaError::broker(answer.error_code, format!("fetch from broker {node}")).to_string());
                glommio::timer::sleep(FETCH_ERROR_PAUSE).await;
            }
            Ok(answer) => {
                let mut received = 0usize;
                let mut failed = false;
                for topic in answer.responses {
                    for p in topic.partitions {
                        let Some(position) = positions
                            .iter_mut()
                            .find(|q| q.partition as i32 == p.partition_index && *q.topic == *topic.topic.0.as_str())
                        else {
                            continue;
                        };
                        if p.error_code != codes::NONE {
                            let what = format!("fetch {}-{}", position.topic, position.partition);
                            shared.error(KafkaError::broker(p.error_code, what).to_string());
                            failed = true;
                            continue;
                        }
                        let taken = take_records(
                            p.records.unwrap_or_default(),
                            position,
                            &*shared.map,
                            &mut shared.buffer.borrow_mut(),
                        );
                        match taken {
                            Ok(n) => received += n,
                            Err(reason) => {
                                shared.error(reason);
                                failed = true;
                            }
                        }
                    }
                }
                if received > 0 {
                    shared.arrived.notify(usize::MAX);
                }
                if failed {
                    glommio::timer::sleep(FETCH_ERROR_PAUSE).await;
                }
            }
            Err(error) => {
                shared.error(error.to_string());
                glommio::timer::sleep(FETCH_ERROR_PAUSE).await;
            }
        }
    }
}

fn fetch_request(positions: &[Position]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for p in positions {
        let partition = FetchPartition::default()
            .with_partition(p.partition as i32)
            .with_fetch_offset(p.offset)
            .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == &*p.topic) {
            Some(t) => t.partitions.push(partition),
            None => {
                topics.push(FetchTopic::default().with_topic(topic_name(&p.topic)).with_partitions(vec![partition]))
            }
        }
    }
    FetchRequest::default()
        .with_max_wait_ms(FETCH_WAIT_MS_MAX)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_topics(topics)
}

/// Validates the fetched batches, queues the records at or past the position, and moves the
/// position past the last whole batch. A partial batch at the end is fetched again next time.
fn take_records<T>(
    records: bytes::Bytes,
    position: &mut Position,
    map: &dyn Fn(&Record) -> T,
    out: &mut VecDeque<T>,
) -> Result<usize, String> {
    let mut taken = 0;
    for batch in split_batches(records) {
        let batch = batch.map_err(|e| format!("{}-{}: corrupt batch: {e}", position.topic, position.partition))?;
        for record in batch.records() {
            let record = record.map_err(|e| format!("{}-{}: bad record: {e}", position.topic, position.partition))?;
            if record.offset < position.offset {
                continue; // Kafka may answer from the start of the batch holding the offset.
            }
            out.push_back(map(&record));
            taken += 1;
        }
        position.offset = position.offset.max(batch.last_offset() + 1);
    }
    Ok(taken)
}
