//! Idempotent producers, as Kafka checks them: each partition remembers, per producer id, its
//! epoch, its last sequence and its last few batches. A retried batch that was already
//! appended is acknowledged with its original offset and not appended again; a batch whose
//! first sequence is not the next one is refused (OUT_OF_ORDER_SEQUENCE_NUMBER); an older
//! epoch is refused (INVALID_PRODUCER_EPOCH, a zombie producer).
//!
//! The state belongs to its `Partition`, which checks and appends a producer's batch in one
//! step (under its producer lock), so a batch is recorded only once it has its offsets and
//! nothing is ever "reserved" for an append that might fail.
//!
//! It lives in memory and is rebuilt, as Kafka rebuilds it, from the batch headers of the
//! log: before its first idempotent append, a partition reads its last
//! `PRODUCER_SCAN_OFFSETS` offsets (at most `PRODUCER_SCAN_BYTES_MAX` bytes), so a retry of a
//! batch appended just before a restart is still recognised. A producer whose last batch is
//! older than that window is unknown, and its next batch is accepted whatever its sequence.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

use engine::batch::BatchHeader;

use crate::error::ProducerError;
use crate::ids::{Offset, ShardId};
use crate::limits::SHARDS_MAX;

/// Batches remembered per producer and partition for duplicate detection (Kafka keeps 5,
/// matching max.in.flight.requests.per.connection ≤ 5 for idempotent producers).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Producers one partition remembers; past this the least recently used is forgotten (its
/// next batch is then accepted whatever its sequence). Bounds a partition's producer state
/// to about this × 200 bytes.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 1024;

/// How far back from the log end a partition is scanned for producer state before its first
/// idempotent append.
pub const PRODUCER_SCAN_OFFSETS: u64 = 16_384;

/// Most bytes that scan reads.
pub const PRODUCER_SCAN_BYTES_MAX: u64 = 16 << 20;

/// Producer ids carry the allocating shard in their low bits, so shards never collide.
const PRODUCER_ID_SHARD_BITS: u32 = 8;
const _: () = assert!(SHARDS_MAX <= 1 << PRODUCER_ID_SHARD_BITS);

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
pub fn sequence_add(sequence: i32, delta: i32) -> i32 {
    debug_assert!(sequence >= 0 && delta >= 0);
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// The producer fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub records: i32,
}

impl ProducerBatch {
    /// The producer fields of `header`, if it comes from an idempotent producer.
    pub fn of(header: &BatchHeader) -> Option<ProducerBatch> {
        (header.producer_id >= 0).then_some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            records: header.records_count,
        })
    }

    fn last_sequence(&self) -> i32 {
        sequence_add(self.first_sequence, self.records - 1)
    }
}

/// One producer's state, as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub epoch: i16,
    /// -1 while unknown (first seen after a restart).
    pub last_sequence: i32,
    /// Base offset of its last batch.
    pub last_offset: Option<Offset>,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it, then `record` where it went.
    Append,
    /// Already appended at this base offset: acknowledge it, do not append it again.
    Duplicate {
        base_offset: Offset,
    },
    Reject(ProducerError),
}

#[derive(Debug, Clone, Copy)]
struct BatchSeen {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: Offset,
}

#[derive(Debug)]
struct ProducerState {
    epoch: i16,
    /// Last sequence appended; `None` for a producer first seen after a restart or eviction.
    last_sequence: Option<i32>,
    recent: VecDeque<BatchSeen>,
    /// `ProducerStates::clock` when last used, for eviction.
    last_used: u64,
}

/// One partition's producers.
#[derive(Debug, Default)]
pub struct ProducerStates {
    states: HashMap<i64, ProducerState>,
    /// Counts uses; orders producers for least-recently-used eviction.
    clock: u64,
}

