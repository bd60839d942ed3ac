//! The durable Raft log of the metadata (`RaftLogStorage`), in `<data_dir>/cluster/`:
//!
//! - `raft.log`: records (`record.rs`: length, CRC-32C, JSON payload). The first record says
//!   which log id the log was purged up to; each later record is one entry, indexes contiguous.
//!   Appends write at the end and fdatasync before openraft hears they are flushed; truncation
//!   cuts the file at the first removed entry and fdatasyncs; a purge rewrites the file (new
//!   purge record, the remaining entries) with `durable::replace`, so it is atomic.
//! - `raft_state.json`: the vote and the committed log id, replaced atomically together.
//!
//! Durability contract: once `append`'s callback reports success, the entries survive a crash
//! (process or machine); once `save_vote` returns, so does the vote. On open, a torn tail
//! (the unacknowledged end of the last append) is cut; any other damage is an error, and so is
//! a log that ends before the committed log id.
//!
//! After a failed write or fdatasync the store is fenced: the page cache may hold bytes the
//! disk does not, so every later write fails until the node restarts and recovers from disk.
//! Reads keep working from memory: all entries are kept there too (the metadata log is small
//! and purged behind each snapshot). Blocking file I/O runs on the executor's blocking pool.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{IoError, LogStoreError};
use crate::limits::LOG_FILE_BYTES_MAX;
use crate::record;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The log file's name in the cluster directory.
pub const LOG_FILE: &str = "raft.log";
/// The vote and committed log id's file.
pub const STATE_FILE: &str = "raft_state.json";
/// Largest `raft_state.json` read back: it holds two log ids.
const STATE_FILE_BYTES_MAX: u64 = 64 << 10;

/// One record of the log file.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    /// First record of the file: entries up to this log id were purged.
    Purged(Option<LogId>),
    Entry(Entry),
}

/// What `raft_state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct HardState {
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// An entry in memory and where its record starts in the file.
#[derive(Debug, Clone)]
struct Stored {
    entry: Entry,
    offset: u64,
}

struct Inner {
    dir: PathBuf,
    file: Arc<File>,
    /// Bytes of the log file; the next record goes here.
    end_bytes: u64,
    entries: BTreeMap<u64, Stored>,
    purged: Option<LogId>,
    hard: HardState,
    /// Why writes are refused (an earlier write failed).
    fenced: Option<String>,
}

impl Inner {
    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.values().next_back().map(|s| s.entry.log_id).or(self.purged)
    }

    /// The index the next appended entry must have.
    fn next_index(&self) -> u64 {
        self.last_log_id().map_or(0, |id| id.index + 1)
    }

    fn check_fenced(&self) -> Result<(), LogStoreError> {
        match &self.fenced {
            Some(reason) => Err(LogStoreError::Fenced { reason: reason.clone() }),
            None => Ok(()),
        }
    }
}

/// The Raft log store; clones share one log (the clone handed out as the reader included).
#[derive(Clone)]
pub struct LogStore {
    inner: Rc<RefCell<Inner>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("LogStore")
            .field("dir", &inner.dir)
            .field("purged", &inner.purged)
            .field("entries", &inner.entries.len())
            .finish()
    }
}

fn encode_record(record: &Record, out: &mut Vec<u8>) -> Result<(), LogStoreError> {
    let payload = serde_json::to_vec(record).map_err(LogStoreError::Encode)?;
    record::encode_into(&payload, out)
        .ok_or(LogStoreError::RecordTooLarge { bytes: payload.len(), max: crate::limits::LOG_RECORD_BYTES_MAX })
}

/// A whole log file: the purge record, then `entries`; returns the bytes and each entry's
/// offset.
fn encode_file<'a>(
    purged: Option<LogId>,
    entries: impl Iterator<Item = &'a Entry>,
) -> Result<(Vec<u8>, Vec<u64>), LogStoreError> {
    let mut bytes = Vec::new();
    encode_record(&Record::Purged(purged), &mut bytes)?;
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(bytes.len() as u64);
        encode_record(&Record::Entry(entry.clone()), &mut bytes)?;
    }
    Ok((bytes, offsets))
}

