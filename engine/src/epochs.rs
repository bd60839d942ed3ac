//! Leader epochs of one partition: which leader epoch wrote which offsets (Kafka's
//! `LeaderEpochFileCache` and its `leader-epoch-checkpoint`).
//!
//! An entry `(epoch E, start_offset S)` says: the batches from offset S up to the next entry's
//! start (or the log end) were written by the leader of epoch E, and carry E in their
//! `partitionLeaderEpoch` field (bytes 12..16, outside the CRC). Entries are strictly
//! increasing in both epoch and start offset; there is always at least one (a brand-new log is
//! epoch 0 from offset 0, so a single node that never calls `Log::begin_epoch` stores 0 in
//! every batch, as it did before epochs were tracked).
//!
//! The in-memory value is immutable: every change builds a new `Epochs`, which the log makes
//! current only after the checkpoint file holding it was written, so a failed write leaves
//! memory and disk agreeing on the old one.
//!
//! File (`leader-epoch-checkpoint`, see `checkpoint.rs` for the framing): body `count u32`,
//! then `epoch u32 | start_offset u64` per entry, oldest first.

use crate::checkpoint::{self, EPOCHS_MAGIC};
use crate::ids::{LeaderEpoch, Offset};
use crate::limits::LEADER_EPOCH_ENTRIES_MAX;

const COUNT_BYTES: usize = 4;
const ENTRY_BYTES: usize = 12;

/// The leader epoch that wrote the offsets from `start_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// Why an epoch cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssignError {
    /// Smaller than the latest epoch: epochs never go backwards.
    Backwards { epoch: LeaderEpoch, latest: LeaderEpoch },
    /// Starts before the latest entry (offsets never go backwards either).
    StartBeforeLatest { start_offset: Offset, latest_start_offset: Offset },
    /// `LEADER_EPOCH_ENTRIES_MAX` entries already.
    TooMany,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Epochs {
    entries: Vec<EpochEntry>,
}

impl Epochs {
    /// A brand-new log: epoch 0 from `start_offset`.
    pub fn new(start_offset: Offset) -> Epochs {
        Epochs { entries: vec![EpochEntry { epoch: LeaderEpoch::ZERO, start_offset }] }
    }

    /// Entries as recovery rebuilt them from the batches; must satisfy the invariants.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<Epochs, &'static str> {
        let epochs = Epochs { entries };
        epochs.check()?;
        Ok(epochs)
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> EpochEntry {
        match self.entries.last() {
            Some(&entry) => entry,
            None => unreachable!("a log always has at least one leader epoch entry"),
        }
    }

    pub fn first(&self) -> EpochEntry {
        match self.entries.first() {
            Some(&entry) => entry,
            None => unreachable!("a log always has at least one leader epoch entry"),
        }
    }

