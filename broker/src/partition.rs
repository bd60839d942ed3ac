//! One partition replica on its owning shard: the log, its role (`replica::Role`), the high
//! watermark, the leader epoch, the idempotent producers' state, and the fetch waiters.
//! Everything that touches a partition's data goes through here, on the shard that owns it;
//! both protocol adapters call these typed methods (through `Shard`, which routes to the
//! owner), and so do the replication tasks (`replica/`).
//!
//! A single node's partition (`Role::Single`) has one replica: the high watermark is the log
//! end, and what is appended is readable at once, as from a Kafka leader whose ISR is itself.
//! A cluster's partition is a leader or a follower in a leader epoch: the leader's high
//! watermark is the smallest log end over its in-sync replicas (`replica/mod.rs`), consumers
//! read below it, and acks=all waits for it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::batch::{peek_batch_size, BatchHeader};
use engine::catalog::{partition_dir_name, Durability, TopicConfig};
use engine::{Log, LogConfig, OpenError, ReadBatches};
use glommio::sync::Semaphore;

use crate::error::{PartitionError, ProducerError};
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::isr::{FollowerProgress, FollowerRole, IsrChange, LeaderRole, LeaderStart, Role};
use crate::limits::REPLICATION_WAIT_MS_MAX;
use crate::order::Turn;
use crate::producers::{Check, ProducerBatch, ProducerStates, PRODUCER_SCAN_BYTES_MAX, PRODUCER_SCAN_OFFSETS};

/// Why a partition could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PartitionOpenError {
    #[error(transparent)]
    Log(#[from] OpenError),
    #[error("leader epoch: {0}")]
    Epoch(#[from] engine::EpochError),
}

/// A topic's partition: the name and the index, as every protocol names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No acknowledgement at all (Kafka acks=0): the topic's durability still applies.
    None,
    /// Once the partition accepted the batches, with the topic's durability (Kafka acks=1).
    Leader,
    /// After an fdatasync covering the batches, whatever the topic's durability (Kafka
    /// acks=all: with one replica, "every in-sync replica" is the local disk).
    Durable,
}

/// Where a produce's batches went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Base offset of each batch, in request order.
    pub base_offsets: Vec<Offset>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// An idempotent retry of a batch already appended: acknowledged, not appended again.
    pub duplicate: bool,
}

/// A partition's offsets, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    pub log_start_offset: Offset,
    /// Consumers read below it.
    pub high_watermark: Offset,
    pub log_end_offset: Offset,
    pub leader_epoch: LeaderEpoch,
    /// Bytes of the log on disk.
    pub size_bytes: u64,
}

/// Whole batches read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Stored batches, as chunks to send back to back (the engine's `Bytes`, not copied).
    pub chunks: Vec<Bytes>,
    /// The offset after the last batch returned (the requested offset when none).
    pub next_offset: Offset,
    pub bounds: PartitionBounds,
}

/// Which offset a ListOffsets asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    /// The high watermark.
    Latest,
    /// The first offset whose record timestamp is ≥ this (ms since the epoch).
    Timestamp(i64),
}

/// The answer to an `OffsetQuery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// `None` when no record is that recent.
    pub offset: Option<Offset>,
    pub leader_epoch: LeaderEpoch,
}

pub struct Partition {
    id: TopicPartition,
    log: Log,
    /// The topic's durability: what acks=1 (and acks=0) appends wait for.
    durability: Cell<Durability>,
    producers: RefCell<ProducerStates>,
    /// Held from an idempotent batch's check through its offset assignment, so the check
    /// and the append are one step for every producer of the partition.
    producer_lock: Semaphore,
    /// The log tail was read for producer state since the partition was opened (or became
    /// leader: a follower appends without tracking producers).
    producers_loaded: Cell<bool>,
    role: RefCell<Role>,
    /// A replicated partition's high watermark (never going back while it leads); a single
    /// node's is the log end, not this.
    high_watermark: Cell<Offset>,
    /// The smallest durable end over the in-sync replicas (a leader's), never going back.
    durable_watermark: Cell<Offset>,
    /// The high watermark last written to the log's checkpoint.
    checkpointed: Cell<Offset>,
    /// Notified when the high or durable watermark moves or the role changes: wakes acks=all
    /// produces and consumers' long-polls.
    progressed: event_listener::Event,
}

