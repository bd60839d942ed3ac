//! Message keys and values. Values are cut from a pool of pseudo-random bytes (so no layer
//! below can compress them), then the tail past `random_ratio` of each value is zeroed, so a
//! ratio below 1.0 makes compressible data. Seeded: a run's messages are reproducible.

use crate::config::KeyMode;
use crate::values::SizeSpec;

/// The random pool is this much larger than the largest message, so consecutive values start
/// at different offsets.
const POOL_EXTRA_BYTES: usize = 64 << 10;
const KEY_BYTES: usize = 16;

/// xorshift64*: fast, seeded, good enough for sizes, keys and filler bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }
}

pub struct Message<'a> {
    pub key: Option<&'a [u8]>,
    pub partition: Option<u32>,
    pub value: &'a [u8],
}

pub struct PayloadGen {
    rng: Rng,
    pool: Vec<u8>,
    value: Vec<u8>,
    key: [u8; KEY_BYTES],
    size: SizeSpec,
    random_ratio: f64,
    keys: KeyMode,
    partitions: u32,
    next_partition: u32,
}

impl PayloadGen {
    pub fn new(seed: u64, size: SizeSpec, random_ratio: f64, keys: KeyMode, partitions: u32) -> PayloadGen {
        assert!(partitions > 0);
        assert!((0.0..=1.0).contains(&random_ratio));
        let mut rng = Rng::new(seed);
        let pool_bytes = size.max_bytes() as usize + POOL_EXTRA_BYTES;
        let mut pool = vec![0u8; pool_bytes];
        for chunk in pool.chunks_mut(8) {
            let bytes = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let next_partition = (seed % u64::from(partitions)) as u32;
        PayloadGen {
            rng,
            pool,
            value: Vec::with_capacity(size.max_bytes() as usize),
            key: [0; KEY_BYTES],
            size,
            random_ratio,
            keys,
            partitions,
            next_partition,
        }
    }

    pub fn next_message(&mut self) -> Message<'_> {
        let size_bytes = match self.size {
            SizeSpec::Fixed(n) => n as usize,
            SizeSpec::Uniform { min_bytes, max_bytes } => {
                self.rng.between(u64::from(min_bytes), u64::from(max_bytes)) as usize
            }
        };
        let random_bytes = (size_bytes as f64 * self.random_ratio).round() as usize;
        let start = (self.rng.next_u64() as usize) % (self.pool.len() - size_bytes + 1);
        // All-random values are the pool's bytes as they are: no copy (the client copies the
        // value into its batch anyway). Only a partly random value needs its own buffer.
        let value: &[u8] = if random_bytes == size_bytes {
            &self.pool[start..start + size_bytes]
        } else {
            self.value.clear();
            self.value.extend_from_slice(&self.pool[start..start + random_bytes]);
            self.value.resize(size_bytes, 0);
            &self.value
        };
        debug_assert_eq!(value.len(), size_bytes);
        let (key, partition) = match self.keys {
            KeyMode::None => (None, None),
            KeyMode::Random => {
                self.key[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                self.key[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
                (Some(&self.key[..]), None)
            }
            KeyMode::RoundRobin => {
                let p = self.next_partition;
                self.next_partition = (p + 1) % self.partitions;
                (None, Some(p))
            }
        };
        Message { key, partition, value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_asked_size_and_randomness() {
        let mut gen = PayloadGen::new(7, SizeSpec::Uniform { min_bytes: 10, max_bytes: 20 }, 0.5, KeyMode::None, 4);
        for _ in 0..100 {
            let m = gen.next_message();
            assert!((10..=20).contains(&m.value.len()));
            let half = (m.value.len() as f64 * 0.5).round() as usize;
            assert!(m.value[half..].iter().all(|&b| b == 0));
        }
        let mut gen = PayloadGen::new(7, SizeSpec::Fixed(8), 1.0, KeyMode::RoundRobin, 3);
        let partitions: Vec<_> = (0..6).map(|_| gen.next_message().partition.unwrap()).collect();
        assert_eq!(partitions[..3], partitions[3..]);
        let mut gen = PayloadGen::new(1, SizeSpec::Fixed(8), 1.0, KeyMode::Random, 3);
        assert_eq!(gen.next_message().key.map(<[u8]>::len), Some(KEY_BYTES));
    }
}
