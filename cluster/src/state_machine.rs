//! The replicated state machine: committed entries applied, in log order, to `ClusterMetadata`
//! (normal entries through its deterministic `apply`; membership entries recorded as the
//! stored membership). After each batch the new metadata is published to every shard of this
//! node through the `MetadataSink`.
//!
//! Snapshots are JSON of (metadata, last applied log id, membership), built on demand and kept
//! in `<data_dir>/cluster/snapshot.json` (replaced atomically, with the snapshot's meta), which
//! is the state restored at start; openraft then re-applies the committed entries after it
//! from the log. A snapshot received from the leader is written there before it replaces the
//! state, and an older snapshot never overwrites a newer one on disk: the log is purged
//! behind the newest, so going back would leave a gap.

use std::cell::{Cell, RefCell};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use broker::cluster::{ClusterMetadata, MetaResponse, MetadataSink};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::SnapshotError;
use crate::limits::SNAPSHOT_FILE_BYTES_MAX;
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The snapshot file's name in the cluster directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// What a snapshot holds (its data, sent to peers as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotState {
    pub metadata: ClusterMetadata,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// The snapshot file: the snapshot's meta and its state.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    state: SnapshotState,
}

struct State {
    metadata: Arc<ClusterMetadata>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The newest snapshot (meta and data), served to lagging peers.
    snapshot: Option<(SnapshotMeta, Arc<Vec<u8>>)>,
}

struct Inner {
    path: PathBuf,
    state: RefCell<State>,
    sink: Rc<dyn MetadataSink>,
    /// One snapshot file write at a time, so that the newer-than check and the write are one
    /// step.
    file_lock: glommio::sync::Semaphore,
    /// The last log id of the snapshot on disk.
    persisted: Cell<Option<LogId>>,
    /// Makes snapshot ids unique on this node.
    builds: Cell<u64>,
}

/// The metadata state machine; clones share it (the snapshot builder is one).
#[derive(Clone)]
pub struct StateMachine {
    inner: Rc<Inner>,
}

/// Builds snapshots of the state machine it came from.
pub struct SnapshotBuilder {
    inner: Rc<Inner>,
}

fn read_snapshot_file(path: &Path) -> Result<Option<SnapshotFile>, SnapshotError> {
    let Some(bytes) = durable::read_bounded(path, SNAPSHOT_FILE_BYTES_MAX)? else { return Ok(None) };
    let file: SnapshotFile = serde_json::from_slice(&bytes)
        .map_err(|e| SnapshotError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })?;
    if file.meta.last_log_id != file.state.last_applied {
        let reason = format!("meta says {:?}, state says {:?}", file.meta.last_log_id, file.state.last_applied);
        return Err(SnapshotError::Corrupt { path: path.to_path_buf(), reason });
    }
    Ok(Some(file))
}

