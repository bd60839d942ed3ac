//! The batch cache: one per shard (executor thread), with one byte budget for all the logs the
//! shard owns, so that consumers at the tail are served without disk I/O — and so that bytes
//! accepted but not yet written are readable at all (the disk does not have them yet).
//!
//! Why per shard: a budget per partition multiplies with the partition count (2 000 partitions
//! at 16 MiB each could pin 32 GiB); one budget per shard bounds the memory whatever the
//! partition count, and spends it on whichever partitions are busy.
//!
//! Eviction keeps the newest data shard-wide: while over budget, the batch inserted first, in
//! any log, goes. A log's cached batches stay a contiguous run ending at its log end (a log
//! inserts in offset order, so its oldest-inserted batch is its lowest offset), and a read
//! that the run does not reach goes to disk, as before.
//!
//! A batch not yet written cannot be evicted (the disk does not have it), so the budget can be
//! exceeded by unwritten bytes only; those are bounded separately — per log by
//! `UNWRITTEN_BYTES_MAX`, per shard by the appender's shard-wide wait
//! (`segment/appender.rs`, `shard_unwritten_bytes_max`). Because a log writes in order, its
//! unwritten batches are the newest of its run: a log whose oldest cached batch is unwritten
//! has nothing evictable, and eviction moves on to the next log in insertion order.
//!
//! Batches are kept as the producer's own `Bytes` (no copy): the log assigns a new baseOffset
//! and leader epoch, which live in the first 16 bytes, outside the CRC; a read hands out the
//! stored 16-byte head (kept beside the bytes) followed by the producer's bytes from byte 16 on.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Weak;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::ids::{FilePosition, Offset};
use crate::limits::SHARD_CACHE_BYTES_DEFAULT;
use crate::segment::appender::Appender;
use crate::segment::STORED_HEAD_BYTES;

/// One log's key in its shard's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct LogId(u64);

impl LogId {
    /// A key no other log of this shard has.
    pub fn next() -> LogId {
        NEXT_LOG_ID.with(|next| {
            let id = next.get();
            next.set(id + 1);
            LogId(id)
        })
    }
}

pub(crate) struct CachedBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The appender that writes this batch, and the file position just past it: the batch is
    /// on disk once that appender's written prefix reaches it (or the appender is gone: it was
    /// sealed — everything written — or its log was cut or dropped).
    pub appender: Weak<Appender>,
    pub end_position: FilePosition,
    /// The batch's first bytes as stored: assigned base offset, batchLength, leader epoch.
    pub head: [u8; STORED_HEAD_BYTES],
    /// The producer's batch; bytes 0..16 hold the producer's (replaced) head.
    pub bytes: Bytes,
}

impl CachedBatch {
    fn is_on_disk(&self) -> bool {
        self.appender.upgrade().is_none_or(|a| a.written_position() >= self.end_position)
    }

    fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// What the shard's cache holds (metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub budget_bytes: u64,
    pub size_bytes: u64,
    /// Bytes of cached batches not yet written (they cannot be evicted). Computed by a walk.
    pub unwritten_bytes: u64,
    /// Bytes the shard's appenders hold not yet written (what the shard-wide wait bounds).
    pub appender_unwritten_bytes: u64,
    pub batches: u64,
    pub logs: u64,
    /// Batches evicted since the shard started.
    pub evicted_batches: u64,
}

/// One log's run of cached batches, each with its shard-wide insertion sequence number.
#[derive(Default)]
struct LogRun {
    batches: VecDeque<(u64, CachedBatch)>,
}

struct ShardCache {
    budget_bytes: u64,
    size_bytes: u64,
    /// Looked up on every append and eviction: FxHash (the ids are this shard's own counter).
    runs: FxHashMap<LogId, LogRun>,
    /// The insertion sequence number of each log's oldest cached batch: eviction order.
    fronts: BTreeMap<u64, LogId>,
    next_sequence: u64,
    evicted_batches: u64,
}

thread_local! {
    static SHARD_CACHE: RefCell<ShardCache> = RefCell::new(ShardCache {
        budget_bytes: SHARD_CACHE_BYTES_DEFAULT,
        size_bytes: 0,
        runs: FxHashMap::default(),
        fronts: BTreeMap::new(),
        next_sequence: 0,
        evicted_batches: 0,
    });
    static NEXT_LOG_ID: Cell<u64> = const { Cell::new(0) };
}

/// Sets this shard's cache budget (call it when the shard's executor starts; the default is
/// `SHARD_CACHE_BYTES_DEFAULT`). A smaller budget evicts at once what it can.
pub fn set_shard_budget_bytes(budget_bytes: u64) {
    SHARD_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.budget_bytes = budget_bytes;
        cache.evict();
    });
}

/// This shard's cache budget.
pub fn shard_budget_bytes() -> u64 {
    SHARD_CACHE.with(|cache| cache.borrow().budget_bytes)
}

