//! Idempotent producers: InitProducerId hands out producer ids, and each partition's owning
//! shard checks every batch's (producer id, epoch, base sequence) before appending, as Kafka
//! does: a retried batch that was already appended is acknowledged with its original offset
//! and not appended again; a batch whose sequence is not the next one gets
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch gets INVALID_PRODUCER_EPOCH.
//!
//! The check and the append are ordered: the sequence is reserved before the append starts
//! (the log appends in call order), released if the append fails.
//!
//! State lives in memory and is rebuilt, as Kafka does, from the batch headers of the log:
//! the first idempotent produce to a partition after it was opened scans its last
//! `PRODUCER_SCAN_OFFSETS` offsets (at most `PRODUCER_SCAN_BYTES_MAX` bytes), so a retry of a
//! batch appended just before a restart is still recognised. A producer whose last batch is
//! older than that window is unknown, and its next batch is accepted whatever its sequence.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::codes;
use crate::shard::now_ms;

/// Batches remembered per (producer, partition) for duplicate detection (Kafka keeps 5,
/// matching max.in.flight.requests.per.connection ≤ 5 for idempotent producers).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Producer states one shard keeps; past this the least recently used is forgotten (its
/// next batch is then accepted whatever its sequence).
pub const PRODUCER_STATES_PER_SHARD_MAX: usize = 100_000;

/// How far back from the log end a partition is scanned for producer state on first use.
pub const PRODUCER_SCAN_OFFSETS: u64 = 16_384;

/// Most bytes that scan reads.
pub const PRODUCER_SCAN_BYTES_MAX: u64 = 16 << 20;

/// Producer ids carry the allocating shard in their low bits, so shards never collide.
const PRODUCER_ID_SHARD_BITS: u32 = 8;
const _: () = assert!(crate::limits::SHARDS_MAX <= 1 << PRODUCER_ID_SHARD_BITS);

type Key = (String, u32, i64);

struct BatchMeta {
    ticket: u64,
    first_sequence: i32,
    last_sequence: i32,
    /// `None` while the append is in flight.
    base_offset: Option<i64>,
}

struct ProducerState {
    epoch: i16,
    /// Last sequence accepted; `None` for a producer first seen after a restart or eviction.
    last_sequence: Option<i32>,
    recent: VecDeque<BatchMeta>,
    last_used_ms: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Append it, then `complete` (or `abort`) the ticket.
    Append(Ticket),
    /// Already appended at this base offset: acknowledge without appending.
    Duplicate { base_offset: i64 },
    /// Answer with this Kafka error.
    Reject(i16),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    key: Key,
    id: u64,
    last_sequence_before: Option<i32>,
}

