//! A leader answering its followers' fetches (`ReplicaFetch`, sent straight to the shard that
//! owns the partition). Per partition: check the follower fetches in the leader's epoch; check
//! its log does not diverge from the leader's (the epoch of its last batch must end, in the
//! leader's log, at or after its fetch offset — else it is told where that epoch ends and
//! truncates); record its progress (which moves the high watermark and may add it to the ISR);
//! send what follows its log end. With nothing to send, the fetch waits (long-poll) until a
//! partition gets data or the wait is over.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::MetaCommand;
use crate::error::PartitionError;
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::isr::{IsrChange, Role};
use crate::limits::REPLICA_FETCH_WAIT_MS;
use crate::partition::{Partition, TopicPartition};
use crate::shard::Shard;

/// One partition of a follower's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchPartition {
    pub partition: TopicPartition,
    /// The leader epoch the follower follows.
    pub leader_epoch: LeaderEpoch,
    /// The follower's log end.
    pub fetch_offset: Offset,
    /// The follower's durable end.
    pub durable_offset: Offset,
    /// The epoch of the follower's last batch (`None`: an empty log).
    pub last_fetched_epoch: Option<LeaderEpoch>,
    pub bytes_max: u32,
    /// The follower's log start (DeleteRecords waits for the in-sync replicas' starts).
    pub log_start_offset: Offset,
}

/// The leader's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetched {
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    /// The follower's log diverges: the leader's (epoch, end offset) to truncate to.
    pub diverging: Option<(LeaderEpoch, Offset)>,
    /// Whole batches from the fetch offset, as stored.
    pub records: Vec<Bytes>,
}

impl ReplicaFetched {
    fn is_empty(&self) -> bool {
        self.diverging.is_none() && self.records.iter().all(Bytes::is_empty)
    }
}

impl Shard {
    /// Answers a follower's fetch for partitions this shard owns (a partition elsewhere gets
    /// `NotLeader`: the follower's metadata is stale). Waits up to `wait_ms` when there is
    /// nothing to send.
    pub async fn replica_fetch(
        self: &Rc<Self>,
        follower: NodeId,
        partitions: Vec<ReplicaFetchPartition>,
        wait_ms: u32,
        bytes_max: u32,
    ) -> Vec<Result<ReplicaFetched, PartitionError>> {
        let results = self.replica_fetch_once(follower, &partitions, bytes_max).await;
        let nothing = results.iter().all(|r| r.as_ref().is_ok_and(ReplicaFetched::is_empty));
        let wait_ms = wait_ms.min(REPLICA_FETCH_WAIT_MS);
        if !nothing || wait_ms == 0 {
            return results;
        }
        let arrived = Rc::new(event_listener::Event::new());
        let listener = arrived.listen();
        let waits: Vec<glommio::Task<()>> = partitions
            .iter()
            .filter_map(|p| {
                let local = self.local_partition(&p.partition)?;
                let offset = p.fetch_offset;
                let arrived = arrived.clone();
                Some(glommio::spawn_local(async move {
                    local.log().wait_for_offset(offset).await;
                    arrived.notify(usize::MAX);
                }))
            })
            .collect();
        if waits.is_empty() {
            return results;
        }
        let any = futures_lite::future::or(listener, async {
            glommio::timer::sleep(Duration::from_millis(u64::from(wait_ms))).await;
        });
        futures_lite::future::or(any, self.stopping()).await;
        drop(waits); // Cancels the waits still pending.
        self.replica_fetch_once(follower, &partitions, bytes_max).await
    }

    async fn replica_fetch_once(
        self: &Rc<Self>,
        follower: NodeId,
        partitions: &[ReplicaFetchPartition],
        bytes_max: u32,
    ) -> Vec<Result<ReplicaFetched, PartitionError>> {
        let mut left = bytes_max;
        let mut results = Vec::with_capacity(partitions.len());
        for request in partitions {
            let result = match self.local_partition(&request.partition) {
                Some(partition) => serve_one(self, &partition, follower, request, left).await,
                None => Err(PartitionError::NotLeader { leader: None }),
            };
            if let Ok(fetched) = &result {
                let sent: usize = fetched.records.iter().map(Bytes::len).sum();
                left = left.saturating_sub(u32::try_from(sent).unwrap_or(u32::MAX));
            }
            results.push(result);
        }
        results
    }

