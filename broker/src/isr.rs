//! Kafka-style ISR replication of a partition (KIP-101/279/320/497 in Kafka's terms): what a
//! replica's role is, and on a leader, what it knows of its followers.
//!
//! - A leader's followers fetch from it (`ReplicaFetch` on the native protocol, straight to the
//!   leader's shard), each fetch carrying the follower's log end and durable end. The high
//!   watermark is the smallest log end over the in-sync replicas (the leader's own included),
//!   and never goes back; consumers read below it. The durable watermark is the same over
//!   durable ends: acks=all on a topic whose durability is `sync` waits for it, so an
//!   acknowledged batch survives every in-sync replica losing power at once.
//! - While an ISR change is proposed and not yet committed, the leader counts the union of the
//!   old and new ISR (Kafka's "maximal ISR"): a shrink cannot advance the high watermark before
//!   the metadata log has it, so a replica that may still be elected never lacks a batch the
//!   high watermark passed.
//! - A follower catches up a leader whose log diverges by epoch, never by high watermark alone:
//!   it sends the epoch of its last batch; the leader answers with the end of that epoch in its
//!   own log when they differ, and the follower truncates there (`fetcher.rs`).
//!
//! This file is the state and its rules, without I/O (unit-tested below); `partition.rs`
//! applies them, and `replica/` runs them: `fetcher.rs` a follower's fetches, `serve.rs` a
//! leader's answers, `reconcile.rs` roles from committed cluster metadata.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::ids::{LeaderEpoch, NodeId, Offset};

/// What a replica does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A single node's partition: the only replica; the high watermark is the log end.
    Single,
    Leader(LeaderRole),
    Follower(FollowerRole),
    /// A cluster partition this replica neither leads nor can follow now: no leader is
    /// elected, or its role is not known yet.
    Offline,
}

impl Role {
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Single | Role::Leader(_))
    }
}

/// A follower's view: whom it fetches from, in which epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerRole {
    pub leader: NodeId,
    /// The native address of the leader's shard that holds the partition.
    pub leader_address: String,
    pub epoch: LeaderEpoch,
}

/// What a leader knows of one follower, from its fetches in the current epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end as of its last valid fetch; `None` before its first one in this
    /// epoch (it then holds the high watermark back, if it is in the ISR).
    pub log_end: Option<Offset>,
    pub durable_end: Option<Offset>,
    /// When the follower was last caught up with the leader's log end (Kafka's
    /// lastCaughtUpTimeMs): an ISR member not caught up for the lag limit leaves the ISR.
    pub caught_up_at: Instant,
    /// The leader's log end when it answered the follower's previous fetch, and when: a fetch
    /// reaching it shows the follower was caught up as of that answer.
    pub previous_answer: Option<(Offset, Instant)>,
    /// The follower's log start as of its last valid fetch (DeleteRecords waits for the
    /// in-sync followers' starts: Kafka's low watermark).
    pub log_start: Option<Offset>,
}

/// A leader's state for one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRole {
    pub epoch: LeaderEpoch,
    pub partition_epoch: u32,
    /// This node.
    pub node: NodeId,
    /// The committed ISR (this node first).
    pub isr: Vec<NodeId>,
    /// An ISR change proposed and not yet committed or refused.
    pub pending_isr: Option<Vec<NodeId>>,
    /// Every replica's node, this one included.
    pub replicas: Vec<NodeId>,
    pub followers: BTreeMap<NodeId, FollowerProgress>,
    pub min_insync: u32,
    /// The log end when this epoch began: a follower joins the ISR only once it has
    /// everything before it (Kafka's rule), so it holds every batch of earlier epochs.
    pub epoch_start: Offset,
}

/// An ISR change the leader wants proposed: the new ISR, for its epochs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: u32,
    pub isr: Vec<NodeId>,
}

/// What a replica leads from (`Partition::become_leader`): the committed metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStart {
    pub node: NodeId,
    pub epoch: LeaderEpoch,
    pub partition_epoch: u32,
    pub isr: Vec<NodeId>,
    pub replicas: Vec<NodeId>,
    pub min_insync: u32,
}

impl FollowerProgress {
    /// A follower not heard from yet in this epoch: given a full lag period before it counts
    /// as lagging.
    pub fn new(now: Instant) -> FollowerProgress {
        FollowerProgress { log_end: None, durable_end: None, caught_up_at: now, previous_answer: None, log_start: None }
    }
}

