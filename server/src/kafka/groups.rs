//! The Kafka consumer-group protocol as Kafka's classic group coordinator runs it, on the
//! coordinator shard (0); other shards forward group requests there.
//!
//! The broker keeps membership and generations; the assignment is computed by the group's
//! leader (client-side assignors) and relayed through SyncGroup.
//!
//! States: Empty → PreparingRebalance (a member joined, left or timed out; JoinGroup calls
//! wait at a barrier until every known member has rejoined or the rebalance timeout passed,
//! then members that did not rejoin are dropped) → CompletingRebalance (new generation;
//! the leader got every member's metadata; followers' SyncGroup waits for the leader's) →
//! Stable. Heartbeat answers REBALANCE_IN_PROGRESS while a rebalance is being prepared, so
//! members rejoin. A member whose heartbeats stop for its session timeout is removed (not
//! while it waits at the join barrier).
//!
//! Offset commits (`offsets.rs`) are checked against the member's generation here and
//! stored in the same committed-offset store as the native protocol's.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};

use super::{codes, offsets, on_shard, str_bytes, ShardCall, ShardReply};
use crate::limits::{
    GROUP_EXPIRY_CHECK_INTERVAL_MS, GROUP_MEMBERS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN,
};
use crate::order::Turn;
use crate::shard::Shard;

/// The longest a JoinGroup barrier (or a wait for the leader's SyncGroup) may last, whatever
/// rebalance timeout the client asks for.
pub const REBALANCE_TIMEOUT_MS_MAX: u64 = 5 * 60 * 1000;

/// Kafka consumer groups one broker coordinates.
pub const KAFKA_GROUPS_MAX: usize = 100_000;

/// A member's protocol metadata (all protocols of one JoinGroup together), and one member's
/// assignment in a SyncGroup. Kafka bounds both through the 1 MiB record that stores group
/// metadata; here they are held in memory, copied out of the request frame so that a small
/// metadata never pins a large frame. Over the bound: INVALID_REQUEST.
pub const GROUP_MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;

/// The coordinator shard.
const COORDINATOR_SHARD: usize = 0;

/// A group request on its way to the coordinator shard.
#[derive(Debug)]
pub enum GroupCall {
    Join(JoinGroupRequest),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest, i16),
    Commit(OffsetCommitRequest, i16),
    Fetch(OffsetFetchRequest, i16),
}

#[derive(Debug)]
pub enum GroupReply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Commit(OffsetCommitResponse),
    Fetch(OffsetFetchResponse),
}

impl GroupCall {
    /// The reply that says the coordinator could not be reached.
    pub fn unavailable(&self) -> GroupReply {
        let code = codes::COORDINATOR_NOT_AVAILABLE;
        match self {
            GroupCall::Join(_) => GroupReply::Join(join_error(code, "")),
            GroupCall::Sync(_) => GroupReply::Sync(SyncGroupResponse::default().with_error_code(code)),
            GroupCall::Heartbeat(_) => GroupReply::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
            GroupCall::Leave(_, _) => GroupReply::Leave(LeaveGroupResponse::default().with_error_code(code)),
            GroupCall::Commit(request, _) => GroupReply::Commit(offsets::commit_error(request, code)),
            GroupCall::Fetch(_, _) => GroupReply::Fetch(OffsetFetchResponse::default().with_error_code(code)),
        }
    }
}

/// Serves `call` on the coordinator shard (here or forwarded).
pub async fn call(shard: &Rc<Shard>, call: GroupCall) -> GroupReply {
    let unavailable = call.unavailable();
    match on_shard(shard, COORDINATOR_SHARD, ShardCall::Group(Box::new(call)), Turn::unordered()).await {
        Some(ShardReply::Group(reply)) => *reply,
        _ => unavailable,
    }
}

