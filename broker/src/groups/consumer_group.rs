//! KIP-848 consumer groups (Kafka's "consumer" group type, ConsumerGroupHeartbeat): the
//! broker owns the assignment. There is no join barrier and no SyncGroup; every member
//! heartbeats on its own, and each heartbeat moves the group a step:
//!
//! - The **group epoch** counts changes of what the assignment depends on: membership, a
//!   member's subscribed topics or preferred server assignor, and the partition counts of the
//!   subscribed topics (read from the topic table on every heartbeat, so a topic created or
//!   grown after a member joined is picked up).
//! - Each bump recomputes the **target assignment** with the group's server assignor
//!   (`uniform`, sticky; or `range`), stamped with the group epoch (the assignment epoch).
//! - **Reconciliation** moves each member from what it holds to its target, one heartbeat at
//!   a time: partitions it must give up are revoked first (it keeps its epoch until a
//!   heartbeat's owned partitions no longer hold them); once nothing is left to revoke its
//!   member epoch becomes the assignment epoch; a partition of its target is handed to it
//!   only once no other member holds or is revoking it (it may get the last of its target
//!   later, at the same epoch). The group is Stable when every member is at the assignment
//!   epoch and holds exactly its target.
//!
//! Invariant (asserted after every change): each partition is held (assigned or being
//! revoked) by at most one member, and `owners` says which.
//!
//! Groups are in memory only, like classic groups here: after a coordinator restart (or a
//! controller change in a cluster) a member's next heartbeat gets UNKNOWN_MEMBER_ID and it
//! joins again with epoch 0 (Kafka persists groups in `__consumer_offsets` instead).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::GroupError;
use crate::limits::{
    CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS, CONSUMER_GROUP_MEMBERS_MAX, CONSUMER_GROUP_SESSION_TIMEOUT_MS,
    CONSUMER_MEMBER_ID_BYTES_MAX, CONSUMER_OWNED_PARTITIONS_MAX, CONSUMER_SUBSCRIBED_TOPICS_MAX,
    REBALANCE_TIMEOUT_MS_MAX,
};
use crate::partition::TopicPartition;

pub type Partitions = BTreeSet<TopicPartition>;

/// The member epoch a member joins (or rejoins after being fenced) with.
pub const JOIN_EPOCH: i32 = 0;
/// The member epoch a member leaves with.
pub const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member (one with an instance id) leaves with, meaning "back
/// soon": it keeps its place and partitions for the session timeout, and a member joining
/// with its instance id takes them over without a new group epoch.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Longest topic name a subscription may name (Kafka's topic name limit).
const TOPIC_NAME_BYTES_MAX: usize = 249;

/// The assignors the coordinator runs (a request's ServerAssignor names one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum ServerAssignor {
    /// Kafka's default: partitions spread evenly over the members subscribed to their topic,
    /// each staying with its member where balance allows.
    #[default]
    Uniform,
    /// Per topic, the partitions in contiguous ranges over its subscribers in member-id order.
    Range,
}

impl ServerAssignor {
    pub fn name(self) -> &'static str {
        match self {
            ServerAssignor::Uniform => "uniform",
            ServerAssignor::Range => "range",
        }
    }

    pub fn from_name(name: &str) -> Option<ServerAssignor> {
        match name {
            "uniform" => Some(ServerAssignor::Uniform),
            "range" => Some(ServerAssignor::Range),
            _ => None,
        }
    }
}

/// A ConsumerGroupHeartbeat, protocol-neutral (topics by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerHeartbeat {
    pub group: String,
    /// Never empty: Kafka's v1 clients make their own; the adapter makes one for v0.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// `None`: unchanged.
    pub server_assignor: Option<String>,
    /// The partitions the member owns now; `None`: unchanged.
    pub owned: Option<Vec<TopicPartition>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// The member's partitions, when they changed since it was last told (or it joined);
    /// `None`: keep what you have.
    pub assignment: Option<Vec<TopicPartition>>,
}

/// One member as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topics: Vec<String>,
    /// What the member holds now (without partitions it is revoking).
    pub assignment: Vec<TopicPartition>,
    pub target_assignment: Vec<TopicPartition>,
}

/// A consumer group as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group: String,
    /// Kafka's consumer group states: Empty, Reconciling, Stable.
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<ConsumerMemberDescription>,
}

/// Checks a heartbeat's shape (Kafka's INVALID_REQUEST cases) and its assignor's name.
pub fn validate(request: &ConsumerHeartbeat) -> Result<Option<ServerAssignor>, GroupError> {
    let invalid = |why| Err(GroupError::InvalidRequest(why));
    if request.group.is_empty() || request.group.len() > engine::limits::GROUP_NAME_BYTES_MAX {
        return Err(GroupError::InvalidGroupId);
    }
    if request.member_id.is_empty() {
        return invalid("MemberId can't be empty");
    }
    if request.member_id.len() > CONSUMER_MEMBER_ID_BYTES_MAX {
        return invalid("MemberId is too long");
    }
    match request.member_epoch {
        JOIN_EPOCH => {
            if request.rebalance_timeout_ms <= 0 {
                return invalid("RebalanceTimeoutMs must be provided when joining");
            }
            if request.subscribed_topics.is_none() {
                return invalid("SubscribedTopicNames must be set when joining");
            }
            if request.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when joining");
            }
        }
        STATIC_LEAVE_EPOCH if request.instance_id.is_none() => {
            return invalid("InstanceId can't be null when leaving with MemberEpoch -2");
        }
        LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {}
        epoch if epoch > 0 => {}
        _ => return invalid("MemberEpoch is invalid"),
    }
    if let Some(topics) = &request.subscribed_topics {
        if topics.len() > CONSUMER_SUBSCRIBED_TOPICS_MAX {
            return invalid("too many subscribed topics");
        }
        if topics.iter().any(|t| t.is_empty() || t.len() > TOPIC_NAME_BYTES_MAX) {
            return invalid("SubscribedTopicNames holds an invalid topic name");
        }
    }
    if request.owned.as_ref().is_some_and(|o| o.len() > CONSUMER_OWNED_PARTITIONS_MAX) {
        return invalid("too many owned partitions");
    }
    match &request.server_assignor {
        None => Ok(None),
        Some(name) => ServerAssignor::from_name(name).map(Some).ok_or(GroupError::UnsupportedAssignor),
    }
}