impl LeaderRole {
    /// The leader's state at the start of its epoch, which starts at `epoch_start` (the log end).
    pub fn new(start: LeaderStart, epoch_start: Offset, now: Instant) -> LeaderRole {
        assert_eq!(start.isr.first(), Some(&start.node), "the leader heads its ISR");
        let followers =
            start.replicas.iter().filter(|&&n| n != start.node).map(|&n| (n, FollowerProgress::new(now))).collect();
        LeaderRole {
            epoch: start.epoch,
            partition_epoch: start.partition_epoch,
            node: start.node,
            isr: start.isr,
            pending_isr: None,
            replicas: start.replicas,
            followers,
            min_insync: start.min_insync,
            epoch_start,
        }
    }

    /// The committed ISR, with the members of a pending change added (Kafka's maximal ISR):
    /// what the high watermark waits for.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut all = self.isr.clone();
        for n in self.pending_isr.iter().flatten() {
            if !all.contains(n) {
                all.push(*n);
            }
        }
        all
    }

    /// The smallest log end over the maximal ISR, the leader's being `leader_end`; `None`
    /// while a member has not fetched in this epoch.
    pub fn replicated_end(&self, leader_end: Offset) -> Option<Offset> {
        self.min_over_isr(leader_end, |p| p.log_end)
    }

    /// The smallest durable end over the maximal ISR.
    pub fn durable_end(&self, leader_durable_end: Offset) -> Option<Offset> {
        self.min_over_isr(leader_durable_end, |p| p.durable_end)
    }

    fn min_over_isr(&self, own: Offset, of: impl Fn(&FollowerProgress) -> Option<Offset>) -> Option<Offset> {
        let mut low = own;
        for n in self.maximal_isr() {
            if n == self.node {
                continue;
            }
            low = low.min(of(self.followers.get(&n)?)?);
        }
        Some(low)
    }

    /// A valid fetch from `node` at `fetch_offset` (its log end): records its progress, and
    /// returns the ISR expansion to propose if it just caught up with the high watermark.
    pub fn on_fetch(
        &mut self,
        node: NodeId,
        fetch_offset: Offset,
        durable_offset: Offset,
        leader_end: Offset,
        high_watermark: Offset,
        now: Instant,
    ) -> Option<IsrChange> {
        let progress = self.followers.get_mut(&node)?;
        progress.log_end = Some(fetch_offset);
        progress.durable_end = Some(durable_offset.min(fetch_offset));
        if fetch_offset >= leader_end {
            progress.caught_up_at = now;
        } else if let Some((previous_end, answered_at)) = progress.previous_answer {
            if fetch_offset >= previous_end {
                progress.caught_up_at = progress.caught_up_at.max(answered_at);
            }
        }
        progress.previous_answer = Some((leader_end, now));
        let joins = !self.isr.contains(&node)
            && self.pending_isr.is_none()
            && fetch_offset >= high_watermark
            && fetch_offset >= self.epoch_start;
        joins.then(|| {
            let mut isr = self.isr.clone();
            isr.push(node);
            self.change(isr)
        })
    }

    /// The in-sync followers whose log start is not yet at or past `offset`.
    pub fn log_start_behind(&self, offset: Offset) -> Vec<NodeId> {
        let behind = |n: &&NodeId| {
            **n != self.node && self.followers.get(n).and_then(|p| p.log_start).is_none_or(|s| s < offset)
        };
        self.isr.iter().filter(behind).copied().collect()
    }

    /// ISR members (other than the leader) not caught up for `lag_max`: the ISR without them,
    /// to propose — unless a change is already pending.
    pub fn shrink(&mut self, now: Instant, lag_max: Duration) -> Option<IsrChange> {
        if self.pending_isr.is_some() {
            return None;
        }
        let lagging = |n: &NodeId| {
            *n != self.node
                && self.followers.get(n).is_none_or(|p| now.saturating_duration_since(p.caught_up_at) > lag_max)
        };
        if !self.isr.iter().any(lagging) {
            return None;
        }
        let isr: Vec<NodeId> = self.isr.iter().copied().filter(|n| !lagging(n)).collect();
        Some(self.change(isr))
    }

    fn change(&mut self, isr: Vec<NodeId>) -> IsrChange {
        debug_assert_eq!(isr.first(), Some(&self.node));
        self.pending_isr = Some(isr.clone());
        IsrChange { leader_epoch: self.epoch, partition_epoch: self.partition_epoch, isr }
    }

    /// The metadata log committed (or refused) the pending change: the committed ISR and
    /// partition epoch take over.
    pub fn committed(&mut self, isr: Vec<NodeId>, partition_epoch: u32) {
        assert_eq!(isr.first(), Some(&self.node), "the leader heads its ISR");
        self.isr = isr;
        self.partition_epoch = partition_epoch;
        self.pending_isr = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: u32) -> NodeId {
        NodeId::new(id)
    }

    fn o(offset: u64) -> Offset {
        Offset::new(offset)
    }

    fn start(isr: Vec<NodeId>, replicas: Vec<NodeId>) -> LeaderStart {
        LeaderStart { node: n(1), epoch: LeaderEpoch::new(3), partition_epoch: 7, isr, replicas, min_insync: 2 }
    }

    fn leader(now: Instant) -> LeaderRole {
        LeaderRole::new(start(vec![n(1), n(2), n(3)], vec![n(1), n(2), n(3)]), o(0), now)
    }

    #[test]
    fn the_high_watermark_waits_for_every_in_sync_replica() {
        let now = Instant::now();
        let mut role = leader(now);
        assert_eq!(role.replicated_end(o(10)), None, "no follower has fetched yet");
        assert_eq!(role.on_fetch(n(2), o(10), o(4), o(10), o(0), now), None);
        assert_eq!(role.replicated_end(o(10)), None, "node 3 has not fetched");
        role.on_fetch(n(3), o(6), o(6), o(10), o(0), now);
        assert_eq!(role.replicated_end(o(10)), Some(o(6)));
        assert_eq!(role.durable_end(o(8)), Some(o(4)));
    }

    #[test]
    fn delete_records_waits_for_every_in_sync_followers_log_start() {
        let mut role = leader(Instant::now());
        assert_eq!(role.log_start_behind(o(5)), vec![n(2), n(3)], "no follower reported yet");
        role.followers.get_mut(&n(2)).unwrap().log_start = Some(o(5));
        role.followers.get_mut(&n(3)).unwrap().log_start = Some(o(4));
        assert_eq!(role.log_start_behind(o(5)), vec![n(3)]);
        role.followers.get_mut(&n(3)).unwrap().log_start = Some(o(9));
        assert!(role.log_start_behind(o(5)).is_empty());
    }

    #[test]
    fn a_lagging_follower_is_dropped_and_counted_until_the_shrink_commits() {
        let start = Instant::now();
        let mut role = leader(start);
        let lag = Duration::from_secs(10);
        role.on_fetch(n(2), o(10), o(10), o(10), o(0), start);
        role.on_fetch(n(3), o(2), o(2), o(10), o(0), start);
        assert_eq!(role.shrink(start + Duration::from_secs(5), lag), None);
        let later = start + Duration::from_secs(11);
        role.on_fetch(n(2), o(10), o(10), o(10), o(10), later);
        let change = role.shrink(later, lag).expect("node 3 lags");
        assert_eq!(change.isr, vec![n(1), n(2)]);
        assert_eq!((change.leader_epoch, change.partition_epoch), (LeaderEpoch::new(3), 7));
        // Pending: node 3 still counts.
        assert_eq!(role.replicated_end(o(10)), Some(o(2)));
        assert_eq!(role.shrink(later, lag), None, "one change at a time");
        role.committed(vec![n(1), n(2)], 8);
        assert_eq!(role.replicated_end(o(10)), Some(o(10)));
    }

    #[test]
    fn a_follower_rejoins_once_it_reaches_the_high_watermark_and_the_epoch_start() {
        let now = Instant::now();
        let mut role = LeaderRole::new(start(vec![n(1)], vec![n(1), n(2)]), o(5), now);
        assert_eq!(role.on_fetch(n(2), o(4), o(4), o(9), o(4), now), None, "before the epoch start");
        assert_eq!(role.on_fetch(n(2), o(6), o(6), o(9), o(7), now), None, "below the high watermark");
        let change = role.on_fetch(n(2), o(7), o(7), o(9), o(7), now).expect("caught up");
        assert_eq!(change.isr, vec![n(1), n(2)]);
        // Expansion pending: the joining member counts at once.
        assert_eq!(role.replicated_end(o(9)), Some(o(7)));
    }

    #[test]
    fn caught_up_as_of_the_previous_answer() {
        let start = Instant::now();
        let mut role = leader(start);
        let t1 = start + Duration::from_secs(20);
        // Answered at t1 with the leader's end at 10; the follower's next fetch starts at 10
        // while the leader has moved on to 15: it was caught up at t1.
        role.on_fetch(n(2), o(8), o(8), o(10), o(0), t1);
        let t2 = t1 + Duration::from_secs(1);
        role.on_fetch(n(2), o(10), o(10), o(15), o(0), t2);
        assert_eq!(role.followers[&n(2)].caught_up_at, t1);
    }
}
