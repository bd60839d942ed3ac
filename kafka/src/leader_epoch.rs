//! OffsetForLeaderEpoch (v2–4): for each partition, the largest leader epoch ≤ the one asked
//! that the log knows and the offset where the next epoch starts (the log end for the latest
//! epoch) — what a consumer checks after a leader change (KIP-320) and a follower truncates
//! to (KIP-101). The client's current_leader_epoch is fenced as in Fetch.

use std::rc::Rc;

use broker::ids::LeaderEpoch;
use broker::shard::join_all;
use broker::{OffsetQuery, Shard, TopicPartition};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::{codes, partition_code};

pub async fn handle(shard: &Rc<Shard>, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let calls = topic.partitions.into_iter().map(|p| {
            let (shard, name) = (shard.clone(), name.clone());
            async move {
                let answer =
                    EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                let Ok(index) = u32::try_from(p.partition) else {
                    return answer.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                };
                let partition = TopicPartition::new(name, index);
                if let Some(current) = LeaderEpoch::from_wire(p.current_leader_epoch) {
                    // The partition's epoch now (ListOffsets reports it): fence a stale client.
                    match shard.list_offset(partition.clone(), OffsetQuery::Latest).await {
                        Ok(listed) if current < listed.leader_epoch => {
                            return answer.with_error_code(codes::FENCED_LEADER_EPOCH)
                        }
                        Ok(listed) if current > listed.leader_epoch => {
                            return answer.with_error_code(codes::UNKNOWN_LEADER_EPOCH)
                        }
                        Ok(_) => {}
                        Err(e) => return answer.with_error_code(partition_code(&e)),
                    }
                }
                let Some(asked) = LeaderEpoch::from_wire(p.leader_epoch) else {
                    return answer.with_error_code(codes::NONE);
                };
                match shard.end_offset_for_epoch(partition, asked).await {
                    Ok(Some((epoch, end))) => answer
                        .with_error_code(codes::NONE)
                        .with_leader_epoch(epoch.to_wire())
                        .with_end_offset(end.to_wire()),
                    // An epoch past the latest: UNDEFINED_EPOCH (-1) and offset -1, no error.
                    Ok(None) => answer.with_error_code(codes::NONE),
                    Err(e) => answer.with_error_code(partition_code(&e)),
                }
            }
        });
        let partitions = join_all(calls).await;
        topics.push(OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions));
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