fn open_rw(path: &Path) -> Result<File, IoError> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| IoError::new("open", path, e))
}

/// Opens (creating if absent) the log in `dir`; blocking.
fn open_blocking(dir: PathBuf) -> Result<Inner, LogStoreError> {
    std::fs::create_dir_all(&dir).map_err(|e| IoError::new("create dir", &dir, e))?;
    // The directory entry itself must survive a crash before anything in it counts (a vote
    // in a directory that vanishes would be forgotten).
    durable::sync_parent(&dir)?;
    let log_path = dir.join(LOG_FILE);
    let state_path = dir.join(STATE_FILE);
    durable::remove_leftover(&log_path)?;
    durable::remove_leftover(&state_path)?;

    let hard = match durable::read_bounded(&state_path, STATE_FILE_BYTES_MAX)? {
        Some(bytes) => serde_json::from_slice::<HardState>(&bytes).map_err(|e| LogStoreError::Corrupt {
            path: state_path.clone(),
            offset: 0,
            reason: e.to_string(),
        })?,
        None => HardState::default(),
    };

    if !log_path.exists() {
        let (bytes, _) = encode_file(None, std::iter::empty())?;
        durable::replace(&log_path, &bytes)?;
    }
    let bytes = durable::read_bounded(&log_path, LOG_FILE_BYTES_MAX)?.unwrap_or_default();
    let corrupt = |offset: u64, reason: String| LogStoreError::Corrupt { path: log_path.clone(), offset, reason };
    let scan = record::scan(&bytes).map_err(|d| corrupt(d.offset, d.reason))?;

    let mut records = scan.records.iter();
    let purged = match records.next() {
        Some(first) => match serde_json::from_slice::<Record>(first.payload) {
            Ok(Record::Purged(purged)) => purged,
            Ok(Record::Entry(_)) => return Err(corrupt(0, "the file does not start with its purge record".into())),
            Err(e) => return Err(corrupt(0, e.to_string())),
        },
        // Files are created whole by `durable::replace`: an empty one was damaged.
        None => return Err(corrupt(0, "no purge record".into())),
    };
    let mut entries = BTreeMap::new();
    for (expected, scanned) in (purged.map_or(0, |id| id.index + 1)..).zip(records) {
        let entry = match serde_json::from_slice::<Record>(scanned.payload) {
            Ok(Record::Entry(entry)) => entry,
            Ok(Record::Purged(_)) => return Err(corrupt(scanned.offset, "a purge record after the first".into())),
            Err(e) => return Err(corrupt(scanned.offset, e.to_string())),
        };
        // Read-side check of the append-side assert: indexes are contiguous.
        if entry.log_id.index != expected {
            let reason = format!("entry index {} where {expected} was expected", entry.log_id.index);
            return Err(corrupt(scanned.offset, reason));
        }
        entries.insert(entry.log_id.index, Stored { entry, offset: scanned.offset });
    }

    let file = open_rw(&log_path)?;
    if let Some(torn) = &scan.torn {
        tracing::warn!(
            path = %log_path.display(),
            offset = torn.offset,
            cut_bytes = bytes.len() as u64 - scan.valid_bytes,
            reason = %torn.reason,
            "cutting the torn tail of the Raft log"
        );
        file.set_len(scan.valid_bytes).map_err(|e| IoError::new("truncate", &log_path, e))?;
        file.sync_data().map_err(|e| IoError::new("fdatasync", &log_path, e))?;
    }
    let inner = Inner { dir, file: Arc::new(file), end_bytes: scan.valid_bytes, entries, purged, hard, fenced: None };
    // Committed entries were flushed before they were committed: a log that no longer holds
    // them lost acknowledged data.
    if inner.hard.committed.map(|c| c.index) > inner.last_log_id().map(|l| l.index) {
        let reason = format!(
            "the log ends at {:?}, before the committed log id {:?}",
            inner.last_log_id(),
            inner.hard.committed
        );
        return Err(corrupt(inner.end_bytes, reason));
    }
    Ok(inner)
}

