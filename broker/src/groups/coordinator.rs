//! The consumer-group coordinator, as Kafka's classic group coordinator runs it, on the
//! coordinator shard; other shards send it group calls. One table of groups, members,
//! generations, session expiry and commit checks serves both protocols; a group rebalances
//! in one of two ways, fixed by its protocol type:
//!
//! - Kafka groups assign on the client side: a barrier, then the leader's assignment
//!   relayed through SyncGroup (below).
//! - Native groups (`assignor::NATIVE_PROTOCOL_TYPE`) assign on the broker's side
//!   (`join_assigned`): the broker knows every member's subscription, so a join that changes
//!   the membership completes the new generation at once and answers with the member's
//!   partitions; other members learn of it from their next heartbeat (RebalanceInProgress)
//!   and rejoin to get their share, without starting yet another generation. A member that
//!   leaves or expires (or a topic that grows) starts a generation whose assignment the next
//!   join computes.
//!
//! Client-side states: Empty → PreparingRebalance (a member joined, left or timed out; JoinGroup calls
//! wait at a barrier until every known member has rejoined or the rebalance timeout passed,
//! then members that did not rejoin are dropped) → CompletingRebalance (new generation;
//! the leader got every member's metadata; followers' SyncGroup waits for the leader's) →
//! Stable. Heartbeat answers RebalanceInProgress while a rebalance is being prepared, so
//! members rejoin. A member whose heartbeats stop for its session timeout is removed (not
//! while it waits at the join barrier).
//!
//! Kafka's additions to the classic protocol: a new member of JoinGroup v4+ first gets
//! MEMBER_ID_REQUIRED with its id and joins again with it (ids given out that way are
//! pending until then, at most `GROUP_PENDING_MEMBERS_MAX`, for a session timeout); static
//! members (`group.instance.id`) keep their place and assignment across restarts: a rejoin
//! with a known instance id and unchanged protocols replaces the old member id without a
//! rebalance; an empty group waits `group.initial.rebalance.delay.ms` (extended by each new
//! member, up to the rebalance timeout) before its first generation, so consumers that start
//! together get one rebalance, not one each.
//!
//! KIP-848 consumer groups (`consumer_group.rs`) live in a second table beside these: one
//! group id is in at most one table while it has members (a classic join to a consumer group
//! is INCONSISTENT_GROUP_PROTOCOL, a heartbeat to a classic group GROUP_ID_NOT_FOUND), the
//! same expiry tick removes their silent members, and commits to them are checked against
//! the member epoch.
//!
//! Bounds: `GROUPS_MAX` groups, `GROUP_MEMBERS_MAX` members per group, member metadata and
//! assignments of `GROUP_MEMBER_METADATA_BYTES_MAX` each (copied out of request frames, so a
//! small one never pins a large frame).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use super::assignor::{assign, decode_topics, encode_assignment, Assignor, NATIVE_PROTOCOL_TYPE};
use super::consumer_group::{self, ConsumerGroup, ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatReply};
use super::{
    AssignedJoin, GroupDescription, GroupError, GroupListing, HeartbeatRequest, JoinRequest, Joined, LeaveRequest,
    MemberDescription, MemberLeft, SyncRequest, Synced, Waiting, GROUP_TYPE_CLASSIC, GROUP_TYPE_CONSUMER,
};
use crate::limits::{
    GROUPS_MAX, GROUP_MEMBERS_MAX, GROUP_MEMBER_METADATA_BYTES_MAX, GROUP_PENDING_MEMBERS_MAX,
    REBALANCE_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN,
};
use crate::topics::TopicTable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    /// Broker-assigned groups only: the membership changed; the next join assigns.
    Reassigning,
}

type JoinWaiter = oneshot::Sender<Result<Joined, GroupError>>;
type SyncWaiter = oneshot::Sender<Result<Synced, GroupError>>;

struct Member {
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// (protocol name, member metadata) in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    last_heartbeat: Instant,
    join_waiter: Option<JoinWaiter>,
    sync_waiter: Option<SyncWaiter>,
    assignment: Bytes,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
}

impl Member {
    fn new(session_timeout: Duration, rebalance_timeout: Duration) -> Member {
        Member {
            session_timeout,
            rebalance_timeout,
            protocols: Vec::new(),
            last_heartbeat: Instant::now(),
            join_waiter: None,
            sync_waiter: None,
            assignment: Bytes::new(),
            group_instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
        }
    }
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// Ordered by member id, so the choice of leader and protocol is deterministic.
    members: BTreeMap<String, Member>,
    /// When the join barrier (or the wait for the leader's SyncGroup) gives up.
    deadline: Instant,
    /// The broker computes assignments (native groups): no barrier, no SyncGroup.
    assigned_by_broker: bool,
    /// Static members: instance id → its current member id.
    instances: HashMap<String, String>,
    /// Member ids given out with MEMBER_ID_REQUIRED, until they join or this passes.
    pending: HashMap<String, Instant>,
    /// The first generation of an empty group waits until then (initial rebalance delay).
    join_not_before: Option<Instant>,
    /// How far new members may push `join_not_before` (the rebalance timeout).
    delay_limit: Instant,
}

impl Group {
    fn new(assigned_by_broker: bool) -> Group {
        Group {
            assigned_by_broker,
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            deadline: Instant::now(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            join_not_before: None,
            delay_limit: Instant::now(),
        }
    }

    /// Kafka's name for the state.
    fn state_name(&self) -> &'static str {
        match self.state {
            State::Empty => "Empty",
            State::PreparingRebalance | State::Reassigning => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }

    fn synced(&self, assignment: Bytes) -> Synced {
        Synced { protocol_type: self.protocol_type.clone(), protocol_name: self.protocol_name.clone(), assignment }
    }
}

/// Every group this coordinator runs.
#[derive(Default)]
pub struct GroupCoordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// KIP-848 consumer groups; a group id is in at most one of the two tables while it has
    /// members.
    consumer_groups: RefCell<HashMap<String, ConsumerGroup>>,
    next_member: Cell<u64>,
    /// Kafka's `group.initial.rebalance.delay.ms` (0 by default here; the broker sets it).
    initial_rebalance_delay: Duration,
}

impl GroupCoordinator {
    /// A coordinator whose empty groups wait `initial_rebalance_delay` before their first
    /// generation (Kafka's `group.initial.rebalance.delay.ms`, default 3 s).
    pub fn new(initial_rebalance_delay: Duration) -> GroupCoordinator {
        assert!(initial_rebalance_delay <= Duration::from_millis(REBALANCE_TIMEOUT_MS_MAX));
        GroupCoordinator { initial_rebalance_delay, ..GroupCoordinator::default() }
    }

    /// A member id no member of this coordinator had: the static member's instance id (or
    /// "member") and a counter.
    fn new_member_id(&self, group_instance_id: Option<&str>) -> String {
        let n = self.next_member.get();
        self.next_member.set(n + 1);
        format!("{}-{n}", group_instance_id.unwrap_or("member"))
    }

