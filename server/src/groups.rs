//! Consumer-group membership with a broker-side assignor (shard 0 only).
//!
//! A consumer joins with the topics it wants and gets a member id, a generation and its
//! partitions. Any change of membership (join, leave, a member that stops heartbeating past
//! its session timeout) starts a new generation with a new assignment; other members learn it
//! from their next heartbeat (`RebalanceInProgress`) and join again to get their new share.
//! Offset commits from a member must carry the current generation, so a consumer that lost
//! its partitions cannot overwrite the new owner's progress.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::limits::{GROUP_MEMBERS_MAX, SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
use crate::topics::TopicTable;
use protocol::messages::{Assignor, ErrorCode, Response, TopicPartition};

struct Member {
    topics: Vec<String>,
    session_timeout: Duration,
    last_seen: Instant,
}

#[derive(Default)]
struct Group {
    generation: i32,
    /// Sorted by member id, so assignment is deterministic.
    members: BTreeMap<String, Member>,
    assignor: Option<Assignor>,
    assignment: HashMap<String, Vec<TopicPartition>>,
}

#[derive(Default)]
pub struct Groups {
    groups: RefCell<HashMap<String, Group>>,
    next_member: Cell<u64>,
}

impl Groups {
    pub fn join(
        &self,
        table: &TopicTable,
        group: String,
        member_id: String,
        topics: Vec<String>,
        session_timeout_ms: u32,
        assignor: Assignor,
    ) -> Response {
        if group.is_empty() || group.len() > engine::limits::GROUP_NAME_BYTES_MAX {
            return join_error(ErrorCode::InvalidGroupId);
        }
        let session_timeout_ms = session_timeout_ms.clamp(SESSION_TIMEOUT_MS_MIN, SESSION_TIMEOUT_MS_MAX);
        let mut groups = self.groups.borrow_mut();
        let g = groups.entry(group.clone()).or_default();
        let member_id = if member_id.is_empty() {
            let n = self.next_member.get();
            self.next_member.set(n + 1);
            format!("{group}-member-{n}-{}", std::process::id())
        } else if g.members.contains_key(&member_id) {
            member_id
        } else {
            return join_error(ErrorCode::UnknownMemberId);
        };
        if !g.members.contains_key(&member_id) && g.members.len() >= GROUP_MEMBERS_MAX {
            return join_error(ErrorCode::InvalidGroupId);
        }
        let member = Member {
            topics,
            session_timeout: Duration::from_millis(u64::from(session_timeout_ms)),
            last_seen: Instant::now(),
        };
        let changed = g.members.get(&member_id).is_none_or(|m| m.topics != member.topics);
        g.members.insert(member_id.clone(), member);
        g.assignor = Some(assignor);
        if changed || g.assignment.is_empty() {
            rebalance(g, table);
        }
        Response::JoinGroup {
            error: ErrorCode::None,
            generation_id: g.generation,
            assignment: g.assignment.get(&member_id).cloned().unwrap_or_default(),
            member_id,
        }
    }

    pub fn heartbeat(&self, group: &str, generation_id: i32, member_id: &str) -> Response {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else {
            return Response::status(ErrorCode::UnknownMemberId, "unknown group");
        };
        let Some(m) = g.members.get_mut(member_id) else {
            return Response::status(ErrorCode::UnknownMemberId, "unknown member; join again");
        };
        m.last_seen = Instant::now();
        if generation_id != g.generation {
            return Response::status(ErrorCode::RebalanceInProgress, format!("generation is now {}", g.generation));
        }
        Response::ok()
    }

    pub fn leave(&self, table: &TopicTable, group: &str, member_id: &str) -> Response {
        let mut groups = self.groups.borrow_mut();
        let Some(g) = groups.get_mut(group) else {
            return Response::status(ErrorCode::UnknownMemberId, "unknown group");
        };
        if g.members.remove(member_id).is_none() {
            return Response::status(ErrorCode::UnknownMemberId, "unknown member");
        }
        // Reassign now, so the remaining members' rejoin does not start yet another generation.
        rebalance(g, table);
        Response::ok()
    }

    /// `None` if the member is current; otherwise the error its commit gets.
    pub fn check_member(&self, group: &str, generation_id: i32, member_id: &str) -> ErrorCode {
        let groups = self.groups.borrow();
        let Some(g) = groups.get(group) else {
            return ErrorCode::UnknownMemberId;
        };
        if !g.members.contains_key(member_id) {
            return ErrorCode::UnknownMemberId;
        }
        if g.generation != generation_id {
            return ErrorCode::IllegalGeneration;
        }
        ErrorCode::None
    }

    /// Removes members whose session expired and rebalances their groups. Called
    /// periodically by shard 0.
    pub fn expire(&self, table: &TopicTable) {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        for (name, g) in groups.iter_mut() {
            let before = g.members.len();
            g.members.retain(|_, m| now.duration_since(m.last_seen) <= m.session_timeout);
            if g.members.len() != before {
                tracing::info!(group = %name, expired = before - g.members.len(), "members timed out; rebalancing");
                rebalance(g, table);
            }
        }
        groups.retain(|_, g| !g.members.is_empty());
    }

