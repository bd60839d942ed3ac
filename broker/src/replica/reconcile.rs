//! Turning committed cluster metadata into what each shard does: every time a new table is
//! published, each shard opens the replicas placed on it, gives each its role (leader in the
//! metadata's epoch with its ISR, follower of the leader's shard, or offline), deletes the
//! replicas no longer placed on it, and starts the fetch sessions its followers need. A
//! housekeeping loop per shard shrinks the ISR of partitions whose followers stopped keeping
//! up, and checkpoints high watermarks.
//!
//! A replica's directory holds the id of the topic it belongs to (`topic_id`): a topic
//! deleted while this node was away and created again under the same name has a new id, and
//! the old directory is removed rather than mistaken for the new topic's log. A directory with
//! a newer id than the metadata names is left alone (this node's metadata is behind).
//!
//! A node leads only once the metadata has registered it in its current incarnation (Kafka's
//! brokers are fenced until they have caught up with the metadata log likewise): the metadata
//! a restarted node restores from disk may still name it leader in an epoch that others have
//! moved past, and beginning that epoch would write a stale epoch into its log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use engine::catalog::partition_dir_name;

use crate::cluster::{PartitionMeta, TopicMeta};
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::isr::{FollowerRole, LeaderStart, Role};
use crate::limits::{REPLICA_CHECK_INTERVAL_MS, REPLICA_LAG_TIME_MAX_MS};
use crate::partition::{Partition, TopicPartition};
use crate::shard::Shard;
use crate::topics::{ClusterView, TopicTable};

/// The file in a replica's directory naming its topic's id.
const TOPIC_ID_FILE: &str = "topic_id";

impl Shard {
    /// Forever (until shutdown): applies each published cluster table to this shard.
    pub(crate) async fn reconcile_loop(self: Rc<Self>) {
        loop {
            let changed = self.topics_changed().listen();
            let table = self.topics();
            if table.cluster.is_some() {
                self.reconcile(&table).await;
            }
            if self.is_stopping() {
                return;
            }
            futures_lite::future::or(changed, self.stopping()).await;
            if self.is_stopping() {
                return;
            }
        }
    }

