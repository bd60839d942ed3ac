//! ListOffsets (v1–7): -2 → log start, -1 → log end (= high watermark = last stable
//! offset), any other timestamp → the first offset whose record timestamp is ≥ it. Served
//! by the native path (`Shard::list_offsets`), locally or on the owning shard.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{codes, kafka_code};
use crate::shard::Shard;
use protocol::messages::{ListOffsetsPartition, OffsetSpec, Response};

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
/// -3 (max timestamp, KIP-734) and below are not supported.
const TIMESTAMP_SPECIAL_MIN: i64 = -2;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut wanted = Vec::new();
    let mut shape = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut asks = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let valid = p.partition_index >= 0 && p.timestamp >= TIMESTAMP_SPECIAL_MIN;
            if valid {
                let spec = match p.timestamp {
                    LATEST_TIMESTAMP => OffsetSpec::Latest,
                    EARLIEST_TIMESTAMP => OffsetSpec::Earliest,
                    ts => OffsetSpec::Timestamp(ts),
                };
                wanted.push(ListOffsetsPartition { topic: name.clone(), partition: p.partition_index as u32, spec });
            }
            asks.push((p.partition_index, valid));
        }
        shape.push((topic.name, asks));
    }
    let mut results = match shard.list_offsets(wanted).await {
        Response::ListOffsets { partitions } => partitions.into_iter(),
        other => {
            tracing::warn!(reply = ?other, "unexpected reply to ListOffsets");
            Vec::new().into_iter()
        }
    };
    let topics = shape
        .into_iter()
        .map(|(name, asks)| {
            let partitions = asks
                .into_iter()
                .map(|(index, valid)| {
                    // The leader epoch field exists from v4.
                    let epoch = if version >= 4 { 0 } else { -1 };
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(epoch);
                    if !valid {
                        return response.with_error_code(codes::INVALID_REQUEST);
                    }
                    match results.next() {
                        Some(r) => response.with_error_code(kafka_code(r.error)).with_offset(r.offset),
                        None => response.with_error_code(codes::UNKNOWN_SERVER_ERROR),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
