//! OffsetCommit (v2–8) and OffsetFetch (v1–7) for Kafka groups: checked against the
//! group's generation by the broker's coordinator, then stored in (or read from) the broker's
//! one committed-offset store — so a group's offsets are the same whichever protocol
//! committed or reads them.

use std::rc::Rc;

use broker::calls::OffsetsCommit;
use broker::groups::OffsetToCommit;
use broker::ids::{LeaderEpoch, Offset};
use broker::{OffsetQuery, Shard, TopicPartition};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use crate::{codes, commit_code, str_bytes};

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

pub async fn fetch(shard: &Rc<Shard>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let partitions: Option<Vec<TopicPartition>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .filter(|&&p| p >= 0)
                    .map(|&p| TopicPartition::new(t.name.0.as_str(), p as u32))
            })
            .collect()
    });
    if !shard.coordinates_groups() {
        return OffsetFetchResponse::default().with_error_code(codes::NOT_COORDINATOR);
    }
    let offsets = match shard.fetch_offsets(request.group_id.0.to_string(), partitions).await {
        Ok(offsets) => offsets,
        Err(_) => return OffsetFetchResponse::default().with_error_code(codes::COORDINATOR_NOT_AVAILABLE),
    };
    // Group by topic, in the order the offsets came back.
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (tp, committed) in offsets {
        let partition = OffsetFetchResponsePartition::default()
            .with_partition_index(tp.partition as i32)
            .with_committed_offset(committed.as_ref().map_or(-1, |c| c.offset.to_wire()))
            .with_committed_leader_epoch(
                committed.as_ref().and_then(|c| c.leader_epoch).map_or(-1, LeaderEpoch::to_wire),
            )
            .with_metadata(Some(str_bytes(committed.map(|c| c.metadata).unwrap_or_default())))
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
    OffsetFetchResponse::default().with_error_code(codes::NONE).with_topics(topics)
}