impl ProducerStates {
    /// The producers this partition remembers.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Checks `batch` against its producer's state, changing nothing (a batch is recorded by
    /// `record` once it has its offsets). A newer epoch starts its sequences at 0, as in Kafka.
    pub fn check(&mut self, batch: &ProducerBatch) -> Check {
        if batch.first_sequence < 0 || batch.records < 1 || batch.epoch < 0 {
            return Check::Reject(ProducerError::InvalidFields {
                first_sequence: batch.first_sequence,
                epoch: batch.epoch,
                records: batch.records,
            });
        }
        self.clock += 1;
        let Some(state) = self.states.get_mut(&batch.producer_id) else {
            return Check::Append;
        };
        state.last_used = self.clock;
        if batch.epoch < state.epoch {
            return Check::Reject(ProducerError::InvalidProducerEpoch { epoch: batch.epoch, current: state.epoch });
        }
        if batch.epoch > state.epoch {
            // A new epoch starts its sequences at 0.
            if batch.first_sequence != 0 {
                return Check::Reject(ProducerError::OutOfOrderSequence {
                    first_sequence: batch.first_sequence,
                    expected: 0,
                });
            }
            return Check::Append;
        }
        let last_sequence = batch.last_sequence();
        if let Some(seen) =
            state.recent.iter().find(|b| b.first_sequence == batch.first_sequence && b.last_sequence == last_sequence)
        {
            return Check::Duplicate { base_offset: seen.base_offset };
        }
        match state.last_sequence {
            Some(last) if batch.first_sequence != sequence_add(last, 1) => {
                Check::Reject(ProducerError::OutOfOrderSequence {
                    first_sequence: batch.first_sequence,
                    expected: sequence_add(last, 1),
                })
            }
            _ => Check::Append,
        }
    }

    /// Every producer remembered, by id (Kafka's DescribeProducers).
    pub fn describe(&self) -> Vec<ProducerDescription> {
        let mut out: Vec<ProducerDescription> = self
            .states
            .iter()
            .map(|(&producer_id, state)| ProducerDescription {
                producer_id,
                epoch: state.epoch,
                last_sequence: state.last_sequence.unwrap_or(-1),
                last_offset: state.recent.back().map(|b| b.base_offset),
            })
            .collect();
        out.sort_by_key(|d| d.producer_id);
        out
    }

    /// `batch` was appended at `base_offset` (after `check` said `Append`), or read back from
    /// the log at `base_offset` while rebuilding. Batches older than what is known are ignored.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: Offset) {
        self.clock += 1;
        if !self.states.contains_key(&batch.producer_id) && self.states.len() >= PRODUCERS_PER_PARTITION_MAX {
            self.evict_least_recently_used();
        }
        let state = self.states.entry(batch.producer_id).or_insert_with(|| ProducerState {
            epoch: batch.epoch,
            last_sequence: None,
            recent: VecDeque::with_capacity(PRODUCER_BATCHES_REMEMBERED),
            last_used: 0,
        });
        state.last_used = self.clock;
        let newest = state.recent.back().map(|b| b.base_offset);
        if batch.epoch < state.epoch || newest.is_some_and(|o| base_offset <= o) {
            return;
        }
        if batch.epoch > state.epoch {
            state.epoch = batch.epoch;
            state.recent.clear();
        }
        let last_sequence = batch.last_sequence();
        state.last_sequence = Some(last_sequence);
        if state.recent.len() == PRODUCER_BATCHES_REMEMBERED {
            state.recent.pop_front();
        }
        state.recent.push_back(BatchSeen { first_sequence: batch.first_sequence, last_sequence, base_offset });
        debug_assert!(state.recent.len() <= PRODUCER_BATCHES_REMEMBERED);
        debug_assert!(self.states.len() <= PRODUCERS_PER_PARTITION_MAX);
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self.states.iter().min_by_key(|(_, s)| s.last_used).map(|(&id, _)| id);
        if let Some(id) = oldest {
            self.states.remove(&id);
        }
    }
}

/// Hands out producer ids (InitProducerId) on one shard: a counter started from the wall
/// clock (so ids are not reused after a restart, unless more than one id per millisecond was
/// handed out before it), with the shard in the low bits (so shards never collide).
#[derive(Debug)]
pub struct ProducerIds {
    shard: ShardId,
    next: Cell<i64>,
}

impl ProducerIds {
    pub fn new(shard: ShardId, now_ms: i64) -> ProducerIds {
        assert!(shard.index() < SHARDS_MAX);
        ProducerIds { shard, next: Cell::new(now_ms.max(0)) }
    }

