//! OffsetCommit (v2–9) and OffsetFetch (v1–9) for Kafka groups: checked against the
//! group's generation (a KIP-848 group: the member's epoch) by the broker's coordinator, then stored in (or read from) the broker's
//! one committed-offset store — so a group's offsets are the same whichever protocol
//! committed or reads them.

use std::rc::Rc;

use broker::calls::OffsetsCommit;
use broker::groups::offsets::Committed;
use broker::groups::OffsetToCommit;
use broker::ids::{LeaderEpoch, Offset};
use broker::{OffsetQuery, Shard, TopicPartition};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use crate::{codes, commit_code, group_code, str_bytes};

/// Every partition of the request answered with `code`.
pub fn commit_error(request: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    commit_response(request, |_| code)
}

/// A response naming every partition of `request`, in order, with `code_of(partition)`.
fn commit_response(
    request: &OffsetCommitRequest,
    mut code_of: impl FnMut(&OffsetCommitRequestPartition) -> i16,
) -> OffsetCommitResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code_of(p))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// What a committed offset of -2 or -1 stands for: the partition's log start or its high
/// watermark, resolved when committed (kafkajs' `resetOffsets` commits them; Kafka stores
/// them as given, and a consumer reading them back seeks to the start or the end).
async fn resolve_special(shard: &Rc<Shard>, partition: &TopicPartition, committed_offset: i64) -> Option<Offset> {
    let query = match committed_offset {
        -2 => OffsetQuery::Earliest,
        -1 => OffsetQuery::Latest,
        other => return Offset::from_wire(other),
    };
    shard.list_offset(partition.clone(), query).await.ok().and_then(|l| l.offset)
}

/// A committed offset the store can take: at least 0, or -1 / -2 (resolved).
fn committable(committed_offset: i64) -> bool {
    committed_offset >= -2
}

/// Checks the commit against the group's membership and stores it; one code per partition.
pub async fn commit(shard: &Rc<Shard>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            let Ok(index) = u32::try_from(p.partition_index) else {
                continue;
            };
            if !committable(p.committed_offset) {
                continue;
            }
            let partition = TopicPartition::new(t.name.0.as_str(), index);
            // A -1 or -2 of a partition that does not exist resolves to nothing: the store then
            // answers UNKNOWN_TOPIC_OR_PARTITION for it, like any commit to it.
            let offset = resolve_special(shard, &partition, p.committed_offset).await.unwrap_or(Offset::ZERO);
            {
                offsets.push(OffsetToCommit {
                    partition,
                    offset,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                    // v6+; -1 (unknown) in older versions.
                    leader_epoch: LeaderEpoch::from_wire(p.committed_leader_epoch),
                });
            }
        }
    }
    let commit = OffsetsCommit {
        group: request.group_id.0.to_string(),
        generation: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        offsets,
    };
    let mut results = shard.commit_offsets(commit).await.into_iter();
    commit_response(&request, |p| {
        if p.partition_index < 0 || !committable(p.committed_offset) {
            codes::INVALID_COMMIT_OFFSET_SIZE
        } else {
            results.next().map_or(codes::UNKNOWN_SERVER_ERROR, |r| r.map_or_else(|e| commit_code(&e), |()| codes::NONE))
        }
    })
}

/// OffsetFetch v8 batches groups (and v9 names the fetching member of a KIP-848 group).
const FETCH_GROUPS_VERSION_MIN: i16 = 8;

/// OffsetFetch: one group (v1–7) or a batch of them (v8+).
pub async fn fetch(shard: &Rc<Shard>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version < FETCH_GROUPS_VERSION_MIN {
        let partitions =
            wanted(request.topics.as_ref().map(|t| t.iter().map(|t| (t.name.0.as_str(), &t.partition_indexes))));
        return match fetch_group(shard, request.group_id.0.to_string(), partitions, None).await {
            Ok(offsets) => OffsetFetchResponse::default().with_error_code(codes::NONE).with_topics(by_topic(offsets)),
            Err(code) => OffsetFetchResponse::default().with_error_code(code),
        };
    }
    let mut groups = Vec::with_capacity(request.groups.len());
    for g in request.groups {
        let partitions = wanted(g.topics.as_ref().map(|t| t.iter().map(|t| (t.name.0.as_str(), &t.partition_indexes))));
        // v9: a member of a KIP-848 group names itself and its epoch (-1 and no id: anyone).
        let member = g.member_id.as_ref().map(|m| (m.to_string(), g.member_epoch));
        let answer = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
        groups.push(match fetch_group(shard, g.group_id.0.to_string(), partitions, member).await {
            Ok(offsets) => answer.with_error_code(codes::NONE).with_topics(by_topic_v8(offsets)),
            Err(code) => answer.with_error_code(code),
        });
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// The partitions asked for, `None` for all (negative indexes left out).
fn wanted<'a>(topics: Option<impl Iterator<Item = (&'a str, &'a Vec<i32>)>>) -> Option<Vec<TopicPartition>> {
    topics.map(|topics| {
        topics
            .flat_map(|(name, indexes)| {
                indexes.iter().filter_map(move |&p| Some(TopicPartition::new(name, u32::try_from(p).ok()?)))
            })
            .collect()
    })
}

/// One group's committed offsets, or the group's error code.
async fn fetch_group(
    shard: &Rc<Shard>,
    group: String,
    partitions: Option<Vec<TopicPartition>>,
    member: Option<(String, i32)>,
) -> Result<Vec<(TopicPartition, Option<Committed>)>, i16> {
    if !shard.coordinates_groups() {
        return Err(codes::NOT_COORDINATOR);
    }
    if let Some((member_id, member_epoch)) = member {
        shard.check_offset_fetch(group.clone(), member_id, member_epoch).await.map_err(group_code)?;
    }
    shard.fetch_offsets(group, partitions).await.map_err(|_| codes::COORDINATOR_NOT_AVAILABLE)
}

fn committed_offset(committed: &Option<Committed>) -> (i64, i32, String) {
    (
        committed.as_ref().map_or(-1, |c| c.offset.to_wire()),
        committed.as_ref().and_then(|c| c.leader_epoch).map_or(-1, LeaderEpoch::to_wire),
        committed.as_ref().map(|c| c.metadata.clone()).unwrap_or_default(),
    )
}

/// v1–7's topics, in the order the offsets came back.
fn by_topic(offsets: Vec<(TopicPartition, Option<Committed>)>) -> Vec<OffsetFetchResponseTopic> {
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (tp, committed) in offsets {
        let (offset, epoch, metadata) = committed_offset(&committed);
        let partition = OffsetFetchResponsePartition::default()
            .with_partition_index(tp.partition as i32)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(str_bytes(metadata)))
            .with_error_code(codes::NONE);
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(tp.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

/// v8+'s topics (the same, in the batched response's types).
fn by_topic_v8(offsets: Vec<(TopicPartition, Option<Committed>)>) -> Vec<OffsetFetchResponseTopics> {
    let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
    for (tp, committed) in offsets {
        let (offset, epoch, metadata) = committed_offset(&committed);
        let partition = OffsetFetchResponsePartitions::default()
            .with_partition_index(tp.partition as i32)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(Some(str_bytes(metadata)))
            .with_error_code(codes::NONE);
        match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(str_bytes(tp.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

/// Every group of a v8+ request answered with `code` (v8+ has no top-level error).
pub fn fetch_error(request: &OffsetFetchRequest, code: i16) -> OffsetFetchResponse {
    let groups = request
        .groups
        .iter()
        .map(|g| OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone()).with_error_code(code))
        .collect();
    OffsetFetchResponse::default().with_error_code(code).with_groups(groups)
}
