//! Committed consumer-group offsets, durable across restarts.
//!
//! Like Kafka's `__consumer_offsets`, commits are records in an internal log (a normal `Log`
//! in `<data>/__consumer_offsets/`), appended with `Durability::Sync`, and the current value of
//! every key is kept in memory. Opening replays the log. When the log grows past
//! `GROUP_OFFSETS_COMPACT_BYTES` it is compacted: the live values are written to a fresh log,
//! which then replaces the old one by rename.
//!
//! Record key: `u16 group_len | group | u16 topic_len | topic | u32 partition`.
//! Record value, version 1: `u8 version (1) | u64 offset | i64 commit_timestamp_ms |
//! i32 leader_epoch (-1: none) | u16 metadata_len | metadata`; version 0 (written before
//! committed leader epochs were kept) is the same without `leader_epoch`, and reads as none.
//! A null value deletes the key (topic deleted, group or offsets deleted). All big-endian.
//!
//! Two commits in flight for one key may finish out of order (each waits for its own
//! fdatasync); the value with the larger log offset wins, as it would on replay.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use glommio::sync::Semaphore;

use crate::batch::{split_batches, BatchBuilder, BatchError};
use crate::catalog::{validate_topic_name, CatalogError, Durability};
use crate::error::{AppendError, IoError, MaintenanceError, OpenError, ReadError};
use crate::fs::{remove_dir_all, sync_dir};
use crate::ids::Offset;
use crate::limits::{GROUP_NAME_BYTES_MAX, GROUP_OFFSETS_COMPACT_BYTES, OFFSET_METADATA_BYTES_MAX, READ_BYTES_MAX};
use crate::log::{Log, LogConfig};

