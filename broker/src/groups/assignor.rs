//! Broker-side assignment, for native consumers (Kafka consumers assign on the client side).
//!
//! A native member joins the coordinator with protocol type `NATIVE_PROTOCOL_TYPE`, its
//! assignor's name as the protocol, and its subscribed topics as metadata. The member that
//! leads the new generation computes every member's partitions here, from the topic table,
//! and hands them to SyncGroup; each member then reads its own share.
//!
//! Encodings (between native members, inside the coordinator; never on the wire): metadata
//! is the topic names joined by '\n' (topic names cannot contain it); an assignment is one
//! "topic partition" line per partition.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::partition::TopicPartition;
use crate::topics::TopicTable;

/// The protocol type native members join with.
pub const NATIVE_PROTOCOL_TYPE: &str = "shardlog";

/// How partitions are spread over members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, contiguous blocks; the first `partitions % members` get one more.
    Range,
    /// All partitions, topic by topic, dealt to the members in turn.
    RoundRobin,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }
}

pub fn encode_topics(topics: &[String]) -> Bytes {
    Bytes::from(topics.join("\n"))
}

pub fn decode_topics(metadata: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(metadata).split('\n').filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let lines: Vec<String> = partitions.iter().map(|tp| format!("{} {}", tp.topic, tp.partition)).collect();
    Bytes::from(lines.join("\n"))
}

pub fn decode_assignment(assignment: &[u8]) -> Vec<TopicPartition> {
    String::from_utf8_lossy(assignment)
        .lines()
        .filter_map(|line| {
            let (topic, partition) = line.rsplit_once(' ')?;
            Some(TopicPartition::new(topic, partition.parse().ok()?))
        })
        .collect()
}

/// Every member's partitions: those of each topic it subscribes to, spread over the members
/// subscribed to that topic by `assignor`. Members are taken in id order, so every leader
/// computes the same assignment.
pub fn assign(
    assignor: Assignor,
    members: &[(String, Vec<String>)],
    table: &TopicTable,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut by_id: BTreeMap<&str, &Vec<String>> = BTreeMap::new();
    for (id, topics) in members {
        by_id.insert(id, topics);
    }
    let mut out: BTreeMap<String, Vec<TopicPartition>> =
        by_id.keys().map(|id| ((*id).to_owned(), Vec::new())).collect();
    let topics: BTreeSet<&String> = by_id.values().flat_map(|t| t.iter()).collect();
    let mut next = 0usize;
    for topic in topics {
        let partitions = table.topics.get(topic.as_str()).map_or(0, |t| t.partitions.len() as u32);
        let subscribers: Vec<&str> = by_id.iter().filter(|(_, t)| t.contains(topic)).map(|(id, _)| *id).collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as u32;
        for p in 0..partitions {
            let who = match assignor {
                Assignor::RoundRobin => {
                    next += 1;
                    (next - 1) % subscribers.len()
                }
                Assignor::Range => {
                    let per = partitions / n;
                    let extra = partitions % n;
                    let cut = extra * (per + 1);
                    if p < cut {
                        (p / (per + 1)) as usize
                    } else {
                        (extra + (p - cut) / per.max(1)) as usize
                    }
                }
            };
            if let Some(member) = subscribers.get(who) {
                out.entry((*member).to_owned()).or_default().push(TopicPartition::new(topic.as_str(), p));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use engine::catalog::{PartitionInfo, TopicConfig, TopicInfo};

    use super::*;

    fn table(partitions: u32) -> TopicTable {
        let mut topics = HashMap::new();
        topics.insert(
            "users".to_owned(),
            TopicInfo {
                name: "users".into(),
                id: 1,
                config: TopicConfig::default(),
                partitions: (0..partitions)
                    .map(|p| PartitionInfo { partition: p, shard: p % 2, leader_epoch: 0 })
                    .collect(),
            },
        );
        TopicTable { topics, shard_count: 2, cluster: None }
    }

    fn partitions_of(out: &BTreeMap<String, Vec<TopicPartition>>, member: &str) -> Vec<u32> {
        out[member].iter().map(|tp| tp.partition).collect()
    }

    #[test]
    fn every_partition_goes_to_exactly_one_member_evenly() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let members = vec![("a".to_owned(), vec!["users".to_owned()]), ("b".to_owned(), vec!["users".to_owned()])];
            let out = assign(assignor, &members, &table(5));
            let (a, b) = (partitions_of(&out, "a"), partitions_of(&out, "b"));
            let mut union: Vec<u32> = a.iter().chain(&b).copied().collect();
            union.sort();
            assert_eq!(union, vec![0, 1, 2, 3, 4], "{assignor:?}");
            assert!(a.len().abs_diff(b.len()) <= 1, "{assignor:?}");
            let alone = assign(assignor, &members[..1], &table(5));
            assert_eq!(partitions_of(&alone, "a"), vec![0, 1, 2, 3, 4]);
        }
        let range = assign(
            Assignor::Range,
            &[("a".into(), vec!["users".into()]), ("b".into(), vec!["users".into()])],
            &table(4),
        );
        assert_eq!((partitions_of(&range, "a"), partitions_of(&range, "b")), (vec![0, 1], vec![2, 3]));
    }

    #[test]
    fn encodings_round_trip() {
        let topics = vec!["a.b".to_owned(), "c_d-1".to_owned()];
        assert_eq!(decode_topics(&encode_topics(&topics)), topics);
        let partitions = vec![TopicPartition::new("a.b", 0), TopicPartition::new("c", 7)];
        assert_eq!(decode_assignment(&encode_assignment(&partitions)), partitions);
        assert!(decode_assignment(b"").is_empty());
        assert_eq!(Assignor::from_name(Assignor::RoundRobin.name()), Some(Assignor::RoundRobin));
    }
}