/// The epoch after `epoch` (wrapping to 1, as generations do: 0 and below mean join/leave).
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

struct Member {
    epoch: i32,
    /// The epoch before the last advance: a heartbeat carrying it is accepted if its owned
    /// partitions fit (the answer with the new epoch may have been lost).
    previous_epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    subscribed: BTreeSet<String>,
    assignor: Option<ServerAssignor>,
    rebalance_timeout: Duration,
    last_heartbeat: Instant,
    /// Partitions the member holds and keeps.
    assigned: Partitions,
    /// Partitions the member was told to give up and has not yet reported released.
    revoking: Partitions,
    /// When revoking must be done, or the member is removed (its rebalance timeout).
    revoke_deadline: Option<Instant>,
    /// What the member last said it owns.
    reported: Partitions,
    /// What it was last told it holds (`None`: nothing yet).
    sent: Option<Partitions>,
    /// A static member that left with epoch -2: held for its instance id until the session
    /// timeout passes.
    static_left: bool,
}

impl Member {
    fn new(now: Instant) -> Member {
        Member {
            epoch: JOIN_EPOCH,
            previous_epoch: JOIN_EPOCH,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed: BTreeSet::new(),
            assignor: None,
            rebalance_timeout: Duration::from_millis(REBALANCE_TIMEOUT_MS_MAX),
            last_heartbeat: now,
            assigned: Partitions::new(),
            revoking: Partitions::new(),
            revoke_deadline: None,
            reported: Partitions::new(),
            sent: None,
            static_left: false,
        }
    }
}

/// One consumer group: members, epochs, the target assignment and who holds what.
#[derive(Default)]
pub struct ConsumerGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: ServerAssignor,
    /// Ordered by id: assignors see members in a deterministic order.
    members: BTreeMap<String, Member>,
    /// Partition count of every subscribed topic that exists, as of the group epoch.
    topic_partitions: BTreeMap<String, u32>,
    /// Each member's target (members with none have no entry).
    target: BTreeMap<String, Partitions>,
    /// Who holds (assigned or revoking) each partition.
    owners: HashMap<TopicPartition, String>,
}

impl ConsumerGroup {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.members.iter().all(|(id, m)| {
            m.epoch == self.assignment_epoch
                && m.revoking.is_empty()
                && self.target.get(id).map_or(m.assigned.is_empty(), |t| *t == m.assigned)
        }) {
            "Stable"
        } else {
            "Reconciling"
        }
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignor(&self) -> ServerAssignor {
        self.assignor
    }