    async fn reconcile(self: &Rc<Self>, table: &TopicTable) {
        let Some(view) = &table.cluster else { return };
        let node = view.node.get();
        let mut wanted: HashSet<TopicPartition> = HashSet::new();
        for topic in view.metadata.topics.values() {
            for (index, meta) in topic.partitions.iter().enumerate() {
                let Some(replica) = meta.replica_on(node) else { continue };
                if replica.shard as usize % self.shard_count() != self.id().index() {
                    continue;
                }
                let id = TopicPartition::new(topic.name.clone(), index as u32);
                wanted.insert(id.clone());
                if self.deleting().borrow().contains(&id) {
                    // Its directory is being deleted; reconciled again once that is done.
                    continue;
                }
                let partition = match self.local_partition(&id) {
                    Some(p) => {
                        apply_config(&p, &topic.config);
                        p
                    }
                    None => match self.open_replica(topic, id.clone(), Offset::ZERO).await {
                        Ok(Some(p)) => p,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::error!(partition = %id, error = %e, "opening a replica failed");
                            continue;
                        }
                    },
                };
                self.apply_role(&partition, view, topic, meta).await;
            }
        }
        let gone: Vec<Rc<Partition>> =
            self.local_partitions().into_iter().filter(|p| !wanted.contains(p.id())).collect();
        for partition in gone {
            self.forget_partition(partition.id());
            tracing::info!(partition = %partition.id(), "replica removed from this shard");
            self.deleting().borrow_mut().insert(partition.id().clone());
            if let Err(e) = partition.delete().await {
                tracing::error!(partition = %partition.id(), error = %e, "deleting a replica failed");
            }
            self.deleting().borrow_mut().remove(partition.id());
        }
        self.start_fetchers();
    }

    /// Opens this shard's replica of `topic`'s partition `id`; `None` when its directory
    /// belongs to a newer topic of the same name (this node's metadata is behind).
    async fn open_replica(
        &self,
        topic: &TopicMeta,
        id: TopicPartition,
        empty_start: Offset,
    ) -> Result<Option<Rc<Partition>>, String> {
        let dir = self.data_dir().join(partition_dir_name(&id.topic, id.partition));
        let topic_id = topic.id;
        let check_dir = dir.clone();
        let found = glommio::executor()
            .spawn_blocking(move || -> std::io::Result<Option<u64>> { claim_dir(&check_dir, topic_id) })
            .await
            .map_err(|e| format!("checking {}: {e}", dir.display()))?;
        if let Some(newer) = found {
            tracing::warn!(partition = %id, dir_topic_id = newer, topic_id, "replica directory is newer than this node's metadata; not opened yet");
            return Ok(None);
        }
        let floor = self.disk_free_floor_bytes();
        let partition = Partition::open_replica_starting_at(&dir, id.clone(), &topic.config, floor, empty_start)
            .await
            .map_err(|e| e.to_string())?;
        let partition = Rc::new(partition);
        self.insert_partition(partition.clone());
        Ok(Some(partition))
    }

    /// Starts a follower replica over, empty, at `start`: its leader's log no longer has the
    /// offsets it needs next (retention or DeleteRecords moved the leader's log start past
    /// this replica's end — a new replica of an old partition, or one down for long). Kafka's
    /// truncateFullyAndStartAt: the old directory is deleted (a crash midway leaves an empty
    /// replica, which the next fetch starts over the same way) and a new log opens at `start`.
    pub(crate) async fn restart_replica_at(
        self: &Rc<Self>,
        partition: Rc<Partition>,
        start: Offset,
    ) -> Option<Rc<Partition>> {
        let id = partition.id().clone();
        let table = self.topics();
        let view = table.cluster.as_ref()?;
        let (topic, meta) = (view.topic(&id.topic)?, view.partition(&id.topic, id.partition)?);
        let log = partition.log();
        // Behind the leader's start, or empty (a start inside the leader's first batch).
        let empty = log.log_start_offset() == log.log_end_offset();
        if !matches!(partition.role(), Role::Follower(_)) || (log.log_end_offset() >= start && !empty) {
            return None;
        }
        tracing::warn!(partition = %id, log_end = %log.log_end_offset(), %start, "starting the replica over, empty, at the leader's log start");
        self.forget_partition(&id);
        self.deleting().borrow_mut().insert(id.clone());
        let deleted = partition.delete().await;
        let reopened = match deleted {
            Ok(()) => Some(self.open_replica(topic, id.clone(), start).await),
            Err(e) => {
                tracing::error!(partition = %id, error = %e, "deleting a replica to start it over failed");
                None
            }
        };
        self.deleting().borrow_mut().remove(&id);
        self.topics_changed().notify(usize::MAX);
        match reopened? {
            Ok(Some(reopened)) => {
                self.apply_role(&reopened, view, topic, meta).await;
                Some(reopened)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(partition = %id, error = %e, "reopening a replica at the leader's log start failed");
                None
            }
        }
    }

    async fn apply_role(&self, partition: &Rc<Partition>, view: &ClusterView, topic: &TopicMeta, meta: &PartitionMeta) {
        let node = view.node;
        let epoch = LeaderEpoch::new(meta.leader_epoch);
        // Metadata restored at a restart may still name this node leader of an epoch that a
        // later entry (this start's own registration, which fences the old incarnation) takes
        // away: it leads only once the metadata knows it in this incarnation, unfenced.
        let registered = view.broker(node).is_some_and(|b| !b.fenced && Some(b.incarnation) == self.incarnation());
        match meta.leader {
            Some(leader) if leader == node.get() && !registered => partition.become_offline(),
            Some(leader) if leader == node.get() => {
                let start = LeaderStart {
                    node,
                    epoch,
                    partition_epoch: meta.partition_epoch,
                    isr: meta.isr.iter().map(|&n| NodeId::new(n)).collect(),
                    replicas: meta.replicas.iter().map(|r| NodeId::new(r.node)).collect(),
                    min_insync: topic.replication.min_insync_replicas.max(1),
                };
                if let Err(e) = partition.become_leader(start).await {
                    tracing::error!(partition = %partition.id(), %epoch, error = %e, "could not become leader");
                    partition.become_offline();
                }
            }
            Some(leader) => {
                let address = meta.replica_on(leader).and_then(|r| view.native_address(r)).map(str::to_owned);
                match address {
                    Some(leader_address) => {
                        partition.become_follower(FollowerRole { leader: NodeId::new(leader), leader_address, epoch })
                    }
                    None => partition.become_offline(),
                }
            }
            None => partition.become_offline(),
        }
    }

    /// Forever (until shutdown): shrinks the ISR of led partitions whose followers lag, and
    /// checkpoints every replica's high watermark.
    pub(crate) async fn replica_housekeeping(self: Rc<Self>) {
        let lag_max = Duration::from_millis(REPLICA_LAG_TIME_MAX_MS);
        while !self.is_stopping() {
            futures_lite::future::or(
                async { glommio::timer::sleep(Duration::from_millis(REPLICA_CHECK_INTERVAL_MS)).await },
                self.stopping(),
            )
            .await;
            if self.is_stopping() {
                return;
            }
            for partition in self.local_partitions() {
                if matches!(partition.role(), Role::Single) {
                    continue;
                }
                if let Some(change) = partition.lagging_followers(lag_max) {
                    tracing::info!(partition = %partition.id(), isr = ?change.isr, "followers lag: shrinking the ISR");
                    self.propose_isr_change(partition.clone(), change);
                }
                partition.checkpoint_high_watermark().await;
            }
        }
    }
}