pub struct ProducerStates {
    shard_id: usize,
    /// Counter for producer ids, started from the wall clock so ids are not reused after a
    /// restart (unless more than one id per millisecond was handed out before it).
    next_producer: Cell<i64>,
    next_ticket: Cell<u64>,
    states: RefCell<HashMap<Key, ProducerState>>,
    /// Partitions whose tail was scanned for producer state since they were opened.
    scanned: RefCell<std::collections::HashSet<(String, u32)>>,
    /// Idempotent batches are checked one at a time, so a batch that waits for a scan is not
    /// overtaken by another batch's check. (glommio's semaphore is not strictly FIFO; batches
    /// of one connection reach it in order because they hold their turns, `order.rs`.)
    pub gate: glommio::sync::Semaphore,
}

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
pub fn sequence_add(sequence: i32, delta: i32) -> i32 {
    debug_assert!(sequence >= 0 && delta >= 0);
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

impl ProducerStates {
    pub fn new(shard_id: usize) -> ProducerStates {
        assert!(shard_id < 1 << PRODUCER_ID_SHARD_BITS);
        ProducerStates {
            shard_id,
            next_producer: Cell::new(now_ms().max(0)),
            next_ticket: Cell::new(0),
            states: RefCell::new(HashMap::new()),
            scanned: RefCell::new(std::collections::HashSet::new()),
            gate: glommio::sync::Semaphore::new(1),
        }
    }

    pub fn is_scanned(&self, topic: &str, partition: u32) -> bool {
        self.scanned.borrow().contains(&(topic.to_owned(), partition))
    }

    pub fn mark_scanned(&self, topic: &str, partition: u32) {
        self.scanned.borrow_mut().insert((topic.to_owned(), partition));
    }

    /// Learns from a batch found in the log at `base_offset` (rebuilding state after a
    /// restart). Batches already known (a scan racing an append) change nothing.
    pub fn learn(&self, topic: &str, partition: u32, header: &engine::batch::BatchHeader, base_offset: i64) {
        if header.producer_id < 0 || header.base_sequence < 0 || header.records_count < 1 {
            return;
        }
        let key: Key = (topic.to_owned(), partition, header.producer_id);
        let mut states = self.states.borrow_mut();
        if !states.contains_key(&key) && states.len() >= PRODUCER_STATES_PER_SHARD_MAX {
            evict_oldest(&mut states);
        }
        let state = states.entry(key).or_insert_with(|| ProducerState {
            epoch: header.producer_epoch,
            last_sequence: None,
            recent: VecDeque::with_capacity(PRODUCER_BATCHES_REMEMBERED),
            last_used_ms: now_ms(),
        });
        let newest = state.recent.iter().filter_map(|b| b.base_offset).max();
        if header.producer_epoch < state.epoch || newest.is_some_and(|o| base_offset <= o) {
            return;
        }
        if header.producer_epoch > state.epoch {
            state.epoch = header.producer_epoch;
            state.recent.clear();
        }
        let last_sequence = sequence_add(header.base_sequence, header.records_count - 1);
        state.last_sequence = Some(last_sequence);
        if state.recent.len() == PRODUCER_BATCHES_REMEMBERED {
            state.recent.pop_front();
        }
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        state.recent.push_back(BatchMeta {
            ticket,
            first_sequence: header.base_sequence,
            last_sequence,
            base_offset: Some(base_offset),
        });
    }

    /// InitProducerId: a new producer id (epoch 0), or the same id with the next epoch when
    /// the client asks to bump its own (KIP-360). Transactions are not supported.
    pub fn init_producer_id(&self, request: InitProducerIdRequest) -> InitProducerIdResponse {
        let response = InitProducerIdResponse::default();
        if request.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
            return response
                .with_error_code(codes::INVALID_REQUEST)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        if request.producer_id.0 >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX {
            return response.with_producer_id(request.producer_id).with_producer_epoch(request.producer_epoch + 1);
        }
        let n = self.next_producer.get();
        self.next_producer.set(n + 1);
        let id = (n << PRODUCER_ID_SHARD_BITS) | self.shard_id as i64;
        debug_assert!(id >= 0);
        response.with_producer_id(ProducerId(id)).with_producer_epoch(0)
    }

    /// Checks a batch of `records_count` records from `producer_id` and, if it is to be
    /// appended, reserves its sequences.
    pub fn check(
        &self,
        topic: &str,
        partition: u32,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        records_count: i32,
    ) -> Decision {
        if first_sequence < 0 || records_count < 1 || epoch < 0 {
            return Decision::Reject(codes::INVALID_RECORD);
        }
        let last_sequence = sequence_add(first_sequence, records_count - 1);
        let key: Key = (topic.to_owned(), partition, producer_id);
        let mut states = self.states.borrow_mut();
        if !states.contains_key(&key) && states.len() >= PRODUCER_STATES_PER_SHARD_MAX {
            evict_oldest(&mut states);
        }
        let state = states.entry(key.clone()).or_insert_with(|| ProducerState {
            epoch,
            last_sequence: None,
            recent: VecDeque::with_capacity(PRODUCER_BATCHES_REMEMBERED),
            last_used_ms: 0,
        });
        state.last_used_ms = now_ms();
        if epoch < state.epoch {
            return Decision::Reject(codes::INVALID_PRODUCER_EPOCH);
        }
        if epoch > state.epoch {
            // A new epoch starts its sequences at 0.
            if first_sequence != 0 {
                return Decision::Reject(codes::OUT_OF_ORDER_SEQUENCE_NUMBER);
            }
            state.epoch = epoch;
            state.last_sequence = None;
            state.recent.clear();
        }
        if let Some(seen) =
            state.recent.iter().find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return match seen.base_offset {
                Some(base_offset) => Decision::Duplicate { base_offset },
                // The first copy is still being appended: the client retries later.
                None => Decision::Reject(codes::DUPLICATE_SEQUENCE_NUMBER),
            };
        }
        if let Some(last) = state.last_sequence {
            if first_sequence != sequence_add(last, 1) {
                return Decision::Reject(codes::OUT_OF_ORDER_SEQUENCE_NUMBER);
            }
        }
        let id = self.next_ticket.get();
        self.next_ticket.set(id + 1);
        let ticket = Ticket { key, id, last_sequence_before: state.last_sequence };
        state.last_sequence = Some(last_sequence);
        if state.recent.len() == PRODUCER_BATCHES_REMEMBERED {
            state.recent.pop_front();
        }
        state.recent.push_back(BatchMeta { ticket: id, first_sequence, last_sequence, base_offset: None });
        Decision::Append(ticket)
    }

    /// The batch of `ticket` was appended at `base_offset`.
    pub fn complete(&self, ticket: Ticket, base_offset: i64) {
        let mut states = self.states.borrow_mut();
        if let Some(state) = states.get_mut(&ticket.key) {
            if let Some(meta) = state.recent.iter_mut().find(|b| b.ticket == ticket.id) {
                meta.base_offset = Some(base_offset);
            }
        }
    }

    /// The batch of `ticket` was not appended: release its sequences so the retry is taken.
    pub fn abort(&self, ticket: Ticket) {
        let mut states = self.states.borrow_mut();
        let Some(state) = states.get_mut(&ticket.key) else {
            return;
        };
        if let Some(i) = state.recent.iter().position(|b| b.ticket == ticket.id) {
            let removed = state.recent.remove(i);
            // Only roll back if nothing was reserved after it.
            if removed.is_some_and(|b| Some(b.last_sequence) == state.last_sequence) {
                state.last_sequence = ticket.last_sequence_before;
            }
        }
    }
}

