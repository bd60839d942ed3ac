//! ListOffsets (v1–7): -2 → log start, -1 → the high watermark (= the last stable offset:
//! no transactions), -3 (v7+, KIP-734) → the record with the largest timestamp, any other
//! timestamp → the first offset whose record timestamp is ≥ it.
//! Served on each partition's owning shard; answers carry the partition's leader epoch.

use std::rc::Rc;

use broker::shard::join_all;
use broker::{OffsetQuery, Shard, TopicPartition};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::{codes, partition_code};

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Below -3 (-4 earliest local, -5 tiered: ListOffsets v8+, not served) is refused.
const TIMESTAMP_SPECIAL_MIN: i64 = -3;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partitions.into_iter().map(|p| {
            let (shard, name) = (shard.clone(), name.clone());
            async move {
                // The leader epoch field exists from v4.
                let unknown_epoch = -1;
                let response = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(unknown_epoch);
                let (Ok(index), true) = (u32::try_from(p.partition_index), p.timestamp >= TIMESTAMP_SPECIAL_MIN) else {
                    return response.with_error_code(codes::INVALID_REQUEST);
                };
                if p.timestamp == MAX_TIMESTAMP {
                    return match shard.max_timestamp(TopicPartition::new(name.clone(), index)).await {
                        Ok(found) => {
                            let epoch = shard
                                .list_offset(TopicPartition::new(name, index), OffsetQuery::Latest)
                                .await
                                .map_or(unknown_epoch, |l| l.leader_epoch.to_wire());
                            response
                                .with_error_code(codes::NONE)
                                .with_timestamp(found.map_or(-1, |f| f.timestamp_ms))
                                .with_offset(found.map_or(-1, |f| f.offset.to_wire()))
                                .with_leader_epoch(if version >= 4 { epoch } else { unknown_epoch })
                        }
                        Err(e) => response.with_error_code(partition_code(&e)),
                    };
                }
                let query = match p.timestamp {
                    LATEST_TIMESTAMP => OffsetQuery::Latest,
                    EARLIEST_TIMESTAMP => OffsetQuery::Earliest,
                    ts => OffsetQuery::Timestamp(ts),
                };
                match shard.list_offset(TopicPartition::new(name, index), query).await {
                    Ok(listed) => response
                        .with_error_code(codes::NONE)
                        .with_offset(listed.offset.map_or(-1, |o| o.to_wire()))
                        .with_leader_epoch(if version >= 4 { listed.leader_epoch.to_wire() } else { unknown_epoch }),
                    Err(e) => response.with_error_code(partition_code(&e)),
                }
            }
        });
        let partitions = join_all(calls).await;
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}