    /// The groups it runs now.
    pub fn group_count(&self) -> usize {
        self.groups.borrow().len() + self.consumer_groups.borrow().len()
    }

    /// Whether `group` is a KIP-848 consumer group with members (a classic join to it is
    /// refused, as Kafka does without its online migration).
    fn is_consumer_group(&self, group: &str) -> bool {
        self.consumer_groups.borrow().get(group).is_some_and(|g| !g.is_empty())
    }

    /// One KIP-848 ConsumerGroupHeartbeat (join, heartbeat or leave); `table` gives the
    /// subscribed topics' partitions.
    pub fn consumer_heartbeat(
        &self,
        request: ConsumerHeartbeat,
        table: &TopicTable,
        now: Instant,
    ) -> Result<ConsumerHeartbeatReply, GroupError> {
        let span = tracing::debug_span!("consumer_heartbeat", group = %request.group, member = %request.member_id, epoch = request.member_epoch);
        let _enter = span.enter();
        let assignor = consumer_group::validate(&request)?;
        // Kafka: a classic group of this id is "not a consumer group".
        if self.groups.borrow().get(&request.group).is_some_and(|g| !g.members.is_empty()) {
            return Err(GroupError::GroupIdNotFound);
        }
        let mut groups = self.consumer_groups.borrow_mut();
        let group = request.group.clone();
        if !groups.contains_key(&group) {
            // Groups live in memory: an unknown group answers a member that is not joining
            // with UNKNOWN_MEMBER_ID, so that after a restart it joins again.
            if request.member_epoch != consumer_group::JOIN_EPOCH {
                return Err(GroupError::UnknownMemberId);
            }
            if groups.len() + self.groups.borrow().len() >= GROUPS_MAX {
                return Err(GroupError::TooManyGroups);
            }
        }
        let partitions_of = |topic: &str| table.topics.get(topic).and_then(|t| u32::try_from(t.partitions.len()).ok());
        let g = groups.entry(group.clone()).or_default();
        let result = g.heartbeat(&group, request, assignor, &partitions_of, now);
        if g.is_empty() {
            groups.remove(&group);
        }
        result
    }

    /// A KIP-848 group as ConsumerGroupDescribe reports it; `None` if there is none.
    pub fn describe_consumer_group(&self, group: &str) -> Option<ConsumerGroupDescription> {
        self.consumer_groups.borrow().get(group).map(|g| g.describe(group))
    }

    /// May a member at `member_epoch` fetch `group`'s offsets (OffsetFetch v9+)? As Kafka:
    /// only a consumer group checks (classic groups and groups known only by their offsets
    /// do not); an empty member id with epoch -1 is anyone.
    pub fn check_offset_fetch(&self, group: &str, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        if member_id.is_empty() && member_epoch < 0 {
            return Ok(());
        }
        match self.consumer_groups.borrow().get(group) {
            Some(g) => g.check_member_epoch(member_id, member_epoch),
            None => Ok(()),
        }
    }

    pub fn join(&self, request: JoinRequest) -> Waiting<Result<Joined, GroupError>> {
        let now = |e: GroupError| Waiting::Now(Err(e));
        let JoinRequest {
            group: group_id,
            member_id,
            group_instance_id,
            protocol_type,
            protocols,
            session_timeout_ms,
            rebalance_timeout_ms,
            client_id,
            client_host,
            new_member_id,
            require_known_member_id,
        } = request;
        if let Err(e) = check_join(&group_id, session_timeout_ms, &protocols) {
            return now(e);
        }
        if self.is_consumer_group(&group_id) {
            return now(GroupError::InconsistentGroupProtocol);
        }
        let protocols = copied(protocols);
        if protocols.is_empty() || protocol_type.is_empty() {
            return now(GroupError::InconsistentGroupProtocol);
        }
        // Without a rebalance timeout (Kafka's JoinGroup v0) the session timeout is used.
        let rebalance_ms = rebalance_timeout_ms
            .filter(|&ms| ms > 0)
            .map_or(u64::from(session_timeout_ms), u64::from)
            .min(REBALANCE_TIMEOUT_MS_MAX);
        let mut groups = self.groups.borrow_mut();
        let g = match admit(&mut groups, &group_id, &member_id, false) {
            Ok(g) => g,
            Err(e) => return now(e),
        };
        // A static member: the instance id decides who it is.
        let known_instance = group_instance_id.as_ref().and_then(|i| g.instances.get(i).cloned());
        if let (Some(current), false) = (&known_instance, member_id.is_empty()) {
            if *current != member_id {
                return now(GroupError::FencedInstanceId);
            }
        }
        let others_share_a_protocol = g
            .members
            .iter()
            .filter(|(id, _)| **id != member_id)
            .all(|(_, m)| m.protocols.iter().any(|(name, _)| protocols.iter().any(|(mine, _)| mine == name)));
        if g.protocol_type.as_ref().is_some_and(|t| *t != protocol_type) || !others_share_a_protocol {
            return now(GroupError::InconsistentGroupProtocol);
        }
        let session_timeout = Duration::from_millis(u64::from(session_timeout_ms));
        let fresh_id = || new_member_id.clone().unwrap_or_else(|| self.new_member_id(group_instance_id.as_deref()));
        if member_id.is_empty() && group_instance_id.is_none() && require_known_member_id {
            // Kafka's MEMBER_ID_REQUIRED: the id is the member's once it joins with it.
            if g.pending.len() >= GROUP_PENDING_MEMBERS_MAX {
                return now(GroupError::GroupFull);
            }
            g.pending.insert(fresh_id(), Instant::now() + session_timeout);
            return now(GroupError::MemberIdRequired);
        }
        let member_id = match (member_id.is_empty(), &known_instance) {
            (false, _) => member_id,
            (true, Some(old)) => {
                // A static member restarted: a new id takes the old one's place and assignment.
                let new_id = fresh_id();
                if let Some(mut member) = g.members.remove(old) {
                    if let Some(waiter) = member.join_waiter.take() {
                        let _ = waiter.send(Err(GroupError::FencedInstanceId));
                    }
                    if let Some(waiter) = member.sync_waiter.take() {
                        let _ = waiter.send(Err(GroupError::FencedInstanceId));
                    }
                    g.members.insert(new_id.clone(), member);
                }
                if g.leader.as_deref() == Some(old.as_str()) {
                    g.leader = Some(new_id.clone());
                }
                new_id
            }
            (true, None) => fresh_id(),
        };
        g.pending.remove(&member_id);
        if let Some(instance) = &group_instance_id {
            g.instances.insert(instance.clone(), member_id.clone());
        }
        let is_new = !g.members.contains_key(&member_id);
        let unchanged_static = known_instance.is_some()
            && g.state == State::Stable
            && g.members.get(&member_id).is_some_and(|m| m.protocols == protocols);
        let (tx, rx) = oneshot::channel();
        let member =
            g.members.entry(member_id.clone()).or_insert_with(|| Member::new(session_timeout, session_timeout));
        member.session_timeout = session_timeout;
        member.rebalance_timeout = Duration::from_millis(rebalance_ms);
        member.protocols = protocols;
        member.last_heartbeat = Instant::now();
        member.group_instance_id = group_instance_id;
        member.client_id = client_id;
        member.client_host = client_host;
        g.protocol_type = Some(protocol_type);
        if unchanged_static {
            // Kafka: a static member back with the same protocols keeps its assignment and
            // the generation; no rebalance.
            tracing::info!(group = %group_id, member = %member_id, "static member rejoined; no rebalance");
            let protocol = g.protocol_name.clone().unwrap_or_default();
            return Waiting::Now(Ok(Joined {
                generation: g.generation,
                protocol_type: g.protocol_type.clone(),
                protocol_name: protocol,
                leader: g.leader.clone().unwrap_or_default(),
                member_id,
                members: Vec::new(),
            }));
        }
        member.join_waiter = Some(tx);
        let now_instant = Instant::now();
        if g.state == State::Empty && !self.initial_rebalance_delay.is_zero() {
            // Kafka's initial rebalance delay: wait for the group's other first members.
            g.join_not_before = Some(now_instant + self.initial_rebalance_delay);
            g.delay_limit = now_instant + Duration::from_millis(rebalance_ms);
        } else if is_new && g.state == State::PreparingRebalance {
            if let Some(not_before) = g.join_not_before {
                let extended = (now_instant + self.initial_rebalance_delay).min(g.delay_limit);
                g.join_not_before = Some(not_before.max(extended));
            }
        }
        if g.state != State::PreparingRebalance {
            tracing::info!(group = %group_id, member = %member_id, "member joined; rebalancing");
            prepare_rebalance(g);
        }
        maybe_complete_join(&group_id, g, now_instant);
        assert!(g.members.len() <= GROUP_MEMBERS_MAX);
        Waiting::Later(rx)
    }