const DIR_NAME: &str = "__consumer_offsets";
const COMPACT_DIR_NAME: &str = "__consumer_offsets.compact";
const OLD_DIR_NAME: &str = "__consumer_offsets.old";
/// The value version written; `VALUE_VERSION_NO_EPOCH` is still read.
const VALUE_VERSION: u8 = 1;
const VALUE_VERSION_NO_EPOCH: u8 = 0;
/// The stored "no leader epoch" (Kafka's -1).
const LEADER_EPOCH_NONE: i32 = -1;
/// Commits hold one unit; compaction takes them all, so it runs alone.
const COMMIT_PERMITS_MAX: u64 = 1 << 20;
/// Records per batch written by compaction.
const COMPACT_BATCH_RECORDS: usize = 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupOffsetsError {
    #[error("invalid group name {name:?}: {reason}")]
    InvalidGroup { name: String, reason: &'static str },
    #[error(transparent)]
    InvalidTopic(#[from] CatalogError),
    #[error("offset metadata is {size_bytes} bytes, limit {OFFSET_METADATA_BYTES_MAX}")]
    MetadataTooLarge { size_bytes: usize },
    #[error("offset {offset} does not fit a Kafka offset (i64)")]
    OffsetTooLarge { offset: u64 },
    #[error("group offsets log: {0}")]
    Open(#[from] OpenError),
    #[error("group offsets log: {0}")]
    Append(#[from] AppendError),
    #[error("group offsets log: {0}")]
    Read(#[from] ReadError),
    #[error("group offsets log: {0}")]
    Maintenance(#[from] MaintenanceError),
    #[error("group offsets log: corrupt record: {0}")]
    Corrupt(String),
    #[error("group offsets log: {0}")]
    Io(#[from] IoError),
}

/// What a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: u64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// The leader epoch the consumer committed with (Kafka's committedLeaderEpoch), if any.
    pub leader_epoch: Option<u32>,
}

/// One partition's commit in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub metadata: String,
    /// The leader epoch of the record before `offset`, as the consumer saw it; `None` if unknown.
    pub leader_epoch: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    group: String,
    topic: String,
    partition: u32,
}

struct Entry {
    value: CommittedOffset,
    /// Offset of the record in the internal log that set this value.
    log_offset: Offset,
}

pub struct GroupOffsets {
    data_dir: PathBuf,
    log: RefCell<Log>,
    entries: RefCell<HashMap<Key, Entry>>,
    permits: Semaphore,
}

impl GroupOffsets {
    /// Opens (creating if needed) the offsets log under `data_dir` and replays it.
    pub async fn open(data_dir: &Path) -> Result<GroupOffsets, GroupOffsetsError> {
        finish_interrupted_compaction(data_dir).await?;
        let log = Log::open(&data_dir.join(DIR_NAME), LogConfig::default()).await?;
        let entries = replay(&log).await?;
        Ok(GroupOffsets {
            data_dir: data_dir.to_path_buf(),
            log: RefCell::new(log),
            entries: RefCell::new(entries),
            permits: Semaphore::new(COMMIT_PERMITS_MAX),
        })
    }

    /// Durably records `commits` for `group`; resolves after the fdatasync.
    pub async fn commit(&self, group: &str, commits: &[OffsetCommit], now_ms: i64) -> Result<(), GroupOffsetsError> {
        validate_group(group)?;
        if commits.is_empty() {
            return Ok(());
        }
        let mut builder = BatchBuilder::new();
        for c in commits {
            validate_topic_name(&c.topic)?;
            if c.metadata.len() > OFFSET_METADATA_BYTES_MAX {
                return Err(GroupOffsetsError::MetadataTooLarge { size_bytes: c.metadata.len() });
            }
            if c.offset > i64::MAX as u64 {
                return Err(GroupOffsetsError::OffsetTooLarge { offset: c.offset });
            }
            let key = encode_key(group, &c.topic, c.partition);
            let value = encode_value(c.offset, now_ms, c.leader_epoch, &c.metadata);
            builder.push(Some(&key), Some(&value), now_ms, &[]);
        }
        let batch = builder.build().map_err(|e| GroupOffsetsError::Corrupt(e.to_string()))?;
        let permit = self.permits.acquire_permit(1).await.map_err(|_| AppendError::Closed)?;
        let log = self.log.borrow().clone();
        let info = log.append(&[batch], Durability::Sync).await?;
        {
            let mut entries = self.entries.borrow_mut();
            for (i, c) in commits.iter().enumerate() {
                let key = Key { group: group.to_owned(), topic: c.topic.clone(), partition: c.partition };
                let value = CommittedOffset {
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                    commit_timestamp_ms: now_ms,
                    leader_epoch: c.leader_epoch,
                };
                apply(&mut entries, key, Some(value), record_offset(&info, i)?);
            }
        }
        drop(permit);
        self.maybe_compact().await
    }

    pub fn fetch(&self, group: &str, topic: &str, partition: u32) -> Option<CommittedOffset> {
        let key = Key { group: group.to_owned(), topic: topic.to_owned(), partition };
        self.entries.borrow().get(&key).map(|e| e.value.clone())
    }

    /// Every committed offset of `group`, sorted by topic and partition.
    pub fn fetch_group(&self, group: &str) -> Vec<(String, u32, CommittedOffset)> {
        let mut out: Vec<_> = self
            .entries
            .borrow()
            .iter()
            .filter(|(k, _)| k.group == group)
            .map(|(k, e)| (k.topic.clone(), k.partition, e.value.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Every group with a committed offset, sorted.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.entries.borrow().keys().map(|k| k.group.clone()).collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Forgets every group's offsets for `topic` (the topic was deleted).
    pub async fn delete_topic(&self, topic: &str, now_ms: i64) -> Result<(), GroupOffsetsError> {
        let keys: Vec<Key> = self.entries.borrow().keys().filter(|k| k.topic == topic).cloned().collect();
        self.delete_keys(keys, now_ms).await
    }

    /// Forgets every offset `group` committed (the group was deleted); returns how many.
    pub async fn delete_group(&self, group: &str, now_ms: i64) -> Result<usize, GroupOffsetsError> {
        let keys: Vec<Key> = self.entries.borrow().keys().filter(|k| k.group == group).cloned().collect();
        let count = keys.len();
        self.delete_keys(keys, now_ms).await?;
        Ok(count)
    }

    /// Forgets `group`'s offsets of these partitions (Kafka's OffsetDelete); partitions
    /// without a committed offset are skipped.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
        now_ms: i64,
    ) -> Result<(), GroupOffsetsError> {
        let keys: Vec<Key> = {
            let entries = self.entries.borrow();
            partitions
                .iter()
                .map(|(topic, partition)| Key { group: group.to_owned(), topic: topic.clone(), partition: *partition })
                .filter(|k| entries.contains_key(k))
                .collect()
        };
        self.delete_keys(keys, now_ms).await
    }

    /// Writes a tombstone for each key (one durable append), then forgets them.
    async fn delete_keys(&self, keys: Vec<Key>, now_ms: i64) -> Result<(), GroupOffsetsError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut builder = BatchBuilder::new();
        for k in &keys {
            builder.push(Some(&encode_key(&k.group, &k.topic, k.partition)), None, now_ms, &[]);
        }
        let batch = builder.build().map_err(|e| GroupOffsetsError::Corrupt(e.to_string()))?;
        let permit = self.permits.acquire_permit(1).await.map_err(|_| AppendError::Closed)?;
        let log = self.log.borrow().clone();
        let info = log.append(&[batch], Durability::Sync).await?;
        let mut entries = self.entries.borrow_mut();
        for (i, k) in keys.into_iter().enumerate() {
            apply(&mut entries, k, None, record_offset(&info, i)?);
        }
        drop(permit);
        Ok(())
    }

    pub async fn close(&self) -> Result<(), GroupOffsetsError> {
        let _all = self.permits.acquire_permit(COMMIT_PERMITS_MAX).await;
        let log = self.log.borrow().clone();
        log.close().await?;
        Ok(())
    }

    /// Bytes in the internal log (for tests and metrics).
    pub fn log_size_bytes(&self) -> u64 {
        self.log.borrow().stats().size_bytes
    }

    async fn maybe_compact(&self) -> Result<(), GroupOffsetsError> {
        if self.log_size_bytes() < GROUP_OFFSETS_COMPACT_BYTES {
            return Ok(());
        }
        self.compact().await
    }

    /// Rewrites the live values into a fresh log and swaps it in:
    /// write `.compact` → close it → rename live → `.old` → rename `.compact` → live →
    /// fsync the data dir → delete `.old`. `finish_interrupted_compaction` completes or undoes
    /// each step after a crash.
    pub async fn compact(&self) -> Result<(), GroupOffsetsError> {
        let _all = self.permits.acquire_permit(COMMIT_PERMITS_MAX).await.map_err(|_| AppendError::Closed)?;
        let compact_dir = self.data_dir.join(COMPACT_DIR_NAME);
        remove_dir_all(&compact_dir).await?;
        let fresh = Log::open(&compact_dir, LogConfig::default()).await?;
        let snapshot: Vec<(Key, CommittedOffset)> =
            self.entries.borrow().iter().map(|(k, e)| (k.clone(), e.value.clone())).collect();
        for chunk in snapshot.chunks(COMPACT_BATCH_RECORDS) {
            let mut builder = BatchBuilder::new();
            for (k, v) in chunk {
                let value = encode_value(v.offset, v.commit_timestamp_ms, v.leader_epoch, &v.metadata);
                builder.push(
                    Some(&encode_key(&k.group, &k.topic, k.partition)),
                    Some(&value),
                    v.commit_timestamp_ms,
                    &[],
                );
            }
            let batch = builder.build().map_err(|e| GroupOffsetsError::Corrupt(e.to_string()))?;
            fresh.append(&[batch], Durability::None).await?;
        }
        fresh.close().await?;
        let old = self.log.borrow().clone();
        old.close().await?;
        let live_dir = self.data_dir.join(DIR_NAME);
        let old_dir = self.data_dir.join(OLD_DIR_NAME);
        glommio::io::rename(&live_dir, &old_dir)
            .await
            .map_err(|e| IoError::new("rename", &live_dir, crate::fs::io_err(e)))?;
        glommio::io::rename(&compact_dir, &live_dir)
            .await
            .map_err(|e| IoError::new("rename", &compact_dir, crate::fs::io_err(e)))?;
        sync_dir(&self.data_dir).await?;
        remove_dir_all(&old_dir).await?;
        let log = Log::open(&live_dir, LogConfig::default()).await?;
        let entries = replay(&log).await?;
        *self.log.borrow_mut() = log;
        *self.entries.borrow_mut() = entries;
        Ok(())
    }
}

/// After a crash mid-compaction: if the live log is gone, the finished `.compact` becomes it;
/// otherwise a half-built `.compact` is dropped. A leftover `.old` is always dropped.
async fn finish_interrupted_compaction(data_dir: &Path) -> Result<(), GroupOffsetsError> {
    let live_dir = data_dir.join(DIR_NAME);
    let compact_dir = data_dir.join(COMPACT_DIR_NAME);
    let old_dir = data_dir.join(OLD_DIR_NAME);
    let exists = |p: PathBuf| async move { glommio::executor().spawn_blocking(move || p.exists()).await };
    if !exists(live_dir.clone()).await && exists(compact_dir.clone()).await {
        // `.compact` was closed cleanly before the first rename, so it is complete.
        glommio::io::rename(&compact_dir, &live_dir)
            .await
            .map_err(|e| IoError::new("rename", &compact_dir, crate::fs::io_err(e)))?;
        sync_dir(data_dir).await?;
    }
    remove_dir_all(&compact_dir).await?;
    remove_dir_all(&old_dir).await?;
    Ok(())
}

async fn replay(log: &Log) -> Result<HashMap<Key, Entry>, GroupOffsetsError> {
    let mut entries = HashMap::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, READ_BYTES_MAX).await?;
        if read.is_empty() {
            break;
        }
        for batch in split_batches(read.to_bytes()) {
            let batch = batch.map_err(|e: BatchError| GroupOffsetsError::Corrupt(e.to_string()))?;
            for record in batch.records() {
                let record = record.map_err(|e| GroupOffsetsError::Corrupt(e.to_string()))?;
                let key_bytes = record.key.ok_or_else(|| GroupOffsetsError::Corrupt("record without key".into()))?;
                let key = decode_key(&key_bytes)?;
                let value = match record.value {
                    Some(v) => Some(decode_value(&v)?),
                    None => None,
                };
                let log_offset = Offset::from_wire(record.offset)
                    .ok_or_else(|| GroupOffsetsError::Corrupt(format!("record at offset {}", record.offset)))?;
                apply(&mut entries, key, value, log_offset);
            }
        }
        offset = read.next_offset;
    }
    Ok(entries)
}

/// The log offset of the `i`-th record of a one-batch append.
fn record_offset(info: &crate::AppendInfo, i: usize) -> Result<Offset, GroupOffsetsError> {
    let base = info.base_offsets.first().copied();
    base.and_then(|b| b.checked_add(i as u64))
        .filter(|o| *o < info.log_end_offset)
        .ok_or_else(|| GroupOffsetsError::Corrupt(format!("record {i} outside the append {info:?}")))
}

fn apply(entries: &mut HashMap<Key, Entry>, key: Key, value: Option<CommittedOffset>, log_offset: Offset) {
    if entries.get(&key).is_some_and(|e| e.log_offset > log_offset) {
        return; // A newer record already set this key.
    }
    match value {
        Some(value) => {
            entries.insert(key, Entry { value, log_offset });
        }
        None => {
            entries.remove(&key);
        }
    }
}

/// A group id any store accepts: non-empty, at most `GROUP_NAME_BYTES_MAX` bytes of printable ASCII.
pub fn validate_group(group: &str) -> Result<(), GroupOffsetsError> {
    let reason = if group.is_empty() {
        Some("empty")
    } else if group.len() > GROUP_NAME_BYTES_MAX {
        Some("too long")
    } else if !group.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Some("only printable ASCII is allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(GroupOffsetsError::InvalidGroup { name: group.to_owned(), reason }),
        None => Ok(()),
    }
}

fn encode_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + group.len() + topic.len());
    out.extend_from_slice(&(group.len() as u16).to_be_bytes());
    out.extend_from_slice(group.as_bytes());
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

fn encode_value(offset: u64, commit_timestamp_ms: i64, leader_epoch: Option<u32>, metadata: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(23 + metadata.len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&commit_timestamp_ms.to_be_bytes());
    let epoch = leader_epoch.and_then(|e| i32::try_from(e).ok()).unwrap_or(LEADER_EPOCH_NONE);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&(metadata.len() as u16).to_be_bytes());
    out.extend_from_slice(metadata.as_bytes());
    out
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GroupOffsetsError> {
        if self.bytes.len() < n {
            return Err(GroupOffsetsError::Corrupt(format!("record field needs {n} bytes, {} left", self.bytes.len())));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GroupOffsetsError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn string(&mut self) -> Result<String, GroupOffsetsError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GroupOffsetsError::Corrupt("string is not UTF-8".into()))
    }

    fn finish(&self) -> Result<(), GroupOffsetsError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(GroupOffsetsError::Corrupt(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

fn decode_key(bytes: &Bytes) -> Result<Key, GroupOffsetsError> {
    let mut c = Cursor { bytes };
    let group = c.string()?;
    let topic = c.string()?;
    let partition = u32::from_be_bytes(c.array()?);
    c.finish()?;
    Ok(Key { group, topic, partition })
}

fn decode_value(bytes: &Bytes) -> Result<CommittedOffset, GroupOffsetsError> {
    let mut c = Cursor { bytes };
    let [version] = c.array()?;
    if version != VALUE_VERSION && version != VALUE_VERSION_NO_EPOCH {
        return Err(GroupOffsetsError::Corrupt(format!("unknown value version {version}")));
    }
    let offset = u64::from_be_bytes(c.array()?);
    let commit_timestamp_ms = i64::from_be_bytes(c.array()?);
    let leader_epoch = if version == VALUE_VERSION {
        let stored = i32::from_be_bytes(c.array()?);
        if stored < LEADER_EPOCH_NONE {
            return Err(GroupOffsetsError::Corrupt(format!("leader epoch {stored}")));
        }
        u32::try_from(stored).ok()
    } else {
        None
    };
    let metadata = c.string()?;
    c.finish()?;
    Ok(CommittedOffset { offset, metadata, commit_timestamp_ms, leader_epoch })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_the_leader_epoch_and_version_0_values_still_read() {
        let v1 = Bytes::from(encode_value(42, 7, Some(3), "meta"));
        let read = decode_value(&v1).unwrap();
        assert_eq!(
            (read.offset, read.commit_timestamp_ms, read.leader_epoch, read.metadata.as_str()),
            (42, 7, Some(3), "meta")
        );
        assert_eq!(decode_value(&Bytes::from(encode_value(1, 2, None, ""))).unwrap().leader_epoch, None);
        // Version 0, as written before epochs were kept: no epoch field.
        let mut v0 = vec![VALUE_VERSION_NO_EPOCH];
        v0.extend_from_slice(&42u64.to_be_bytes());
        v0.extend_from_slice(&7i64.to_be_bytes());
        v0.extend_from_slice(&4u16.to_be_bytes());
        v0.extend_from_slice(b"meta");
        let old = decode_value(&Bytes::from(v0)).unwrap();
        assert_eq!((old.offset, old.leader_epoch, old.metadata.as_str()), (42, None, "meta"));
        // Every strict prefix of a value is refused.
        for len in 0..v1.len() {
            assert!(decode_value(&v1.slice(..len)).is_err(), "prefix of {len} bytes");
        }
    }
}
