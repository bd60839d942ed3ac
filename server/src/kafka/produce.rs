//! Produce: each partition's records (RecordBatch v2, raw `Bytes` from the request frame) go
//! to the owning shard — here, or forwarded — and are appended unchanged: the engine assigns
//! offsets by rewriting baseOffset, which the CRC does not cover. Compressed batches are
//! stored as sent. Idempotent batches are checked first (`idempotence.rs`).
//!
//! acks: 0 → no answer; 1 → the topic's durability; -1 (all) → after an fdatasync (there is
//! one replica, so "all in-sync replicas" is the local disk).

use std::rc::Rc;

use bytes::Bytes;
use engine::batch::{peek_batch_size, BatchError, BatchHeader};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::idempotence::{Decision, PRODUCER_SCAN_BYTES_MAX, PRODUCER_SCAN_OFFSETS};
use super::{codes, error_message, kafka_code, on_shard, KafkaShard, ShardCall, ShardReply};
use crate::order::{AppendOrder, Turn};
use crate::shard::{join_all, Shard};
use protocol::messages::Acks;

/// Kafka's INVALID_REQUIRED_ACKS.
const INVALID_REQUIRED_ACKS: i16 = 21;

/// One partition's outcome, as it crosses shards.
#[derive(Debug, Clone)]
pub struct PartitionProduced {
    pub error: i16,
    pub base_offset: i64,
    pub message: Option<String>,
}

impl PartitionProduced {
    fn error(error: i16, message: impl Into<String>) -> PartitionProduced {
        PartitionProduced { error, base_offset: -1, message: Some(message.into()) }
    }
}