impl StateMachine {
    /// Opens the state machine of the cluster directory `dir`, restoring the snapshot there if
    /// any. Publishes nothing: the caller publishes the restored metadata once Raft has
    /// re-applied the committed log on top of it.
    pub async fn open(dir: &Path, sink: Rc<dyn MetadataSink>) -> Result<StateMachine, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        let read_path = path.clone();
        let file = durable::blocking(move || {
            durable::remove_leftover(&read_path)?;
            read_snapshot_file(&read_path)
        })
        .await?;
        let (state, persisted) = match file {
            Some(file) => {
                let data = serde_json::to_vec(&file.state).map_err(SnapshotError::Encode)?;
                let persisted = file.meta.last_log_id;
                tracing::info!(path = %path.display(), last = ?persisted, "restored the metadata snapshot");
                let state = State {
                    metadata: Arc::new(file.state.metadata),
                    last_applied: file.state.last_applied,
                    membership: file.state.membership,
                    snapshot: Some((file.meta, Arc::new(data))),
                };
                (state, persisted)
            }
            None => {
                let state = State {
                    metadata: Arc::new(ClusterMetadata::default()),
                    last_applied: None,
                    membership: StoredMembership::default(),
                    snapshot: None,
                };
                (state, None)
            }
        };
        let inner = Inner {
            path,
            state: RefCell::new(state),
            sink,
            file_lock: glommio::sync::Semaphore::new(1),
            persisted: Cell::new(persisted),
            builds: Cell::new(0),
        };
        Ok(StateMachine { inner: Rc::new(inner) })
    }

    /// The metadata as of the last applied entry.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.inner.state.borrow().metadata.clone()
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.inner.state.borrow().last_applied
    }

    /// Publishes the current metadata to the sink (at start, after restoring).
    pub fn publish(&self) {
        let metadata = self.metadata();
        self.inner.sink.publish(metadata);
    }

    /// Writes `meta` + `state` as the snapshot file unless the file already holds a snapshot
    /// at least as new.
    async fn persist(&self, meta: &SnapshotMeta, state: &SnapshotState) -> Result<(), SnapshotError> {
        let _permit = self
            .inner
            .file_lock
            .acquire_permit(1)
            .await
            .map_err(|e| SnapshotError::BadData { reason: format!("snapshot file lock: {e}") })?;
        let persisted = self.inner.persisted.get();
        if persisted.is_some() && meta.last_log_id <= persisted {
            return Ok(());
        }
        let file = SnapshotFile { meta: meta.clone(), state: state.clone() };
        let bytes = serde_json::to_vec(&file).map_err(SnapshotError::Encode)?;
        let path = self.inner.path.clone();
        durable::blocking(move || durable::replace(&path, &bytes)).await?;
        self.inner.persisted.set(meta.last_log_id);
        Ok(())
    }

    /// Keeps `meta`/`data` as the snapshot served to peers unless a newer one is kept.
    fn keep_snapshot(&self, meta: SnapshotMeta, data: Arc<Vec<u8>>) {
        let mut state = self.inner.state.borrow_mut();
        let newer = match &state.snapshot {
            Some((kept, _)) => meta.last_log_id > kept.last_log_id,
            None => true,
        };
        if newer {
            state.snapshot = Some((meta, data));
        }
    }

    async fn build(&self) -> Result<Snapshot, SnapshotError> {
        let state = {
            let state = self.inner.state.borrow();
            SnapshotState {
                metadata: (*state.metadata).clone(),
                last_applied: state.last_applied,
                membership: state.membership.clone(),
            }
        };
        let data = Arc::new(serde_json::to_vec(&state).map_err(SnapshotError::Encode)?);
        let build = self.inner.builds.get() + 1;
        self.inner.builds.set(build);
        let snapshot_id = match state.last_applied {
            Some(id) => format!("{}-{}-{build}", id.leader_id, id.index),
            None => format!("none-{build}"),
        };
        let meta =
            SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone(), snapshot_id };
        self.persist(&meta, &state).await?;
        self.keep_snapshot(meta.clone(), data.clone());
        tracing::info!(last = ?meta.last_log_id, bytes = data.len(), "built a metadata snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new((*data).clone())) })
    }

    async fn install(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), SnapshotError> {
        let state: SnapshotState =
            serde_json::from_slice(&data).map_err(|e| SnapshotError::BadData { reason: e.to_string() })?;
        if state.last_applied != meta.last_log_id {
            let reason = format!("meta says {:?}, data says {:?}", meta.last_log_id, state.last_applied);
            return Err(SnapshotError::BadData { reason });
        }
        self.persist(meta, &state).await?;
        {
            let mut current = self.inner.state.borrow_mut();
            current.metadata = Arc::new(state.metadata);
            current.last_applied = state.last_applied;
            current.membership = state.membership;
        }
        self.keep_snapshot(meta.clone(), Arc::new(data));
        tracing::info!(last = ?meta.last_log_id, "installed a metadata snapshot from the leader");
        self.publish();
        Ok(())
    }

    fn apply_entries(&self, entries: Vec<Entry>) -> Vec<MetaResponse> {
        let mut responses = Vec::with_capacity(entries.len());
        if entries.is_empty() {
            return responses;
        }
        {
            let mut state = self.inner.state.borrow_mut();
            let State { metadata, last_applied, membership, .. } = &mut *state;
            let metadata = Arc::make_mut(metadata);
            for entry in entries {
                // openraft applies each committed entry once, in order: a gap or a repeat would
                // make this node's metadata differ from the others'.
                let expected = last_applied.map_or(0, |l| l.index + 1);
                assert!(entry.log_id.index == expected, "applying {} where {expected} is next", entry.log_id);
                *last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => MetaResponse::Ok,
                    EntryPayload::Normal(command) => metadata.apply(&command),
                    EntryPayload::Membership(m) => {
                        *membership = StoredMembership::new(Some(entry.log_id), m);
                        MetaResponse::Ok
                    }
                };
                responses.push(response);
            }
        }
        self.publish();
        responses
    }
}

fn read_error(e: SnapshotError) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