    /// Rebalances every group subscribed to `topic` (its partitions changed).
    pub fn topic_changed(&self, table: &TopicTable, topic: &str) {
        for g in self.groups.borrow_mut().values_mut() {
            if g.members.values().any(|m| m.topics.iter().any(|t| t == topic)) {
                rebalance(g, table);
            }
        }
    }
}

fn join_error(error: ErrorCode) -> Response {
    Response::JoinGroup { error, generation_id: -1, member_id: String::new(), assignment: Vec::new() }
}

/// New generation; partitions of every subscribed topic spread over the members subscribed
/// to it, by the group's assignor.
fn rebalance(g: &mut Group, table: &TopicTable) {
    g.generation += 1;
    g.assignment = g.members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let mut topics: Vec<&String> = g.members.values().flat_map(|m| &m.topics).collect();
    topics.sort();
    topics.dedup();
    let round_robin = g.assignor == Some(Assignor::RoundRobin);
    let mut next = 0usize;
    for topic in topics {
        let partitions = table.topics.get(topic).map_or(0, |t| t.partitions.len() as u32);
        let subscribers: Vec<&String> =
            g.members.iter().filter(|(_, m)| m.topics.contains(topic)).map(|(id, _)| id).collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as u32;
        for p in 0..partitions {
            let who = if round_robin {
                next += 1;
                (next - 1) % subscribers.len()
            } else {
                // Range: contiguous blocks, the first `partitions % n` members get one extra.
                let per = partitions / n;
                let extra = partitions % n;
                let cut = extra * (per + 1);
                if p < cut {
                    (p / (per + 1)) as usize
                } else {
                    (extra + (p - cut) / per.max(1)) as usize
                }
            };
            if let Some(member) = subscribers.get(who) {
                g.assignment
                    .entry((*member).clone())
                    .or_default()
                    .push(TopicPartition { topic: topic.clone(), partition: p });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::catalog::{PartitionInfo, TopicConfig, TopicInfo};

    fn table(partitions: u32) -> TopicTable {
        let mut t = TopicTable { topics: HashMap::new(), shard_count: 2 };
        t.topics.insert(
            "users".into(),
            TopicInfo {
                name: "users".into(),
                id: 1,
                config: TopicConfig::default(),
                partitions: (0..partitions).map(|p| PartitionInfo { partition: p, shard: p % 2 }).collect(),
            },
        );
        t
    }

    fn assignment(r: &Response) -> (String, i32, Vec<u32>) {
        match r {
            Response::JoinGroup { error, generation_id, member_id, assignment } => {
                assert_eq!(*error, ErrorCode::None);
                (member_id.clone(), *generation_id, assignment.iter().map(|tp| tp.partition).collect())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_members_split_then_one_takes_all_after_leave() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let t = table(5);
            let groups = Groups::default();
            let (a, g1, all) =
                assignment(&groups.join(&t, "g".into(), String::new(), vec!["users".into()], 10_000, assignor));
            assert_eq!(all, vec![0, 1, 2, 3, 4]);
            let (b, g2, b_parts) =
                assignment(&groups.join(&t, "g".into(), String::new(), vec!["users".into()], 10_000, assignor));
            assert!(g2 > g1);
            // a learns of the rebalance from its heartbeat and rejoins.
            assert!(matches!(
                groups.heartbeat("g", g1, &a),
                Response::Status { error: ErrorCode::RebalanceInProgress, .. }
            ));
            let (_, g3, a_parts) =
                assignment(&groups.join(&t, "g".into(), a.clone(), vec!["users".into()], 10_000, assignor));
            assert_eq!(g3, g2, "rejoin with the same subscription keeps the generation");
            let mut union: Vec<u32> = a_parts.iter().chain(&b_parts).copied().collect();
            union.sort();
            assert_eq!(union, vec![0, 1, 2, 3, 4]);
            assert!(a_parts.len().abs_diff(b_parts.len()) <= 1);
            assert_eq!(groups.check_member("g", g1, &a), ErrorCode::IllegalGeneration);
            assert_eq!(groups.check_member("g", g3, &a), ErrorCode::None);
            assert!(matches!(groups.leave(&t, "g", &b), Response::Status { error: ErrorCode::None, .. }));
            let (_, _, a_parts) =
                assignment(&groups.join(&t, "g".into(), a.clone(), vec!["users".into()], 10_000, assignor));
            assert_eq!(a_parts, vec![0, 1, 2, 3, 4]);
        }
    }

    #[test]
    fn expired_members_are_removed() {
        let t = table(4);
        let groups = Groups::default();
        let (a, _, _) =
            assignment(&groups.join(&t, "g".into(), String::new(), vec!["users".into()], 1_000, Assignor::Range));
        groups.groups.borrow_mut().get_mut("g").unwrap().members.get_mut(&a).unwrap().last_seen -=
            Duration::from_secs(5);
        groups.expire(&t);
        assert_eq!(groups.check_member("g", 1, &a), ErrorCode::UnknownMemberId);
    }
}