/// Serves a group call on this shard, which must be the coordinator.
pub async fn serve_local(shard: &Rc<Shard>, call: GroupCall) -> GroupReply {
    let (Some(kafka), true) = (super::state(shard).cloned(), shard.coordinator.is_some()) else {
        return call.unavailable();
    };
    let groups = &kafka.groups;
    match call {
        GroupCall::Join(request) => GroupReply::Join(match groups.join(request) {
            Waiting::Now(response) => response,
            Waiting::Later(rx) => rx.await.unwrap_or_else(|_| join_error(codes::UNKNOWN_MEMBER_ID, "")),
        }),
        GroupCall::Sync(request) => GroupReply::Sync(match groups.sync(request) {
            Waiting::Now(response) => response,
            Waiting::Later(rx) => {
                rx.await.unwrap_or_else(|_| SyncGroupResponse::default().with_error_code(codes::UNKNOWN_MEMBER_ID))
            }
        }),
        GroupCall::Heartbeat(request) => GroupReply::Heartbeat(groups.heartbeat(&request)),
        GroupCall::Leave(request, version) => GroupReply::Leave(groups.leave(request, version)),
        GroupCall::Commit(request, version) => {
            let check = groups.check_commit(
                request.group_id.0.as_str(),
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
            );
            GroupReply::Commit(offsets::commit(shard, request, version, check).await)
        }
        GroupCall::Fetch(request, version) => GroupReply::Fetch(offsets::fetch(shard, request, version).await),
    }
}

/// Expires silent members and overdue rebalances, forever (coordinator shard).
pub async fn expiry_loop(shard: Rc<Shard>) {
    while !shard.shutting_down.get() {
        glommio::timer::sleep(Duration::from_millis(GROUP_EXPIRY_CHECK_INTERVAL_MS)).await;
        if let Some(kafka) = super::state(&shard) {
            kafka.groups.expire(Instant::now());
        }
    }
}

/// A response now, or one that comes when the rebalance gets there.
pub enum Waiting<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

struct Member {
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// (protocol name, member metadata) in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
    assignment: Bytes,
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
}

impl Group {
    fn new() -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            deadline: Instant::now(),
        }
    }
}

#[derive(Default)]
pub struct KafkaGroups {
    groups: RefCell<HashMap<String, Group>>,
    next_member: Cell<u64>,
}

fn join_error(error: i16, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
        .with_protocol_name(Some(str_bytes("")))
}