    /// The epoch whose range holds `offset`; `None` below the first entry.
    pub fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        epoch_at(&self.entries, offset)
    }

    /// Kafka's `assign`: from `start_offset` on, epoch `epoch` writes. The same epoch again is
    /// no change (`Ok(None)`); a new epoch starting where the latest one starts replaces it
    /// (that epoch wrote nothing).
    pub fn with_epoch(&self, epoch: LeaderEpoch, start_offset: Offset) -> Result<Option<Epochs>, AssignError> {
        let latest = self.latest();
        if epoch < latest.epoch {
            return Err(AssignError::Backwards { epoch, latest: latest.epoch });
        }
        if epoch == latest.epoch {
            return Ok(None);
        }
        if start_offset < latest.start_offset {
            return Err(AssignError::StartBeforeLatest { start_offset, latest_start_offset: latest.start_offset });
        }
        let mut entries = self.entries.clone();
        if start_offset == latest.start_offset {
            entries.pop();
        }
        if entries.len() >= LEADER_EPOCH_ENTRIES_MAX {
            return Err(AssignError::TooMany);
        }
        entries.push(EpochEntry { epoch, start_offset });
        let epochs = Epochs { entries };
        debug_assert!(epochs.check().is_ok());
        Ok(Some(epochs))
    }

    /// After the log was cut to end at `end_offset` (Kafka's `truncateFromEnd`): entries that
    /// start at or past it wrote nothing that is left, and go. A log cut to nothing is back at
    /// epoch 0, like a brand-new one, so a follower accepts whatever epoch its leader sends.
    pub fn truncated_from(&self, end_offset: Offset) -> Epochs {
        let entries: Vec<EpochEntry> = self.entries.iter().copied().filter(|e| e.start_offset < end_offset).collect();
        if entries.is_empty() {
            return Epochs::new(end_offset);
        }
        Epochs { entries }
    }

    /// After recovery found the log ending at `end_offset`: entries that start past it are
    /// gone (their batches were lost in a crash). One starting exactly there stays: an epoch
    /// begun on an idle log survives a restart, so the epoch never goes backwards.
    pub fn without_after(&self, end_offset: Offset) -> Epochs {
        let entries: Vec<EpochEntry> = self.entries.iter().copied().filter(|e| e.start_offset <= end_offset).collect();
        if entries.is_empty() {
            return Epochs::new(end_offset);
        }
        Epochs { entries }
    }

    /// Drops entries wholly below `log_start_offset` (retention removed their batches) and
    /// moves the one covering it to start there (Kafka's `truncateFromStart`), so that the file
    /// stays small.
    pub fn trimmed_before(&self, log_start_offset: Offset) -> Epochs {
        let covering = self.entries.partition_point(|e| e.start_offset <= log_start_offset);
        let Some(first) = covering.checked_sub(1) else {
            return self.clone();
        };
        let mut entries = self.entries[first..].to_vec();
        entries[0].start_offset = log_start_offset;
        let epochs = Epochs { entries };
        debug_assert!(epochs.check().is_ok());
        epochs
    }

    /// Kafka's `endOffsetFor` (OffsetForLeaderEpoch): for the latest epoch, `(it, log end)`;
    /// for an older one, the largest epoch ≤ `epoch` and the start offset of the first epoch
    /// after it; when no epoch ≤ `epoch` is known, `(epoch, start of the first entry)`; `None`
    /// for an epoch past the latest (Kafka answers UNDEFINED_EPOCH there).
    pub fn end_offset_for(&self, epoch: LeaderEpoch, log_end_offset: Offset) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.latest();
        if epoch == latest.epoch {
            return Some((epoch, log_end_offset));
        }
        if epoch > latest.epoch {
            return None;
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next_start = self.entries.get(higher).map(|e| e.start_offset)?;
        let floor = higher.checked_sub(1).and_then(|i| self.entries.get(i)).map_or(epoch, |e| e.epoch);
        assert!(floor <= epoch);
        Some((floor, next_start))
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(self.entries.len() <= LEADER_EPOCH_ENTRIES_MAX);
        let mut body = Vec::with_capacity(COUNT_BYTES + self.entries.len() * ENTRY_BYTES);
        body.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            body.extend_from_slice(&e.epoch.get().to_be_bytes());
            body.extend_from_slice(&e.start_offset.get().to_be_bytes());
        }
        checkpoint::encode(EPOCHS_MAGIC, &body)
    }

    pub fn decode(bytes: &[u8]) -> Result<Epochs, &'static str> {
        let body = checkpoint::decode(EPOCHS_MAGIC, bytes)?;
        let Some((count, rest)) = body.split_first_chunk::<COUNT_BYTES>() else {
            return Err("no entry count");
        };
        let count = u32::from_be_bytes(*count) as usize;
        if count > LEADER_EPOCH_ENTRIES_MAX || rest.len() != count * ENTRY_BYTES {
            return Err("entry count does not match the length");
        }
        let mut entries = Vec::with_capacity(count);
        for chunk in rest.chunks_exact(ENTRY_BYTES) {
            let epoch = i32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let mut offset = [0u8; 8];
            offset.copy_from_slice(&chunk[4..12]);
            let epoch = LeaderEpoch::from_wire(epoch).ok_or("epoch beyond i32::MAX")?;
            let start_offset = Offset::from_wire(i64::from_be_bytes(offset)).ok_or("offset beyond i64::MAX")?;
            entries.push(EpochEntry { epoch, start_offset });
        }
        Epochs::from_entries(entries)
    }

    /// Non-empty, bounded, strictly increasing in epoch and in start offset.
    fn check(&self) -> Result<(), &'static str> {
        if self.entries.is_empty() {
            return Err("no entries");
        }
        if self.entries.len() > LEADER_EPOCH_ENTRIES_MAX {
            return Err("too many entries");
        }
        for pair in self.entries.windows(2) {
            if pair[1].epoch <= pair[0].epoch {
                return Err("epochs not increasing");
            }
            if pair[1].start_offset <= pair[0].start_offset {
                return Err("start offsets not increasing");
            }
        }
        Ok(())
    }
}