/// What this shard's cache holds now (walks every cached batch).
pub fn shard_cache_stats() -> CacheStats {
    SHARD_CACHE.with(|cache| {
        let cache = cache.borrow();
        let mut stats = CacheStats {
            budget_bytes: cache.budget_bytes,
            size_bytes: cache.size_bytes,
            logs: cache.runs.len() as u64,
            evicted_batches: cache.evicted_batches,
            appender_unwritten_bytes: crate::segment::appender::shard_unwritten_bytes(),
            ..CacheStats::default()
        };
        for run in cache.runs.values() {
            for (_, batch) in &run.batches {
                stats.batches += 1;
                if !batch.is_on_disk() {
                    stats.unwritten_bytes += batch.size_bytes();
                }
            }
        }
        assert_eq!(
            stats.size_bytes,
            cache.runs.values().flat_map(|r| &r.batches).map(|(_, b)| b.size_bytes()).sum::<u64>()
        );
        stats
    })
}

/// Adds `batch` at the end of `log`'s run, then evicts shard-wide while over budget.
pub(crate) fn push(log: LogId, batch: CachedBatch) {
    SHARD_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let cache = &mut *cache;
        let sequence = cache.next_sequence;
        cache.next_sequence += 1;
        let run = cache.runs.entry(log).or_default();
        if let Some((_, last)) = run.batches.back() {
            assert_eq!(Some(batch.base_offset), last.last_offset.next(), "a log's cached run must stay contiguous");
        }
        assert!(batch.last_offset >= batch.base_offset);
        if run.batches.is_empty() {
            cache.fronts.insert(sequence, log);
        }
        cache.size_bytes += batch.size_bytes();
        run.batches.push_back((sequence, batch));
    });
}

/// Evicts shard-wide while over budget (after a round of `push`es).
pub(crate) fn evict() {
    SHARD_CACHE.with(|cache| cache.borrow_mut().evict());
}

/// Drops `log`'s batches below `offset` (retention moved the log start).
pub(crate) fn drop_before(log: LogId, offset: Offset) {
    SHARD_CACHE.with(|cache| cache.borrow_mut().drop_where(log, |b| b.last_offset < offset, true));
}

/// Drops `log`'s batches at or above `offset` (a truncation cut the log there).
pub(crate) fn drop_from(log: LogId, offset: Offset) {
    SHARD_CACHE.with(|cache| cache.borrow_mut().drop_where(log, |b| b.last_offset >= offset, false));
}

/// Forgets `log` (it was dropped). Safe while the thread's locals are being torn down.
pub(crate) fn remove_log(log: LogId) {
    let _ = SHARD_CACHE.try_with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.drop_where(log, |_| true, true);
        }
    });
}

/// The first offset `log` has cached.
pub(crate) fn first_offset(log: LogId) -> Option<Offset> {
    SHARD_CACHE.with(|cache| {
        let cache = cache.borrow();
        cache.runs.get(&log).and_then(|run| run.batches.front()).map(|(_, b)| b.base_offset)
    })
}

/// Whole batches of `log` from the one holding `offset`, ending before `end_offset`, at most
/// `bytes_max` (but at least one batch). `None` when the cache does not reach back to
/// `offset`. Returns the chunks to send and the offset after the last batch.
pub(crate) fn read(log: LogId, offset: Offset, end_offset: Offset, bytes_max: u64) -> Option<(Vec<Bytes>, Offset)> {
    SHARD_CACHE.with(|cache| {
        let cache = cache.borrow();
        let run = cache.runs.get(&log)?;
        if run.batches.front()?.1.base_offset > offset {
            return None;
        }
        let start = run.batches.partition_point(|(_, b)| b.last_offset < offset);
        let mut chunks = Vec::new();
        let mut size_bytes = 0u64;
        let mut next_offset = offset;
        for (_, b) in run.batches.iter().skip(start) {
            if b.last_offset >= end_offset {
                break;
            }
            let len = b.size_bytes();
            if !chunks.is_empty() && size_bytes + len > bytes_max {
                break;
            }
            let Some(after) = b.last_offset.next() else {
                unreachable!("a cached batch was appended, so an offset follows it")
            };
            chunks.push(Bytes::copy_from_slice(&b.head));
            chunks.push(b.bytes.slice(STORED_HEAD_BYTES..));
            size_bytes += len;
            next_offset = after;
        }
        Some((chunks, next_offset))
    })
}

impl ShardCache {
    /// While over budget, drops the oldest-inserted batch of any log whose oldest batch is on
    /// disk. Bounded: each pass either drops a batch or ends.
    fn evict(&mut self) {
        while self.size_bytes > self.budget_bytes {
            let victim = self.fronts.iter().find_map(|(&sequence, &log)| {
                let (_, front) = self.runs.get(&log)?.batches.front()?;
                front.is_on_disk().then_some((sequence, log))
            });
            let Some((sequence, log)) = victim else {
                // Everything left is unwritten: only the appenders' waits bound it.
                break;
            };
            self.pop_front(sequence, log);
            self.evicted_batches += 1;
        }
    }

