//! Typed ids: zero-cost newtypes for the integers that are easy to swap by mistake — a log
//! offset passed where a file position was meant corrupts data without a single type error.
//!
//! Each type is `#[repr(transparent)]` over its integer, `Copy`, ordered and hashable, and
//! prints as the bare number. There is no `Deref` to the integer: a value goes in through a
//! named constructor and comes out through `get` (or `to_wire`), so every conversion is visible
//! where it happens. Arithmetic that advances an offset or a position is checked.
//!
//! On disk and on the wire the plain integers stay (Kafka's own widths); these types live in
//! memory only.

use std::fmt;

macro_rules! display_as_integer {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

/// A position in a partition's log: the offset of one record. Kafka stores offsets as `i64`
/// and never uses negative ones for a record, so an `Offset` is at most `i64::MAX`; every
/// constructor keeps it so, and `to_wire` cannot fail.
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Offset(u64);

display_as_integer!(Offset);

impl Offset {
    pub const ZERO: Offset = Offset(0);
    /// The largest offset a RecordBatch can carry (baseOffset is an `i64`).
    pub const MAX: Offset = Offset(i64::MAX as u64);

    /// `value` must be at most `Offset::MAX` (an offset the engine computed or read back from
    /// its own files); use `from_wire` for untrusted input.
    pub const fn new(value: u64) -> Offset {
        assert!(value <= i64::MAX as u64, "offset beyond i64::MAX");
        Offset(value)
    }

    /// A Kafka wire offset; `None` for a negative one (Kafka's −1 means "none" or "latest").
    pub const fn from_wire(value: i64) -> Option<Offset> {
        if value < 0 {
            None
        } else {
            Some(Offset(value as u64))
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn to_wire(self) -> i64 {
        self.0 as i64
    }

    /// `self + count`, or `None` past `Offset::MAX`.
    pub const fn checked_add(self, count: u64) -> Option<Offset> {
        match self.0.checked_add(count) {
            Some(value) if value <= i64::MAX as u64 => Some(Offset(value)),
            _ => None,
        }
    }

    /// `self - count`, or `None` below zero.
    pub const fn checked_sub(self, count: u64) -> Option<Offset> {
        match self.0.checked_sub(count) {
            Some(value) => Some(Offset(value)),
            None => None,
        }
    }

    /// The offset after this one.
    pub const fn next(self) -> Option<Offset> {
        self.checked_add(1)
    }

    /// How many offsets `self` lies past `base`; `None` when it lies before.
    pub const fn delta_from(self, base: Offset) -> Option<u64> {
        self.0.checked_sub(base.0)
    }
}

/// A Kafka leader epoch (the `partitionLeaderEpoch` of a stored batch, the epoch of the
/// leader that wrote it).
///
/// Kafka carries it as an `i32` where −1 means "unknown" (a producer's batch, an old request).
/// shardlog keeps the two apart: a known epoch is a `LeaderEpoch` in `0..=i32::MAX` (a `u32`
/// underneath, since it is never negative), and "unknown" is `Option::None` — `from_wire`
/// maps the one to the other. So a comparison of epochs never meets a −1.
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct LeaderEpoch(u32);

display_as_integer!(LeaderEpoch);

impl LeaderEpoch {
    /// The epoch of a brand-new log, and of every batch a single-node log stored before
    /// epochs were tracked.
    pub const ZERO: LeaderEpoch = LeaderEpoch(0);
    pub const MAX: LeaderEpoch = LeaderEpoch(i32::MAX as u32);

    /// `value` must be at most `i32::MAX` (it must fit the wire field); use `from_wire` for
    /// untrusted input.
    pub const fn new(value: u32) -> LeaderEpoch {
        assert!(value <= i32::MAX as u32, "leader epoch beyond i32::MAX");
        LeaderEpoch(value)
    }

    /// A Kafka wire epoch; `None` for a negative one (−1: unknown).
    pub const fn from_wire(value: i32) -> Option<LeaderEpoch> {
        if value < 0 {
            None
        } else {
            Some(LeaderEpoch(value as u32))
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    pub const fn to_wire(self) -> i32 {
        self.0 as i32
    }

    /// The epoch after this one, or `None` past `LeaderEpoch::MAX`.
    pub const fn next(self) -> Option<LeaderEpoch> {
        if self.0 < i32::MAX as u32 {
            Some(LeaderEpoch(self.0 + 1))
        } else {
            None
        }
    }
}

/// One broker of a cluster.
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NodeId(u32);

display_as_integer!(NodeId);

impl NodeId {
    pub const fn new(value: u32) -> NodeId {
        NodeId(value)
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

/// One shard (executor thread, core) of a broker.
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ShardId(u32);

display_as_integer!(ShardId);

impl ShardId {
    pub const fn new(value: u32) -> ShardId {
        ShardId(value)
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// For indexing per-shard tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A byte position inside one segment file (not a log offset: a batch at offset 1000 may sit at
/// position 0 of its segment).
#[repr(transparent)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct FilePosition(u64);

display_as_integer!(FilePosition);

impl FilePosition {
    pub const ZERO: FilePosition = FilePosition(0);

    pub const fn new(value: u64) -> FilePosition {
        FilePosition(value)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + bytes`, or `None` on overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<FilePosition> {
        match self.0.checked_add(bytes) {
            Some(value) => Some(FilePosition(value)),
            None => None,
        }
    }

    /// Bytes from `earlier` to `self`; `None` when `earlier` lies after `self`.
    pub const fn bytes_from(self, earlier: FilePosition) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }
}

// Zero cost: each id is exactly its integer.
const _: () = assert!(std::mem::size_of::<Offset>() == 8);
const _: () = assert!(std::mem::size_of::<Option<Offset>>() == 16);
const _: () = assert!(std::mem::size_of::<LeaderEpoch>() == 4);
const _: () = assert!(std::mem::size_of::<NodeId>() == 4);
const _: () = assert!(std::mem::size_of::<ShardId>() == 4);
const _: () = assert!(std::mem::size_of::<FilePosition>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_stay_within_the_wire_range() {
        assert_eq!(Offset::from_wire(-1), None);
        assert_eq!(Offset::from_wire(7), Some(Offset::new(7)));
        assert_eq!(Offset::MAX.to_wire(), i64::MAX);
        assert_eq!(Offset::MAX.next(), None);
        assert_eq!(Offset::new(5).checked_add(u64::MAX), None);
        assert_eq!(Offset::new(5).checked_add(3), Some(Offset::new(8)));
        assert_eq!(Offset::new(5).checked_sub(6), None);
        assert_eq!(Offset::new(8).delta_from(Offset::new(5)), Some(3));
        assert_eq!(Offset::new(5).delta_from(Offset::new(8)), None);
        assert_eq!(Offset::new(42).to_string(), "42");
    }

    #[test]
    #[should_panic(expected = "offset beyond i64::MAX")]
    fn an_offset_past_the_wire_range_is_a_bug() {
        let _ = Offset::new(u64::MAX);
    }

    #[test]
    fn epochs_map_unknown_to_none() {
        assert_eq!(LeaderEpoch::from_wire(-1), None);
        assert_eq!(LeaderEpoch::from_wire(i32::MIN), None);
        assert_eq!(LeaderEpoch::from_wire(3), Some(LeaderEpoch::new(3)));
        assert_eq!(LeaderEpoch::MAX.to_wire(), i32::MAX);
        assert_eq!(LeaderEpoch::MAX.next(), None);
        assert_eq!(LeaderEpoch::ZERO.next(), Some(LeaderEpoch::new(1)));
        assert!(LeaderEpoch::new(2) < LeaderEpoch::new(10));
    }

    #[test]
    fn positions_and_small_ids() {
        let p = FilePosition::new(100);
        assert_eq!(p.checked_add(28), Some(FilePosition::new(128)));
        assert_eq!(FilePosition::new(u64::MAX).checked_add(1), None);
        assert_eq!(FilePosition::new(128).bytes_from(p), Some(28));
        assert_eq!(p.bytes_from(FilePosition::new(128)), None);
        assert_eq!(ShardId::new(3).index(), 3);
        assert_eq!(NodeId::new(9).get(), 9);
        assert_eq!(format!("{}/{}", NodeId::new(1), ShardId::new(2)), "1/2");
    }
}