impl KafkaGroups {
    pub fn join(&self, request: JoinGroupRequest) -> Waiting<JoinGroupResponse> {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        let session_ms = u32::try_from(request.session_timeout_ms).unwrap_or(0);
        if group_id.is_empty() || group_id.len() > engine::limits::GROUP_NAME_BYTES_MAX {
            return Waiting::Now(join_error(codes::INVALID_GROUP_ID, &member_id));
        }
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&session_ms) {
            return Waiting::Now(join_error(codes::INVALID_SESSION_TIMEOUT, &member_id));
        }
        let protocol_type = request.protocol_type.to_string();
        let metadata_bytes: usize = request.protocols.iter().map(|p| p.name.len() + p.metadata.len()).sum();
        if metadata_bytes > GROUP_MEMBER_METADATA_BYTES_MAX {
            return Waiting::Now(join_error(codes::INVALID_REQUEST, &member_id));
        }
        // Copied: `p.metadata` is a slice of the request frame, which may be far larger.
        let protocols: Vec<(String, Bytes)> =
            request.protocols.into_iter().map(|p| (p.name.to_string(), Bytes::copy_from_slice(&p.metadata))).collect();
        if protocols.is_empty() || protocol_type.is_empty() {
            return Waiting::Now(join_error(codes::INCONSISTENT_GROUP_PROTOCOL, &member_id));
        }
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance_ms = u64::try_from(request.rebalance_timeout_ms)
            .ok()
            .filter(|&ms| ms > 0)
            .unwrap_or(u64::from(session_ms))
            .min(REBALANCE_TIMEOUT_MS_MAX);
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&group_id) && groups.len() >= KAFKA_GROUPS_MAX {
            return Waiting::Now(join_error(codes::COORDINATOR_NOT_AVAILABLE, &member_id));
        }
        let g = groups.entry(group_id.clone()).or_insert_with(Group::new);
        if !member_id.is_empty() && !g.members.contains_key(&member_id) {
            return Waiting::Now(join_error(codes::UNKNOWN_MEMBER_ID, &member_id));
        }
        if member_id.is_empty() && g.members.len() >= GROUP_MEMBERS_MAX {
            return Waiting::Now(join_error(codes::INVALID_GROUP_ID, &member_id));
        }
        let others_share_a_protocol = g
            .members
            .iter()
            .filter(|(id, _)| **id != member_id)
            .all(|(_, m)| m.protocols.iter().any(|(name, _)| protocols.iter().any(|(mine, _)| mine == name)));
        if g.protocol_type.as_ref().is_some_and(|t| *t != protocol_type) || !others_share_a_protocol {
            return Waiting::Now(join_error(codes::INCONSISTENT_GROUP_PROTOCOL, &member_id));
        }
        let member_id = if member_id.is_empty() {
            let n = self.next_member.get();
            self.next_member.set(n + 1);
            format!("{}-{n}", request.group_instance_id.map_or_else(|| "member".to_owned(), |i| i.to_string()))
        } else {
            member_id
        };
        let (tx, rx) = oneshot::channel();
        let member = g.members.entry(member_id.clone()).or_insert_with(|| Member {
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            last_heartbeat: Instant::now(),
            join_waiter: None,
            sync_waiter: None,
            assignment: Bytes::new(),
        });
        member.session_timeout = Duration::from_millis(u64::from(session_ms));
        member.rebalance_timeout = Duration::from_millis(rebalance_ms);
        member.protocols = protocols;
        member.last_heartbeat = Instant::now();
        member.join_waiter = Some(tx);
        g.protocol_type = Some(protocol_type);
        if g.state != State::PreparingRebalance {
            tracing::info!(group = %group_id, member = %member_id, "member joined; rebalancing");
            prepare_rebalance(g);
        }
        if g.members.values().all(|m| m.join_waiter.is_some()) {
            complete_join(&group_id, g);
        }
        Waiting::Later(rx)
    }

    pub fn sync(&self, request: SyncGroupRequest) -> Waiting<SyncGroupResponse> {
        let error = |code| Waiting::Now(SyncGroupResponse::default().with_error_code(code));
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(request.group_id.0.as_str()) else {
            return error(codes::UNKNOWN_MEMBER_ID);
        };
        let member_id = request.member_id.to_string();
        if !g.members.contains_key(&member_id) {
            return error(codes::UNKNOWN_MEMBER_ID);
        }
        if request.generation_id != g.generation {
            return error(codes::ILLEGAL_GENERATION);
        }
        let ok = |assignment: Bytes, g: &Group| {
            SyncGroupResponse::default()
                .with_error_code(codes::NONE)
                .with_protocol_type(g.protocol_type.clone().map(str_bytes))
                .with_protocol_name(g.protocol_name.clone().map(str_bytes))
                .with_assignment(assignment)
        };
        match g.state {
            State::Empty | State::PreparingRebalance => error(codes::REBALANCE_IN_PROGRESS),
            State::Stable => {
                let assignment = g.members.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Waiting::Now(ok(assignment, g))
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
                if request.assignments.iter().any(|a| a.assignment.len() > GROUP_MEMBER_METADATA_BYTES_MAX) {
                    return error(codes::INVALID_REQUEST);
                }
                // Copied out of the request frame (see GROUP_MEMBER_METADATA_BYTES_MAX).
                let mut assignments: HashMap<String, Bytes> = request
                    .assignments
                    .into_iter()
                    .map(|a| (a.member_id.to_string(), Bytes::copy_from_slice(&a.assignment)))
                    .collect();
                for (id, m) in g.members.iter_mut() {
                    m.assignment = assignments.remove(id).unwrap_or_default();
                }
                g.state = State::Stable;
                let replies: Vec<(oneshot::Sender<SyncGroupResponse>, Bytes)> = g
                    .members
                    .values_mut()
                    .filter_map(|m| m.sync_waiter.take().map(|w| (w, m.assignment.clone())))
                    .collect();
                for (waiter, assignment) in replies {
                    let _ = waiter.send(ok(assignment, g));
                }
                tracing::info!(generation = g.generation, members = g.members.len(), "group stable");
                let mine = g.members.get(&member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Waiting::Now(ok(mine, g))
            }
        }
    }

    pub fn heartbeat(&self, request: &HeartbeatRequest) -> HeartbeatResponse {
        let reply = |code| HeartbeatResponse::default().with_error_code(code);
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(request.group_id.0.as_str()) else {
            return reply(codes::UNKNOWN_MEMBER_ID);
        };
        let Some(m) = g.members.get_mut(request.member_id.as_str()) else {
            return reply(codes::UNKNOWN_MEMBER_ID);
        };
        m.last_heartbeat = Instant::now();
        if request.generation_id != g.generation {
            return reply(codes::ILLEGAL_GENERATION);
        }
        match g.state {
            State::PreparingRebalance => reply(codes::REBALANCE_IN_PROGRESS),
            State::Empty => reply(codes::UNKNOWN_MEMBER_ID),
            State::CompletingRebalance | State::Stable => reply(codes::NONE),
        }
    }

    pub fn leave(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        // v0–2 name one member; v3+ a list.
        let leaving: Vec<String> = if request.members.is_empty() {
            vec![request.member_id.to_string()]
        } else {
            request.members.iter().map(|m| m.member_id.to_string()).collect()
        };
        let group_id = request.group_id.0.to_string();
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(&group_id) else {
            return LeaveGroupResponse::default().with_error_code(codes::UNKNOWN_MEMBER_ID);
        };
        let mut results = Vec::with_capacity(leaving.len());
        for id in &leaving {
            let removed = g.members.remove(id).is_some();
            let code = if removed { codes::NONE } else { codes::UNKNOWN_MEMBER_ID };
            results.push(MemberResponse::default().with_member_id(str_bytes(id.clone())).with_error_code(code));
        }
        if results.iter().any(|r| r.error_code == codes::NONE) {
            tracing::info!(group = %group_id, left = ?leaving, "members left; rebalancing");
            membership_changed(&group_id, g);
        }
        if version < 3 {
            // v0–2 have no member list: one member, its error at the top.
            return LeaveGroupResponse::default()
                .with_error_code(results.first().map_or(codes::NONE, |r| r.error_code));
        }
        LeaveGroupResponse::default().with_error_code(codes::NONE).with_members(results)
    }

    /// The error an offset commit from (`generation`, `member_id`) gets; NONE if allowed.
    pub fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group_id) else {
            // No live group: a standalone commit (generation -1) is fine.
            return if generation < 0 { codes::NONE } else { codes::ILLEGAL_GENERATION };
        };
        if generation < 0 && member_id.is_empty() {
            return if g.members.is_empty() { codes::NONE } else { codes::ILLEGAL_GENERATION };
        }
        let Some(m) = g.members.get_mut(member_id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        m.last_heartbeat = Instant::now();
        if generation != g.generation {
            return codes::ILLEGAL_GENERATION;
        }
        match g.state {
            State::Stable => codes::NONE,
            _ => codes::REBALANCE_IN_PROGRESS,
        }
    }

    /// Drops members whose session timed out and finishes join barriers past their deadline.
    pub fn expire(&self, now: Instant) {
        let mut groups = self.groups.borrow_mut();
        for (name, g) in groups.iter_mut() {
            let before = g.members.len();
            // A member waiting at the barrier or for the leader's assignment is alive.
            g.members.retain(|_, m| {
                m.join_waiter.is_some()
                    || m.sync_waiter.is_some()
                    || now.duration_since(m.last_heartbeat) <= m.session_timeout
            });
            if g.members.len() != before {
                tracing::info!(group = %name, expired = before - g.members.len(), "members timed out; rebalancing");
                membership_changed(name, g);
                continue;
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
                    State::Empty | State::Stable => {}
                }
            }
        }
        groups.retain(|_, g| !(g.members.is_empty() && g.state == State::Empty));
    }
}