    fn pop_front(&mut self, sequence: u64, log: LogId) {
        let removed = self.fronts.remove(&sequence);
        assert_eq!(removed, Some(log));
        let Some(run) = self.runs.get_mut(&log) else { unreachable!("every front belongs to a run") };
        let Some((popped, batch)) = run.batches.pop_front() else { unreachable!("a run in the fronts is not empty") };
        assert_eq!(popped, sequence);
        self.size_bytes -= batch.size_bytes();
        match run.batches.front() {
            Some(&(next, _)) => {
                self.fronts.insert(next, log);
            }
            None => {
                self.runs.remove(&log);
            }
        }
    }

    /// Drops the batches of `log` matching `doomed` from the front (`from_front`) or the back.
    fn drop_where(&mut self, log: LogId, doomed: impl Fn(&CachedBatch) -> bool, from_front: bool) {
        let Some(run) = self.runs.get_mut(&log) else {
            return;
        };
        let front_before = run.batches.front().map(|&(sequence, _)| sequence);
        loop {
            let end = if from_front { run.batches.front() } else { run.batches.back() };
            if !end.is_some_and(|(_, b)| doomed(b)) {
                break;
            }
            let popped = if from_front { run.batches.pop_front() } else { run.batches.pop_back() };
            if let Some((_, b)) = popped {
                self.size_bytes -= b.size_bytes();
            }
        }
        let front_after = run.batches.front().map(|&(sequence, _)| sequence);
        if front_after != front_before {
            if let Some(sequence) = front_before {
                self.fronts.remove(&sequence);
            }
            if let Some(sequence) = front_after {
                self.fronts.insert(sequence, log);
            }
        }
        if run.batches.is_empty() {
            self.runs.remove(&log);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn o(offset: u64) -> Offset {
        Offset::new(offset)
    }

    fn batch(base_offset: u64, count: u64, size: usize) -> CachedBatch {
        CachedBatch {
            base_offset: o(base_offset),
            last_offset: o(base_offset + count - 1),
            appender: Weak::new(), // On disk.
            end_position: FilePosition::ZERO,
            head: crate::segment::stored_head(o(base_offset), crate::ids::LeaderEpoch::ZERO, &[7u8; 16]),
            bytes: Bytes::from(vec![7u8; size]),
        }
    }

    #[test]
    fn read_returns_whole_batches_with_assigned_offsets() {
        let log = LogId::next();
        push(log, batch(10, 5, 100));
        push(log, batch(15, 5, 100));
        push(log, batch(20, 1, 100));
        let (chunks, next) = read(log, o(12), o(21), 150).unwrap();
        assert_eq!(next, o(15)); // one batch: the second would exceed 150 bytes
        assert_eq!(chunks[0][..8], 10u64.to_be_bytes());
        assert_eq!(chunks[1].len(), 84);
        let (chunks, next) = read(log, o(15), o(21), 1 << 20).unwrap();
        assert_eq!(next, o(21));
        assert_eq!(chunks.len(), 4);
        assert!(read(log, o(9), o(21), 100).is_none());
        // end_offset stops before a batch that is not visible yet.
        let (_, next) = read(log, o(10), o(20), 1 << 20).unwrap();
        assert_eq!(next, o(20));
        drop_from(log, o(15));
        assert_eq!(read(log, o(10), o(21), 1 << 20).unwrap().1, o(15));
        drop_before(log, o(15));
        assert_eq!(first_offset(log), None);
        remove_log(log);
    }

    #[test]
    fn evicts_the_oldest_inserted_across_logs_down_to_the_budget() {
        let (a, b) = (LogId::next(), LogId::next());
        set_shard_budget_bytes(1 << 20);
        push(a, batch(0, 1, 100));
        push(b, batch(0, 1, 100));
        push(a, batch(1, 1, 100));
        push(b, batch(1, 1, 100));
        assert_eq!(shard_cache_stats().size_bytes, 400);
        set_shard_budget_bytes(250);
        // a0 then b0 went (inserted first); a1 and b1 stay.
        assert_eq!((first_offset(a), first_offset(b)), (Some(o(1)), Some(o(1))));
        assert_eq!(shard_cache_stats().size_bytes, 200);
        push(a, batch(2, 1, 100));
        evict();
        assert_eq!((first_offset(a), first_offset(b)), (Some(o(2)), Some(o(1))));
        remove_log(a);
        remove_log(b);
        let stats = shard_cache_stats();
        assert_eq!((stats.size_bytes, stats.batches, stats.logs), (0, 0, 0));
        set_shard_budget_bytes(SHARD_CACHE_BYTES_DEFAULT);
    }
}
