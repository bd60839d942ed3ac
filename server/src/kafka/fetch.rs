//! Fetch (v4–12, no fetch sessions: every request is a full fetch, session id 0): served by
//! the shard's native fetch path (`Shard::fetch`), which reads locally or forwards to the
//! owning shard and long-polls up to max_wait_ms. Stored batches are returned byte for byte;
//! the only copy is into the response frame.
//!
//! There are no transactions, so the last stable offset is the high watermark (= the log
//! end offset: one replica) for both isolation levels.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{codes, kafka_code};
use crate::shard::Shard;
use protocol::messages::{FetchPartition, Response};

/// Per-partition byte cap when a client sends 0 or a negative partition_max_bytes.
const PARTITION_BYTES_DEFAULT: u32 = 1 << 20;

pub async fn handle(shard: &Rc<Shard>, request: FetchRequest) -> FetchResponse {
    let mut wanted = Vec::new();
    let mut shape = Vec::new();
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let mut indexes = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            indexes.push((p.partition, p.fetch_offset));
            if p.partition >= 0 && p.fetch_offset >= 0 {
                let bytes_max = u32::try_from(p.partition_max_bytes).ok().filter(|&b| b > 0);
                wanted.push(FetchPartition {
                    topic: name.clone(),
                    partition: p.partition as u32,
                    offset: p.fetch_offset as u64,
                    bytes_max: bytes_max.unwrap_or(PARTITION_BYTES_DEFAULT),
                });
            }
        }
        shape.push((topic.topic, name, indexes));
    }
    let bytes_max = u32::try_from(request.max_bytes).unwrap_or(0).max(1);
    let bytes_min = u32::try_from(request.min_bytes).unwrap_or(0);
    let wait_ms = u32::try_from(request.max_wait_ms).unwrap_or(0);
    let mut results = match shard.fetch(wait_ms, bytes_min, bytes_max, wanted).await {
        Response::Fetch { partitions } => partitions.into_iter(),
        other => {
            tracing::warn!(reply = ?other, "unexpected reply to a fetch");
            Vec::new().into_iter()
        }
    };
    let responses = shape
        .into_iter()
        .map(|(topic, name, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|(index, offset)| {
                    let data = PartitionData::default()
                        .with_partition_index(index)
                        .with_aborted_transactions(Some(Vec::new()))
                        .with_preferred_read_replica((-1).into());
                    if index < 0 || offset < 0 {
                        return data.with_error_code(codes::OFFSET_OUT_OF_RANGE).with_high_watermark(-1);
                    }
                    let Some(r) = results.next() else {
                        return data.with_error_code(codes::UNKNOWN_SERVER_ERROR);
                    };
                    debug_assert!(r.topic == name && r.partition as i32 == index);
                    let records = concat(r.records);
                    data.with_error_code(kafka_code(r.error))
                        .with_high_watermark(r.log_end_offset as i64)
                        .with_last_stable_offset(r.log_end_offset as i64)
                        .with_log_start_offset(r.log_start_offset as i64)
                        .with_records(Some(records))
                })
                .collect();
            FetchableTopicResponse::default().with_topic(topic).with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_error_code(codes::NONE).with_session_id(0).with_responses(responses)
}

/// The engine returns whole batches as one or more chunks; Kafka carries one records field.
fn concat(chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in chunks {
        out.extend_from_slice(&chunk);
    }
    out.freeze()
}