impl LogStore {
    /// Opens the log in `dir` (created if absent), cutting a torn tail.
    pub async fn open(dir: &Path) -> Result<LogStore, LogStoreError> {
        let dir = dir.to_path_buf();
        let inner = durable::blocking(move || open_blocking(dir)).await?;
        tracing::info!(
            dir = %inner.dir.display(),
            purged = ?inner.purged,
            last = ?inner.last_log_id(),
            committed = ?inner.hard.committed,
            "Raft log opened"
        );
        Ok(LogStore { inner: Rc::new(RefCell::new(inner)) })
    }

    /// The log id of the last entry (or of the last purged one when the log is empty).
    pub fn last_log_id(&self) -> Option<LogId> {
        self.inner.borrow().last_log_id()
    }

    /// Why writes are refused, if an earlier write failed.
    pub fn fenced(&self) -> Option<String> {
        self.inner.borrow().fenced.clone()
    }

    /// Whether anything was ever stored here (a vote or an entry): a restart, not a first start.
    pub fn has_state(&self) -> bool {
        let inner = self.inner.borrow();
        inner.hard.vote.is_some() || inner.last_log_id().is_some()
    }

    fn fence(&self, reason: &str) {
        tracing::error!(reason, "Raft log fenced after a failed write");
        self.inner.borrow_mut().fenced.get_or_insert_with(|| reason.to_string());
    }

    /// Replaces `raft_state.json` with `hard`.
    async fn save_hard_state(&self, hard: HardState) -> Result<(), LogStoreError> {
        let (path, bytes) = {
            let inner = self.inner.borrow();
            inner.check_fenced()?;
            let bytes = serde_json::to_vec(&hard).map_err(LogStoreError::Encode)?;
            (inner.dir.join(STATE_FILE), bytes)
        };
        if let Err(e) = durable::blocking(move || durable::replace(&path, &bytes)).await {
            self.fence(&e.to_string());
            return Err(e.into());
        }
        self.inner.borrow_mut().hard = hard;
        Ok(())
    }