/// What a leader was at the moment of an append: acks=all waits within that epoch.
#[derive(Debug, Clone, Copy)]
struct LeaderAtAppend {
    epoch: LeaderEpoch,
}

impl Partition {
    /// Opens (creating if needed) a single node's partition log under `data_dir`, as leader
    /// in `leader_epoch` (the catalog's): the log stamps it on every batch appended from now on.
    pub async fn open(
        data_dir: &Path,
        id: TopicPartition,
        config: &TopicConfig,
        leader_epoch: LeaderEpoch,
        disk_free_floor_bytes: u64,
    ) -> Result<Partition, PartitionOpenError> {
        let dir = data_dir.join(partition_dir_name(&id.topic, id.partition));
        let partition = Partition::open_at(&dir, id, config, disk_free_floor_bytes, Role::Single, Offset::ZERO).await?;
        let log = &partition.log;
        if log.leader_epoch() != leader_epoch {
            // A newer epoch starts at the log end; an older one than the log's is refused
            // (epochs never go back).
            log.begin_epoch(leader_epoch).await?;
        }
        assert_eq!(log.leader_epoch(), leader_epoch);
        Ok(partition)
    }

    /// Opens (creating if needed) a cluster replica's log in `dir`, with no role yet
    /// (`Role::Offline`) until the metadata gives it one (`become_leader`/`become_follower`).
    pub async fn open_replica(
        dir: &Path,
        id: TopicPartition,
        config: &TopicConfig,
        disk_free_floor_bytes: u64,
    ) -> Result<Partition, PartitionOpenError> {
        Partition::open_at(dir, id, config, disk_free_floor_bytes, Role::Offline, Offset::ZERO).await
    }

    /// A cluster replica whose new, empty log starts at `start`: the leader's log start, when
    /// the leader no longer has the offsets below it (Kafka's truncateFullyAndStartAt).
    pub async fn open_replica_starting_at(
        dir: &Path,
        id: TopicPartition,
        config: &TopicConfig,
        disk_free_floor_bytes: u64,
        start: Offset,
    ) -> Result<Partition, PartitionOpenError> {
        Partition::open_at(dir, id, config, disk_free_floor_bytes, Role::Offline, start).await
    }

    async fn open_at(
        dir: &Path,
        id: TopicPartition,
        config: &TopicConfig,
        disk_free_floor_bytes: u64,
        role: Role,
        empty_start: Offset,
    ) -> Result<Partition, PartitionOpenError> {
        let log_config = LogConfig { disk_free_floor_bytes, ..LogConfig::from_topic(config) };
        let log = Log::open_starting_at(dir, log_config, empty_start).await?;
        let high_watermark = log.checkpointed_high_watermark();
        let durable_watermark = log.log_start_offset();
        Ok(Partition {
            id,
            log,
            durability: Cell::new(config.durability),
            producers: RefCell::new(ProducerStates::default()),
            producer_lock: Semaphore::new(1),
            producers_loaded: Cell::new(false),
            role: RefCell::new(role),
            high_watermark: Cell::new(high_watermark),
            durable_watermark: Cell::new(durable_watermark),
            checkpointed: Cell::new(high_watermark),
            progressed: event_listener::Event::new(),
        })
    }

    pub fn id(&self) -> &TopicPartition {
        &self.id
    }

    /// The log, for what the partition does not wrap (stats, retention, close).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Where consumers may read up to: what every in-sync replica has (a single node: the log
    /// end) — and for a topic whose durability is `sync`, has fdatasync'ed — so a consumer never
    /// reads a record that a crash could take back (and an offset is never read twice with
    /// different records). Never goes back while this replica leads.
    pub fn high_watermark(&self) -> Offset {
        let sync = self.durability.get() == Durability::Sync;
        match &*self.role.borrow() {
            Role::Single if sync => self.log.durable_end_offset(),
            Role::Single => self.log.log_end_offset(),
            Role::Leader(_) if sync => self.durable_watermark.get().min(self.high_watermark.get()),
            Role::Leader(_) | Role::Follower(_) | Role::Offline => self.high_watermark.get(),
        }
    }