    pub fn sync(&self, request: SyncRequest) -> Waiting<Result<Synced, GroupError>> {
        let error = |e| Waiting::Now(Err(e));
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(&request.group) else {
            return error(GroupError::UnknownMemberId);
        };
        let member_id = request.member_id;
        if !g.members.contains_key(&member_id) {
            return error(GroupError::UnknownMemberId);
        }
        if request.generation != g.generation {
            return error(GroupError::IllegalGeneration);
        }
        match g.state {
            State::Empty | State::PreparingRebalance | State::Reassigning => error(GroupError::RebalanceInProgress),
            State::Stable => {
                let assignment = g.members.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Waiting::Now(Ok(g.synced(assignment)))
            }
            State::CompletingRebalance => {
                if let Some(m) = g.members.get_mut(&member_id) {
                    m.last_heartbeat = Instant::now();
                }
                if g.leader.as_deref() != Some(member_id.as_str()) {
                    let (tx, rx) = oneshot::channel();
                    if let Some(m) = g.members.get_mut(&member_id) {
                        m.sync_waiter = Some(tx);
                    }
                    return Waiting::Later(rx);
                }
                if request.assignments.iter().any(|(_, a)| a.len() > GROUP_MEMBER_METADATA_BYTES_MAX) {
                    return error(GroupError::MetadataTooLarge);
                }
                // Copied out of the request frame (see GROUP_MEMBER_METADATA_BYTES_MAX).
                let mut assignments: HashMap<String, Bytes> =
                    request.assignments.into_iter().map(|(id, a)| (id, Bytes::copy_from_slice(&a))).collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = assignments.remove(id).unwrap_or_default();
                }
                g.state = State::Stable;
                let replies: Vec<(SyncWaiter, Bytes)> = g
                    .members
                    .values_mut()
                    .filter_map(|m| m.sync_waiter.take().map(|w| (w, m.assignment.clone())))
                    .collect();
                for (waiter, assignment) in replies {
                    let _ = waiter.send(Ok(g.synced(assignment)));
                }
                tracing::info!(generation = g.generation, members = g.members.len(), "group stable");
                let mine = g.members.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Waiting::Now(Ok(g.synced(mine)))
            }
        }
    }

    pub fn heartbeat(&self, request: &HeartbeatRequest) -> Result<(), GroupError> {
        let mut groups = self.groups.borrow_mut();
        let g = groups.get_mut(&request.group).ok_or(GroupError::UnknownMemberId)?;
        let m = g.members.get_mut(&request.member_id).ok_or(GroupError::UnknownMemberId)?;
        m.last_heartbeat = Instant::now();
        if request.generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match g.state {
            State::PreparingRebalance | State::Reassigning => Err(GroupError::RebalanceInProgress),
            State::Empty => Err(GroupError::UnknownMemberId),
            State::CompletingRebalance | State::Stable => Ok(()),
        }
    }

    /// Removes each member of `request`; the group rebalances if any left.
    pub fn leave(&self, request: LeaveRequest) -> Result<Vec<MemberLeft>, GroupError> {
        let mut groups = self.groups.borrow_mut();
        let g = groups.get_mut(&request.group).ok_or(GroupError::UnknownMemberId)?;
        let mut results = Vec::with_capacity(request.members.len());
        for id in request.members {
            let result = match g.members.remove(&id) {
                Some(member) => {
                    if let Some(instance) = member.group_instance_id {
                        g.instances.remove(&instance);
                    }
                    Ok(())
                }
                None => Err(GroupError::UnknownMemberId),
            };
            results.push(MemberLeft { member_id: id, result });
        }
        if results.iter().any(|r| r.result.is_ok()) {
            tracing::info!(group = %request.group, "members left; rebalancing");
            membership_changed(&request.group, g);
        }
        Ok(results)
    }

    /// May (`generation`, `member_id`) commit offsets for `group` now? A commit with no
    /// generation (-1) and no member is a standalone commit, allowed while the group has no
    /// members.
    pub fn check_commit(&self, group: &str, generation: i32, member_id: &str) -> Result<(), GroupError> {
        // A consumer group's commits carry the member epoch (OffsetCommit v9's
        // GenerationIdOrMemberEpoch; librdkafka sends it in older versions too).
        if let Some(g) = self.consumer_groups.borrow().get(group) {
            return g.check_member_epoch(member_id, generation);
        }
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else {
            return if generation < 0 { Ok(()) } else { Err(GroupError::IllegalGeneration) };
        };
        if generation < 0 && member_id.is_empty() {
            return if g.members.is_empty() { Ok(()) } else { Err(GroupError::IllegalGeneration) };
        }
        let m = g.members.get_mut(member_id).ok_or(GroupError::UnknownMemberId)?;
        m.last_heartbeat = Instant::now();
        if generation != g.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match g.state {
            State::Stable => Ok(()),
            _ => Err(GroupError::RebalanceInProgress),
        }
    }

    /// A join to a broker-assigned (native) group: completes at once with this member's
    /// partitions, computed with `assignor::assign` from the members' subscriptions (their
    /// metadata) and `table`. A known member that rejoins with the same subscription while
    /// the group is stable keeps the generation and its share.
    pub fn join_assigned(&self, request: JoinRequest, table: &TopicTable) -> Result<AssignedJoin, GroupError> {
        let JoinRequest {
            group: group_id,
            member_id,
            protocol_type,
            protocols,
            session_timeout_ms,
            client_id,
            client_host,
            ..
        } = request;
        check_join(&group_id, session_timeout_ms, &protocols)?;
        if self.is_consumer_group(&group_id) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let Some((assignor_name, _)) = protocols.first() else {
            return Err(GroupError::InconsistentGroupProtocol);
        };
        let assignor = Assignor::from_name(assignor_name).ok_or(GroupError::InconsistentGroupProtocol)?;
        if protocol_type != NATIVE_PROTOCOL_TYPE {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let protocols = copied(protocols);
        let mut groups = self.groups.borrow_mut();
        let g = admit(&mut groups, &group_id, &member_id, true)?;
        let member_id = if member_id.is_empty() { self.new_member_id(None) } else { member_id };
        let session_timeout = Duration::from_millis(u64::from(session_timeout_ms));
        let changed = g.members.get(&member_id).is_none_or(|m| m.protocols != protocols);
        let member =
            g.members.entry(member_id.clone()).or_insert_with(|| Member::new(session_timeout, session_timeout));
        member.session_timeout = session_timeout;
        member.rebalance_timeout = session_timeout;
        member.protocols = protocols;
        member.last_heartbeat = Instant::now();
        member.client_id = client_id;
        member.client_host = client_host;
        g.protocol_type = Some(protocol_type);
        g.protocol_name = Some(assignor.name().to_owned());
        if changed || g.state != State::Stable {
            if changed || g.state == State::Empty {
                g.generation = next_generation(g.generation);
            }
            let subscriptions: Vec<(String, Vec<String>)> = g
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.protocols.first().map(|(_, md)| decode_topics(md)).unwrap_or_default()))
                .collect();
            let mut assignment = assign(assignor, &subscriptions, table);
            for (id, m) in g.members.iter_mut() {
                m.assignment = encode_assignment(&assignment.remove(id).unwrap_or_default());
            }
            g.leader = g.members.keys().next().cloned();
            g.state = State::Stable;
            tracing::info!(group = %group_id, generation = g.generation, members = g.members.len(), "group assigned by the broker");
        }
        assert!(g.members.len() <= GROUP_MEMBERS_MAX);
        let assignment = g.members.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
        Ok(AssignedJoin { generation: g.generation, member_id, assignment })
    }

    /// `topic`'s partitions changed: broker-assigned groups subscribed to it reassign (Kafka
    /// clients notice on their own, through Metadata).
    pub fn topic_changed(&self, topic: &str) {
        for (name, g) in self.groups.borrow_mut().iter_mut() {
            let subscribed = g
                .members
                .values()
                .any(|m| m.protocols.first().is_some_and(|(_, md)| decode_topics(md).iter().any(|t| t == topic)));
            if g.assigned_by_broker && subscribed {
                tracing::info!(group = %name, %topic, "topic changed; reassigning");
                membership_changed(name, g);
            }
        }
    }

    /// Drops members whose session timed out and finishes join barriers past their deadline.
    pub fn expire(&self, now: Instant) {
        let mut groups = self.groups.borrow_mut();
        for (name, g) in groups.iter_mut() {
            let before = g.members.len();
            g.pending.retain(|_, until| *until > now);
            // A member waiting at the barrier or for the leader's assignment is alive.
            g.members.retain(|_, m| {
                m.join_waiter.is_some()
                    || m.sync_waiter.is_some()
                    || now.duration_since(m.last_heartbeat) <= m.session_timeout
            });
            let members = &g.members;
            g.instances.retain(|_, id| members.contains_key(id));
            if g.members.len() != before {
                tracing::info!(group = %name, expired = before - g.members.len(), "members timed out; rebalancing");
                membership_changed(name, g);
                continue;
            }
            if g.state == State::PreparingRebalance && g.join_not_before.is_some_and(|t| now >= t) {
                maybe_complete_join(name, g, now);
            }
            if now >= g.deadline {
                match g.state {
                    State::PreparingRebalance => {
                        // Members that did not rejoin in time are out.
                        g.members.retain(|_, m| m.join_waiter.is_some());
                        complete_join(name, g);
                    }
                    State::CompletingRebalance => {
                        tracing::info!(group = %name, "the leader sent no assignment in time; rebalancing");
                        prepare_rebalance(g);
                    }
                    State::Empty | State::Stable | State::Reassigning => {}
                }
            }
        }
        groups.retain(|_, g| !(g.members.is_empty() && g.state == State::Empty && g.pending.is_empty()));
        let mut consumer_groups = self.consumer_groups.borrow_mut();
        for (name, g) in consumer_groups.iter_mut() {
            g.expire(name, now);
        }
        consumer_groups.retain(|_, g| !g.is_empty());
    }

    /// Every group with members, sorted by name.
    pub fn list(&self) -> Vec<GroupListing> {
        let groups = self.groups.borrow();
        let mut listed: Vec<GroupListing> = groups
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(name, g)| GroupListing {
                group: name.clone(),
                group_type: GROUP_TYPE_CLASSIC,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state_name(),
            })
            .collect();
        listed.extend(self.consumer_groups.borrow().iter().filter(|(_, g)| !g.is_empty()).map(|(name, g)| {
            GroupListing {
                group: name.clone(),
                group_type: GROUP_TYPE_CONSUMER,
                protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
                state: g.state_name(),
            }
        }));
        listed.sort_by(|a, b| a.group.cmp(&b.group));
        listed
    }

    /// A group with members, as DescribeGroups reports it; `None` for a group without any.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        if let Some(g) = self.consumer_groups.borrow().get(group).filter(|g| !g.is_empty()) {
            return Some(describe_as_classic(group, g));
        }
        let groups = self.groups.borrow();
        let g = groups.get(group).filter(|g| !g.members.is_empty())?;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let members = g
            .members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some(GroupDescription {
            group: group.to_owned(),
            state: g.state_name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            generation: g.generation,
            members,
        })
    }

    /// The topics `group`'s members subscribe to (decoded from their metadata), or `None` if
    /// it has no members.
    pub fn subscribed_topics(&self, group: &str) -> Option<Vec<String>> {
        if let Some(g) = self.consumer_groups.borrow().get(group).filter(|g| !g.is_empty()) {
            return Some(g.subscribed_topics().into_iter().collect());
        }
        let groups = self.groups.borrow();
        let g = groups.get(group).filter(|g| !g.members.is_empty())?;
        let mut topics = Vec::new();
        for m in g.members.values() {
            for (_, metadata) in &m.protocols {
                let decoded = if g.assigned_by_broker {
                    decode_topics(metadata)
                } else {
                    super::consumer_protocol::subscription_topics(metadata).unwrap_or_default()
                };
                topics.extend(decoded);
            }
        }
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// Forgets an empty group (its offsets are the caller's); `false` (and nothing changes)
    /// if it has members.
    pub fn forget(&self, group: &str) -> bool {
        if self.is_consumer_group(group) {
            return false;
        }
        self.consumer_groups.borrow_mut().remove(group);
        let mut groups = self.groups.borrow_mut();
        if groups.get(group).is_some_and(|g| !g.members.is_empty()) {
            return false;
        }
        groups.remove(group);
        true
    }
}