    async fn append_entries(&self, entries: Vec<Entry>) -> Result<(), LogStoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (file, path, at, bytes, offsets) = {
            let inner = self.inner.borrow();
            inner.check_fenced()?;
            let mut bytes = Vec::new();
            let mut offsets = Vec::with_capacity(entries.len());
            for (expected, entry) in (inner.next_index()..).zip(&entries) {
                // openraft appends right after the last entry (it truncates first when it
                // overwrites): a gap or an overlap here would corrupt the log.
                assert!(entry.log_id.index == expected, "append of {} where {expected} is next", entry.log_id);
                offsets.push(inner.end_bytes + bytes.len() as u64);
                encode_record(&Record::Entry(entry.clone()), &mut bytes)?;
            }
            (inner.file.clone(), inner.log_path(), inner.end_bytes, bytes, offsets)
        };
        let len = bytes.len() as u64;
        let written = durable::blocking(move || {
            file.write_all_at(&bytes, at).map_err(|e| IoError::new("write", &path, e))?;
            file.sync_data().map_err(|e| IoError::new("fdatasync", &path, e))
        })
        .await;
        if let Err(e) = written {
            self.fence(&e.to_string());
            return Err(e.into());
        }
        let mut inner = self.inner.borrow_mut();
        assert!(inner.end_bytes == at, "no other write moved the end of the log during an append");
        inner.end_bytes = at + len;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            inner.entries.insert(entry.log_id.index, Stored { entry, offset });
        }
        Ok(())
    }

    async fn truncate_since(&self, log_id: LogId) -> Result<(), LogStoreError> {
        let (file, path, offset) = {
            let inner = self.inner.borrow();
            inner.check_fenced()?;
            // Purged entries were applied, so they were committed: never truncated.
            assert!(Some(log_id.index) > inner.purged.map(|p| p.index), "truncating purged entry {log_id}");
            let Some(first) = inner.entries.range(log_id.index..).next() else { return Ok(()) };
            (inner.file.clone(), inner.log_path(), first.1.offset)
        };
        let cut = durable::blocking(move || {
            file.set_len(offset).map_err(|e| IoError::new("truncate", &path, e))?;
            file.sync_data().map_err(|e| IoError::new("fdatasync", &path, e))
        })
        .await;
        if let Err(e) = cut {
            self.fence(&e.to_string());
            return Err(e.into());
        }
        let mut inner = self.inner.borrow_mut();
        let removed = inner.entries.split_off(&log_id.index);
        assert!(removed.values().next().map(|s| s.offset) == Some(offset), "cut at the first removed entry");
        inner.end_bytes = offset;
        Ok(())
    }

    async fn purge_upto(&self, log_id: LogId) -> Result<(), LogStoreError> {
        let (path, bytes, offsets, kept) = {
            let inner = self.inner.borrow();
            inner.check_fenced()?;
            if Some(log_id) <= inner.purged {
                return Ok(());
            }
            let kept: Vec<u64> = inner.entries.range(log_id.index + 1..).map(|(i, _)| *i).collect();
            let remaining = inner.entries.range(log_id.index + 1..).map(|(_, s)| &s.entry);
            let (bytes, offsets) = encode_file(Some(log_id), remaining)?;
            (inner.log_path(), bytes, offsets, kept)
        };
        let len = bytes.len() as u64;
        let reopened = durable::blocking(move || {
            durable::replace(&path, &bytes)?;
            open_rw(&path)
        })
        .await;
        let file = match reopened {
            Ok(file) => file,
            Err(e) => {
                self.fence(&e.to_string());
                return Err(e.into());
            }
        };
        let mut inner = self.inner.borrow_mut();
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        assert!(inner.entries.keys().copied().eq(kept.iter().copied()), "no entry changed during a purge");
        for (stored, offset) in inner.entries.values_mut().zip(offsets) {
            stored.offset = offset;
        }
        inner.file = Arc::new(file);
        inner.end_bytes = len;
        inner.purged = Some(log_id);
        Ok(())
    }
}

