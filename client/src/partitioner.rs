//! Choosing a partition for a record, as Kafka's Java producer does: a keyed record goes to
//! `toPositive(murmur2(key)) % partitions` (so the same key lands on the same partition as with
//! a Kafka client), a record without a key to the topic's current "sticky" partition, which
//! moves on (round-robin) each time a batch for it is sent.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// Kafka's `Utils.murmur2` (seed `0x9747b28c`), returning the same `int` as the Java code.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java: `int h = seed ^ length`.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `MIN`).
pub fn to_positive(h: i32) -> u32 {
    (h as u32) & 0x7fff_ffff
}

/// The partition of a keyed record among `partitions` (> 0), as Kafka's default partitioner.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    to_positive(murmur2(key)) % partitions.max(1)
}

/// Kafka's sticky partitioning for records without a key: every such record of a topic goes to
/// one partition until a batch for that partition is sent, then the next partition is used.
#[derive(Debug, Default)]
pub struct StickyPartitioner {
    current: HashMap<String, u32>,
}

impl StickyPartitioner {
    pub fn new() -> StickyPartitioner {
        StickyPartitioner::default()
    }

    /// The partition for the next key-less record of `topic`. The first choice per topic is
    /// random, so that many producers do not all start on partition 0.
    pub fn partition(&mut self, topic: &str, partitions: u32) -> u32 {
        let partitions = partitions.max(1);
        if let Some(&p) = self.current.get(topic) {
            if p < partitions {
                return p;
            }
        }
        let p = (RandomState::new().hash_one(topic) % u64::from(partitions)) as u32;
        self.current.insert(topic.to_owned(), p);
        p
    }

    /// A batch for `topic`/`partition` was sent: if that is the sticky partition, move on.
    pub fn batch_sent(&mut self, topic: &str, partition: u32, partitions: u32) {
        if let Some(p) = self.current.get_mut(topic) {
            if *p == partition {
                *p = (partition + 1) % partitions.max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            (b"abc", 479470107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX as u32);
        assert_eq!(to_positive(-973932308), (-973932308i32 as u32) & 0x7fff_ffff);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn keyed_partitions_are_stable_and_in_range() {
        for n in 1..20 {
            for key in [&b"a"[..], b"user-1", b"", b"\xff\xfe"] {
                let p = partition_for_key(key, n);
                assert!(p < n);
                assert_eq!(p, partition_for_key(key, n));
            }
        }
        // toPositive(murmur2("21")) % 4 == (-973932308 & 0x7fffffff) % 4.
        assert_eq!(partition_for_key(b"21", 4), ((-973932308i32 as u32) & 0x7fff_ffff) % 4);
    }

    #[test]
    fn sticky_moves_round_robin_after_a_batch() {
        let mut s = StickyPartitioner::new();
        let first = s.partition("t", 3);
        assert_eq!(s.partition("t", 3), first);
        s.batch_sent("t", (first + 1) % 3, 3); // another partition's batch: no move
        assert_eq!(s.partition("t", 3), first);
        s.batch_sent("t", first, 3);
        assert_eq!(s.partition("t", 3), (first + 1) % 3);
        s.batch_sent("t", (first + 1) % 3, 3);
        assert_eq!(s.partition("t", 3), (first + 2) % 3);
        // Fewer partitions than the sticky one (cannot happen in Kafka, but stay in range).
        assert!(s.partition("t", 1) < 1);
    }
}
