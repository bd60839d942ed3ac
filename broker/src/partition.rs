//! One partition replica on its owning shard: the log, the high watermark, the leader epoch,
//! the idempotent producers' state, and the fetch waiters. Everything that touches a
//! partition's data goes through here, on the shard that owns it; both protocol adapters call
//! these typed methods (through `Shard`, which routes to the owner).
//!
//! With one replica the high watermark is the log end: what is appended is readable at once,
//! as from a Kafka leader whose ISR is itself. It is read through `high_watermark()` so that
//! replication can move it separately.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::Path;

use bytes::Bytes;
use engine::batch::{peek_batch_size, BatchHeader};
use engine::catalog::{partition_dir_name, Durability, TopicConfig};
use engine::{Log, LogConfig, OpenError, ReadBatches};
use glommio::sync::Semaphore;

use crate::error::{PartitionError, ProducerError};
use crate::ids::{LeaderEpoch, Offset};
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
    /// The log tail was read for producer state since the partition was opened.
    producers_loaded: Cell<bool>,
}

impl Partition {
    /// Opens (creating if needed) the partition's log under `data_dir`, as leader in
    /// `leader_epoch` (the catalog's): the log stamps it on every batch appended from now on.
    pub async fn open(
        data_dir: &Path,
        id: TopicPartition,
        config: &TopicConfig,
        leader_epoch: LeaderEpoch,
        disk_free_floor_bytes: u64,
    ) -> Result<Partition, PartitionOpenError> {
        let dir = data_dir.join(partition_dir_name(&id.topic, id.partition));
        let log_config = LogConfig { disk_free_floor_bytes, ..LogConfig::from_topic(config) };
        let log = Log::open(&dir, log_config).await?;
        if log.leader_epoch() != leader_epoch {
            // A newer epoch starts at the log end; an older one than the log's is refused
            // (epochs never go back).
            log.begin_epoch(leader_epoch).await?;
        }
        assert_eq!(log.leader_epoch(), leader_epoch);
        Ok(Partition {
            id,
            log,
            durability: Cell::new(config.durability),
            producers: RefCell::new(ProducerStates::default()),
            producer_lock: Semaphore::new(1),
            producers_loaded: Cell::new(false),
        })
    }

    pub fn id(&self) -> &TopicPartition {
        &self.id
    }

    /// The log, for what the partition does not wrap (stats, retention, close).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Where consumers may read up to. One replica: the log end.
    pub fn high_watermark(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// The epoch of the current leader (this replica), which the log stamps on every batch
    /// it appends as leader.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.log.leader_epoch()
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
                queued?
            }
        };
        let info = queued.durable(durability).await?;
        debug_assert_eq!(info.base_offsets.len(), batches.len());
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
        let read = self.log.read(offset, bytes_max).await?;
        let bounds = self.bounds();
        debug_assert!(read.next_offset >= offset);
        debug_assert!(read.next_offset <= bounds.high_watermark.max(offset));
        Ok(Read { chunks: read.chunks, next_offset: read.next_offset, bounds })
    }

    /// Resolves once there is data at `offset` below the high watermark, or the partition
    /// closes or is fenced. Long-poll fetches race it against their deadline.
    pub async fn wait_for_data(&self, offset: Offset) {
        self.log.wait_for_offset(offset).await;
    }

    pub async fn list_offset(&self, query: OffsetQuery) -> Result<ListedOffset, PartitionError> {
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
        if let Err(e) = self.log.close().await {
            tracing::error!(partition = %self.id, error = %e, "closing the log failed");
        }
    }

    /// Closes the log and removes its directory (the topic was deleted). Requests still
    /// holding the partition get errors from the closed log.
    pub async fn delete(&self) -> Result<(), PartitionError> {
        self.log.clone().delete().await.map_err(|e| PartitionError::Storage { reason: e.to_string() })
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
    let mut out = Vec::new();
    let mut pending: Option<Vec<u8>> = None;
    for chunk in &read.chunks {
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