    /// Proposes a leader's ISR change through the metadata log, in the background; the
    /// committed metadata brings the new ISR back (`reconcile.rs`), a refusal clears it.
    pub(crate) fn propose_isr_change(self: &Rc<Self>, partition: Rc<Partition>, change: IsrChange) {
        let shard = self.clone();
        glommio::spawn_local(async move {
            let id = partition.id().clone();
            let command = MetaCommand::AlterIsr {
                topic: id.topic.clone(),
                partition: id.partition,
                leader_epoch: change.leader_epoch.get(),
                partition_epoch: change.partition_epoch,
                isr: change.isr.iter().map(|n| n.get()).collect(),
            };
            match shard.propose(command).await {
                Ok(crate::cluster::MetaResponse::Ok) => {
                    tracing::info!(partition = %id, isr = ?change.isr, "ISR changed");
                }
                Ok(refused) => {
                    tracing::info!(partition = %id, isr = ?change.isr, ?refused, "ISR change refused");
                    partition.isr_change_refused();
                }
                Err(e) => {
                    tracing::warn!(partition = %id, isr = ?change.isr, error = %e, "ISR change not committed");
                    partition.isr_change_refused();
                }
            }
        })
        .detach();
    }
}

async fn serve_one(
    shard: &Rc<Shard>,
    partition: &Rc<Partition>,
    follower: NodeId,
    request: &ReplicaFetchPartition,
    bytes_max: u32,
) -> Result<ReplicaFetched, PartitionError> {
    let epoch = match partition.role() {
        Role::Leader(l) => l.epoch,
        Role::Follower(f) => return Err(PartitionError::NotLeader { leader: Some(f.leader) }),
        Role::Single | Role::Offline => return Err(PartitionError::NotLeader { leader: None }),
    };
    if request.leader_epoch < epoch {
        return Err(PartitionError::FencedLeaderEpoch { requested: request.leader_epoch, current: epoch });
    }
    if request.leader_epoch > epoch {
        return Err(PartitionError::UnknownLeaderEpoch { requested: request.leader_epoch, current: epoch });
    }
    let log = partition.log();
    let log_start_offset = log.log_start_offset();
    let log_end_offset = log.log_end_offset();
    let answer = |diverging, records| ReplicaFetched {
        high_watermark: partition.high_watermark(),
        log_start_offset,
        log_end_offset,
        diverging,
        records,
    };
    if let Some(last) = request.last_fetched_epoch {
        match log.end_offset_for_epoch(last) {
            Some((leader_epoch, end)) if leader_epoch != last || end < request.fetch_offset => {
                return Ok(answer(Some((leader_epoch, end)), Vec::new()));
            }
            Some(_) => {}
            // An epoch past the leader's latest: the leader's own epoch is not in its log yet.
            None => return Err(PartitionError::UnknownLeaderEpoch { requested: last, current: epoch }),
        }
    } else if request.fetch_offset > log_end_offset {
        // No epoch, but offsets the leader does not have: start over from the leader's end.
        return Ok(answer(Some((LeaderEpoch::ZERO, log_end_offset)), Vec::new()));
    }
    if request.fetch_offset < log_start_offset || request.fetch_offset > log_end_offset {
        return Err(PartitionError::OffsetOutOfRange {
            offset: request.fetch_offset,
            log_start: log_start_offset,
            log_end: log_end_offset,
        });
    }
    let progress = (request.fetch_offset, request.durable_offset, request.log_start_offset);
    if let Some(change) = partition.follower_fetched(follower, progress) {
        shard.propose_isr_change(partition.clone(), change);
    }
    let read = log.read(request.fetch_offset, request.bytes_max.min(bytes_max).max(1)).await?;
    Ok(answer(None, read.chunks))
}