/// The epoch whose range in `entries` (sorted, as in `Epochs`) holds `offset`.
pub(crate) fn epoch_at(entries: &[EpochEntry], offset: Offset) -> Option<LeaderEpoch> {
    let after = entries.partition_point(|e| e.start_offset <= offset);
    after.checked_sub(1).and_then(|i| entries.get(i)).map(|e| e.epoch)
}

/// Why a batch's stored epoch was refused while scanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochMismatch {
    /// Negative: the log never stores an unknown epoch.
    Unknown { stored: i32 },
    /// Not the epoch the checkpoint holds for the batch's offset.
    NotCheckpointed { stored: i32, expected: Option<LeaderEpoch> },
    /// Smaller than an earlier batch's (rebuilding without a checkpoint).
    Decreasing { stored: LeaderEpoch, previous: LeaderEpoch },
}

/// How recovery checks the epochs of the batches it reads, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EpochScan {
    /// A checkpoint was loaded: each batch must carry the epoch it gives the batch's offset.
    Checkpoint(Epochs),
    /// No usable checkpoint: epochs must be known and never decrease; the changes seen so far
    /// become the rebuilt checkpoint.
    Rebuild(Vec<EpochEntry>),
}

impl EpochScan {
    /// Accepts (and, when rebuilding, records) the batch at `base_offset` stamped `stored`.
    pub fn accept(&mut self, base_offset: Offset, stored: i32) -> Result<(), EpochMismatch> {
        let Some(epoch) = LeaderEpoch::from_wire(stored) else {
            return Err(EpochMismatch::Unknown { stored });
        };
        match self {
            EpochScan::Checkpoint(epochs) => {
                let expected = epochs.epoch_at(base_offset);
                if expected != Some(epoch) {
                    return Err(EpochMismatch::NotCheckpointed { stored, expected });
                }
            }
            EpochScan::Rebuild(seen) => match seen.last() {
                Some(last) if epoch < last.epoch => {
                    return Err(EpochMismatch::Decreasing { stored: epoch, previous: last.epoch });
                }
                Some(last) if epoch == last.epoch => {}
                _ => {
                    if seen.len() >= LEADER_EPOCH_ENTRIES_MAX {
                        // Treated like a decrease: the log is cut before the epoch that does not
                        // fit, rather than growing the checkpoint without bound.
                        return Err(EpochMismatch::Decreasing { stored: epoch, previous: LeaderEpoch::MAX });
                    }
                    seen.push(EpochEntry { epoch, start_offset: base_offset });
                }
            },
        }
        Ok(())
    }