    /// A producer id never handed out before by this node.
    pub fn next(&self) -> i64 {
        let n = self.next.get();
        self.next.set(n + 1);
        let id = (n << PRODUCER_ID_SHARD_BITS) | i64::from(self.shard.get());
        assert!(id >= 0, "producer id counter overflowed");
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, first_sequence: i32, records: i32) -> ProducerBatch {
        ProducerBatch { producer_id, epoch, first_sequence, records }
    }

    fn append(states: &mut ProducerStates, epoch: i16, first: i32, count: i32, offset: u64) {
        let offset = Offset::new(offset);
        let b = batch(7, epoch, first, count);
        assert_eq!(states.check(&b), Check::Append);
        states.record(&b, offset);
    }

    fn out_of_order(first_sequence: i32, expected: i32) -> Check {
        Check::Reject(ProducerError::OutOfOrderSequence { first_sequence, expected })
    }

    #[test]
    fn duplicates_are_acknowledged_with_the_original_offset() {
        let mut states = ProducerStates::default();
        append(&mut states, 0, 0, 3, 100);
        append(&mut states, 0, 3, 2, 103);
        assert_eq!(states.check(&batch(7, 0, 0, 3)), Check::Duplicate { base_offset: Offset::new(100) });
        assert_eq!(states.check(&batch(7, 0, 3, 2)), Check::Duplicate { base_offset: Offset::new(103) });
        // A gap is out of order; a sequence from the past that was not a batch start, too.
        assert_eq!(states.check(&batch(7, 0, 6, 1)), out_of_order(6, 5));
        assert_eq!(states.check(&batch(7, 0, 1, 1)), out_of_order(1, 5));
        append(&mut states, 0, 5, 1, 105);
        // Other producers are independent (a partition's state holds only its own).
        assert_eq!(states.check(&batch(8, 0, 42, 1)), Check::Append);
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut states = ProducerStates::default();
        append(&mut states, 1, 0, 1, 0);
        assert_eq!(
            states.check(&batch(7, 0, 1, 1)),
            Check::Reject(ProducerError::InvalidProducerEpoch { epoch: 0, current: 1 })
        );
        assert_eq!(states.check(&batch(7, 2, 5, 1)), out_of_order(5, 0));
        append(&mut states, 2, 0, 1, 1);
    }

    #[test]
    fn invalid_producer_fields_are_refused() {
        let mut states = ProducerStates::default();
        for b in [batch(7, 0, -1, 1), batch(7, -1, 0, 1), batch(7, 0, 0, 0)] {
            assert!(matches!(states.check(&b), Check::Reject(ProducerError::InvalidFields { .. })), "{b:?}");
        }
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(i32::MAX - 1, 3), 1);
        let mut states = ProducerStates::default();
        append(&mut states, 0, i32::MAX - 1, 2, 0);
        append(&mut states, 0, 0, 1, 2);
    }

    #[test]
    fn the_least_recently_used_producer_is_forgotten_at_the_bound() {
        let mut states = ProducerStates::default();
        for id in 0..PRODUCERS_PER_PARTITION_MAX as i64 {
            states.record(&batch(id, 0, 0, 1), Offset::new(id as u64));
        }
        assert_eq!(states.check(&batch(0, 0, 1, 1)), Check::Append, "producer 0 used again: now the newest");
        states.record(&batch(10_000, 0, 0, 1), Offset::new(10_000));
        assert_eq!(states.len(), PRODUCERS_PER_PARTITION_MAX);
        // Producer 1 was the least recently used: forgotten, so any sequence is taken.
        assert_eq!(states.check(&batch(1, 0, 99, 1)), Check::Append);
        assert_eq!(states.check(&batch(0, 0, 5, 1)), out_of_order(5, 1));
    }

    #[test]
    fn producer_ids_are_distinct_per_shard() {
        let a = ProducerIds::new(ShardId::new(0), 1_000);
        let b = ProducerIds::new(ShardId::new(1), 1_000);
        let (a1, a2, b1) = (a.next(), a.next(), b.next());
        assert!(a1 != a2 && a1 != b1 && a2 != b1);
        assert!(a1 >= 0 && b1 >= 0);
    }
}