/// The protocol type Kafka reports for consumer groups (either protocol).
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A KIP-848 group through DescribeGroups' eyes, so tools that only speak the classic APIs
/// still see it: the group epoch as the generation, the assignor as the protocol, and each
/// member's partitions as a ConsumerProtocolAssignment (no member metadata: there is none).
fn describe_as_classic(group: &str, g: &ConsumerGroup) -> GroupDescription {
    let members = g
        .member_ids()
        .map(|(id, client_id, client_host, instance_id)| MemberDescription {
            member_id: id.clone(),
            group_instance_id: instance_id.cloned(),
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
            metadata: Bytes::new(),
            assignment: g.member_assignment(id).map(super::consumer_protocol::encode_assignment).unwrap_or_default(),
        })
        .collect();
    GroupDescription {
        group: group.to_owned(),
        state: g.state_name(),
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
        protocol: g.assignor().name().to_owned(),
        generation: g.group_epoch(),
        members,
    }
}

/// Completes the join barrier if every member rejoined and the initial delay (if any) is
/// over.
fn maybe_complete_join(name: &str, g: &mut Group, now: Instant) {
    if g.state != State::PreparingRebalance {
        return;
    }
    if g.join_not_before.is_some_and(|t| now < t) {
        return;
    }
    if g.members.values().all(|m| m.join_waiter.is_some()) {
        g.join_not_before = None;
        complete_join(name, g);
    }
}