    /// The topics any member subscribes to.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members.values().flat_map(|m| m.subscribed.iter().cloned()).collect()
    }

    /// What `member_id` holds now (for DescribeGroups), `None` if it is not a member.
    pub fn member_assignment(&self, member_id: &str) -> Option<&Partitions> {
        self.members.get(member_id).map(|m| &m.assigned)
    }

    /// (member id, client id, client host, instance id) of every member.
    pub fn member_ids(&self) -> impl Iterator<Item = (&String, &str, &str, Option<&String>)> {
        self.members.iter().map(|(id, m)| (id, m.client_id.as_str(), m.client_host.as_str(), m.instance_id.as_ref()))
    }

    /// One heartbeat of a validated request (`assignor`: its parsed ServerAssignor).
    /// `partitions_of` gives a topic's partition count (`None`: no such topic).
    pub fn heartbeat(
        &mut self,
        group: &str,
        request: ConsumerHeartbeat,
        assignor: Option<ServerAssignor>,
        partitions_of: &dyn Fn(&str) -> Option<u32>,
        now: Instant,
    ) -> Result<ConsumerHeartbeatReply, GroupError> {
        let member_id = request.member_id;
        let reply = |member_id: String, member_epoch, assignment| ConsumerHeartbeatReply {
            member_id,
            member_epoch,
            heartbeat_interval_ms: CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS,
            assignment,
        };
        if request.member_epoch == LEAVE_EPOCH || request.member_epoch == STATIC_LEAVE_EPOCH {
            let m = self.members.get_mut(&member_id).ok_or(GroupError::UnknownMemberId)?;
            if request.member_epoch == STATIC_LEAVE_EPOCH && m.instance_id.is_some() {
                // Back soon: its partitions wait for its instance; what it was revoking is
                // released (the process is gone).
                tracing::info!(%group, member = %member_id, "static consumer group member left for now");
                m.static_left = true;
                m.last_heartbeat = now;
                m.revoke_deadline = None;
                for tp in std::mem::take(&mut m.revoking) {
                    self.owners.remove(&tp);
                }
                self.check_invariants();
                return Ok(reply(member_id, request.member_epoch, None));
            }
            tracing::info!(%group, member = %member_id, "consumer group member left");
            self.remove_member(&member_id);
            return Ok(reply(member_id, request.member_epoch, None));
        }
        let mut changed = false;
        let replaced = request.member_epoch == JOIN_EPOCH
            && self.take_over_instance(group, &member_id, request.instance_id.as_deref(), now)?;
        if request.member_epoch == JOIN_EPOCH && !replaced {
            match self.members.get_mut(&member_id) {
                // A member that lost its partitions (fenced, or restarted with its id) joins
                // again: whatever it held is released; its subscription is compared below.
                Some(m) => {
                    let held: Vec<TopicPartition> = m.assigned.iter().chain(&m.revoking).cloned().collect();
                    for tp in held {
                        self.owners.remove(&tp);
                    }
                    let subscribed = std::mem::take(&mut m.subscribed);
                    let assignor = m.assignor;
                    *m = Member::new(now);
                    m.subscribed = subscribed;
                    m.assignor = assignor;
                }
                None => {
                    if self.members.len() >= CONSUMER_GROUP_MEMBERS_MAX {
                        return Err(GroupError::GroupFull);
                    }
                    tracing::info!(%group, member = %member_id, "consumer group member joined");
                    self.members.insert(member_id.clone(), Member::new(now));
                    changed = true;
                }
            }
        } else if request.member_epoch != JOIN_EPOCH {
            let m = self.members.get(&member_id).ok_or(GroupError::UnknownMemberId)?;
            if request.member_epoch > m.epoch {
                return Err(GroupError::FencedMemberEpoch);
            }
            if request.member_epoch < m.epoch {
                let owned_fits = request.owned.as_ref().is_none_or(|o| o.iter().all(|tp| m.assigned.contains(tp)));
                if request.member_epoch != m.previous_epoch || !owned_fits {
                    return Err(GroupError::FencedMemberEpoch);
                }
            }
        }
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        m.last_heartbeat = now;
        m.static_left = false;
        if let Ok(ms) = u64::try_from(request.rebalance_timeout_ms) {
            if ms > 0 {
                m.rebalance_timeout = Duration::from_millis(ms.min(REBALANCE_TIMEOUT_MS_MAX));
            }
        }
        if request.instance_id.is_some() {
            m.instance_id = request.instance_id;
        }
        if request.rack_id.is_some() {
            m.rack_id = request.rack_id;
        }
        if !request.client_id.is_empty() {
            m.client_id = request.client_id;
        }
        if !request.client_host.is_empty() {
            m.client_host = request.client_host;
        }
        if let Some(topics) = request.subscribed_topics {
            let topics: BTreeSet<String> = topics.into_iter().collect();
            if topics != m.subscribed {
                m.subscribed = topics;
                changed = true;
            }
        }
        if assignor.is_some() && assignor != m.assignor {
            m.assignor = assignor;
            changed = true;
        }
        let owned: Option<Partitions> = request.owned.map(|o| o.into_iter().collect());
        let full_answer = request.member_epoch == JOIN_EPOCH
            || owned.as_ref().is_some_and(|o| *o != m.assigned.union(&m.revoking).cloned().collect());
        if let Some(owned) = &owned {
            m.reported.clone_from(owned);
        }
        // The topics' partition counts as of now: a created or grown topic changes them.
        let current = self.current_topic_partitions(partitions_of);
        if changed || current != self.topic_partitions {
            self.topic_partitions = current;
            self.group_epoch = next_epoch(self.group_epoch);
            self.retarget();
            tracing::info!(%group, group_epoch = self.group_epoch, assignor = self.assignor.name(), members = self.members.len(), "consumer group epoch bumped");
        }
        self.reconcile(&member_id, now);
        self.check_invariants();
        let Some(m) = self.members.get_mut(&member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let assignment = if full_answer || m.sent.as_ref() != Some(&m.assigned) {
            m.sent = Some(m.assigned.clone());
            Some(m.assigned.iter().cloned().collect())
        } else {
            None
        };
        Ok(reply(member_id, m.epoch, assignment))
    }

    /// A static member joining (epoch 0 with an instance id): if a member that left with -2
    /// holds the instance, `member_id` takes its place — its partitions, target and epoch —
    /// and `true` is returned; a member still active under it is UNRELEASED_INSTANCE_ID.
    fn take_over_instance(
        &mut self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<bool, GroupError> {
        let Some(instance) = instance_id else {
            return Ok(false);
        };
        let holder = self
            .members
            .iter()
            .find(|(id, m)| m.instance_id.as_deref() == Some(instance) && id.as_str() != member_id)
            .map(|(id, m)| (id.clone(), m.static_left));
        let Some((old_id, static_left)) = holder else {
            return Ok(false);
        };
        if !static_left {
            return Err(GroupError::UnreleasedInstanceId);
        }
        if self.members.contains_key(member_id) {
            // Both ids are members: the old one simply goes.
            self.remove_member(&old_id);
            return Ok(false);
        }
        let Some(mut m) = self.members.remove(&old_id) else {
            return Ok(false);
        };
        tracing::info!(%group, member = %member_id, old = %old_id, "static consumer group member replaced");
        for tp in &m.assigned {
            self.owners.insert(tp.clone(), member_id.to_owned());
        }
        if let Some(target) = self.target.remove(&old_id) {
            self.target.insert(member_id.to_owned(), target);
        }
        // The new process holds nothing yet: it is told everything afresh.
        m.static_left = false;
        m.sent = None;
        m.reported = Partitions::new();
        m.last_heartbeat = now;
        self.members.insert(member_id.to_owned(), m);
        self.check_invariants();
        Ok(true)
    }

    /// May `member_id` at `member_epoch` commit (or fetch) offsets? Kafka's rules: an empty
    /// member id with epoch -1 is an admin (or manual) commit, allowed only while the group has
    /// no members; otherwise the member must exist and carry its current epoch.
    pub fn check_member_epoch(&self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        if member_id.is_empty() && member_epoch < 0 {
            return if self.members.is_empty() { Ok(()) } else { Err(GroupError::UnknownMemberId) };
        }
        let m = self.members.get(member_id).ok_or(GroupError::UnknownMemberId)?;
        if member_epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Removes members whose heartbeats stopped for the session timeout, or that did not
    /// revoke in their rebalance timeout; how many.
    pub fn expire(&mut self, group: &str, now: Instant) -> usize {
        let session = Duration::from_millis(CONSUMER_GROUP_SESSION_TIMEOUT_MS);
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                now.saturating_duration_since(m.last_heartbeat) > session
                    || m.revoke_deadline.is_some_and(|deadline| now > deadline)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            tracing::info!(%group, member = %id, "consumer group member expired");
            self.remove_member(id);
        }
        gone.len()
    }

    pub fn describe(&self, group: &str) -> ConsumerGroupDescription {
        let members = self
            .members
            .iter()
            .map(|(id, m)| ConsumerMemberDescription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topics: m.subscribed.iter().cloned().collect(),
                assignment: m.assigned.iter().cloned().collect(),
                target_assignment: self.target.get(id).map(|t| t.iter().cloned().collect()).unwrap_or_default(),
            })
            .collect();
        ConsumerGroupDescription {
            group: group.to_owned(),
            state: self.state_name(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.name(),
            members,
        }
    }

    fn current_topic_partitions(&self, partitions_of: &dyn Fn(&str) -> Option<u32>) -> BTreeMap<String, u32> {
        self.subscribed_topics().into_iter().filter_map(|t| partitions_of(&t).map(|n| (t, n))).collect()
    }

    /// Takes a member out: what it held is free, and the group moves to a new epoch.
    fn remove_member(&mut self, member_id: &str) {
        let Some(m) = self.members.remove(member_id) else {
            return;
        };
        for tp in m.assigned.iter().chain(&m.revoking) {
            self.owners.remove(tp);
        }
        self.target.remove(member_id);
        // Topics nobody subscribes to any more leave the metadata (no second bump later).
        let subscribed = self.subscribed_topics();
        self.topic_partitions.retain(|t, _| subscribed.contains(t));
        self.group_epoch = next_epoch(self.group_epoch);
        self.retarget();
        self.check_invariants();
    }

    /// The most preferred assignor among the members (Kafka: the most used), else uniform.
    fn choose_assignor(&self) -> ServerAssignor {
        let mut votes: BTreeMap<ServerAssignor, usize> = BTreeMap::new();
        for a in self.members.values().filter_map(|m| m.assignor) {
            *votes.entry(a).or_default() += 1;
        }
        // Ties go to the first in enum order (uniform), deterministically.
        let best = votes.values().copied().max().unwrap_or(0);
        votes.into_iter().find(|&(_, n)| n == best).map_or(ServerAssignor::default(), |(a, _)| a)
    }

    /// A new target assignment for the group epoch.
    fn retarget(&mut self) {
        self.assignor = self.choose_assignor();
        let subscriptions: BTreeMap<String, BTreeSet<String>> =
            self.members.iter().map(|(id, m)| (id.clone(), m.subscribed.clone())).collect();
        self.target = assign(self.assignor, &subscriptions, &self.topic_partitions, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves `member_id` a step towards its target (see the module comment).
    fn reconcile(&mut self, member_id: &str, now: Instant) {
        let empty = Partitions::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        // A revocation is done once the member no longer reports any of it.
        if !m.revoking.is_empty() {
            if m.revoking.iter().any(|tp| m.reported.contains(tp)) {
                return;
            }
            for tp in std::mem::take(&mut m.revoking) {
                self.owners.remove(&tp);
            }
            m.revoke_deadline = None;
        }
        let revoke: Partitions = m.assigned.difference(target).cloned().collect();
        if !revoke.is_empty() {
            m.assigned.retain(|tp| !revoke.contains(tp));
            // Partitions it was never told of it cannot hold: free at once. The others wait
            // until it reports them gone.
            let told = m.sent.clone().unwrap_or_default();
            let (waiting, never_told): (Partitions, Partitions) = revoke.into_iter().partition(|tp| told.contains(tp));
            for tp in &never_told {
                self.owners.remove(tp);
            }
            if !waiting.is_empty() {
                m.revoking = waiting;
                m.revoke_deadline = Some(now + m.rebalance_timeout);
                return;
            }
        }
        for tp in target.difference(&m.assigned.clone()) {
            if !self.owners.contains_key(tp) {
                self.owners.insert(tp.clone(), member_id.to_owned());
                m.assigned.insert(tp.clone());
            }
        }
        // Nothing left to revoke: the member is at the assignment epoch, whether or not every
        // partition of its target is free yet (the rest come, at this epoch, as their owners
        // release them). Kafka does the same: a member waiting for partitions keeps working,
        // and one that just joined is never left at epoch 0 (which would read as a rejoin).
        if m.epoch != self.assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = self.assignment_epoch;
        }
    }

    /// No partition held by two members; `owners` is exactly what the members hold.
    fn check_invariants(&self) {
        let mut held = 0usize;
        for (id, m) in &self.members {
            assert!(m.assigned.is_disjoint(&m.revoking), "member {id} both holds and revokes a partition");
            for tp in m.assigned.iter().chain(&m.revoking) {
                assert_eq!(self.owners.get(tp), Some(id), "{tp:?} is held by {id} but owned by another");
                held += 1;
            }
        }
        assert_eq!(held, self.owners.len(), "an owner that holds nothing");
    }
}

/// Every member's target: the partitions of the topics it subscribes to (that exist, per
/// `partitions`), spread by `assignor`; `previous` is the last target (uniform keeps
/// partitions where they were when balance allows).
pub fn assign(
    assignor: ServerAssignor,
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> =
        subscriptions.keys().map(|id| (id.clone(), Partitions::new())).collect();
    // Subscribers of each existing topic, in member-id order.
    let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, topics) in subscriptions {
        for topic in topics {
            if partitions.contains_key(topic) {
                subscribers.entry(topic.as_str()).or_default().push(id.as_str());
            }
        }
    }
    match assignor {
        ServerAssignor::Range => {
            for (topic, members) in &subscribers {
                let count = partitions.get(*topic).copied().unwrap_or(0);
                let n = members.len() as u32;
                let (per, extra) = (count / n, count % n);
                let mut next = 0u32;
                for (i, member) in members.iter().enumerate() {
                    let take = per + u32::from((i as u32) < extra);
                    if let Some(set) = out.get_mut(*member) {
                        set.extend((next..next + take).map(|p| TopicPartition::new(*topic, p)));
                    }
                    next += take;
                }
            }
        }
        ServerAssignor::Uniform => uniform(&mut out, &subscribers, partitions, previous),
    }
    out.retain(|_, set| !set.is_empty());
    out
}

/// Sticky and balanced: keep every previous placement still valid, give each unplaced
/// partition to its least-loaded subscriber, then move partitions from a member to a
/// subscriber of their topic holding two or more fewer until none can move (each move lowers
/// the sum of squared loads, so this ends).
fn uniform(
    out: &mut BTreeMap<String, Partitions>,
    subscribers: &BTreeMap<&str, Vec<&str>>,
    partitions: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, Partitions>,
) {
    let mut unplaced: Partitions = subscribers
        .keys()
        .flat_map(|topic| {
            let count = partitions.get(*topic).copied().unwrap_or(0);
            (0..count).map(|p| TopicPartition::new(*topic, p))
        })
        .collect();
    for (member, set) in previous {
        let Some(mine) = out.get_mut(member) else {
            continue;
        };
        for tp in set {
            let subscribed = subscribers.get(tp.topic.as_str()).is_some_and(|s| s.contains(&member.as_str()));
            if subscribed && unplaced.remove(tp) {
                mine.insert(tp.clone());
            }
        }
    }
    let least_loaded = |out: &BTreeMap<String, Partitions>, topic: &str| -> Option<String> {
        subscribers
            .get(topic)?
            .iter()
            .min_by_key(|m| (out.get(**m).map_or(0, BTreeSet::len), **m))
            .map(|m| (*m).to_owned())
    };
    for tp in unplaced {
        if let Some(member) = least_loaded(out, &tp.topic) {
            out.entry(member).or_default().insert(tp);
        }
    }
    // Rounds over the members, most loaded first: each gives at most one partition a round to
    // the least-loaded subscriber of its topic if that one holds two or more fewer. One per
    // member a round spreads the giving (a newcomer takes one from each of the most loaded,
    // and nothing moves between the others), and each round costs O(partitions), not each move.
    loop {
        let mut by_load: Vec<(usize, String)> = out.iter().map(|(id, s)| (s.len(), id.clone())).collect();
        by_load.sort_by(|a, b| b.cmp(a));
        let mut moved = false;
        for (_, from) in by_load {
            let held: Vec<TopicPartition> = out.get(&from).map(|s| s.iter().cloned().collect()).unwrap_or_default();
            for tp in held {
                let Some(to) = least_loaded(out, &tp.topic) else { continue };
                let from_load = out.get(&from).map_or(0, BTreeSet::len);
                if out.get(&to).map_or(0, BTreeSet::len) + 1 < from_load {
                    if let Some(set) = out.get_mut(&from) {
                        set.remove(&tp);
                    }
                    out.entry(to).or_default().insert(tp);
                    moved = true;
                    break;
                }
            }
        }
        if !moved {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn set(items: &[(&str, u32)]) -> Partitions {
        items.iter().map(|&(t, p)| tp(t, p)).collect()
    }

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        members
            .iter()
            .map(|(id, topics)| ((*id).to_owned(), topics.iter().map(|t| (*t).to_owned()).collect()))
            .collect()
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
    }

    /// Every partition of `topics` placed exactly once, each with a member subscribed to its topic.
    fn assert_complete(
        out: &BTreeMap<String, Partitions>,
        subscriptions: &BTreeMap<String, BTreeSet<String>>,
        topics: &BTreeMap<String, u32>,
    ) {
        let mut seen = Partitions::new();
        for (member, held) in out {
            for p in held {
                assert!(subscriptions[member].contains(&p.topic), "{member} got {p:?} without subscribing");
                assert!(seen.insert(p.clone()), "{p:?} placed twice");
            }
        }
        let subscribed: BTreeSet<&String> = subscriptions.values().flatten().collect();
        let expected: usize = topics.iter().filter(|(t, _)| subscribed.contains(t)).map(|(_, n)| *n as usize).sum();
        assert_eq!(seen.len(), expected);
    }

    #[test]
    fn uniform_spreads_evenly_and_keeps_partitions_where_they_were() {
        let topics = counts(&[("a", 4), ("b", 3)]);
        let two = subs(&[("m1", &["a", "b"]), ("m2", &["a", "b"])]);
        let first = assign(ServerAssignor::Uniform, &two, &topics, &BTreeMap::new());
        assert_complete(&first, &two, &topics);
        assert!(first["m1"].len().abs_diff(first["m2"].len()) <= 1);
        // A third member: each of the first two keeps all but what it must give up.
        let three = subs(&[("m1", &["a", "b"]), ("m2", &["a", "b"]), ("m3", &["a", "b"])]);
        let second = assign(ServerAssignor::Uniform, &three, &topics, &first);
        assert_complete(&second, &three, &topics);
        let loads: Vec<usize> = second.values().map(BTreeSet::len).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{loads:?}");
        for member in ["m1", "m2"] {
            assert!(second[member].is_subset(&first[member]), "{member} kept its own: {second:?} after {first:?}");
        }
        // m3 leaves again: nothing of m1's or m2's moves.
        let third = assign(ServerAssignor::Uniform, &two, &topics, &second);
        for member in ["m1", "m2"] {
            assert!(second[member].is_subset(&third[member]));
        }
    }

    #[test]
    fn uniform_at_scale_stays_balanced_and_sticky() {
        // 300 members on 3 000 partitions, then a 301st joins: quick, even, and no partition
        // moves between the first 300 (each gives up at most one, to the newcomer).
        let topics = counts(&[("big", 3_000)]);
        let mut members: BTreeMap<String, BTreeSet<String>> =
            (0..300).map(|i| (format!("m{i:03}"), BTreeSet::from(["big".to_owned()]))).collect();
        let started = Instant::now();
        let first = assign(ServerAssignor::Uniform, &members, &topics, &BTreeMap::new());
        members.insert("m999".into(), BTreeSet::from(["big".to_owned()]));
        let second = assign(ServerAssignor::Uniform, &members, &topics, &first);
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_complete(&second, &members, &topics);
        let loads: Vec<usize> = second.values().map(BTreeSet::len).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
        for (member, held) in &first {
            assert!(second[member].is_subset(held), "{member} got another's partition");
        }
    }

    #[test]
    fn range_splits_each_topic_in_member_id_order() {
        let topics = counts(&[("a", 4), ("b", 3)]);
        let members = subs(&[("m2", &["a", "b"]), ("m1", &["a", "b"])]);
        let out = assign(ServerAssignor::Range, &members, &topics, &BTreeMap::new());
        assert_eq!(out["m1"], set(&[("a", 0), ("a", 1), ("b", 0), ("b", 1)]));
        assert_eq!(out["m2"], set(&[("a", 2), ("a", 3), ("b", 2)]));
    }

    #[test]
    fn assignors_give_only_subscribed_topics_that_exist() {
        let topics = counts(&[("a", 2), ("b", 6)]);
        let members = subs(&[("m1", &["a"]), ("m2", &["a", "b"]), ("m3", &["b", "missing"])]);
        for assignor in [ServerAssignor::Uniform, ServerAssignor::Range] {
            let out = assign(assignor, &members, &topics, &BTreeMap::new());
            assert_complete(&out, &members, &topics);
        }
        let uniform = assign(ServerAssignor::Uniform, &members, &topics, &BTreeMap::new());
        let loads: Vec<usize> = uniform.values().map(BTreeSet::len).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{uniform:?}");
        assert!(assign(ServerAssignor::Uniform, &subs(&[("m1", &["missing"])]), &topics, &BTreeMap::new()).is_empty());
    }

    /// A group and a topic table, driven the way the coordinator does.
    struct Harness {
        group: ConsumerGroup,
        topics: BTreeMap<String, u32>,
        now: Instant,
    }

    impl Harness {
        fn new(topics: &[(&str, u32)]) -> Harness {
            Harness { group: ConsumerGroup::default(), topics: counts(topics), now: Instant::now() }
        }

        fn send(&mut self, request: ConsumerHeartbeat) -> Result<ConsumerHeartbeatReply, GroupError> {
            let assignor = validate(&request)?;
            let topics = self.topics.clone();
            let partitions_of = move |t: &str| topics.get(t).copied();
            self.group.heartbeat("g", request, assignor, &partitions_of, self.now)
        }

        fn join(&mut self, member: &str, topics: &[&str]) -> ConsumerHeartbeatReply {
            self.send(join_request(member, topics)).unwrap()
        }

        fn beat(&mut self, member: &str, epoch: i32, owned: Option<&Partitions>) -> ConsumerHeartbeatReply {
            self.send(ConsumerHeartbeat {
                group: "g".into(),
                member_id: member.into(),
                member_epoch: epoch,
                owned: owned.map(|o| o.iter().cloned().collect()),
                ..ConsumerHeartbeat::default()
            })
            .unwrap()
        }
    }

    fn join_request(member: &str, topics: &[&str]) -> ConsumerHeartbeat {
        ConsumerHeartbeat {
            group: "g".into(),
            member_id: member.into(),
            member_epoch: JOIN_EPOCH,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: Some(topics.iter().map(|t| (*t).to_owned()).collect()),
            owned: Some(Vec::new()),
            ..ConsumerHeartbeat::default()
        }
    }

    fn partitions(reply: &ConsumerHeartbeatReply) -> Partitions {
        reply.assignment.clone().expect("an assignment").into_iter().collect()
    }

    #[test]
    fn a_partition_moves_to_a_new_member_only_after_its_holder_revokes_it() {
        let mut h = Harness::new(&[("t", 4)]);
        let a = h.join("a", &["t"]);
        assert_eq!((a.member_epoch, partitions(&a).len()), (1, 4));
        assert_eq!(a.heartbeat_interval_ms, CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS);
        let all = partitions(&a);
        assert!(h.beat("a", 1, Some(&all)).assignment.is_none(), "nothing changed, nothing sent");

        // B joins: epoch 2. B's target is half of A's partitions, still held by A.
        let b = h.join("b", &["t"]);
        assert_eq!((b.member_epoch, partitions(&b).len()), (2, 0), "nothing free yet");
        assert_eq!(h.group.state_name(), "Reconciling");
        // A is told to give two up, and stays at epoch 1 until it does.
        let a = h.beat("a", 1, Some(&all));
        let kept = partitions(&a);
        assert_eq!((a.member_epoch, kept.len()), (1, 2));
        let b = h.beat("b", 2, Some(&Partitions::new()));
        assert!(b.assignment.is_none(), "A still holds B's partitions");
        // A reports them gone: it moves to epoch 2; B gets them on its next heartbeat.
        let a = h.beat("a", 1, Some(&kept));
        assert_eq!(a.member_epoch, 2);
        let b = h.beat("b", 2, Some(&Partitions::new()));
        let given = partitions(&b);
        assert_eq!(given.len(), 2);
        assert!(given.is_disjoint(&kept));
        h.beat("b", 2, Some(&given));
        assert_eq!(h.group.state_name(), "Stable");

        // A leaves: B takes all four at once (A released them by leaving).
        let left = h.send(ConsumerHeartbeat { member_epoch: LEAVE_EPOCH, ..join_request("a", &[]) }).unwrap();
        assert_eq!(left.member_epoch, LEAVE_EPOCH);
        let b = h.beat("b", 2, Some(&given));
        assert_eq!((b.member_epoch, partitions(&b).len()), (3, 4));
    }

    #[test]
    fn epochs_are_checked_and_a_lost_answer_is_forgiven() {
        let mut h = Harness::new(&[("t", 2)]);
        let a = h.join("a", &["t"]);
        let held = partitions(&a);
        let beat = |h: &mut Harness, epoch, owned: Option<&Partitions>| {
            h.send(ConsumerHeartbeat {
                group: "g".into(),
                member_id: "a".into(),
                member_epoch: epoch,
                owned: owned.map(|o| o.iter().cloned().collect()),
                ..ConsumerHeartbeat::default()
            })
        };
        assert_eq!(beat(&mut h, 2, None).unwrap_err(), GroupError::FencedMemberEpoch, "ahead of the member");
        h.join("b", &["t"]);
        // B's join moved the group to epoch 2; A gives one partition up and moves to it.
        let kept = partitions(&h.beat("a", 1, Some(&held)));
        assert_eq!(h.beat("a", 1, Some(&kept)).member_epoch, 2);
        // The answer with epoch 2 was lost: epoch 1 again, holding a subset, is accepted ...
        assert_eq!(beat(&mut h, 1, Some(&kept)).unwrap().member_epoch, 2);
        // ... but not holding more than it has.
        assert_eq!(beat(&mut h, 1, Some(&held)).unwrap_err(), GroupError::FencedMemberEpoch);
        assert_eq!(
            h.send(ConsumerHeartbeat { member_epoch: 3, ..join_request("zz", &[]) }).unwrap_err(),
            GroupError::UnknownMemberId
        );
        // Commits: only the member's current epoch.
        assert_eq!(h.group.check_member_epoch("a", 2), Ok(()));
        assert_eq!(h.group.check_member_epoch("a", 1), Err(GroupError::StaleMemberEpoch));
        assert_eq!(h.group.check_member_epoch("nobody", 2), Err(GroupError::UnknownMemberId));
        assert_eq!(h.group.check_member_epoch("", -1), Err(GroupError::UnknownMemberId), "the group has members");
    }

    #[test]
    fn malformed_requests_and_unknown_assignors_are_refused() {
        let mut h = Harness::new(&[("t", 1)]);
        let invalid = |r: Result<ConsumerHeartbeatReply, GroupError>| matches!(r, Err(GroupError::InvalidRequest(_)));
        assert!(invalid(h.send(ConsumerHeartbeat { subscribed_topics: None, ..join_request("a", &[]) })));
        assert!(invalid(h.send(ConsumerHeartbeat { rebalance_timeout_ms: -1, ..join_request("a", &["t"]) })));
        assert!(invalid(h.send(ConsumerHeartbeat { member_id: String::new(), ..join_request("a", &["t"]) })));
        assert!(invalid(h.send(ConsumerHeartbeat { member_epoch: -3, ..join_request("a", &["t"]) })));
        assert!(invalid(h.send(ConsumerHeartbeat { member_epoch: STATIC_LEAVE_EPOCH, ..join_request("a", &["t"]) })));
        assert!(invalid(h.send(ConsumerHeartbeat { owned: Some(vec![tp("t", 0)]), ..join_request("a", &["t"]) })));
        assert!(invalid(h.send(join_request("a", &[""]))));
        let unknown = ConsumerHeartbeat { server_assignor: Some("sticky".into()), ..join_request("a", &["t"]) };
        assert_eq!(h.send(unknown).unwrap_err(), GroupError::UnsupportedAssignor);
        let no_group = ConsumerHeartbeat { group: String::new(), ..join_request("a", &["t"]) };
        assert_eq!(h.send(no_group).unwrap_err(), GroupError::InvalidGroupId);
        assert!(h.group.is_empty(), "nothing refused joined");
        let range = ConsumerHeartbeat { server_assignor: Some("range".into()), ..join_request("a", &["t"]) };
        h.send(range).unwrap();
        assert_eq!(h.group.assignor(), ServerAssignor::Range);
    }

    #[test]
    fn silent_members_expire_and_one_that_does_not_revoke_is_removed() {
        let mut h = Harness::new(&[("t", 2)]);
        let a = h.join("a", &["t"]);
        let held = partitions(&a);
        h.join("b", &["t"]);
        h.beat("a", 1, Some(&held)); // A must revoke one
                                     // B keeps heartbeating; A goes silent while revoking: past its rebalance timeout
                                     // (30 s, before the session timeout) it is removed and B gets everything.
        h.now += Duration::from_secs(31);
        h.beat("b", 2, None);
        assert_eq!(h.group.expire("g", h.now), 1);
        let b = h.beat("b", 2, None);
        assert_eq!((b.member_epoch, partitions(&b).len()), (3, 2));
        // B goes silent past the session timeout.
        h.now += Duration::from_millis(CONSUMER_GROUP_SESSION_TIMEOUT_MS - 1);
        assert_eq!(h.group.expire("g", h.now), 0);
        h.now += Duration::from_millis(2);
        assert_eq!(h.group.expire("g", h.now), 1);
        assert!(h.group.is_empty());
    }

    #[test]
    fn a_static_member_that_leaves_for_now_is_replaced_by_its_instance_without_a_new_epoch() {
        let mut h = Harness::new(&[("t", 2)]);
        let static_join =
            |member: &str| ConsumerHeartbeat { instance_id: Some("i1".into()), ..join_request(member, &["t"]) };
        let a = h.send(static_join("a1")).unwrap();
        let all = partitions(&a);
        h.join("b", &["t"]);
        let kept = partitions(&h.beat("a1", 1, Some(&all)));
        assert_eq!(h.beat("a1", 1, Some(&kept)).member_epoch, 2);
        let b = h.beat("b", 2, Some(&Partitions::new()));
        let b_holds = partitions(&b);
        assert_eq!(b_holds.len(), 1);
        // a1's process stops with -2: its partition waits for its instance.
        let leave = ConsumerHeartbeat { member_epoch: STATIC_LEAVE_EPOCH, ..static_join("a1") };
        assert_eq!(h.send(leave).unwrap().member_epoch, STATIC_LEAVE_EPOCH);
        assert_eq!(h.group.group_epoch(), 2, "no new epoch");
        assert!(h.beat("b", 2, Some(&b_holds)).assignment.is_none(), "b does not get a1's partition");
        // The restarted process (a new member id, the same instance) takes it over at once.
        let a2 = h.send(static_join("a2")).unwrap();
        assert_eq!((a2.member_epoch, partitions(&a2)), (2, kept.clone()));
        assert!(h.group.member_assignment("a1").is_none());
        assert_eq!(h.group.group_epoch(), 2);
        // Another process claiming the instance while a2 is active is refused.
        assert_eq!(h.send(static_join("a3")).unwrap_err(), GroupError::UnreleasedInstanceId);
        // a2 leaves for now and does not come back: after the session timeout b takes all.
        h.send(ConsumerHeartbeat { member_epoch: STATIC_LEAVE_EPOCH, ..static_join("a2") }).unwrap();
        h.now += Duration::from_millis(CONSUMER_GROUP_SESSION_TIMEOUT_MS + 1);
        h.beat("b", 2, Some(&b_holds));
        assert_eq!(h.group.expire("g", h.now), 1);
        let b = h.beat("b", 2, Some(&b_holds));
        assert_eq!((b.member_epoch, partitions(&b).len()), (3, 2));
    }

    #[test]
    fn topics_created_or_grown_after_joining_are_picked_up() {
        let mut h = Harness::new(&[]);
        let a = h.join("a", &["later"]);
        assert_eq!((a.member_epoch, partitions(&a).len()), (1, 0));
        h.topics.insert("later".into(), 2);
        let a = h.beat("a", 1, Some(&Partitions::new()));
        assert_eq!((a.member_epoch, partitions(&a)), (2, set(&[("later", 0), ("later", 1)])));
        h.topics.insert("later".into(), 3);
        let a = h.beat("a", 2, None);
        assert_eq!((a.member_epoch, partitions(&a).len()), (3, 3));
    }

    /// One step of the model: a client's heartbeat (which may change its subscription), a
    /// client leaving, one crashing (silent; expired later), a topic growing, time passing.
    #[derive(Debug, Clone)]
    enum Step {
        Heartbeat { client: usize, resubscribe: Option<u8>, send_owned: bool },
        Leave(usize),
        Crash(usize),
        Grow(usize),
        Expire,
    }

    const TOPICS: [&str; 3] = ["t0", "t1", "t2"];

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0..4usize, proptest::option::weighted(0.2, 1..8u8), any::<bool>())
                .prop_map(|(client, resubscribe, send_owned)| Step::Heartbeat { client, resubscribe, send_owned }),
            1 => (0..4usize).prop_map(Step::Leave),
            1 => (0..4usize).prop_map(Step::Crash),
            1 => (0..3usize).prop_map(Step::Grow),
            1 => Just(Step::Expire),
        ]
    }

    /// A client as librdkafka behaves: it owns exactly the last assignment it was sent, and
    /// drops everything when fenced or unknown, then rejoins with epoch 0. Clients 0 and 1 are
    /// static (an instance id): they leave with -2 and come back as a new process (a new
    /// member id) that takes their place.
    #[derive(Debug, Default, Clone)]
    struct Client {
        epoch: i32,
        owned: Partitions,
        topics: Vec<String>,
        joined: bool,
        crashed: bool,
        /// Processes started so far (static clients get a new member id each time).
        incarnation: u32,
    }

    fn instance_of(id: usize) -> Option<String> {
        (id < 2).then(|| format!("i{id}"))
    }

    fn member_of(id: usize, client: &Client) -> String {
        format!("m{id}-{}", client.incarnation)
    }

    fn topics_of(mask: u8) -> Vec<String> {
        TOPICS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| (*t).to_owned()).collect()
    }

    fn heartbeat(h: &mut Harness, id: usize, client: &mut Client, resubscribe: Option<u8>, send_owned: bool) {
        let member_id = member_of(id, client);
        let mut request = ConsumerHeartbeat {
            group: "g".into(),
            member_id,
            member_epoch: client.epoch,
            owned: send_owned.then(|| client.owned.iter().cloned().collect()),
            ..ConsumerHeartbeat::default()
        };
        if let Some(mask) = resubscribe {
            client.topics = topics_of(mask);
            request.subscribed_topics = Some(client.topics.clone());
        }
        if !client.joined {
            request.member_epoch = JOIN_EPOCH;
            request.rebalance_timeout_ms = 30_000;
            request.subscribed_topics = Some(client.topics.clone());
            request.owned = Some(Vec::new());
            request.server_assignor = Some(if id.is_multiple_of(2) { "uniform" } else { "range" }.into());
            request.instance_id = instance_of(id);
        }
        match h.send(request) {
            Ok(reply) => {
                client.joined = true;
                client.epoch = reply.member_epoch;
                if let Some(assignment) = reply.assignment {
                    client.owned = assignment.into_iter().collect();
                }
            }
            Err(GroupError::FencedMemberEpoch | GroupError::UnknownMemberId) => {
                client.owned.clear();
                client.joined = false;
                client.epoch = JOIN_EPOCH;
            }
            // Its previous process still holds the instance: try again later.
            Err(GroupError::UnreleasedInstanceId) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Whatever happens, no partition is owned by two live clients at once; once the
        /// survivors keep heartbeating, the group settles with every partition of a
        /// subscribed topic owned by exactly one subscriber, as the server believes.
        #[test]
        fn no_partition_has_two_owners_and_the_group_settles(steps in proptest::collection::vec(step(), 1..60)) {
            let mut h = Harness::new(&[("t0", 3), ("t1", 2), ("t2", 1)]);
            let mut clients: Vec<Client> = (0..4).map(|i| Client { topics: topics_of(1 + (i as u8 % 7)), ..Client::default() }).collect();
            for step in steps {
                match step {
                    Step::Heartbeat { client, resubscribe, send_owned } => {
                        if clients[client].crashed {
                            continue;
                        }
                        let mut c = clients[client].clone();
                        heartbeat(&mut h, client, &mut c, resubscribe, send_owned);
                        clients[client] = c;
                    }
                    Step::Leave(client) => {
                        let c = &mut clients[client];
                        if c.joined && !c.crashed {
                            // The client gives its partitions up before saying so; a static one
                            // leaves for now (-2) and comes back as a new process.
                            c.owned.clear();
                            let epoch = if instance_of(client).is_some() { STATIC_LEAVE_EPOCH } else { LEAVE_EPOCH };
                            let leave = ConsumerHeartbeat {
                                member_epoch: epoch,
                                instance_id: instance_of(client),
                                ..join_request(&member_of(client, c), &[])
                            };
                            // An expired member is already out (UNKNOWN_MEMBER_ID).
                            let left = h.send(leave);
                            prop_assert!(matches!(left, Ok(_) | Err(GroupError::UnknownMemberId)), "{left:?}");
                            c.joined = false;
                            c.epoch = JOIN_EPOCH;
                            if instance_of(client).is_some() {
                                c.incarnation += 1;
                            }
                        }
                    }
                    Step::Crash(client) => {
                        // Dead: its partitions are freed by the session timeout only.
                        clients[client].crashed = true;
                        clients[client].owned.clear();
                    }
                    Step::Grow(topic) => {
                        if let Some(n) = h.topics.get_mut(TOPICS[topic]) {
                            *n += 1;
                        }
                    }
                    Step::Expire => {
                        h.now += Duration::from_secs(10);
                        h.group.expire("g", h.now);
                        // A client silent past its session is out (as in Kafka, it is a zombie
                        // until it notices; its commits are refused): it holds nothing valid.
                        for (id, c) in clients.iter_mut().enumerate() {
                            if c.joined && h.group.member_assignment(&member_of(id, c)).is_none() {
                                c.owned.clear();
                            }
                        }
                    }
                }
                let mut seen = Partitions::new();
                for c in clients.iter().filter(|c| !c.crashed) {
                    for p in &c.owned {
                        prop_assert!(seen.insert(p.clone()), "{p:?} owned twice: {clients:?}");
                    }
                }
            }
            // The crashed expire; the others heartbeat (reporting what they own) until stable.
            h.now += Duration::from_millis(CONSUMER_GROUP_SESSION_TIMEOUT_MS + 1);
            for (id, c) in clients.iter_mut().enumerate() {
                if !c.crashed {
                    heartbeat(&mut h, id, c, None, true);
                }
            }
            h.group.expire("g", h.now);
            for _ in 0..6 {
                for (id, c) in clients.iter_mut().enumerate() {
                    if !c.crashed {
                        heartbeat(&mut h, id, c, None, true);
                    }
                }
            }
            let live: Vec<(usize, &Client)> = clients.iter().enumerate().filter(|(_, c)| !c.crashed).collect();
            if live.is_empty() {
                return Ok(());
            }
            prop_assert_eq!(h.group.state_name(), "Stable");
            let mut owned = Partitions::new();
            for (id, c) in &live {
                prop_assert_eq!(c.epoch, h.group.assignment_epoch);
                prop_assert_eq!(Some(&c.owned), h.group.member_assignment(&member_of(*id, c)));
                for p in &c.owned {
                    prop_assert!(c.topics.contains(&p.topic));
                    owned.insert(p.clone());
                }
            }
            let subscribed: BTreeSet<&String> = live.iter().flat_map(|(_, c)| &c.topics).collect();
            let expected: Partitions = h.topics.iter().filter(|(t, _)| subscribed.contains(t))
                .flat_map(|(t, n)| (0..*n).map(|p| tp(t, p))).collect();
            prop_assert_eq!(owned, expected);
        }
    }
}