fn storage_write_error(e: &LogStoreError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.borrow();
        Ok(inner.entries.range(range).map(|(_, s)| s.entry.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.inner.borrow();
        Ok(LogState { last_purged_log_id: inner.purged, last_log_id: inner.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let hard = HardState { vote: Some(*vote), ..self.inner.borrow().hard.clone() };
        self.save_hard_state(hard).await.map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.borrow().hard.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let hard = HardState { committed, ..self.inner.borrow().hard.clone() };
        if hard == self.inner.borrow().hard {
            return Ok(());
        }
        self.save_hard_state(hard).await.map_err(|e| storage_write_error(&e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.borrow().hard.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry>,
    {
        match self.append_entries(entries.into_iter().collect()).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_write_error(&e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating the Raft log");
        self.truncate_since(log_id).await.map_err(|e| storage_write_error(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging the Raft log");
        self.purge_upto(log_id).await.map_err(|e| storage_write_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use openraft::storage::RaftLogStorageExt;
    use openraft::Membership;
    use proptest::prelude::*;

    use super::*;
    use crate::test_util::{entry, log_id, run, temp_dir};

    async fn ids(store: &mut LogStore) -> Vec<LogId> {
        store.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id).collect()
    }

    async fn state(store: &mut LogStore) -> (Option<LogId>, Option<LogId>) {
        let s = store.get_log_state().await.unwrap();
        (s.last_purged_log_id, s.last_log_id)
    }

    /// Cuts `cut_bytes` off the end of the log file (a crash in the middle of the last write).
    fn cut_tail(dir: &Path, cut_bytes: u64) {
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - cut_bytes).unwrap();
    }

    #[test]
    fn append_read_vote_and_committed_survive_reopen() {
        run(|| async {
            let dir = temp_dir();
            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(state(&mut store).await, (None, None));
            assert!(!store.has_state());
            let membership = Membership::new(vec![[1u64, 2, 3].into_iter().collect()], None);
            let first = Entry { log_id: log_id(0, 0), payload: openraft::EntryPayload::Membership(membership) };
            store.blocking_append([first]).await.unwrap();
            store.blocking_append((1..10).map(|i| entry(1, i))).await.unwrap();
            let vote = Vote::new_committed(1, 2);
            store.save_vote(&vote).await.unwrap();
            store.save_committed(Some(log_id(1, 7))).await.unwrap();

            let got = store.try_get_log_entries(3..6).await.unwrap();
            assert_eq!(got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![3, 4, 5]);
            drop(store);

            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert!(store.has_state());
            assert_eq!(state(&mut store).await, (None, Some(log_id(1, 9))));
            assert_eq!(store.read_vote().await.unwrap(), Some(vote));
            assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 7)));
            let all = store.try_get_log_entries(..).await.unwrap();
            assert_eq!(all.len(), 10);
            assert!(matches!(all[0].payload, openraft::EntryPayload::Membership(_)));
            assert_eq!(all[4], entry(1, 4));
        });
    }

    #[test]
    fn truncate_and_purge_survive_reopen() {
        run(|| async {
            let dir = temp_dir();
            let mut store = LogStore::open(dir.path()).await.unwrap();
            store.blocking_append((0..10).map(|i| entry(1, i))).await.unwrap();
            store.truncate(log_id(1, 6)).await.unwrap();
            store.blocking_append((6..8).map(|i| entry(2, i))).await.unwrap();
            store.purge(log_id(1, 2)).await.unwrap();
            let expected: Vec<LogId> = (3..6).map(|i| log_id(1, i)).chain((6..8).map(|i| log_id(2, i))).collect();
            assert_eq!(ids(&mut store).await, expected);
            drop(store);

            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(ids(&mut store).await, expected);
            assert_eq!(state(&mut store).await, (Some(log_id(1, 2)), Some(log_id(2, 7))));
            // A purge past the end (after a snapshot was installed) empties the log; appends
            // continue after the purged id.
            store.purge(log_id(3, 20)).await.unwrap();
            assert_eq!(state(&mut store).await, (Some(log_id(3, 20)), Some(log_id(3, 20))));
            store.blocking_append([entry(3, 21)]).await.unwrap();
            drop(store);
            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(state(&mut store).await, (Some(log_id(3, 20)), Some(log_id(3, 21))));
            assert_eq!(ids(&mut store).await, vec![log_id(3, 21)]);
        });
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue_after_the_prefix() {
        run(|| async {
            let dir = temp_dir();
            let mut store = LogStore::open(dir.path()).await.unwrap();
            store.blocking_append((0..5).map(|i| entry(1, i))).await.unwrap();
            drop(store);
            cut_tail(dir.path(), 3);
            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(ids(&mut store).await, (0..4).map(|i| log_id(1, i)).collect::<Vec<_>>());
            store.blocking_append([entry(2, 4)]).await.unwrap();
            drop(store);
            let mut store = LogStore::open(dir.path()).await.unwrap();
            assert_eq!(state(&mut store).await, (None, Some(log_id(2, 4))));
        });
    }

    #[test]
    fn damage_in_the_middle_and_a_log_shorter_than_committed_are_errors() {
        run(|| async {
            let dir = temp_dir();
            let mut store = LogStore::open(dir.path()).await.unwrap();
            store.blocking_append((0..5).map(|i| entry(1, i))).await.unwrap();
            store.save_committed(Some(log_id(1, 4))).await.unwrap();
            drop(store);
            // The last entry torn off: the committed entry 4 is gone.
            cut_tail(dir.path(), 3);
            let err = LogStore::open(dir.path()).await.unwrap_err();
            assert!(matches!(err, LogStoreError::Corrupt { .. }), "{err}");

            let dir = temp_dir();
            let mut store = LogStore::open(dir.path()).await.unwrap();
            store.blocking_append((0..5).map(|i| entry(1, i))).await.unwrap();
            drop(store);
            let path = dir.path().join(LOG_FILE);
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            let err = LogStore::open(dir.path()).await.unwrap_err();
            assert!(matches!(err, LogStoreError::Corrupt { .. }), "{err}");
        });
    }

    /// Operations of the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Append(u64),
        /// Truncate at this fraction (per mille) of the entries.
        Truncate(u64),
        Purge(u64),
        Reopen,
        /// Cut this many bytes (mod the last record's size) off the last record, then reopen.
        TearTail(u64),
        Vote(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1..5u64).prop_map(Op::Append),
            1 => (0..1000u64).prop_map(Op::Truncate),
            1 => (0..1000u64).prop_map(Op::Purge),
            1 => Just(Op::Reopen),
            1 => (1..10_000u64).prop_map(Op::TearTail),
            1 => (1..100u64).prop_map(Op::Vote),
        ]
    }

    /// The model: what the log must hold.
    #[derive(Debug, Default)]
    struct Model {
        purged: Option<LogId>,
        entries: Vec<LogId>,
        vote: Option<Vote>,
        term: u64,
    }

    impl Model {
        fn next_index(&self) -> u64 {
            self.entries.last().or(self.purged.as_ref()).map_or(0, |l| l.index + 1)
        }
        fn pick(&self, per_mille: u64) -> Option<LogId> {
            if self.entries.is_empty() {
                return None;
            }
            Some(self.entries[(per_mille as usize * self.entries.len()) / 1000])
        }
    }

    async fn check(store: &mut LogStore, model: &Model) {
        assert_eq!(ids(store).await, model.entries);
        let last = model.entries.last().copied().or(model.purged);
        assert_eq!(state(store).await, (model.purged, last));
        assert_eq!(store.read_vote().await.unwrap(), model.vote);
    }

    async fn run_ops(ops: Vec<Op>) {
        let dir = temp_dir();
        let mut store = LogStore::open(dir.path()).await.unwrap();
        let mut model = Model { term: 1, ..Model::default() };
        for op in ops {
            match op {
                Op::Append(n) => {
                    let first = model.next_index();
                    let entries: Vec<Entry> = (first..first + n).map(|i| entry(model.term, i)).collect();
                    model.entries.extend(entries.iter().map(|e| e.log_id));
                    store.blocking_append(entries).await.unwrap();
                }
                Op::Truncate(at) => {
                    if let Some(id) = model.pick(at) {
                        model.entries.retain(|e| e.index < id.index);
                        model.term += 1;
                        store.truncate(id).await.unwrap();
                    }
                }
                Op::Purge(at) => {
                    if let Some(id) = model.pick(at) {
                        model.entries.retain(|e| e.index > id.index);
                        model.purged = Some(id);
                        store.purge(id).await.unwrap();
                    }
                }
                Op::Reopen => {
                    drop(store);
                    store = LogStore::open(dir.path()).await.unwrap();
                }
                Op::TearTail(bytes) => {
                    drop(store);
                    if model.entries.pop().is_some() {
                        let file = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
                        let scan = record::scan(&file).unwrap();
                        let last = scan.records.last().unwrap();
                        let record_bytes = file.len() as u64 - last.offset;
                        cut_tail(dir.path(), 1 + bytes % (record_bytes - 1));
                    }
                    store = LogStore::open(dir.path()).await.unwrap();
                }
                Op::Vote(term) => {
                    let vote = Vote::new(term, 2);
                    model.vote = Some(vote);
                    store.save_vote(&vote).await.unwrap();
                }
            }
            check(&mut store, &model).await;
        }
        drop(store);
        let mut store = LogStore::open(dir.path()).await.unwrap();
        check(&mut store, &model).await;
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn the_log_matches_a_vec_model_through_reopens_and_torn_tails(ops in proptest::collection::vec(op(), 1..30)) {
            run(move || run_ops(ops));
        }
    }
}