/// One turn per partition of `request`, in the order `handle` visits them: the connection
/// takes them as it reads the request, so that its produces to a partition are appended in
/// the order they arrived (`order.rs`). An index that is no partition gets no order to keep.
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
    let table = shard.topics.load_full();
    let mut calls = Vec::new();
    let mut shape: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = Vec::new();
    let mut turns = turns.into_iter().chain(std::iter::repeat_with(Turn::unordered));
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut indexes = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            indexes.push(p.index);
            let turn = turns.next().unwrap_or_else(Turn::unordered);
            let owner = u32::try_from(p.index).ok().and_then(|i| table.owner(&name, i));
            let (shard, name) = (shard.clone(), name.clone());
            calls.push(async move {
                if ![0, 1, -1].contains(&acks) {
                    return PartitionProduced::error(INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1");
                }
                let (Some(owner), Some(records)) = (owner, p.records) else {
                    return PartitionProduced::error(codes::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic or partition");
                };
                let partition = p.index as u32;
                let call = ShardCall::Produce { topic: name, partition, records, acks };
                match on_shard(&shard, owner, call, turn).await {
                    Some(ShardReply::Produce(produced)) => produced,
                    _ => PartitionProduced::error(codes::NOT_LEADER_OR_FOLLOWER, "owner shard unreachable"),
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
                        .with_log_start_offset(-1)
                        .with_error_message(r.message.map(error_message))
                })
                .collect();
            TopicProduceResponse::default().with_name(name).with_partition_responses(partitions)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// Appends one partition's records on this (the owning) shard.
pub async fn produce_local(
    shard: &Rc<Shard>,
    topic: String,
    partition: u32,
    records: Bytes,
    acks: i16,
    mut turn: Turn,
) -> PartitionProduced {
    // In turn from here: the idempotence check must see this source's batches in order too.
    turn.wait().await;
    let batches = match split(records) {
        Ok(batches) => batches,
        Err((code, message)) => return PartitionProduced::error(code, message),
    };
    let Some(first) = batches.first() else {
        return PartitionProduced::error(codes::INVALID_RECORD, "no record batch");
    };
    let header = match BatchHeader::parse(first) {
        Ok(header) => header,
        Err(e) => return PartitionProduced::error(codes::CORRUPT_MESSAGE, e.to_string()),
    };
    let acks = match acks {
        0 => Acks::None,
        1 => Acks::Leader,
        _ => Acks::Durable,
    };
    let ticket = if header.producer_id >= 0 {
        if batches.len() != 1 {
            // Kafka: an idempotent produce carries exactly one batch per partition.
            return PartitionProduced::error(codes::INVALID_RECORD, "an idempotent produce must carry one batch");
        }
        let Some(kafka) = super::state(shard).cloned() else {
            return PartitionProduced::error(codes::UNKNOWN_SERVER_ERROR, "no Kafka state on this shard");
        };
        let gate = kafka.producers.gate.acquire_permit(1).await;
        if !kafka.producers.is_scanned(&topic, partition) {
            rebuild_producer_state(shard, &kafka, &topic, partition).await;
        }
        let decision = kafka.producers.check(
            &topic,
            partition,
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.records_count,
        );
        // This batch keeps its turn until it has its offsets, so the connection's next batch
        // for this partition is checked (and appended) after it. Batches of the same producer
        // arriving on two connections at once are not ordered here (a client retrying on a new
        // connection while the old one still has the batch in flight); Kafka holds a partition
        // lock from the check through the append — the Partition of the broker-core issue.
        drop(gate);
        match decision {
            Decision::Append(ticket) => Some((kafka, ticket)),
            Decision::Duplicate { base_offset } => {
                tracing::debug!(%topic, partition, base_offset, "duplicate batch acknowledged, not appended");
                return PartitionProduced { error: codes::NONE, base_offset, message: None };
            }
            Decision::Reject(code) => return PartitionProduced::error(code, "producer sequence check failed"),
        }
    } else {
        None
    };
    let result = shard.produce_local(topic, partition, batches, acks, turn).await;
    let base_offset = result.base_offsets.first().map(|&o| o as i64);
    match (result.error.is_ok(), base_offset, ticket) {
        (true, Some(base_offset), ticket) => {
            if let Some((kafka, ticket)) = ticket {
                kafka.producers.complete(ticket, base_offset);
            }
            PartitionProduced { error: codes::NONE, base_offset, message: None }
        }
        (_, _, ticket) => {
            if let Some((kafka, ticket)) = ticket {
                kafka.producers.abort(ticket);
            }
            PartitionProduced::error(kafka_code(result.error), result.message)
        }
    }
}

/// Reads the tail of a partition's log and learns the idempotent producers' sequences from
/// its batch headers (Kafka rebuilds producer state from the log the same way).
async fn rebuild_producer_state(shard: &Rc<Shard>, kafka: &KafkaShard, topic: &str, partition: u32) {
    use protocol::messages::FetchPartition;
    let probe = |offset: u64, bytes_max: u32| FetchPartition { topic: topic.to_owned(), partition, offset, bytes_max };
    // An offset past the end answers with the log's bounds.
    let bounds = shard.fetch_local(probe(u64::MAX, 1)).await;
    let end = bounds.log_end_offset;
    let mut offset = end.saturating_sub(PRODUCER_SCAN_OFFSETS).max(bounds.log_start_offset);
    let mut read_bytes = 0u64;
    let mut batches = 0u64;
    while offset < end && read_bytes < PRODUCER_SCAN_BYTES_MAX {
        let result = shard.fetch_local(probe(offset, engine::limits::READ_BYTES_MAX)).await;
        if !result.error.is_ok() || result.next_offset <= offset {
            break;
        }
        for chunk in &result.records {
            read_bytes += chunk.len() as u64;
            let mut rest = chunk.clone();
            while let Ok(Some(size_bytes)) = peek_batch_size(&rest) {
                if size_bytes > rest.len() {
                    break;
                }
                let batch = rest.split_to(size_bytes);
                if let Ok(header) = BatchHeader::parse(&batch) {
                    kafka.producers.learn(topic, partition, &header, header.base_offset);
                    batches += 1;
                }
            }
        }
        offset = result.next_offset;
    }
    kafka.producers.mark_scanned(topic, partition);
    tracing::debug!(topic, partition, batches, read_bytes, "producer state rebuilt from the log tail");
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
    Ok(batches)
}
