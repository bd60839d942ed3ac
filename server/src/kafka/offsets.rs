//! OffsetCommit (v2–8) and OffsetFetch (v1–7) for Kafka groups, on the coordinator shard.
//! Commits are checked against the Kafka group's generation (`groups.rs`), then stored in
//! the broker's committed-offset store (`engine::group_offsets`) through the same coordinator
//! path as native commits — so a group's offsets are the same whichever protocol committed
//! or reads them.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{codes, kafka_code, str_bytes};
use crate::shard::Shard;
use protocol::messages::{CommitOffset, Request, Response, TopicPartition};

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

/// `group_error` is the membership check's verdict (NONE to store).
pub async fn commit(
    shard: &Rc<Shard>,
    request: OffsetCommitRequest,
    _version: i16,
    group_error: i16,
) -> OffsetCommitResponse {
    if group_error != codes::NONE {
        return commit_error(&request, group_error);
    }
    let mut offsets = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            if p.partition_index >= 0 && p.committed_offset >= 0 {
                offsets.push(CommitOffset {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index as u32,
                    offset: p.committed_offset as u64,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                });
            }
        }
    }
    let native = Request::OffsetCommit {
        group: request.group_id.0.to_string(),
        // Membership was checked above against the Kafka group; store as a plain commit.
        generation_id: -1,
        member_id: String::new(),
        offsets,
    };
    let coordinator = shard.coordinator.as_ref();
    let stored = match coordinator {
        Some(c) => c.handle(shard, native).await,
        None => return commit_error(&request, codes::NOT_COORDINATOR),
    };
    let mut results = match stored {
        Response::OffsetCommit { partitions } => partitions.into_iter(),
        Response::Status { error, .. } => return commit_error(&request, kafka_code(error)),
        other => {
            tracing::warn!(reply = ?other, "unexpected reply to OffsetCommit");
            return commit_error(&request, codes::UNKNOWN_SERVER_ERROR);
        }
    };
    commit_response(&request, |p| {
        if p.partition_index < 0 || p.committed_offset < 0 {
            codes::INVALID_COMMIT_OFFSET_SIZE
        } else {
            results.next().map_or(codes::UNKNOWN_SERVER_ERROR, |r| kafka_code(r.error))
        }
    })
}

pub async fn fetch(shard: &Rc<Shard>, request: OffsetFetchRequest, _version: i16) -> OffsetFetchResponse {
    let partitions: Option<Vec<TopicPartition>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .filter(|&&p| p >= 0)
                    .map(|&p| TopicPartition { topic: t.name.0.to_string(), partition: p as u32 })
            })
            .collect()
    });
    let native = Request::OffsetFetch { group: request.group_id.0.to_string(), partitions };
    let Some(coordinator) = shard.coordinator.as_ref() else {
        return OffsetFetchResponse::default().with_error_code(codes::NOT_COORDINATOR);
    };
    let (error, offsets) = match coordinator.handle(shard, native).await {
        Response::OffsetFetch { error, offsets } => (kafka_code(error), offsets),
        Response::Status { error, .. } => (kafka_code(error), Vec::new()),
        other => {
            tracing::warn!(reply = ?other, "unexpected reply to OffsetFetch");
            (codes::UNKNOWN_SERVER_ERROR, Vec::new())
        }
    };
    // Group by topic, in the order the offsets came back.
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for o in offsets {
        let partition = OffsetFetchResponsePartition::default()
            .with_partition_index(o.partition as i32)
            .with_committed_offset(o.offset)
            .with_committed_leader_epoch(-1)
            .with_metadata(Some(str_bytes(o.metadata)))
            .with_error_code(kafka_code(o.error));
        match topics.iter_mut().find(|t| t.name.0.as_str() == o.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(o.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetFetchResponse::default().with_error_code(error).with_topics(topics)
}