/// Makes `dir` this topic's: removes it if it holds an older topic's replica, writes the id
/// file if missing. `Some(id)` (and nothing changed) when it holds a newer topic's.
fn claim_dir(dir: &Path, topic_id: u64) -> std::io::Result<Option<u64>> {
    let file: PathBuf = dir.join(TOPIC_ID_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(id) if id == topic_id => return Ok(None),
            Ok(id) if id > topic_id => return Ok(Some(id)),
            // An older topic's (or an unreadable id): not this topic's data.
            _ => std::fs::remove_dir_all(dir)?,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!("{TOPIC_ID_FILE}.tmp"));
    std::fs::write(&temp, topic_id.to_string())?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, &file)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(None)
}

/// Applies a topic's committed config to an open replica whose log still runs an older one.
fn apply_config(partition: &Partition, config: &engine::catalog::TopicConfig) {
    let wanted = engine::LogConfig::from_topic(config);
    if partition.log().config() != wanted {
        if let Err(reason) = partition.log().reconfigure(wanted) {
            tracing::error!(partition = %partition.id(), %reason, "reconfiguring a replica's log failed");
        }
    }
    if partition.durability() != config.durability {
        partition.set_durability(config.durability);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_claimed_kept_replaced_or_left_for_a_newer_topic() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("t-0");
        assert_eq!(claim_dir(&dir, 5).unwrap(), None);
        std::fs::write(dir.join("data"), b"x").unwrap();
        assert_eq!(claim_dir(&dir, 5).unwrap(), None);
        assert!(dir.join("data").exists(), "the same topic keeps its data");
        assert_eq!(claim_dir(&dir, 3).unwrap(), Some(5), "a newer topic's directory is left alone");
        assert!(dir.join("data").exists());
        assert_eq!(claim_dir(&dir, 9).unwrap(), None);
        assert!(!dir.join("data").exists(), "an older topic's data is removed");
        assert_eq!(std::fs::read_to_string(dir.join(TOPIC_ID_FILE)).unwrap(), "9");
    }
}
