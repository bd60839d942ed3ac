//! DeleteRecords (v0–2): each partition's log start moves to the offset asked (-1: the high
//! watermark), durably, on the partition's owner; fetches below it get OFFSET_OUT_OF_RANGE.
//! An offset past the high watermark is OFFSET_OUT_OF_RANGE, as in Kafka.

use std::rc::Rc;

use broker::ids::Offset;
use broker::shard::join_all;
use broker::{Shard, TopicPartition};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::{codes, partition_code};

/// Kafka's "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn delete_records(shard: &Rc<Shard>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partitions.into_iter().map(|p| {
            let (shard, name) = (shard.clone(), name.clone());
            async move {
                let result = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                let offset = match p.offset {
                    HIGH_WATERMARK => None,
                    other => match Offset::from_wire(other) {
                        Some(offset) => Some(offset),
                        None => return result.with_error_code(codes::OFFSET_OUT_OF_RANGE),
                    },
                };
                let Ok(index) = u32::try_from(p.partition_index) else {
                    return result.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                };
                match shard.delete_records(TopicPartition::new(name, index), offset).await {
                    Ok(start) => result.with_error_code(codes::NONE).with_low_watermark(start.to_wire()),
                    Err(e) => result.with_error_code(partition_code(&e)),
                }
            }
        });
        let partitions = join_all(calls).await;
        topics.push(DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