/// The checks every join passes first: a group id, a session timeout in range, member
/// metadata within its bound.
fn check_join(group: &str, session_timeout_ms: u32, protocols: &[(String, Bytes)]) -> Result<(), GroupError> {
    if group.is_empty() || group.len() > engine::limits::GROUP_NAME_BYTES_MAX {
        return Err(GroupError::InvalidGroupId);
    }
    if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&session_timeout_ms) {
        return Err(GroupError::InvalidSessionTimeout);
    }
    let metadata_bytes: usize = protocols.iter().map(|(name, metadata)| name.len() + metadata.len()).sum();
    if metadata_bytes > GROUP_MEMBER_METADATA_BYTES_MAX {
        return Err(GroupError::MetadataTooLarge);
    }
    Ok(())
}

/// The member's protocols with their metadata copied: it may be a slice of a request frame
/// far larger than itself, which the group must not keep alive.
fn copied(protocols: Vec<(String, Bytes)>) -> Vec<(String, Bytes)> {
    protocols.into_iter().map(|(name, metadata)| (name, Bytes::copy_from_slice(&metadata))).collect()
}

/// The group a join goes to, created if new (within `GROUPS_MAX`); an empty group takes
/// whichever kind of rebalance joins it first, a group with members only its own kind. A
/// member id given must be a member's; a new member must fit (`GROUP_MEMBERS_MAX`).
fn admit<'a>(
    groups: &'a mut HashMap<String, Group>,
    group_id: &str,
    member_id: &str,
    assigned_by_broker: bool,
) -> Result<&'a mut Group, GroupError> {
    if !groups.contains_key(group_id) && groups.len() >= GROUPS_MAX {
        return Err(GroupError::TooManyGroups);
    }
    let g = groups.entry(group_id.to_owned()).or_insert_with(|| Group::new(assigned_by_broker));
    if g.members.is_empty() {
        let pending = std::mem::take(&mut g.pending);
        *g = Group { generation: g.generation, pending, ..Group::new(assigned_by_broker) };
    }
    if g.assigned_by_broker != assigned_by_broker {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    if !member_id.is_empty() && !g.members.contains_key(member_id) && !g.pending.contains_key(member_id) {
        return Err(GroupError::UnknownMemberId);
    }
    if member_id.is_empty() && g.members.len() >= GROUP_MEMBERS_MAX {
        return Err(GroupError::GroupFull);
    }
    Ok(g)
}

/// A member left or expired: rebalance the rest (or empty the group).
fn membership_changed(name: &str, g: &mut Group) {
    if g.assigned_by_broker && !g.members.is_empty() {
        g.generation = next_generation(g.generation);
        g.state = State::Reassigning;
        return;
    }
    if g.members.is_empty() {
        g.state = State::Empty;
        g.generation = next_generation(g.generation);
        g.leader = None;
        g.protocol_name = None;
        g.protocol_type = None;
        return;
    }
    if g.state != State::PreparingRebalance {
        prepare_rebalance(g);
    }
    maybe_complete_join(name, g, Instant::now());
}

/// The generation after `generation`: from i32::MAX back to 1 (never 0 or negative, which
/// mean "no generation" in commits). Each JoinGroup or LeaveGroup can start one, so a client
/// can reach the end of the range; `+= 1` would then panic (debug) or go negative.
fn next_generation(generation: i32) -> i32 {
    if generation == i32::MAX {
        1
    } else {
        generation + 1
    }
}

/// Opens the join barrier: members learn of it from Heartbeat (or SyncGroup) and rejoin.
fn prepare_rebalance(g: &mut Group) {
    g.state = State::PreparingRebalance;
    let timeout = g.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO);
    g.deadline = Instant::now() + timeout;
    for m in g.members.values_mut() {
        if let Some(waiter) = m.sync_waiter.take() {
            let _ = waiter.send(Err(GroupError::RebalanceInProgress));
        }
    }
}

/// Every member rejoined (or the barrier timed out): new generation, answer the joins.
fn complete_join(name: &str, g: &mut Group) {
    assert_eq!(g.state, State::PreparingRebalance);
    g.generation = next_generation(g.generation);
    if g.members.is_empty() {
        g.state = State::Empty;
        g.leader = None;
        return;
    }
    let protocol = choose_protocol(g);
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    let leader = g.leader.clone().unwrap_or_default();
    g.protocol_name = Some(protocol.clone());
    g.state = State::CompletingRebalance;
    let timeout = g.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO);
    g.deadline = Instant::now() + timeout;
    let members: Vec<(String, Bytes)> = g
        .members
        .iter()
        .map(|(id, m)| {
            let metadata =
                m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, md)| md.clone()).unwrap_or_default();
            (id.clone(), metadata)
        })
        .collect();
    tracing::info!(group = name, generation = g.generation, members = g.members.len(), %leader, %protocol, "join barrier complete");
    for (id, m) in g.members.iter_mut() {
        m.assignment = Bytes::new();
        m.last_heartbeat = Instant::now();
        let Some(waiter) = m.join_waiter.take() else {
            continue;
        };
        let joined = Joined {
            generation: g.generation,
            protocol_type: g.protocol_type.clone(),
            protocol_name: protocol.clone(),
            leader: leader.clone(),
            member_id: id.clone(),
            members: if *id == leader { members.clone() } else { Vec::new() },
        };
        let _ = waiter.send(Ok(joined));
    }
}

