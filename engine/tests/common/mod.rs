//! Helpers shared by the engine's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use engine::batch::{split_batches, BatchBuilder};
use engine::ids::Offset;
use engine::LogConfig;

/// An offset, for short test literals.
pub fn o(offset: u64) -> Offset {
    Offset::new(offset)
}

/// The shard cache budget `run` gives each test executor: small, so that most reads of a test
/// go to disk (a test sets its own with `engine::cache::set_shard_budget_bytes`).
pub const TEST_SHARD_CACHE_BYTES: u64 = 16 << 10;

/// Runs `f` on a fresh glommio executor (a shard, with a `TEST_SHARD_CACHE_BYTES` cache) and
/// returns its result.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(move || {
            engine::cache::set_shard_budget_bytes(TEST_SHARD_CACHE_BYTES);
            f()
        })
        .expect("spawn executor")
        .join()
        .expect("executor panicked")
}

/// A temp dir on the real file system (ext4 here): O_DIRECT does not work on tmpfs.
pub fn temp_dir() -> tempfile::TempDir {
    let base = std::env::var_os("SHARDLOG_TEST_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new().prefix("shardlog-test-").tempdir_in(base).unwrap()
}

/// A batch of `count` records whose values encode `seed` and their index.
pub fn batch(seed: u64, count: u32, value_bytes: usize, timestamp_ms: i64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..count {
        let mut value = vec![0u8; value_bytes.max(12)];
        value[..8].copy_from_slice(&seed.to_be_bytes());
        value[8..12].copy_from_slice(&i.to_be_bytes());
        for (j, b) in value.iter_mut().enumerate().skip(12) {
            *b = (seed as usize + j) as u8;
        }
        let key = format!("k{seed}-{i}");
        builder.push(Some(key.as_bytes()), Some(&value), timestamp_ms + i64::from(i), &[]);
    }
    builder.build().unwrap()
}

/// Small segments so tests roll often; a small preallocation step so they stay small.
pub fn small_config() -> LogConfig {
    LogConfig { segment_bytes: 64 << 10, preallocate_step_bytes: 64 << 10, ..LogConfig::default() }
}

/// The records' payload of a concatenation of batches, with offsets replaced by
/// (base_offset, record count, bytes from byte 16 on) — what must survive a round trip.
pub fn batch_bodies(bytes: Bytes) -> Vec<(i64, u32, Bytes)> {
    split_batches(bytes)
        .map(|b| {
            let b = b.unwrap();
            (b.base_offset(), b.record_count(), b.bytes().slice(16..))
        })
        .collect()
}

/// Reads the whole log from `from` to the end, asserting offsets are contiguous.
pub async fn read_all(log: &engine::Log, from: Offset) -> Vec<(i64, u32, Bytes)> {
    let mut out = Vec::new();
    let mut offset = from;
    let end = log.log_end_offset();
    while offset < end {
        let read = log.read(offset, 256 << 10).await.unwrap();
        assert!(!read.is_empty(), "empty read at {offset} before end {end}");
        for (base, count, body) in batch_bodies(read.to_bytes()) {
            assert_eq!(Offset::from_wire(base), Some(offset), "offsets must be contiguous");
            offset = offset.checked_add(u64::from(count)).unwrap();
            out.push((base, count, body));
        }
        assert_eq!(read.next_offset, offset);
    }
    out
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// One batch as a segment file stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatch {
    pub position: u64,
    pub size: u64,
    pub base_offset: u64,
    pub epoch: i32,
}

/// Walks a segment file's batches (it must hold whole batches only: a sealed or closed one).
pub fn stored_batches(path: &Path) -> Vec<StoredBatch> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 16 <= bytes.len() {
        let base_offset = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let size = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize + 12;
        let epoch = i32::from_be_bytes(bytes[at + 12..at + 16].try_into().unwrap());
        out.push(StoredBatch { position: at as u64, size: size as u64, base_offset, epoch });
        at += size;
    }
    assert_eq!(at, bytes.len(), "segment {path:?} is not whole batches");
    out
}

/// Overwrites the partitionLeaderEpoch (bytes 12..16, outside the CRC) of the batch at
/// `position` of the segment file `path`.
pub fn write_stored_epoch(path: &Path, position: u64, epoch: i32) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&epoch.to_be_bytes(), position + 12).unwrap();
    file.sync_all().unwrap();
}

/// `(base offset, stored epoch)` of every batch a read of the whole log returns.
pub async fn read_epochs(log: &engine::Log) -> Vec<(u64, i32)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 256 << 10).await.unwrap();
        assert!(!read.is_empty());
        for b in split_batches(read.to_bytes()) {
            let b = b.unwrap();
            out.push((b.base_offset() as u64, b.header().partition_leader_epoch));
        }
        offset = read.next_offset;
    }
    out
}

/// Every batch of the log from its start, whole (the 16-byte head included), as stored.
pub async fn read_whole_batches(log: &engine::Log) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 256 << 10).await.unwrap();
        assert!(!read.is_empty(), "empty read at {offset}");
        for b in split_batches(read.to_bytes()) {
            out.push(b.unwrap().into_bytes());
        }
        offset = read.next_offset;
    }
    out
}

/// A batch as a leader stores it: `batch(seed, count, ..)` with `base_offset` and `epoch`
/// written into its head (outside the CRC).
pub fn stored_batch(seed: u64, count: u32, value_bytes: usize, base_offset: u64, epoch: i32) -> Bytes {
    let mut b = batch(seed, count, value_bytes, seed as i64).to_vec();
    b[0..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    b[12..16].copy_from_slice(&epoch.to_be_bytes());
    Bytes::from(b)
}