/// A member left or expired: rebalance the rest (or empty the group).
fn membership_changed(name: &str, g: &mut Group) {
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
    if g.members.values().all(|m| m.join_waiter.is_some()) {
        complete_join(name, g);
    }
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
            let _ = waiter.send(SyncGroupResponse::default().with_error_code(codes::REBALANCE_IN_PROGRESS));
        }
    }
}

/// Every member rejoined (or the barrier timed out): new generation, answer the joins.
fn complete_join(name: &str, g: &mut Group) {
    debug_assert_eq!(g.state, State::PreparingRebalance);
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
    let members: Vec<JoinGroupResponseMember> = g
        .members
        .iter()
        .map(|(id, m)| {
            let metadata =
                m.protocols.iter().find(|(n, _)| *n == protocol).map(|(_, md)| md.clone()).unwrap_or_default();
            JoinGroupResponseMember::default().with_member_id(str_bytes(id.clone())).with_metadata(metadata)
        })
        .collect();
    tracing::info!(group = name, generation = g.generation, members = g.members.len(), %leader, %protocol, "join barrier complete");
    for (id, m) in g.members.iter_mut() {
        m.assignment = Bytes::new();
        m.last_heartbeat = Instant::now();
        let Some(waiter) = m.join_waiter.take() else {
            continue;
        };
        let response = JoinGroupResponse::default()
            .with_error_code(codes::NONE)
            .with_generation_id(g.generation)
            .with_protocol_type(g.protocol_type.clone().map(str_bytes))
            .with_protocol_name(Some(str_bytes(protocol.clone())))
            .with_leader(str_bytes(leader.clone()))
            .with_member_id(str_bytes(id.clone()))
            .with_members(if *id == leader { members.clone() } else { Vec::new() });
        let _ = waiter.send(response);
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
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::GroupId;

    fn join_request(member: &str, metadata: Bytes) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(str_bytes(member))
            .with_protocol_type(str_bytes("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(str_bytes("range"))
                .with_metadata(metadata)])
    }

    fn join(groups: &KafkaGroups, member: &str) -> Waiting<JoinGroupResponse> {
        groups.join(join_request(member, Bytes::from_static(b"meta")))
    }

    fn now<T>(w: Waiting<T>) -> T {
        match w {
            Waiting::Now(t) => t,
            Waiting::Later(mut rx) => rx.try_recv().unwrap().expect("answered"),
        }
    }

    fn heartbeat(groups: &KafkaGroups, member: &str, generation: i32) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(member))
            .with_generation_id(generation);
        groups.heartbeat(&request).error_code
    }

    fn sync(
        groups: &KafkaGroups,
        member: &str,
        generation: i32,
        assign: &[(&str, &'static [u8])],
    ) -> Waiting<SyncGroupResponse> {
        groups.sync(
            SyncGroupRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_member_id(str_bytes(member))
                .with_generation_id(generation)
                .with_assignments(
                    assign
                        .iter()
                        .map(|(m, a)| {
                            SyncGroupRequestAssignment::default()
                                .with_member_id(str_bytes(*m))
                                .with_assignment(Bytes::from_static(a))
                        })
                        .collect(),
                ),
        )
    }

    #[test]
    fn oversized_member_metadata_is_refused_and_kept_metadata_does_not_pin_the_frame() {
        let groups = KafkaGroups::default();
        let huge = Bytes::from(vec![7u8; GROUP_MEMBER_METADATA_BYTES_MAX + 1]);
        let request = join_request("", huge);
        assert_eq!(now(groups.join(request)).error_code, codes::INVALID_REQUEST);

        // A small metadata sliced from a large frame is copied: the frame is not kept.
        let frame = Bytes::from(vec![1u8; 4 << 20]);
        let request = join_request("", frame.slice(100..108));
        let joined = now(groups.join(request));
        assert_eq!(joined.error_code, codes::NONE);
        let kept = groups.groups.borrow()["g"].members.values().next().unwrap().protocols[0].1.clone();
        assert_eq!(&kept[..], &[1u8; 8]);
        // Only `frame` itself still refers to the 4 MiB buffer: `kept` is its own allocation.
        assert!(!std::ptr::eq(kept.as_ptr(), frame[100..].as_ptr()));
    }

    #[test]
    fn the_generation_wraps_to_1_after_i32_max() {
        let groups = KafkaGroups::default();
        let a = now(join(&groups, ""));
        let a_id = a.member_id.to_string();
        groups.groups.borrow_mut().get_mut("g").unwrap().generation = i32::MAX - 1;
        // A rejoin starts generation i32::MAX, the next one wraps.
        assert_eq!(now(join(&groups, &a_id)).generation_id, i32::MAX);
        let again = now(join(&groups, &a_id));
        assert_eq!((again.error_code, again.generation_id), (codes::NONE, 1));
        assert_eq!(now(sync(&groups, &a_id, 1, &[(&a_id, b"p")])).error_code, codes::NONE);
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::NONE);
    }

    #[test]
    fn second_member_waits_at_the_barrier_until_the_first_rejoins() {
        let groups = KafkaGroups::default();
        let a = now(join(&groups, ""));
        assert_eq!((a.error_code, a.generation_id), (codes::NONE, 1));
        let a_id = a.member_id.to_string();
        assert_eq!(a.leader.as_str(), a_id);
        assert_eq!(now(sync(&groups, &a_id, 1, &[(&a_id, b"all")])).assignment, Bytes::from_static(b"all"));
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::NONE);

        // B joins: the barrier waits for A.
        let Waiting::Later(mut b_rx) = join(&groups, "") else { panic!("B must wait") };
        assert!(b_rx.try_recv().unwrap().is_none());
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::REBALANCE_IN_PROGRESS);
        let a2 = now(join(&groups, &a_id));
        let b = b_rx.try_recv().unwrap().unwrap();
        assert_eq!((a2.generation_id, b.generation_id), (2, 2));
        assert_eq!(a2.members.len(), 2, "the leader sees every member");
        assert!(b.members.is_empty());
        let b_id = b.member_id.to_string();

        // The follower's SyncGroup waits for the leader's assignment.
        let Waiting::Later(mut b_sync) = sync(&groups, &b_id, 2, &[]) else { panic!("follower must wait") };
        let a_sync = now(sync(&groups, &a_id, 2, &[(&a_id, b"p0"), (&b_id, b"p1")]));
        assert_eq!(a_sync.assignment, Bytes::from_static(b"p0"));
        assert_eq!(b_sync.try_recv().unwrap().unwrap().assignment, Bytes::from_static(b"p1"));

        // Stale generation, unknown member.
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::ILLEGAL_GENERATION);
        assert_eq!(heartbeat(&groups, "nobody", 2), codes::UNKNOWN_MEMBER_ID);
        assert_eq!(groups.check_commit("g", 2, &b_id), codes::NONE);
        assert_eq!(groups.check_commit("g", 1, &b_id), codes::ILLEGAL_GENERATION);

        // B leaves: A is told to rejoin and gets generation 3 alone.
        let leave = LeaveGroupRequest::default().with_group_id(GroupId(str_bytes("g"))).with_member_id(str_bytes(b_id));
        assert_eq!(groups.leave(leave, 1).error_code, codes::NONE);
        assert_eq!(heartbeat(&groups, &a_id, 2), codes::REBALANCE_IN_PROGRESS);
        let a3 = now(join(&groups, &a_id));
        assert_eq!((a3.generation_id, a3.members.len()), (3, 1));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_deadline() {
        let groups = KafkaGroups::default();
        let a = now(join(&groups, ""));
        let a_id = a.member_id.to_string();
        now(sync(&groups, &a_id, 1, &[]));
        let Waiting::Later(mut b_rx) = join(&groups, "") else { panic!() };
        // A stays silent: past the rebalance timeout the barrier completes without it.
        groups.expire(Instant::now() + Duration::from_secs(11));
        let b = b_rx.try_recv().unwrap().unwrap();
        assert_eq!((b.error_code, b.generation_id, b.members.len()), (codes::NONE, 2, 1));
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn silent_members_expire_after_their_session_timeout() {
        let groups = KafkaGroups::default();
        let a = now(join(&groups, ""));
        let a_id = a.member_id.to_string();
        now(sync(&groups, &a_id, 1, &[]));
        groups.expire(Instant::now() + Duration::from_secs(5));
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::NONE);
        groups.expire(Instant::now() + Duration::from_secs(11));
        assert_eq!(heartbeat(&groups, &a_id, 1), codes::UNKNOWN_MEMBER_ID);
    }
}