/// The first protocol (in the leader-candidate's order) that every member supports.
fn choose_protocol(g: &Group) -> String {
    let Some(first) = g.members.values().next() else {
        return String::new();
    };
    first
        .protocols
        .iter()
        .map(|(name, _)| name)
        .find(|name| g.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
        .or_else(|| first.protocols.first().map(|(n, _)| n))
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_request(member: &str, metadata: Bytes) -> JoinRequest {
        JoinRequest {
            group: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), metadata)],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: Some(10_000),
            ..JoinRequest::default()
        }
    }

    fn join(groups: &GroupCoordinator, member: &str) -> Waiting<Result<Joined, GroupError>> {
        groups.join(join_request(member, Bytes::from_static(b"meta")))
    }

    fn now<T>(w: Waiting<T>) -> T {
        match w {
            Waiting::Now(t) => t,
            Waiting::Later(mut rx) => rx.try_recv().unwrap().expect("answered"),
        }
    }

    fn joined(w: Waiting<Result<Joined, GroupError>>) -> Joined {
        now(w).unwrap()
    }

    fn heartbeat(groups: &GroupCoordinator, member: &str, generation: i32) -> Result<(), GroupError> {
        groups.heartbeat(&HeartbeatRequest { group: "g".into(), member_id: member.into(), generation })
    }

    fn sync(
        groups: &GroupCoordinator,
        member: &str,
        generation: i32,
        assign: &[(&str, &'static [u8])],
    ) -> Waiting<Result<Synced, GroupError>> {
        groups.sync(SyncRequest {
            group: "g".into(),
            member_id: member.into(),
            generation,
            assignments: assign.iter().map(|(m, a)| ((*m).to_owned(), Bytes::from_static(a))).collect(),
        })
    }

    #[test]
    fn oversized_member_metadata_is_refused_and_kept_metadata_does_not_pin_the_frame() {
        let groups = GroupCoordinator::default();
        let huge = Bytes::from(vec![7u8; GROUP_MEMBER_METADATA_BYTES_MAX + 1]);
        assert_eq!(now(groups.join(join_request("", huge))).unwrap_err(), GroupError::MetadataTooLarge);

        // A small metadata sliced from a large frame is copied: the frame is not kept.
        let frame = Bytes::from(vec![1u8; 4 << 20]);
        let joined = now(groups.join(join_request("", frame.slice(100..108))));
        assert!(joined.is_ok());
        let kept = groups.groups.borrow()["g"].members.values().next().unwrap().protocols[0].1.clone();
        assert_eq!(&kept[..], &[1u8; 8]);
        // Only `frame` itself still refers to the 4 MiB buffer: `kept` is its own allocation.
        assert!(!std::ptr::eq(kept.as_ptr(), frame[100..].as_ptr()));
    }

    #[test]
    fn the_generation_wraps_to_1_after_i32_max() {
        let groups = GroupCoordinator::default();
        let a = joined(join(&groups, ""));
        let a_id = a.member_id;
        groups.groups.borrow_mut().get_mut("g").unwrap().generation = i32::MAX - 1;
        // A rejoin starts generation i32::MAX, the next one wraps.
        assert_eq!(joined(join(&groups, &a_id)).generation, i32::MAX);
        assert_eq!(joined(join(&groups, &a_id)).generation, 1);
        assert!(now(sync(&groups, &a_id, 1, &[(&a_id, b"p")])).is_ok());
        assert_eq!(heartbeat(&groups, &a_id, 1), Ok(()));
    }

    #[test]
    fn second_member_waits_at_the_barrier_until_the_first_rejoins() {
        let groups = GroupCoordinator::default();
        let a = joined(join(&groups, ""));
        assert_eq!(a.generation, 1);
        let a_id = a.member_id.clone();
        assert_eq!(a.leader, a_id);
        assert_eq!(now(sync(&groups, &a_id, 1, &[(&a_id, b"all")])).unwrap().assignment, Bytes::from_static(b"all"));
        assert_eq!(heartbeat(&groups, &a_id, 1), Ok(()));

        // B joins: the barrier waits for A.
        let Waiting::Later(mut b_rx) = join(&groups, "") else { panic!("B must wait") };
        assert!(b_rx.try_recv().unwrap().is_none());
        assert_eq!(heartbeat(&groups, &a_id, 1), Err(GroupError::RebalanceInProgress));
        let a2 = joined(join(&groups, &a_id));
        let b = b_rx.try_recv().unwrap().unwrap().unwrap();
        assert_eq!((a2.generation, b.generation), (2, 2));
        assert_eq!(a2.members.len(), 2, "the leader sees every member");
        assert!(b.members.is_empty());
        let b_id = b.member_id.clone();

        // The follower's SyncGroup waits for the leader's assignment.
        let Waiting::Later(mut b_sync) = sync(&groups, &b_id, 2, &[]) else { panic!("follower must wait") };
        let a_sync = now(sync(&groups, &a_id, 2, &[(&a_id, b"p0"), (&b_id, b"p1")])).unwrap();
        assert_eq!(a_sync.assignment, Bytes::from_static(b"p0"));
        assert_eq!(b_sync.try_recv().unwrap().unwrap().unwrap().assignment, Bytes::from_static(b"p1"));

        // Stale generation, unknown member.
        assert_eq!(heartbeat(&groups, &a_id, 1), Err(GroupError::IllegalGeneration));
        assert_eq!(heartbeat(&groups, "nobody", 2), Err(GroupError::UnknownMemberId));
        assert_eq!(groups.check_commit("g", 2, &b_id), Ok(()));
        assert_eq!(groups.check_commit("g", 1, &b_id), Err(GroupError::IllegalGeneration));

        // B leaves: A is told to rejoin and gets generation 3 alone.
        let left = groups.leave(LeaveRequest { group: "g".into(), members: vec![b_id] }).unwrap();
        assert!(left[0].result.is_ok());
        assert_eq!(heartbeat(&groups, &a_id, 2), Err(GroupError::RebalanceInProgress));
        let a3 = joined(join(&groups, &a_id));
        assert_eq!((a3.generation, a3.members.len()), (3, 1));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_deadline() {
        let groups = GroupCoordinator::default();
        let a = joined(join(&groups, ""));
        let a_id = a.member_id;
        now(sync(&groups, &a_id, 1, &[])).unwrap();
        let Waiting::Later(mut b_rx) = join(&groups, "") else { panic!() };
        // A stays silent: past the rebalance timeout the barrier completes without it.
        groups.expire(Instant::now() + Duration::from_secs(11));
        let b = b_rx.try_recv().unwrap().unwrap().unwrap();
        assert_eq!((b.generation, b.members.len()), (2, 1));
        assert_eq!(heartbeat(&groups, &a_id, 1), Err(GroupError::UnknownMemberId));
    }

    #[test]
    fn silent_members_expire_after_their_session_timeout() {
        let groups = GroupCoordinator::default();
        let a = joined(join(&groups, ""));
        let a_id = a.member_id;
        now(sync(&groups, &a_id, 1, &[])).unwrap();
        groups.expire(Instant::now() + Duration::from_secs(5));
        assert_eq!(heartbeat(&groups, &a_id, 1), Ok(()));
        groups.expire(Instant::now() + Duration::from_secs(11));
        assert_eq!(heartbeat(&groups, &a_id, 1), Err(GroupError::UnknownMemberId));
    }

    fn users_table(partitions: u32) -> TopicTable {
        use engine::catalog::{PartitionInfo, TopicConfig, TopicInfo};
        let mut topics = HashMap::new();
        let partitions = (0..partitions).map(|p| PartitionInfo { partition: p, shard: 0, leader_epoch: 0 }).collect();
        topics.insert(
            "users".to_owned(),
            TopicInfo { name: "users".into(), id: 1, config: TopicConfig::default(), partitions },
        );
        TopicTable { topics, shard_count: 1, ..TopicTable::default() }
    }

    fn native_join(member: &str) -> JoinRequest {
        JoinRequest {
            group: "n".into(),
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: NATIVE_PROTOCOL_TYPE.into(),
            protocols: vec![("range".into(), super::super::assignor::encode_topics(&["users".to_owned()]))],
            session_timeout_ms: 1_000,
            rebalance_timeout_ms: None,
            ..JoinRequest::default()
        }
    }

    fn partitions(joined: &AssignedJoin) -> Vec<u32> {
        super::super::assignor::decode_assignment(&joined.assignment).into_iter().map(|tp| tp.partition).collect()
    }

    #[test]
    fn broker_assigned_groups_answer_joins_at_once_and_reassign_after_a_member_goes() {
        let groups = GroupCoordinator::default();
        let table = users_table(4);
        let a = groups.join_assigned(native_join(""), &table).unwrap();
        assert_eq!((a.generation, partitions(&a)), (1, vec![0, 1, 2, 3]));
        // B joins: a new generation, computed at once; A learns it from its heartbeat.
        let b = groups.join_assigned(native_join(""), &table).unwrap();
        assert_eq!(b.generation, 2);
        let heartbeat = |member: &str, generation| {
            groups.heartbeat(&HeartbeatRequest { group: "n".into(), member_id: member.into(), generation })
        };
        assert_eq!(heartbeat(&a.member_id, 1), Err(GroupError::IllegalGeneration));
        // A rejoins with the same subscription: same generation, its share.
        let a2 = groups.join_assigned(native_join(&a.member_id), &table).unwrap();
        assert_eq!(a2.generation, 2);
        let mut all: Vec<u32> = partitions(&a2).into_iter().chain(partitions(&b)).collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3]);
        assert_eq!((partitions(&a2).len(), partitions(&b).len()), (2, 2));
        assert_eq!(groups.check_commit("n", 2, &b.member_id), Ok(()));
        // B stops heartbeating: past its session it is dropped; A is told to rejoin and gets all.
        groups.groups.borrow_mut().get_mut("n").unwrap().members.get_mut(&b.member_id).unwrap().last_heartbeat -=
            Duration::from_secs(5);
        groups.expire(Instant::now());
        assert_eq!(heartbeat(&a.member_id, 2), Err(GroupError::IllegalGeneration));
        assert_eq!(heartbeat(&a.member_id, 3), Err(GroupError::RebalanceInProgress));
        let a3 = groups.join_assigned(native_join(&a.member_id), &table).unwrap();
        assert_eq!((a3.generation, partitions(&a3)), (3, vec![0, 1, 2, 3]));
        assert_eq!(heartbeat(&a.member_id, 3), Ok(()));
        // The protocols do not mix in one group.
        let kafka = JoinRequest { group: "n".into(), ..join_request("", Bytes::new()) };
        assert_eq!(now(groups.join(kafka)).unwrap_err(), GroupError::InconsistentGroupProtocol);
        joined(join(&groups, ""));
        let into_kafka_group = JoinRequest { group: "g".into(), ..native_join("") };
        assert_eq!(groups.join_assigned(into_kafka_group, &table).unwrap_err(), GroupError::InconsistentGroupProtocol);
    }

    #[test]
    fn after_a_broker_assigned_member_leaves_the_other_takes_all() {
        for assignor in ["range", "roundrobin"] {
            let groups = GroupCoordinator::default();
            let table = users_table(5);
            let request = |member: &str| JoinRequest {
                protocols: vec![(assignor.into(), super::super::assignor::encode_topics(&["users".to_owned()]))],
                ..native_join(member)
            };
            let a = groups.join_assigned(request(""), &table).unwrap();
            let b = groups.join_assigned(request(""), &table).unwrap();
            let a = groups.join_assigned(request(&a.member_id), &table).unwrap();
            assert!(partitions(&a).len().abs_diff(partitions(&b).len()) <= 1, "{assignor}");
            assert_eq!(partitions(&a).len() + partitions(&b).len(), 5, "{assignor}");
            let left = groups.leave(LeaveRequest { group: "n".into(), members: vec![b.member_id] }).unwrap();
            assert!(left[0].result.is_ok());
            let alone = groups.join_assigned(request(&a.member_id), &table).unwrap();
            assert_eq!(partitions(&alone), vec![0, 1, 2, 3, 4], "{assignor}");
            assert!(alone.generation > a.generation);
        }
    }

    #[test]
    fn an_empty_group_takes_either_protocol() {
        let groups = GroupCoordinator::default();
        let a = joined(join(&groups, ""));
        groups.leave(LeaveRequest { group: "g".into(), members: vec![a.member_id] }).unwrap();
        let native = groups.join_assigned(JoinRequest { group: "g".into(), ..native_join("") }, &users_table(1));
        assert!(native.unwrap().generation > a.generation, "generations keep counting up");
    }

    #[test]
    fn a_grown_topic_reassigns_its_broker_assigned_groups() {
        let groups = GroupCoordinator::default();
        let a = groups.join_assigned(native_join(""), &users_table(2)).unwrap();
        assert_eq!(partitions(&a), vec![0, 1]);
        groups.topic_changed("users");
        let again = groups.join_assigned(native_join(&a.member_id), &users_table(3)).unwrap();
        assert_eq!((again.generation, partitions(&again)), (a.generation + 1, vec![0, 1, 2]));
    }

    #[test]
    fn groups_and_members_are_bounded() {
        let groups = GroupCoordinator::default();
        let bad_session = JoinRequest { session_timeout_ms: 1, ..join_request("", Bytes::new()) };
        assert_eq!(now(groups.join(bad_session)).unwrap_err(), GroupError::InvalidSessionTimeout);
        let no_name = JoinRequest { group: String::new(), ..join_request("", Bytes::new()) };
        assert_eq!(now(groups.join(no_name)).unwrap_err(), GroupError::InvalidGroupId);
        let other_type = JoinRequest { protocol_type: "connect".into(), ..join_request("", Bytes::new()) };
        joined(join(&groups, ""));
        assert_eq!(now(groups.join(other_type)).unwrap_err(), GroupError::InconsistentGroupProtocol);
    }

    #[test]
    fn a_new_member_of_join_v4_first_gets_member_id_required_then_joins_with_it() {
        let groups = GroupCoordinator::default();
        let ask = JoinRequest {
            new_member_id: Some("client-1-uuid".into()),
            require_known_member_id: true,
            client_id: "client-1".into(),
            ..join_request("", Bytes::from_static(b"meta"))
        };
        assert_eq!(now(groups.join(ask.clone())).unwrap_err(), GroupError::MemberIdRequired);
        // An id nobody was given is still unknown.
        assert_eq!(now(groups.join(join_request("other", Bytes::new()))).unwrap_err(), GroupError::UnknownMemberId);
        let joined = joined(groups.join(JoinRequest { member_id: "client-1-uuid".into(), ..ask }));
        assert_eq!((joined.member_id.as_str(), joined.generation), ("client-1-uuid", 1));
        let described = groups.describe("g").unwrap();
        assert_eq!((described.state, described.members[0].client_id.as_str()), ("CompletingRebalance", "client-1"));
        assert_eq!(groups.list().len(), 1);
        assert!(!groups.forget("g"), "a group with members is not forgotten");
    }

    #[test]
    fn a_restarted_static_member_keeps_its_assignment_without_a_rebalance() {
        let groups = GroupCoordinator::default();
        let member = |id: &str| JoinRequest {
            group_instance_id: Some("instance-a".into()),
            new_member_id: Some(format!("a-{id}")),
            ..join_request("", Bytes::from_static(b"meta"))
        };
        let first = joined(groups.join(member("1")));
        assert_eq!(first.member_id, "a-1");
        assert!(now(sync(&groups, "a-1", 1, &[("a-1", b"p0")])).is_ok());
        // The process restarts: a new member id, same instance, same protocols.
        let again = joined(groups.join(member("2")));
        assert_eq!((again.member_id.as_str(), again.generation, again.leader.as_str()), ("a-2", 1, "a-2"));
        assert_eq!(now(sync(&groups, "a-2", 1, &[])).unwrap().assignment, Bytes::from_static(b"p0"));
        assert_eq!(heartbeat(&groups, "a-1", 1), Err(GroupError::UnknownMemberId), "the old id is gone");
        assert_eq!(heartbeat(&groups, "a-2", 1), Ok(()));
        // The old id joining again is fenced.
        let stale = JoinRequest { member_id: "a-1".into(), ..member("3") };
        assert_eq!(now(groups.join(stale)).unwrap_err(), GroupError::UnknownMemberId);
    }

    #[test]
    fn an_empty_group_waits_the_initial_delay_so_members_starting_together_share_one_generation() {
        let groups = GroupCoordinator::new(Duration::from_millis(3_000));
        let Waiting::Later(mut a) = join(&groups, "") else { panic!("the first member waits the delay") };
        let Waiting::Later(mut b) = join(&groups, "") else { panic!("so does the second") };
        groups.expire(Instant::now());
        assert!(a.try_recv().unwrap().is_none(), "still within the delay");
        groups.expire(Instant::now() + Duration::from_millis(3_100));
        let (a, b) = (a.try_recv().unwrap().unwrap().unwrap(), b.try_recv().unwrap().unwrap().unwrap());
        assert_eq!((a.generation, b.generation), (1, 1), "one generation for both");
        assert_eq!(a.members.len().max(b.members.len()), 2);
    }
    fn consumer_join(group: &str, member: &str) -> ConsumerHeartbeat {
        ConsumerHeartbeat {
            group: group.into(),
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: Some(vec!["users".into()]),
            ..ConsumerHeartbeat::default()
        }
    }

    #[test]
    fn consumer_groups_and_classic_groups_do_not_share_an_id() {
        let groups = GroupCoordinator::default();
        let table = users_table(4);
        let at = Instant::now();
        // A classic group "g" with a member: a KIP-848 heartbeat to it is refused.
        joined(join(&groups, ""));
        assert_eq!(
            groups.consumer_heartbeat(consumer_join("g", "m1"), &table, at).unwrap_err(),
            GroupError::GroupIdNotFound
        );
        // A consumer group "c": classic and native joins to it are refused.
        let reply = groups.consumer_heartbeat(consumer_join("c", "m1"), &table, at).unwrap();
        assert_eq!((reply.member_epoch, reply.assignment.map(|a| a.len())), (1, Some(4)));
        let classic = JoinRequest { group: "c".into(), ..join_request("", Bytes::new()) };
        assert_eq!(now(groups.join(classic)).unwrap_err(), GroupError::InconsistentGroupProtocol);
        let native = JoinRequest { group: "c".into(), ..native_join("") };
        assert_eq!(groups.join_assigned(native, &table).unwrap_err(), GroupError::InconsistentGroupProtocol);
        // Commits and fetches carry the member epoch.
        assert_eq!(groups.check_commit("c", 1, "m1"), Ok(()));
        assert_eq!(groups.check_commit("c", 0, "m1"), Err(GroupError::StaleMemberEpoch));
        assert_eq!(groups.check_commit("c", 1, "m2"), Err(GroupError::UnknownMemberId));
        assert_eq!(groups.check_offset_fetch("c", "m1", 1), Ok(()));
        assert_eq!(groups.check_offset_fetch("c", "m1", 2), Err(GroupError::StaleMemberEpoch));
        assert_eq!(groups.check_offset_fetch("c", "", -1), Ok(()), "an admin client");
        // Both kinds are listed and described; a group with members is not deleted.
        let listed: Vec<(String, &str)> = groups.list().into_iter().map(|l| (l.group, l.group_type)).collect();
        assert_eq!(listed, vec![("c".to_owned(), GROUP_TYPE_CONSUMER), ("g".to_owned(), GROUP_TYPE_CLASSIC)]);
        let described = groups.describe("c").unwrap();
        assert_eq!((described.protocol.as_str(), described.generation, described.members.len()), ("uniform", 1, 1));
        let partitions = super::super::consumer_protocol::assignment_partitions(&described.members[0].assignment);
        assert_eq!(partitions, Some(vec![("users".to_owned(), vec![0, 1, 2, 3])]));
        assert_eq!(groups.describe_consumer_group("c").unwrap().members[0].target_assignment.len(), 4);
        assert!(!groups.forget("c"));
        assert_eq!(groups.subscribed_topics("c"), Some(vec!["users".to_owned()]));
        // Unknown group, not joining: the member is unknown (groups are not kept over restarts).
        let stray = ConsumerHeartbeat { member_epoch: 5, ..consumer_join("other", "m9") };
        assert_eq!(groups.consumer_heartbeat(stray, &table, at).unwrap_err(), GroupError::UnknownMemberId);
        // The member goes silent: past the session timeout the group is gone.
        groups.expire(at + Duration::from_millis(crate::limits::CONSUMER_GROUP_SESSION_TIMEOUT_MS + 1));
        assert!(groups.describe_consumer_group("c").is_none());
        assert_eq!(groups.check_commit("c", -1, ""), Ok(()));
    }
}