    /// The epoch of the current leader: the one this replica follows, or (leading, or a single
    /// node) the one the log stamps on every batch it appends.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        match &*self.role.borrow() {
            Role::Follower(f) => f.epoch,
            Role::Leader(l) => l.epoch,
            Role::Single | Role::Offline => self.log.leader_epoch(),
        }
    }

    /// The topic's durability (what acks=1 waits for, and a follower before it reports its
    /// durable end).
    pub fn durability(&self) -> Durability {
        self.durability.get()
    }

    /// The replica's role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Accepts produces and consumer fetches: a single node's partition or a cluster leader.
    pub(crate) fn check_leader(&self) -> Result<(), PartitionError> {
        match &*self.role.borrow() {
            Role::Single | Role::Leader(_) => Ok(()),
            Role::Follower(f) => Err(PartitionError::NotLeader { leader: Some(f.leader) }),
            Role::Offline => Err(PartitionError::NotLeader { leader: None }),
        }
    }

    /// Why the partition refuses appends after a failed write or fdatasync (until the broker
    /// restarts and re-verifies the log); `None` while it is healthy.
    pub fn fenced(&self) -> Option<String> {
        self.log.fenced()
    }

    pub fn bounds(&self) -> PartitionBounds {
        let bounds = PartitionBounds {
            log_start_offset: self.log.log_start_offset(),
            high_watermark: self.high_watermark(),
            log_end_offset: self.log.log_end_offset(),
            leader_epoch: self.leader_epoch(),
            size_bytes: self.log.stats().size_bytes,
        };
        debug_assert!(bounds.log_start_offset <= bounds.high_watermark);
        debug_assert!(bounds.high_watermark <= bounds.log_end_offset);
        bounds
    }

    /// Appends `batches` (whole RecordBatch v2 each) once `turn` comes, and passes the turn as
    /// soon as they have their offsets — before waiting for `acks`, so a connection's next
    /// batches for this partition follow at once and share the fdatasync. Batches of an
    /// idempotent producer are checked against its sequences first (one batch per produce,
    /// as in Kafka); a retry of a batch already appended is acknowledged with its original
    /// offsets once those are as durable as `acks` asks.
    pub async fn append(&self, batches: Vec<Bytes>, acks: Acks, mut turn: Turn) -> Result<Appended, PartitionError> {
        turn.wait().await;
        let leader = self.leader_for_append(acks)?;
        let first = batches.first().ok_or(PartitionError::InvalidBatch { reason: "no record batch".into() })?;
        let header = BatchHeader::parse(first).map_err(|e| PartitionError::InvalidBatch { reason: e.to_string() })?;
        let durability = match acks {
            Acks::Durable => Durability::Sync,
            Acks::Leader | Acks::None => self.durability.get(),
        };
        let queued = match ProducerBatch::of(&header) {
            None => {
                let queued = self.log.append_queued(&batches).await;
                turn.pass();
                self.advance();
                queued?
            }
            Some(producer) => {
                if batches.len() != 1 {
                    return Err(ProducerError::SeveralBatches { batches: batches.len() }.into());
                }
                let lock = self.producer_lock.acquire_permit(1).await.map_err(|_| PartitionError::ShuttingDown)?;
                self.load_producers().await;
                let check = self.producers.borrow_mut().check(&producer);
                match check {
                    Check::Reject(e) => return Err(e.into()),
                    Check::Duplicate { base_offset } => {
                        drop(lock);
                        turn.pass();
                        tracing::debug!(partition = %self.id, %base_offset, "duplicate batch acknowledged, not appended");
                        if durability == Durability::Sync {
                            self.log.flush().await?;
                        }
                        if let (Some(leader), Acks::Durable) = (leader, acks) {
                            let end = base_offset.next().unwrap_or(base_offset);
                            self.wait_replicated(end, leader).await?;
                        }
                        return Ok(Appended {
                            base_offsets: vec![base_offset],
                            log_start_offset: self.log.log_start_offset(),
                            log_end_offset: self.log.log_end_offset(),
                            duplicate: true,
                        });
                    }
                    Check::Append => {}
                }
                let queued = self.log.append_queued(&batches).await;
                if let Ok(queued) = &queued {
                    self.producers.borrow_mut().record(&producer, queued.info().base_offsets[0]);
                }
                drop(lock);
                turn.pass();
                self.advance();
                queued?
            }
        };
        let info = queued.durable(durability).await?;
        debug_assert_eq!(info.base_offsets.len(), batches.len());
        self.advance();
        if let (Some(leader), Acks::Durable) = (leader, acks) {
            self.wait_replicated(info.log_end_offset, leader).await?;
        }
        Ok(Appended {
            base_offsets: info.base_offsets,
            log_start_offset: self.log.log_start_offset(),
            log_end_offset: info.log_end_offset,
            duplicate: false,
        })
    }

    /// Reads the tail of the log for idempotent producers' state, once per open (Kafka
    /// rebuilds producer state from the log the same way). Called with the producer lock.
    async fn load_producers(&self) {
        if self.producers_loaded.get() {
            return;
        }
        let end = self.log.log_end_offset();
        let back = end.checked_sub(PRODUCER_SCAN_OFFSETS).unwrap_or(Offset::ZERO);
        let mut offset = back.max(self.log.log_start_offset());
        let (mut read_bytes, mut batches) = (0u64, 0u64);
        while offset < end && read_bytes < PRODUCER_SCAN_BYTES_MAX {
            let Ok(read) = self.log.read(offset, engine::limits::READ_BYTES_MAX).await else {
                break;
            };
            if read.next_offset <= offset {
                break;
            }
            for chunk in batch_chunks(&read) {
                read_bytes += chunk.len() as u64;
                if let Ok(header) = BatchHeader::parse(&chunk) {
                    let base_offset = Offset::from_wire(header.base_offset);
                    if let (Some(producer), Some(base_offset)) = (ProducerBatch::of(&header), base_offset) {
                        self.producers.borrow_mut().record(&producer, base_offset);
                        batches += 1;
                    }
                }
            }
            offset = read.next_offset;
        }
        self.producers_loaded.set(true);
        tracing::debug!(partition = %self.id, batches, read_bytes, "producer state rebuilt from the log tail");
    }

    /// Whole batches from the one holding `offset`, up to about `bytes_max` (at least one
    /// batch), below the high watermark.
    pub async fn read(&self, offset: Offset, bytes_max: u32) -> Result<Read, PartitionError> {
        self.check_leader()?;
        let read = self.log.read_below(offset, bytes_max, self.high_watermark()).await?;
        let bounds = self.bounds();
        debug_assert!(read.next_offset >= offset);
        debug_assert!(read.next_offset <= bounds.high_watermark.max(offset));
        Ok(Read { chunks: read.chunks, next_offset: read.next_offset, bounds })
    }

    /// Resolves once there is data at `offset` below the high watermark, or the partition
    /// closes or is fenced. Long-poll fetches race it against their deadline.
    pub async fn wait_for_data(&self, offset: Offset) {
        if matches!(&*self.role.borrow(), Role::Single) {
            self.log.wait_for_offset(offset).await;
            if self.durability.get() == Durability::Sync {
                // A sync topic shows readers only what is durable, and nothing notifies
                // `progressed` when a single node's fdatasync lands (`advance` is a leader's):
                // wait for the sync covering the data instead. Without this a long-poll on a
                // sync topic always ran to its timeout (end-to-end p50 52 ms at 1 000 msg/s
                // with a 100 ms fetch wait; up to 500 ms with Kafka's default
                // fetch.max.wait.ms). An error leaves it to the next read to report.
                let _ = self.log.flush().await;
            }
            return;
        }
        loop {
            let listener = self.progressed.listen();
            if self.high_watermark() > offset || !self.role.borrow().is_leader() || self.log.fenced().is_some() {
                return;
            }
            listener.await;
        }
    }

    pub async fn list_offset(&self, query: OffsetQuery) -> Result<ListedOffset, PartitionError> {
        self.check_leader()?;
        let offset = match query {
            OffsetQuery::Earliest => Some(self.log.log_start_offset()),
            OffsetQuery::Latest => Some(self.high_watermark()),
            OffsetQuery::Timestamp(ts) => self.log.offset_for_timestamp(ts).await?,
        };
        Ok(ListedOffset { offset, leader_epoch: self.leader_epoch() })
    }

    /// Deletes segments past the topic's retention.
    pub async fn apply_retention(&self, now_ms: i64) {
        if let Err(e) = self.log.apply_retention(now_ms).await {
            tracing::warn!(partition = %self.id, error = %e, "retention failed");
        }
    }

    pub async fn close(&self) {
        self.set_role(Role::Offline);
        if let Err(e) = self.log.close().await {
            tracing::error!(partition = %self.id, error = %e, "closing the log failed");
        }
    }

    /// Closes the log and removes its directory (the topic was deleted). Requests still
    /// holding the partition get errors from the closed log.
    pub async fn delete(&self) -> Result<(), PartitionError> {
        self.set_role(Role::Offline);
        self.log.clone().delete().await.map_err(|e| PartitionError::Storage { reason: e.to_string() })
    }

    // ---- replication -------------------------------------------------------------------

    /// Before an append: refuses it unless this replica leads, and (a cluster leader, acks=all)
    /// while the ISR is smaller than min.insync.replicas. The leader's epoch when it is a
    /// cluster leader (acks=all then waits within that epoch).
    fn leader_for_append(&self, acks: Acks) -> Result<Option<LeaderAtAppend>, PartitionError> {
        self.check_leader()?;
        match &*self.role.borrow() {
            Role::Leader(l) => {
                if acks == Acks::Durable && (l.isr.len() as u32) < l.min_insync {
                    return Err(PartitionError::NotEnoughReplicas { isr: l.isr.len(), min: l.min_insync });
                }
                Ok(Some(LeaderAtAppend { epoch: l.epoch }))
            }
            _ => Ok(None),
        }
    }

    /// acks=all on a cluster leader: waits until the high watermark passes `end` (and, for a
    /// topic whose durability is `sync`, the durable watermark too), within the epoch the
    /// batch was appended in.
    async fn wait_replicated(&self, end: Offset, leader: LeaderAtAppend) -> Result<(), PartitionError> {
        let need_durable = self.durability.get() == Durability::Sync;
        let deadline = Instant::now() + Duration::from_millis(REPLICATION_WAIT_MS_MAX);
        loop {
            let listener = self.progressed.listen();
            {
                let role = self.role.borrow();
                let Role::Leader(l) = &*role else {
                    return Err(PartitionError::NotLeader { leader: None });
                };
                if l.epoch != leader.epoch {
                    return Err(PartitionError::NotLeader { leader: None });
                }
                let replicated = self.high_watermark.get() >= end;
                let durable = !need_durable || self.durable_watermark.get() >= end;
                if replicated && durable {
                    if (l.isr.len() as u32) < l.min_insync {
                        return Err(PartitionError::NotEnoughReplicasAfterAppend {
                            reason: format!("{} in-sync replicas, min.insync.replicas {}", l.isr.len(), l.min_insync),
                        });
                    }
                    return Ok(());
                }
            }
            if let Some(reason) = self.log.fenced() {
                return Err(PartitionError::Fenced { reason });
            }
            let timed_out = futures_lite::future::or(
                async {
                    listener.await;
                    false
                },
                async {
                    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                    true
                },
            )
            .await;
            if timed_out {
                return Err(PartitionError::NotEnoughReplicasAfterAppend {
                    reason: format!("not on every in-sync replica within {REPLICATION_WAIT_MS_MAX} ms"),
                });
            }
        }
    }

    fn set_role(&self, role: Role) {
        *self.role.borrow_mut() = role;
        self.progressed.notify(usize::MAX);
    }

    /// A leader recomputes its high and durable watermarks (after its own appends and syncs,
    /// a follower's fetch, an ISR change). They never go back.
    pub(crate) fn advance(&self) {
        let (replicated, durable) = match &*self.role.borrow() {
            Role::Leader(l) => {
                (l.replicated_end(self.log.log_end_offset()), l.durable_end(self.log.durable_end_offset()))
            }
            _ => return,
        };
        let mut moved = false;
        if let Some(hw) = replicated.filter(|&hw| hw > self.high_watermark.get()) {
            debug_assert!(hw <= self.log.log_end_offset());
            self.high_watermark.set(hw);
            moved = true;
        }
        if let Some(dw) = durable.filter(|&dw| dw > self.durable_watermark.get()) {
            self.durable_watermark.set(dw);
            moved = true;
        }
        if moved {
            self.progressed.notify(usize::MAX);
        }
    }

    /// Becomes (or stays) the leader in `epoch`: a new epoch starts at the log end (written to
    /// the epoch checkpoint before any batch carries it); producer state is rebuilt from the
    /// log (as a follower it appended without tracking producers). Within the same epoch only
    /// the ISR, replicas and min.insync.replicas are updated.
    pub(crate) async fn become_leader(&self, start: LeaderStart) -> Result<(), PartitionError> {
        let same_epoch = matches!(&*self.role.borrow(), Role::Leader(l) if l.epoch == start.epoch);
        if same_epoch {
            if let Role::Leader(l) = &mut *self.role.borrow_mut() {
                if l.pending_isr.is_none() || l.partition_epoch != start.partition_epoch {
                    l.committed(start.isr.clone(), start.partition_epoch);
                }
                l.replicas = start.replicas.clone();
                l.min_insync = start.min_insync;
                let now = Instant::now();
                for &n in &start.replicas {
                    if n != l.node {
                        l.followers.entry(n).or_insert_with(|| FollowerProgress::new(now));
                    }
                }
                l.followers.retain(|n, _| start.replicas.contains(n));
            }
            self.advance();
            self.progressed.notify(usize::MAX);
            return Ok(());
        }
        // Followers' fetches must not see the new role before the epoch is in the log.
        self.set_role(Role::Offline);
        if self.log.leader_epoch() < start.epoch {
            self.log.begin_epoch(start.epoch).await.map_err(|e| PartitionError::Storage { reason: e.to_string() })?;
        } else if self.log.leader_epoch() > start.epoch {
            return Err(PartitionError::FencedLeaderEpoch { requested: start.epoch, current: self.log.leader_epoch() });
        }
        let log_end = self.log.log_end_offset();
        let high_watermark = self.high_watermark.get().max(self.log.checkpointed_high_watermark()).min(log_end);
        self.high_watermark.set(high_watermark);
        // What the old leader let consumers see was durable on every in-sync replica, this one
        // included: it stays visible (within what this log durably has).
        let durable = high_watermark.min(self.log.durable_end_offset()).max(self.durable_watermark.get());
        self.durable_watermark.set(durable.min(high_watermark));
        self.producers_loaded.set(false);
        *self.producers.borrow_mut() = ProducerStates::default();
        let epoch = start.epoch;
        self.set_role(Role::Leader(LeaderRole::new(start, log_end, Instant::now())));
        self.advance();
        tracing::info!(partition = %self.id, %epoch, %log_end, %high_watermark, "leading");
        Ok(())
    }

    /// Follows `role.leader` in `role.epoch` (no-op when it already does).
    pub(crate) fn become_follower(&self, role: FollowerRole) {
        if matches!(&*self.role.borrow(), Role::Follower(f) if *f == role) {
            return;
        }
        tracing::info!(partition = %self.id, leader = %role.leader, epoch = %role.epoch, "following");
        self.set_role(Role::Follower(role));
    }

    /// No replica leads (or this one's role is unknown): refuse produces and fetches.
    pub(crate) fn become_offline(&self) {
        if !matches!(&*self.role.borrow(), Role::Offline) {
            tracing::info!(partition = %self.id, "offline");
            self.set_role(Role::Offline);
        }
    }

    /// A follower's valid fetch (the leader checked its epoch and that its log does not
    /// diverge): records its progress — `progress` is its (log end, durable end, log start) —
    /// and moves the watermarks. Returns an ISR expansion to propose, if it just caught up.
    pub(crate) fn follower_fetched(&self, follower: NodeId, progress: (Offset, Offset, Offset)) -> Option<IsrChange> {
        let (fetch_offset, durable_offset, log_start) = progress;
        let mut moved_start = false;
        let change = match &mut *self.role.borrow_mut() {
            Role::Leader(l) => {
                if let Some(p) = l.followers.get_mut(&follower) {
                    moved_start = p.log_start.replace(log_start) != Some(log_start);
                }
                l.on_fetch(
                    follower,
                    fetch_offset,
                    durable_offset,
                    self.log.log_end_offset(),
                    self.high_watermark.get(),
                    Instant::now(),
                )
            }
            _ => None,
        };
        self.advance();
        if moved_start {
            // DeleteRecords may be waiting for it (`wait_log_start_replicated`).
            self.progressed.notify(usize::MAX);
        }
        change
    }

    /// On a leader, after its DeleteRecords moved the log start to `offset`: waits until every
    /// in-sync follower reported a log start at or past it (Kafka's low watermark), so a new
    /// leader elected from the ISR never serves the deleted records again. Immediate on a
    /// single node.
    pub(crate) async fn wait_log_start_replicated(&self, offset: Offset) -> Result<(), PartitionError> {
        let deadline = Instant::now() + Duration::from_millis(REPLICATION_WAIT_MS_MAX);
        loop {
            let listener = self.progressed.listen();
            {
                let role = self.role.borrow();
                let l = match &*role {
                    Role::Single => return Ok(()),
                    Role::Leader(l) => l,
                    Role::Follower(_) | Role::Offline => return Err(PartitionError::NotLeader { leader: None }),
                };
                let behind = l.log_start_behind(offset);
                if behind.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(PartitionError::ReplicationTimedOut {
                        reason: format!(
                            "in-sync replicas {behind:?} did not move their log start to {offset} within {REPLICATION_WAIT_MS_MAX} ms"
                        ),
                    });
                }
            }
            futures_lite::future::or(
                listener,
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }

    /// A leader's ISR shrink for followers that stopped keeping up.
    pub(crate) fn lagging_followers(&self, lag_max: Duration) -> Option<IsrChange> {
        match &mut *self.role.borrow_mut() {
            Role::Leader(l) => l.shrink(Instant::now(), lag_max),
            _ => None,
        }
    }

    /// A proposed ISR change was refused (stale epochs): forget it; the committed metadata
    /// says what the ISR is.
    pub(crate) fn isr_change_refused(&self) {
        if let Role::Leader(l) = &mut *self.role.borrow_mut() {
            l.pending_isr = None;
        }
        self.advance();
    }

    /// A follower learned its leader's high watermark.
    pub(crate) fn follower_high_watermark(&self, leader_high_watermark: Offset) {
        let high_watermark = leader_high_watermark.min(self.log.log_end_offset());
        if high_watermark > self.high_watermark.get() {
            self.high_watermark.set(high_watermark);
        }
    }

    /// Writes the high watermark to the log's checkpoint if it moved since the last write.
    pub(crate) async fn checkpoint_high_watermark(&self) {
        let high_watermark = self.high_watermark().min(self.log.log_end_offset());
        if high_watermark == self.checkpointed.get() {
            return;
        }
        match self.log.checkpoint_high_watermark(high_watermark).await {
            Ok(()) => self.checkpointed.set(high_watermark),
            Err(e) => tracing::warn!(partition = %self.id, error = %e, "checkpointing the high watermark failed"),
        }
    }

    /// A follower's truncation to `end_offset` (its log diverged from the leader's); the high
    /// watermark follows it down (what is cut was never committed on this replica's view).
    pub(crate) async fn truncate_to(&self, end_offset: Offset) -> Result<Offset, PartitionError> {
        let end =
            self.log.truncate_to(end_offset).await.map_err(|e| PartitionError::Storage { reason: e.to_string() })?;
        if self.high_watermark.get() > end {
            self.high_watermark.set(end);
        }
        Ok(end)
    }
}