fn evict_oldest(states: &mut HashMap<Key, ProducerState>) {
    let oldest = states.iter().min_by_key(|(_, s)| s.last_used_ms).map(|(k, _)| k.clone());
    if let Some(key) = oldest {
        states.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(states: &ProducerStates, epoch: i16, first: i32, count: i32, offset: i64) {
        match states.check("t", 0, 7, epoch, first, count) {
            Decision::Append(ticket) => states.complete(ticket, offset),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicates_are_acknowledged_with_the_original_offset() {
        let states = ProducerStates::new(1);
        append(&states, 0, 0, 3, 100);
        append(&states, 0, 3, 2, 103);
        assert_eq!(states.check("t", 0, 7, 0, 0, 3), Decision::Duplicate { base_offset: 100 });
        assert_eq!(states.check("t", 0, 7, 0, 3, 2), Decision::Duplicate { base_offset: 103 });
        // A gap is out of order; a sequence from the past that was not a batch start, too.
        assert_eq!(states.check("t", 0, 7, 0, 6, 1), Decision::Reject(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(states.check("t", 0, 7, 0, 1, 1), Decision::Reject(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
        append(&states, 0, 5, 1, 105);
        // Other partitions and producers are independent.
        assert!(matches!(states.check("t", 1, 7, 0, 9, 1), Decision::Append(_)));
        assert!(matches!(states.check("t", 0, 8, 0, 42, 1), Decision::Append(_)));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let states = ProducerStates::new(0);
        append(&states, 1, 0, 1, 0);
        assert_eq!(states.check("t", 0, 7, 0, 1, 1), Decision::Reject(codes::INVALID_PRODUCER_EPOCH));
        assert_eq!(states.check("t", 0, 7, 2, 5, 1), Decision::Reject(codes::OUT_OF_ORDER_SEQUENCE_NUMBER));
        append(&states, 2, 0, 1, 1);
    }

    #[test]
    fn a_failed_append_releases_its_sequences_and_pending_duplicates_wait() {
        let states = ProducerStates::new(0);
        let Decision::Append(ticket) = states.check("t", 0, 7, 0, 0, 2) else { panic!() };
        assert_eq!(states.check("t", 0, 7, 0, 0, 2), Decision::Reject(codes::DUPLICATE_SEQUENCE_NUMBER));
        states.abort(ticket);
        append(&states, 0, 0, 2, 10);
        append(&states, 0, 2, 1, 12);
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(i32::MAX - 1, 3), 1);
        let states = ProducerStates::new(0);
        append(&states, 0, i32::MAX - 1, 2, 0);
        append(&states, 0, 0, 1, 2);
    }

    #[test]
    fn producer_ids_are_distinct_per_shard_and_epochs_bump() {
        let a =
            ProducerStates::new(0).init_producer_id(InitProducerIdRequest::default().with_producer_id(ProducerId(-1)));
        let b =
            ProducerStates::new(1).init_producer_id(InitProducerIdRequest::default().with_producer_id(ProducerId(-1)));
        assert_ne!(a.producer_id, b.producer_id);
        assert_eq!((a.error_code, a.producer_epoch), (0, 0));
        let bumped = ProducerStates::new(0)
            .init_producer_id(InitProducerIdRequest::default().with_producer_id(a.producer_id).with_producer_epoch(0));
        assert_eq!((bumped.producer_id, bumped.producer_epoch), (a.producer_id, 1));
    }
}
