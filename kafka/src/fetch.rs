//! Fetch (v4–16): the broker's fetch (`Shard::fetch`) reads each partition on its owner and
//! long-polls up to max_wait_ms. Fetch sessions (v7+) and topic ids (v13+) are
//! `fetch_session.rs`'s, around this. Stored batches are returned byte for byte; the only copy is joining a
//! partition's chunks into the one records field the codec encodes.
//!
//! There are no transactions, so the last stable offset is the high watermark for both
//! isolation levels.

use std::rc::Rc;

use broker::ids::{LeaderEpoch, Offset};
use broker::{FetchPartition, PartitionError, Shard, TopicPartition};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use crate::{codes, fetch_session, partition_code};

/// Per-partition byte cap when a client sends 0 or a negative partition_max_bytes.
const PARTITION_BYTES_DEFAULT: u32 = 1 << 20;

pub async fn handle(shard: &Rc<Shard>, version: i16, mut request: FetchRequest) -> FetchResponse {
    let table = shard.topics();
    let opened = match fetch_session::open(&table, version, &mut request) {
        Ok(opened) => opened,
        Err(answer) => return answer,
    };
    fetch_session::close(&table, opened, read(shard, request).await)
}

async fn read(shard: &Rc<Shard>, request: FetchRequest) -> FetchResponse {
    let mut wanted = Vec::new();
    let mut shape = Vec::new();
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let mut indexes = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            indexes.push((p.partition, p.fetch_offset, p.current_leader_epoch));
            if let (Ok(index), Some(offset)) = (u32::try_from(p.partition), Offset::from_wire(p.fetch_offset)) {
                let bytes_max = u32::try_from(p.partition_max_bytes).ok().filter(|&b| b > 0);
                wanted.push(FetchPartition {
                    partition: TopicPartition::new(name.clone(), index),
                    offset,
                    bytes_max: bytes_max.unwrap_or(PARTITION_BYTES_DEFAULT),
                });
            }
        }
        shape.push((topic.topic, indexes));
    }
    let bytes_max = u32::try_from(request.max_bytes).unwrap_or(0).max(1);
    let bytes_min = u32::try_from(request.min_bytes).unwrap_or(0);
    let wait_ms = u32::try_from(request.max_wait_ms).unwrap_or(0);
    let mut results = shard.fetch(wanted, bytes_min, bytes_max, wait_ms).await.into_iter();
    let responses = shape
        .into_iter()
        .map(|(topic, indexes)| {
            let partitions = indexes
                .into_iter()
                .map(|(index, offset, asked_epoch)| {
                    let data = PartitionData::default()
                        .with_partition_index(index)
                        .with_aborted_transactions(Some(Vec::new()))
                        .with_preferred_read_replica((-1).into());
                    if index < 0 || offset < 0 {
                        return data.with_error_code(codes::OFFSET_OUT_OF_RANGE).with_high_watermark(-1);
                    }
                    match results.next() {
                        None => data.with_error_code(codes::UNKNOWN_SERVER_ERROR),
                        Some(Ok(read)) => {
                            let high_watermark = read.bounds.high_watermark.to_wire();
                            if let Some(code) = epoch_mismatch(asked_epoch, read.bounds.leader_epoch) {
                                // Kafka fences a fetch from a client that knows another epoch.
                                return data.with_error_code(code).with_high_watermark(high_watermark);
                            }
                            data.with_error_code(codes::NONE)
                                .with_high_watermark(high_watermark)
                                .with_last_stable_offset(high_watermark)
                                .with_log_start_offset(read.bounds.log_start_offset.to_wire())
                                .with_records(Some(concat(read.chunks)))
                        }
                        Some(Err(e)) => {
                            let (log_start, high_watermark) = match &e {
                                PartitionError::OffsetOutOfRange { log_start, log_end, .. } => {
                                    (log_start.to_wire(), log_end.to_wire())
                                }
                                _ => (-1, -1),
                            };
                            data.with_error_code(partition_code(&e))
                                .with_high_watermark(high_watermark)
                                .with_last_stable_offset(high_watermark)
                                .with_log_start_offset(log_start)
                                .with_records(Some(Bytes::new()))
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default().with_topic(topic).with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_error_code(codes::NONE).with_session_id(0).with_responses(responses)
}

/// Kafka's check of a fetch's current_leader_epoch (-1: the client does not say): an older
/// epoch than the partition's is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH.
fn epoch_mismatch(asked: i32, current: LeaderEpoch) -> Option<i16> {
    let asked = LeaderEpoch::from_wire(asked)?;
    match asked.cmp(&current) {
        std::cmp::Ordering::Less => Some(codes::FENCED_LEADER_EPOCH),
        std::cmp::Ordering::Greater => Some(codes::UNKNOWN_LEADER_EPOCH),
        std::cmp::Ordering::Equal => None,
    }
}

/// The broker returns whole batches as one or more chunks; Kafka carries one records field.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_from_another_epoch_is_fenced_or_unknown() {
        let current = LeaderEpoch::new(3);
        assert_eq!(epoch_mismatch(-1, current), None, "the client does not say");
        assert_eq!(epoch_mismatch(3, current), None);
        assert_eq!(epoch_mismatch(2, current), Some(codes::FENCED_LEADER_EPOCH));
        assert_eq!(epoch_mismatch(4, current), Some(codes::UNKNOWN_LEADER_EPOCH));
    }
}