    pub fn is_rebuild(&self) -> bool {
        matches!(self, EpochScan::Rebuild(_))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn e(epoch: u32) -> LeaderEpoch {
        LeaderEpoch::new(epoch)
    }

    fn o(offset: u64) -> Offset {
        Offset::new(offset)
    }

    fn epochs(pairs: &[(u32, u64)]) -> Epochs {
        Epochs::from_entries(
            pairs.iter().map(|&(epoch, start)| EpochEntry { epoch: e(epoch), start_offset: o(start) }).collect(),
        )
        .unwrap()
    }

    #[test]
    fn assign_is_monotonic_and_replaces_an_empty_epoch() {
        let base = Epochs::new(o(0));
        assert_eq!(base.with_epoch(e(0), o(10)), Ok(None));
        let one = base.with_epoch(e(3), o(10)).unwrap().unwrap();
        assert_eq!(one, epochs(&[(0, 0), (3, 10)]));
        assert_eq!(one.with_epoch(e(2), o(20)), Err(AssignError::Backwards { epoch: e(2), latest: e(3) }));
        assert_eq!(one.with_epoch(e(3), o(20)), Ok(None));
        // Epoch 3 wrote nothing before epoch 4 began at the same offset: it is replaced.
        assert_eq!(one.with_epoch(e(4), o(10)).unwrap().unwrap(), epochs(&[(0, 0), (4, 10)]));
        assert!(matches!(one.with_epoch(e(4), o(9)), Err(AssignError::StartBeforeLatest { .. })));
        assert_eq!(one.epoch_at(o(9)), Some(e(0)));
        assert_eq!(one.epoch_at(o(10)), Some(e(3)));
        assert_eq!(one.epoch_at(o(1_000)), Some(e(3)));
        assert_eq!(epochs(&[(1, 5)]).epoch_at(o(4)), None);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let log = epochs(&[(2, 10), (4, 50), (7, 90)]);
        let end = o(120);
        assert_eq!(log.end_offset_for(e(7), end), Some((e(7), end)));
        assert_eq!(log.end_offset_for(e(8), end), None);
        assert_eq!(log.end_offset_for(e(4), end), Some((e(4), o(90))));
        assert_eq!(log.end_offset_for(e(5), end), Some((e(4), o(90))));
        assert_eq!(log.end_offset_for(e(6), end), Some((e(4), o(90))));
        assert_eq!(log.end_offset_for(e(2), end), Some((e(2), o(50))));
        assert_eq!(log.end_offset_for(e(3), end), Some((e(2), o(50))));
        // Older than anything known: Kafka answers the requested epoch and the first start.
        assert_eq!(log.end_offset_for(e(1), end), Some((e(1), o(10))));
    }

    #[test]
    fn truncation_and_trimming_keep_the_invariants() {
        let log = epochs(&[(0, 0), (4, 50), (7, 90)]);
        assert_eq!(log.truncated_from(o(90)), epochs(&[(0, 0), (4, 50)]));
        assert_eq!(log.truncated_from(o(91)), log);
        assert_eq!(log.truncated_from(o(50)), epochs(&[(0, 0)]));
        assert_eq!(log.truncated_from(o(0)), Epochs::new(o(0)));
        assert_eq!(log.without_after(o(90)), log);
        assert_eq!(log.without_after(o(89)), epochs(&[(0, 0), (4, 50)]));
        assert_eq!(epochs(&[(3, 10)]).without_after(o(5)), Epochs::new(o(5)));
        assert_eq!(log.trimmed_before(o(60)), epochs(&[(4, 60), (7, 90)]));
        assert_eq!(log.trimmed_before(o(90)), epochs(&[(7, 90)]));
        assert_eq!(log.trimmed_before(o(0)), log);
    }

    #[test]
    fn encode_decode_round_trip_and_corruption() {
        let log = epochs(&[(0, 0), (4, 50), (7, 90)]);
        let bytes = log.encode();
        assert_eq!(Epochs::decode(&bytes), Ok(log));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Epochs::decode(&bad).is_err(), "flip at {i} accepted");
        }
        for len in 0..bytes.len() {
            assert!(Epochs::decode(&bytes[..len]).is_err(), "prefix {len} accepted");
        }
        // A checksummed file that breaks the invariants is refused too.
        let mut body = 2u32.to_be_bytes().to_vec();
        for (epoch, start) in [(4u32, 50u64), (3, 60)] {
            body.extend_from_slice(&epoch.to_be_bytes());
            body.extend_from_slice(&start.to_be_bytes());
        }
        assert_eq!(Epochs::decode(&checkpoint::encode(EPOCHS_MAGIC, &body)), Err("epochs not increasing"));
        let empty = checkpoint::encode(EPOCHS_MAGIC, &0u32.to_be_bytes());
        assert_eq!(Epochs::decode(&empty), Err("no entries"));
    }

    #[test]
    fn scans_check_against_the_checkpoint_or_rebuild_it() {
        let mut check = EpochScan::Checkpoint(epochs(&[(0, 0), (4, 50)]));
        assert_eq!(check.accept(o(10), 0), Ok(()));
        assert_eq!(check.accept(o(50), 4), Ok(()));
        assert!(check.accept(o(49), 4).is_err());
        assert!(check.accept(o(60), 5).is_err());
        assert_eq!(check.accept(o(60), -1), Err(EpochMismatch::Unknown { stored: -1 }));

        let mut rebuild = EpochScan::Rebuild(Vec::new());
        for (base, stored) in [(0, 0), (3, 0), (7, 2), (9, 2), (12, 5)] {
            assert_eq!(rebuild.accept(o(base), stored), Ok(()));
        }
        assert_eq!(rebuild.accept(o(15), 4), Err(EpochMismatch::Decreasing { stored: e(4), previous: e(5) }));
        let EpochScan::Rebuild(seen) = rebuild else { unreachable!() };
        assert_eq!(Epochs::from_entries(seen).unwrap(), epochs(&[(0, 0), (2, 7), (5, 12)]));
    }
}