fn write_error(e: SnapshotError) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        StateMachine { inner: self.inner.clone() }.build().await.map_err(write_error)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.inner.state.borrow();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry>,
    {
        Ok(self.apply_entries(entries.into_iter().collect()))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { inner: self.inner.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot.into_inner()).await.map_err(read_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let state = self.inner.state.borrow();
        Ok(state
            .snapshot
            .as_ref()
            .map(|(meta, data)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new((**data).clone())) }))
    }
}

#[cfg(test)]
mod tests {
    use broker::cluster::{BrokerInfo, MetaCommand};
    use openraft::{BasicNode, Membership};

    use super::*;
    use crate::test_util::{log_id, run, temp_dir};

    #[derive(Default)]
    struct Recorder {
        published: RefCell<Vec<Arc<ClusterMetadata>>>,
    }

    impl MetadataSink for Recorder {
        fn publish(&self, metadata: Arc<ClusterMetadata>) {
            self.published.borrow_mut().push(metadata);
        }
    }

    fn register(term: u64, index: u64, node: u32) -> Entry {
        let info = BrokerInfo {
            node,
            incarnation: 7,
            cluster_address: format!("n{node}:1"),
            native_addresses: vec![format!("n{node}:2")],
            kafka_addresses: Vec::new(),
            fenced: false,
            draining: false,
        };
        Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(MetaCommand::RegisterBroker(info)) }
    }

    fn membership_entry(index: u64) -> Entry {
        let mut nodes = std::collections::BTreeMap::new();
        nodes.insert(1u64, BasicNode::new("n1:1"));
        let membership = Membership::new(vec![[1u64].into_iter().collect()], nodes);
        Entry { log_id: log_id(1, index), payload: EntryPayload::Membership(membership) }
    }

    #[test]
    fn applies_publish_and_snapshots_restore_and_install() {
        run(|| async {
            let dir = temp_dir();
            let sink = Rc::new(Recorder::default());
            let mut sm = StateMachine::open(dir.path(), sink.clone()).await.unwrap();
            let entries = vec![membership_entry(0), register(1, 1, 1), register(1, 2, 2)];
            let responses = sm.apply(entries).await.unwrap();
            assert_eq!(responses, vec![MetaResponse::Ok; 3]);
            assert_eq!(sink.published.borrow().len(), 1, "one publish per batch");
            assert_eq!(sink.published.borrow()[0].brokers.len(), 2);
            let (applied, membership) = sm.applied_state().await.unwrap();
            assert_eq!(applied, Some(log_id(1, 2)));
            assert_eq!(membership.log_id(), &Some(log_id(1, 0)));

            let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
            assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 2)));
            assert!(dir.path().join(SNAPSHOT_FILE).exists());
            sm.apply(vec![register(1, 3, 3)]).await.unwrap();

            // Reopened: the snapshot's state (entry 3 comes back from the log, not from here).
            let reopened = StateMachine::open(dir.path(), sink.clone()).await.unwrap();
            assert_eq!(reopened.last_applied(), Some(log_id(1, 2)));
            assert_eq!(reopened.metadata().brokers.len(), 2);

            // Installed elsewhere: the same metadata, published, and written to disk.
            let other_dir = temp_dir();
            let other_sink = Rc::new(Recorder::default());
            let mut other = StateMachine::open(other_dir.path(), other_sink.clone()).await.unwrap();
            let data = snapshot.snapshot.clone();
            other.install_snapshot(&snapshot.meta, data).await.unwrap();
            assert_eq!(other.metadata(), reopened.metadata());
            assert_eq!(other_sink.published.borrow().len(), 1);
            let current = other.get_current_snapshot().await.unwrap().unwrap();
            assert_eq!(current.meta, snapshot.meta);
            other.apply(vec![register(1, 3, 3)]).await.unwrap();
            assert_eq!(other.metadata().brokers.len(), 3);

            // A newer snapshot on disk is not replaced by an older one.
            let newer = other.get_snapshot_builder().await.build_snapshot().await.unwrap();
            other.install_snapshot(&snapshot.meta, snapshot.snapshot.clone()).await.unwrap();
            let on_disk = StateMachine::open(other_dir.path(), other_sink).await.unwrap();
            assert_eq!(on_disk.last_applied(), newer.meta.last_log_id);

            // Garbage is refused.
            let bad = Box::new(Cursor::new(b"not json".to_vec()));
            assert!(other.install_snapshot(&snapshot.meta, bad).await.is_err());
        });
    }
}