impl Partition {
    /// The idempotent producers this partition remembers (rebuilt from the log tail first, as
    /// before an idempotent append).
    pub async fn describe_producers(&self) -> Result<Vec<crate::producers::ProducerDescription>, PartitionError> {
        let _lock = self.producer_lock.acquire_permit(1).await.map_err(|_| PartitionError::ShuttingDown)?;
        self.load_producers().await;
        Ok(self.producers.borrow().describe())
    }

    /// The topic's config changed: acks=1 appends wait for the new durability from now on.
    pub fn set_durability(&self, durability: Durability) {
        self.durability.set(durability);
    }
}

/// The batches of a read, one `Bytes` each (a read's chunks may split a batch into its head
/// and body; those are joined, other batches are sliced without a copy).
fn batch_chunks(read: &ReadBatches) -> Vec<Bytes> {
    split_batches(&read.chunks)
}

/// Chunks of whole batches sent back to back (a read's, a fetch response's) as one `Bytes` per
/// batch (a batch split over chunks is joined; the others are sliced without a copy). A
/// trailing partial batch is dropped.
pub(crate) fn split_batches(chunks: &[Bytes]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut pending: Option<Vec<u8>> = None;
    for chunk in chunks {
        let mut rest = chunk.clone();
        if let Some(mut partial) = pending.take() {
            partial.extend_from_slice(&rest);
            rest = Bytes::from(partial);
        }
        while let Ok(Some(size_bytes)) = peek_batch_size(&rest) {
            if size_bytes > rest.len() {
                break;
            }
            out.push(rest.split_to(size_bytes));
        }
        if !rest.is_empty() {
            pending = Some(rest.to_vec());
        }
    }
    out
}
