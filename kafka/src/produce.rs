//! Produce (v3–9): each partition's records (RecordBatch v2, raw `Bytes` of the request
//! frame) are split at batch boundaries and appended unchanged on the owning shard
//! (`Shard::produce`): the broker assigns offsets by rewriting baseOffset, which the CRC does
//! not cover. Compressed batches are stored as sent. Idempotent batches are checked by the
//! partition against the producer's sequences.
//!
//! acks: 0 → no answer; 1 → the topic's durability; -1 (all) → after an fdatasync (there is
//! one replica, so "all in-sync replicas" is the local disk).

use std::rc::Rc;

use broker::order::{AppendOrder, Turn};
use broker::shard::join_all;
use broker::{Acks, Shard, TopicPartition};
use bytes::Bytes;
use engine::batch::{peek_batch_size, BatchError};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::{codes, error_message, partition_code};

/// Kafka's INVALID_REQUIRED_ACKS.
const INVALID_REQUIRED_ACKS: i16 = 21;

/// One partition's outcome.
#[derive(Debug, Clone)]
struct PartitionProduced {
    error: i16,
    base_offset: i64,
    log_start_offset: i64,
    message: Option<String>,
}

impl PartitionProduced {
    fn error(error: i16, message: impl Into<String>) -> PartitionProduced {
        PartitionProduced { error, base_offset: -1, log_start_offset: -1, message: Some(message.into()) }
    }
}

/// One turn per partition of `request`, in the order `handle` visits them: the connection
/// takes them as it reads the request, so that its produces to a partition are appended in
/// the order they arrived (`broker::order`). An index that is no partition gets no order to
/// keep.
pub fn take_turns(order: &AppendOrder, request: &ProduceRequest) -> Vec<Turn> {
    let partitions = request.topic_data.iter().flat_map(|t| t.partition_data.iter().map(move |p| (&t.name, p.index)));
    partitions
        .map(|(name, index)| match u32::try_from(index) {
            Ok(partition) => order.take(name.0.as_str(), partition),
            Err(_) => Turn::unordered(),
        })
        .collect()
}

/// `None` for acks=0: the client expects no response. `turns` come from `take_turns`.
pub async fn handle(shard: &Rc<Shard>, request: ProduceRequest, turns: Vec<Turn>) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut calls = Vec::new();
    let mut shape: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = Vec::new();
    let mut turns = turns.into_iter().chain(std::iter::repeat_with(Turn::unordered));
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut indexes = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            indexes.push(p.index);
            let turn = turns.next().unwrap_or_else(Turn::unordered);
            let (shard, name) = (shard.clone(), name.clone());
            calls.push(async move {
                let acks = match acks {
                    0 => Acks::None,
                    1 => Acks::Leader,
                    -1 => Acks::Durable,
                    _ => return PartitionProduced::error(INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1"),
                };
                let (Ok(partition), Some(records)) = (u32::try_from(p.index), p.records) else {
                    return PartitionProduced::error(codes::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic or partition");
                };
                let batches = match split(records) {
                    Ok(batches) => batches,
                    Err((code, message)) => return PartitionProduced::error(code, message),
                };
                match shard.produce(TopicPartition::new(name, partition), batches, acks, turn).await {
                    Ok(appended) => PartitionProduced {
                        error: codes::NONE,
                        base_offset: appended.base_offsets.first().map_or(-1, |o| o.to_wire()),
                        log_start_offset: appended.log_start_offset.to_wire(),
                        message: None,
                    },
                    Err(e) => PartitionProduced::error(partition_code(&e), e.to_string()),
                }
            });
        }
        shape.push((topic.name, indexes));
    }
    let mut results = join_all(calls).await.into_iter();
    if acks == 0 {
        return None;
    }
    let responses = shape
        .into_iter()
        .map(|(name, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|index| {
                    let r = results.next().unwrap_or_else(|| PartitionProduced::error(codes::UNKNOWN_SERVER_ERROR, ""));
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(r.error)
                        .with_base_offset(r.base_offset)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(r.log_start_offset)
                        .with_error_message(r.message.map(error_message))
                })
                .collect();
            TopicProduceResponse::default().with_name(name).with_partition_responses(partitions)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// Splits a partition's records into batches by their length fields (zero-copy slices);
/// the log validates each (CRC, framing) before appending.
fn split(mut records: Bytes) -> Result<Vec<Bytes>, (i16, String)> {
    let mut batches = Vec::new();
    while !records.is_empty() {
        match peek_batch_size(&records) {
            Ok(Some(size_bytes)) if size_bytes <= records.len() => batches.push(records.split_to(size_bytes)),
            Ok(_) => {
                return Err((codes::CORRUPT_MESSAGE, format!("{} bytes of a partial batch at the end", records.len())))
            }
            Err(e @ BatchError::TooLarge { .. }) => return Err((codes::MESSAGE_TOO_LARGE, e.to_string())),
            Err(e) => return Err((codes::CORRUPT_MESSAGE, e.to_string())),
        }
    }
    if batches.is_empty() {
        return Err((codes::INVALID_RECORD, "no record batch".into()));
    }
    Ok(batches)
}
