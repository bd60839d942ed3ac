//! Encodes [`Request`]s and [`Response`]s as frames and decodes frame bodies back.
//!
//! A frame is `u32 frame_len | u16 protocol_version | u32 correlation_id | u32 header_len |
//! header | payload`, all integers big-endian (`docs/protocol.md` has the full specification).
//! The header is a flatbuffer (`protocol/schema/protocol.fbs`) whose root table wraps a union of
//! every request kind, resp. every response kind. The payload carries the record batches
//! untouched: a Produce request's batches and a Fetch response's records, back to back in
//! header order, delimited by lengths in the header. Every other message has an empty payload.
//!
//! Encoding never copies a batch: the payload chunks are returned as given, after one chunk
//! holding the length prefix, the fixed fields and the header. Decoding never copies one
//! either: the batches of a decoded message are [`Bytes::slice`]s of the frame.
//!
//! Decoding checks everything a peer controls: lengths against the bytes present, the
//! flatbuffer with the verifying reader (bounds, UTF-8, required fields), enum values and union
//! kinds against the known ones, list sizes against [`LIST_ITEMS_MAX`] and
//! [`FRAME_ITEMS_MAX`], and that the declared payload lengths add up to the payload exactly.
//! Malformed input yields a [`DecodeError`], never a panic.

use std::ops::Range;

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, Vector, VerifierOptions, WIPOffset};

use super::frame::{FRAME_PREFIX_BYTES, PROTOCOL_VERSION};
use super::generated::shardlog::protocol as fb;
use super::messages::{
    Acks, Assignor, CommitOffset, DescribedGroup, ErrorCode, FetchPartition, FetchPartitionResult, FetchedOffset,
    GroupListing, GroupMember, ListOffsetsPartition, ListOffsetsResult, OffsetSpec, PartitionError, PartitionMetadata,
    ProducePartition, ProducePartitionResult, ReassignmentEntry, ReplicaFetchPartition, ReplicaFetchResult, Request,
    Response, ShardInfo, TopicConfigEntry, TopicMetadata, TopicPartition, TopicSettings,
};

/// The fixed fields at the start of every frame body: version (u16), correlation id (u32) and
/// header length (u32).
pub const FIXED_BYTES: usize = 10;
/// Byte range of the correlation id in a frame body. The version and the correlation id keep
/// their place in every protocol version, so that any frame can be answered.
const CORRELATION_ID: Range<usize> = 2..6;
/// Most items in any one list of a message (partitions, topics, batches of a partition, ...).
pub const LIST_ITEMS_MAX: usize = 100_000;
/// Most list items in one message, all lists together.
pub const FRAME_ITEMS_MAX: usize = 1_000_000;
/// The flatbuffers verifier walks the header as a tree; shared sub-objects are counted once per
/// reference. A header whose tree is more than this many times its encoded size (plus
/// [`APPARENT_SIZE_SLACK_BYTES`]) is rejected, so a small header cannot expand into a huge
/// decoded message. Headers written without sharing stay far below it.
const APPARENT_SIZE_FACTOR: usize = 8;
const APPARENT_SIZE_SLACK_BYTES: usize = 64 << 10;
/// Deepest table nesting of the schema is 4 (header, body, topic, partition): generous margin.
const TABLE_DEPTH_MAX: usize = 16;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is too short for the fixed fields. The correlation id is known when at least
    /// the first 6 bytes are present.
    #[error("frame body of {frame_bytes} bytes is shorter than the {FIXED_BYTES} bytes of fixed fields")]
    FrameTooShort { frame_bytes: usize, correlation_id: Option<u32> },
    #[error("unsupported protocol version {version} (this build speaks version {PROTOCOL_VERSION})")]
    UnsupportedVersion { version: u16, correlation_id: u32 },
    #[error("header length {header_bytes} exceeds the {available_bytes} bytes left in the frame")]
    HeaderLength { header_bytes: u32, available_bytes: usize, correlation_id: u32 },
    /// The flatbuffers verifier rejected the header; `reason` is its message.
    #[error("invalid flatbuffers header: {reason}")]
    InvalidHeader { reason: String, correlation_id: u32 },
    /// The header's union names no message kind this build knows (0 = none at all).
    #[error("unknown {direction} kind {kind}")]
    UnknownKind { direction: &'static str, kind: u8, correlation_id: u32 },
    #[error("unknown value {value} for {field}")]
    UnknownEnumValue { field: &'static str, value: u16, correlation_id: u32 },
    #[error("{field} has {count} items, over the limit of {max}")]
    TooManyItems { field: &'static str, count: usize, max: usize, correlation_id: u32 },
    #[error("the header declares {declared_bytes} payload bytes but the frame carries {payload_bytes}")]
    PayloadLength { declared_bytes: u64, payload_bytes: usize, correlation_id: u32 },
}

impl DecodeError {
    /// The correlation id of the frame that failed to decode, when it was readable: the reply
    /// to a malformed request echoes it.
    pub fn correlation_id(&self) -> Option<u32> {
        match *self {
            DecodeError::FrameTooShort { correlation_id, .. } => correlation_id,
            DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::HeaderLength { correlation_id, .. }
            | DecodeError::InvalidHeader { correlation_id, .. }
            | DecodeError::UnknownKind { correlation_id, .. }
            | DecodeError::UnknownEnumValue { correlation_id, .. }
            | DecodeError::TooManyItems { correlation_id, .. }
            | DecodeError::PayloadLength { correlation_id, .. } => Some(correlation_id),
        }
    }

    /// The error code to answer a request that failed to decode with: `UnsupportedRequest` for
    /// a protocol version or request kind this build does not know, `MalformedRequest` for
    /// everything else.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } | DecodeError::UnknownKind { .. } => ErrorCode::UnsupportedRequest,
            _ => ErrorCode::MalformedRequest,
        }
    }
}

/// Peek the correlation id of a frame body (for error replies).
pub fn peek_correlation_id(frame: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = frame.get(CORRELATION_ID)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

// ---------------------------------------------------------------------------------------------
// Encoding

type Builder<'fbb> = FlatBufferBuilder<'fbb>;
type Offsets<'fbb, T> = WIPOffset<Vector<'fbb, ForwardsUOffset<T>>>;

/// Encodes a full frame INCLUDING the u32 length prefix, as chunks: chunk 0 = prefix + fixed
/// fields + header, then the Produce batches, in header order, as given (no copy; empty ones
/// are left out).
///
/// The encoder does not enforce the decoder's limits: callers keep messages within
/// [`super::frame::FRAME_BYTES_MAX`], [`LIST_ITEMS_MAX`] and [`FRAME_ITEMS_MAX`].
pub fn encode_request(correlation_id: u32, request: &Request) -> Vec<Bytes> {
    let mut fbb = Builder::with_capacity(header_capacity_hint_request(request));
    let mut payload = Vec::new();
    let (kind, body) = match request {
        Request::CreateTopic { name, partitions, settings } => {
            let name = fbb.create_string(name);
            let settings = encode_topic_settings(&mut fbb, settings);
            let args =
                fb::CreateTopicRequestArgs { name: Some(name), partitions: *partitions, settings: Some(settings) };
            (fb::RequestBody::CreateTopicRequest, fb::CreateTopicRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::DeleteTopic { name } => {
            let name = fbb.create_string(name);
            let args = fb::DeleteTopicRequestArgs { name: Some(name) };
            (fb::RequestBody::DeleteTopicRequest, fb::DeleteTopicRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::CreatePartitions { name, total } => {
            let name = fbb.create_string(name);
            let args = fb::CreatePartitionsRequestArgs { name: Some(name), total: *total };
            (
                fb::RequestBody::CreatePartitionsRequest,
                fb::CreatePartitionsRequest::create(&mut fbb, &args).as_union_value(),
            )
        }
        Request::Metadata { topics, with_offsets } => {
            let topics = topics.as_deref().map(|topics| encode_strings(&mut fbb, topics));
            let args = fb::MetadataRequestArgs { topics, with_offsets: *with_offsets };
            (fb::RequestBody::MetadataRequest, fb::MetadataRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::Produce { acks, timeout_ms, partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            let mut lengths = Vec::new();
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                lengths.clear();
                lengths.extend(partition.batches.iter().map(chunk_len));
                let batch_lengths = fbb.create_vector(&lengths);
                let args = fb::ProducePartitionArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    batch_lengths: Some(batch_lengths),
                };
                encoded.push(fb::ProducePartition::create(&mut fbb, &args));
                payload.extend(partition.batches.iter().filter(|batch| !batch.is_empty()).cloned());
            }
            let partitions = fbb.create_vector(&encoded);
            let acks = match acks {
                Acks::None => fb::Acks::None,
                Acks::Leader => fb::Acks::Leader,
                Acks::Durable => fb::Acks::Durable,
            };
            let args = fb::ProduceRequestArgs { acks, timeout_ms: *timeout_ms, partitions: Some(partitions) };
            (fb::RequestBody::ProduceRequest, fb::ProduceRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::Fetch { wait_ms_max, bytes_min, bytes_max, partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                let args = fb::FetchPartitionArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    offset: partition.offset,
                    bytes_max: partition.bytes_max,
                };
                encoded.push(fb::FetchPartition::create(&mut fbb, &args));
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::FetchRequestArgs {
                wait_ms_max: *wait_ms_max,
                bytes_min: *bytes_min,
                bytes_max: *bytes_max,
                partitions: Some(partitions),
            };
            (fb::RequestBody::FetchRequest, fb::FetchRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::ListOffsets { partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                let (spec, timestamp_ms) = match partition.spec {
                    OffsetSpec::Earliest => (fb::OffsetSpecKind::Earliest, 0),
                    OffsetSpec::Latest => (fb::OffsetSpecKind::Latest, 0),
                    OffsetSpec::Timestamp(timestamp_ms) => (fb::OffsetSpecKind::Timestamp, timestamp_ms),
                };
                let args = fb::ListOffsetsPartitionArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    spec,
                    timestamp_ms,
                };
                encoded.push(fb::ListOffsetsPartition::create(&mut fbb, &args));
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::ListOffsetsRequestArgs { partitions: Some(partitions) };
            (fb::RequestBody::ListOffsetsRequest, fb::ListOffsetsRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::OffsetCommit { group, generation_id, member_id, offsets } => {
            let group = fbb.create_string(group);
            let member_id = encode_optional_string(&mut fbb, member_id);
            let mut encoded = Vec::with_capacity(offsets.len());
            for offset in offsets {
                let topic = fbb.create_string(&offset.topic);
                let metadata = encode_optional_string(&mut fbb, &offset.metadata);
                let args = fb::CommitOffsetArgs {
                    topic: Some(topic),
                    partition: offset.partition,
                    offset: offset.offset,
                    metadata,
                };
                encoded.push(fb::CommitOffset::create(&mut fbb, &args));
            }
            let offsets = fbb.create_vector(&encoded);
            let args = fb::OffsetCommitRequestArgs {
                group: Some(group),
                generation_id: *generation_id,
                member_id,
                offsets: Some(offsets),
            };
            (fb::RequestBody::OffsetCommitRequest, fb::OffsetCommitRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::OffsetFetch { group, partitions } => {
            let group = fbb.create_string(group);
            let partitions = partitions.as_deref().map(|partitions| encode_topic_partitions(&mut fbb, partitions));
            let args = fb::OffsetFetchRequestArgs { group: Some(group), partitions };
            (fb::RequestBody::OffsetFetchRequest, fb::OffsetFetchRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::JoinGroup { group, member_id, topics, session_timeout_ms, assignor } => {
            let group = fbb.create_string(group);
            let member_id = encode_optional_string(&mut fbb, member_id);
            let topics = encode_strings(&mut fbb, topics);
            let assignor = match assignor {
                Assignor::Range => fb::Assignor::Range,
                Assignor::RoundRobin => fb::Assignor::RoundRobin,
            };
            let args = fb::JoinGroupRequestArgs {
                group: Some(group),
                member_id,
                topics: Some(topics),
                session_timeout_ms: *session_timeout_ms,
                assignor,
            };
            (fb::RequestBody::JoinGroupRequest, fb::JoinGroupRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::Heartbeat { group, generation_id, member_id } => {
            let group = fbb.create_string(group);
            let member_id = encode_optional_string(&mut fbb, member_id);
            let args = fb::HeartbeatRequestArgs { group: Some(group), generation_id: *generation_id, member_id };
            (fb::RequestBody::HeartbeatRequest, fb::HeartbeatRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::ReplicaFetch { replica_node, wait_ms_max, bytes_max, partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                let args = fb::ReplicaFetchPartitionArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    leader_epoch: partition.leader_epoch,
                    fetch_offset: partition.fetch_offset,
                    durable_offset: partition.durable_offset,
                    last_fetched_epoch: partition.last_fetched_epoch,
                    bytes_max: partition.bytes_max,
                    log_start_offset: partition.log_start_offset,
                };
                encoded.push(fb::ReplicaFetchPartition::create(&mut fbb, &args));
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::ReplicaFetchRequestArgs {
                replica_node: *replica_node,
                wait_ms_max: *wait_ms_max,
                bytes_max: *bytes_max,
                partitions: Some(partitions),
            };
            (fb::RequestBody::ReplicaFetchRequest, fb::ReplicaFetchRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::LeaveGroup { group, member_id } => {
            let group = fbb.create_string(group);
            let member_id = encode_optional_string(&mut fbb, member_id);
            let args = fb::LeaveGroupRequestArgs { group: Some(group), member_id };
            (fb::RequestBody::LeaveGroupRequest, fb::LeaveGroupRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::ListGroups => {
            let args = fb::ListGroupsRequestArgs {};
            (fb::RequestBody::ListGroupsRequest, fb::ListGroupsRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::DescribeGroup { group } => {
            let group = fbb.create_string(group);
            let args = fb::DescribeGroupRequestArgs { group: Some(group) };
            (fb::RequestBody::DescribeGroupRequest, fb::DescribeGroupRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::DeleteGroup { group } => {
            let group = fbb.create_string(group);
            let args = fb::DeleteGroupRequestArgs { group: Some(group) };
            (fb::RequestBody::DeleteGroupRequest, fb::DeleteGroupRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::DescribeTopicConfig { name } => {
            let name = fbb.create_string(name);
            let args = fb::DescribeTopicConfigRequestArgs { name: Some(name) };
            let body = fb::DescribeTopicConfigRequest::create(&mut fbb, &args).as_union_value();
            (fb::RequestBody::DescribeTopicConfigRequest, body)
        }
        Request::AlterTopicConfig { name, set, reset } => {
            let name = fbb.create_string(name);
            let mut pairs = Vec::with_capacity(set.len());
            for (key, value) in set {
                let key = fbb.create_string(key);
                let value = encode_optional_string(&mut fbb, value);
                pairs.push(fb::ConfigPair::create(&mut fbb, &fb::ConfigPairArgs { name: Some(key), value }));
            }
            let set = fbb.create_vector(&pairs);
            let reset = encode_strings(&mut fbb, reset);
            let args = fb::AlterTopicConfigRequestArgs { name: Some(name), set: Some(set), reset: Some(reset) };
            let body = fb::AlterTopicConfigRequest::create(&mut fbb, &args).as_union_value();
            (fb::RequestBody::AlterTopicConfigRequest, body)
        }
        Request::Reassign { topic, partition, replicas } => {
            let topic = fbb.create_string(topic);
            let cancel = replicas.is_none();
            let replicas = replicas.as_ref().map(|r| fbb.create_vector(r));
            let args = fb::ReassignRequestArgs { topic: Some(topic), partition: *partition, replicas, cancel };
            (fb::RequestBody::ReassignRequest, fb::ReassignRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::ListReassignments => {
            let args = fb::ListReassignmentsRequestArgs {};
            let body = fb::ListReassignmentsRequest::create(&mut fbb, &args).as_union_value();
            (fb::RequestBody::ListReassignmentsRequest, body)
        }
        Request::ElectLeader { topic, partition } => {
            let topic = fbb.create_string(topic);
            let args = fb::ElectLeaderRequestArgs { topic: Some(topic), partition: *partition };
            (fb::RequestBody::ElectLeaderRequest, fb::ElectLeaderRequest::create(&mut fbb, &args).as_union_value())
        }
        Request::Drain { node, draining } => {
            let args = fb::DrainRequestArgs { node: *node, draining: *draining };
            (fb::RequestBody::DrainRequest, fb::DrainRequest::create(&mut fbb, &args).as_union_value())
        }
    };
    let root = fb::RequestHeader::create(&mut fbb, &fb::RequestHeaderArgs { body_type: kind, body: Some(body) });
    fbb.finish_minimal(root);
    assemble(correlation_id, fbb, payload)
}

/// Encodes a full frame INCLUDING the u32 length prefix, as chunks: chunk 0 = prefix + fixed
/// fields + header, then the Fetch records, in header order, as given (no copy; empty ones are
/// left out).
///
/// The encoder does not enforce the decoder's limits: callers keep messages within
/// [`super::frame::FRAME_BYTES_MAX`], [`LIST_ITEMS_MAX`] and [`FRAME_ITEMS_MAX`].
pub fn encode_response(correlation_id: u32, response: &Response) -> Vec<Bytes> {
    let mut fbb = Builder::with_capacity(header_capacity_hint_response(response));
    let mut payload = Vec::new();
    let (kind, body) = match response {
        Response::Status { error, message } => {
            let message = encode_optional_string(&mut fbb, message);
            let args = fb::StatusResponseArgs { error: encode_error(*error), message };
            (fb::ResponseBody::StatusResponse, fb::StatusResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::Metadata { shards, topics, coordinator_address } => {
            let mut encoded_shards = Vec::with_capacity(shards.len());
            for shard in shards {
                let address = fbb.create_string(&shard.address);
                let args = fb::ShardInfoArgs { shard: shard.shard, address: Some(address) };
                encoded_shards.push(fb::ShardInfo::create(&mut fbb, &args));
            }
            let shards = fbb.create_vector(&encoded_shards);
            let mut encoded_topics = Vec::with_capacity(topics.len());
            let mut encoded_partitions = Vec::new();
            for topic in topics {
                let name = fbb.create_string(&topic.name);
                let durability = encode_optional_string(&mut fbb, &topic.durability);
                encoded_partitions.clear();
                for partition in &topic.partitions {
                    let leader_address = partition.leader_address.as_deref().map(|a| fbb.create_string(a));
                    let replica_nodes =
                        (!partition.replica_nodes.is_empty()).then(|| fbb.create_vector(&partition.replica_nodes));
                    let isr_nodes = (!partition.isr_nodes.is_empty()).then(|| fbb.create_vector(&partition.isr_nodes));
                    let args = fb::PartitionMetadataArgs {
                        partition: partition.partition,
                        shard: partition.shard,
                        log_start_offset: partition.log_start_offset,
                        log_end_offset: partition.log_end_offset,
                        size_bytes: partition.size_bytes,
                        leader_address,
                        leader_node: partition.leader_node,
                        leader_epoch: partition.leader_epoch,
                        replica_nodes,
                        isr_nodes,
                        high_watermark: partition.high_watermark,
                    };
                    encoded_partitions.push(fb::PartitionMetadata::create(&mut fbb, &args));
                }
                let partitions = fbb.create_vector(&encoded_partitions);
                let args = fb::TopicMetadataArgs {
                    name: Some(name),
                    error: encode_error(topic.error),
                    id: topic.id,
                    retention_ms: topic.retention_ms,
                    retention_bytes: topic.retention_bytes,
                    segment_bytes: topic.segment_bytes,
                    durability,
                    partitions: Some(partitions),
                };
                encoded_topics.push(fb::TopicMetadata::create(&mut fbb, &args));
            }
            let topics = fbb.create_vector(&encoded_topics);
            let coordinator_address = coordinator_address.as_deref().map(|a| fbb.create_string(a));
            let args = fb::MetadataResponseArgs { shards: Some(shards), topics: Some(topics), coordinator_address };
            (fb::ResponseBody::MetadataResponse, fb::MetadataResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::Produce { partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                let message = encode_optional_string(&mut fbb, &partition.message);
                let base_offsets = fbb.create_vector(&partition.base_offsets);
                let args = fb::ProducePartitionResultArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    error: encode_error(partition.error),
                    message,
                    base_offsets: Some(base_offsets),
                    log_end_offset: partition.log_end_offset,
                };
                encoded.push(fb::ProducePartitionResult::create(&mut fbb, &args));
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::ProduceResponseArgs { partitions: Some(partitions) };
            (fb::ResponseBody::ProduceResponse, fb::ProduceResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::Fetch { partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            let mut lengths = Vec::new();
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                lengths.clear();
                lengths.extend(partition.records.iter().map(chunk_len));
                let record_chunk_lengths = fbb.create_vector(&lengths);
                let args = fb::FetchPartitionResultArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    error: encode_error(partition.error),
                    log_start_offset: partition.log_start_offset,
                    log_end_offset: partition.log_end_offset,
                    next_offset: partition.next_offset,
                    record_chunk_lengths: Some(record_chunk_lengths),
                };
                encoded.push(fb::FetchPartitionResult::create(&mut fbb, &args));
                payload.extend(partition.records.iter().filter(|chunk| !chunk.is_empty()).cloned());
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::FetchResponseArgs { partitions: Some(partitions) };
            (fb::ResponseBody::FetchResponse, fb::FetchResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::ListOffsets { partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                let args = fb::ListOffsetsResultArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    error: encode_error(partition.error),
                    offset: partition.offset,
                };
                encoded.push(fb::ListOffsetsResult::create(&mut fbb, &args));
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::ListOffsetsResponseArgs { partitions: Some(partitions) };
            (fb::ResponseBody::ListOffsetsResponse, fb::ListOffsetsResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::OffsetCommit { partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                let args = fb::PartitionErrorArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    error: encode_error(partition.error),
                };
                encoded.push(fb::PartitionError::create(&mut fbb, &args));
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::OffsetCommitResponseArgs { partitions: Some(partitions) };
            (fb::ResponseBody::OffsetCommitResponse, fb::OffsetCommitResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::OffsetFetch { error, offsets } => {
            let mut encoded = Vec::with_capacity(offsets.len());
            for offset in offsets {
                let topic = fbb.create_string(&offset.topic);
                let metadata = encode_optional_string(&mut fbb, &offset.metadata);
                let args = fb::FetchedOffsetArgs {
                    topic: Some(topic),
                    partition: offset.partition,
                    offset: offset.offset,
                    metadata,
                    error: encode_error(offset.error),
                };
                encoded.push(fb::FetchedOffset::create(&mut fbb, &args));
            }
            let offsets = fbb.create_vector(&encoded);
            let args = fb::OffsetFetchResponseArgs { error: encode_error(*error), offsets: Some(offsets) };
            (fb::ResponseBody::OffsetFetchResponse, fb::OffsetFetchResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::ReplicaFetch { partitions } => {
            let mut encoded = Vec::with_capacity(partitions.len());
            let mut lengths = Vec::new();
            for partition in partitions {
                let topic = fbb.create_string(&partition.topic);
                lengths.clear();
                lengths.extend(partition.records.iter().map(chunk_len));
                let record_chunk_lengths = fbb.create_vector(&lengths);
                let args = fb::ReplicaFetchResultArgs {
                    topic: Some(topic),
                    partition: partition.partition,
                    error: encode_error(partition.error),
                    high_watermark: partition.high_watermark,
                    log_start_offset: partition.log_start_offset,
                    log_end_offset: partition.log_end_offset,
                    diverging_epoch: partition.diverging.map(|d| d.0),
                    diverging_end_offset: partition.diverging.map(|d| d.1),
                    record_chunk_lengths: Some(record_chunk_lengths),
                };
                encoded.push(fb::ReplicaFetchResult::create(&mut fbb, &args));
                payload.extend(partition.records.iter().filter(|chunk| !chunk.is_empty()).cloned());
            }
            let partitions = fbb.create_vector(&encoded);
            let args = fb::ReplicaFetchResponseArgs { partitions: Some(partitions) };
            (fb::ResponseBody::ReplicaFetchResponse, fb::ReplicaFetchResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::JoinGroup { error, generation_id, member_id, assignment } => {
            let member_id = encode_optional_string(&mut fbb, member_id);
            let assignment = encode_topic_partitions(&mut fbb, assignment);
            let args = fb::JoinGroupResponseArgs {
                error: encode_error(*error),
                generation_id: *generation_id,
                member_id,
                assignment: Some(assignment),
            };
            (fb::ResponseBody::JoinGroupResponse, fb::JoinGroupResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::ListGroups { groups } => {
            let mut encoded = Vec::with_capacity(groups.len());
            for g in groups {
                let group = fbb.create_string(&g.group);
                let protocol_type = encode_optional_string(&mut fbb, &g.protocol_type);
                let state = encode_optional_string(&mut fbb, &g.state);
                let args = fb::GroupListingArgs { group: Some(group), protocol_type, state };
                encoded.push(fb::GroupListing::create(&mut fbb, &args));
            }
            let groups = fbb.create_vector(&encoded);
            let args = fb::ListGroupsResponseArgs { groups: Some(groups) };
            (fb::ResponseBody::ListGroupsResponse, fb::ListGroupsResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::DescribeGroup(described) => {
            let DescribedGroup { error, group, state, protocol_type, protocol, generation_id, members } = &**described;
            let mut encoded = Vec::with_capacity(members.len());
            for m in members {
                let member_id = fbb.create_string(&m.member_id);
                let group_instance_id = encode_optional_string(&mut fbb, &m.group_instance_id);
                let client_id = encode_optional_string(&mut fbb, &m.client_id);
                let client_host = encode_optional_string(&mut fbb, &m.client_host);
                let assignment = encode_topic_partitions(&mut fbb, &m.assignment);
                let args = fb::GroupMemberArgs {
                    member_id: Some(member_id),
                    group_instance_id,
                    client_id,
                    client_host,
                    assignment: Some(assignment),
                };
                encoded.push(fb::GroupMember::create(&mut fbb, &args));
            }
            let members = fbb.create_vector(&encoded);
            let group = fbb.create_string(group);
            let state = encode_optional_string(&mut fbb, state);
            let protocol_type = encode_optional_string(&mut fbb, protocol_type);
            let protocol = encode_optional_string(&mut fbb, protocol);
            let args = fb::DescribeGroupResponseArgs {
                error: encode_error(*error),
                group: Some(group),
                state,
                protocol_type,
                protocol,
                generation_id: *generation_id,
                members: Some(members),
            };
            let body = fb::DescribeGroupResponse::create(&mut fbb, &args).as_union_value();
            (fb::ResponseBody::DescribeGroupResponse, body)
        }
        Response::TopicConfig { error, message, configs } => {
            let mut encoded = Vec::with_capacity(configs.len());
            for c in configs {
                let name = fbb.create_string(&c.name);
                let value = encode_optional_string(&mut fbb, &c.value);
                let args =
                    fb::TopicConfigEntryArgs { name: Some(name), value, is_default: c.is_default, applied: c.applied };
                encoded.push(fb::TopicConfigEntry::create(&mut fbb, &args));
            }
            let configs = fbb.create_vector(&encoded);
            let message = encode_optional_string(&mut fbb, message);
            let args = fb::TopicConfigResponseArgs { error: encode_error(*error), message, configs: Some(configs) };
            (fb::ResponseBody::TopicConfigResponse, fb::TopicConfigResponse::create(&mut fbb, &args).as_union_value())
        }
        Response::Reassignments { error, message, reassignments } => {
            let mut encoded = Vec::with_capacity(reassignments.len());
            for r in reassignments {
                let topic = fbb.create_string(&r.topic);
                let replicas = fbb.create_vector(&r.replicas);
                let adding = fbb.create_vector(&r.adding);
                let removing = fbb.create_vector(&r.removing);
                let args = fb::ReassignmentEntryArgs {
                    topic: Some(topic),
                    partition: r.partition,
                    replicas: Some(replicas),
                    adding: Some(adding),
                    removing: Some(removing),
                };
                encoded.push(fb::ReassignmentEntry::create(&mut fbb, &args));
            }
            let reassignments = fbb.create_vector(&encoded);
            let message = encode_optional_string(&mut fbb, message);
            let args = fb::ReassignmentsResponseArgs {
                error: encode_error(*error),
                message,
                reassignments: Some(reassignments),
            };
            let body = fb::ReassignmentsResponse::create(&mut fbb, &args).as_union_value();
            (fb::ResponseBody::ReassignmentsResponse, body)
        }
    };
    let root = fb::ResponseHeader::create(&mut fbb, &fb::ResponseHeaderArgs { body_type: kind, body: Some(body) });
    fbb.finish_minimal(root);
    assemble(correlation_id, fbb, payload)
}

/// Puts the length prefix and the fixed fields in front of the finished header and appends the
/// payload chunks.
fn assemble(correlation_id: u32, fbb: Builder<'_>, payload: Vec<Bytes>) -> Vec<Bytes> {
    const PREAMBLE_BYTES: usize = FRAME_PREFIX_BYTES + FIXED_BYTES;
    let (mut buf, head) = fbb.collapse();
    let header_bytes = buf.len() - head;
    let payload_bytes = payload.iter().map(Bytes::len).fold(0usize, usize::saturating_add);
    let frame_bytes = FIXED_BYTES.saturating_add(header_bytes).saturating_add(payload_bytes);
    debug_assert!(frame_bytes <= u32::MAX as usize, "frame of {frame_bytes} bytes cannot be encoded");
    // Saturated: a peer rejects the frame as too large rather than reading a wrapped length.
    let frame_bytes = u32::try_from(frame_bytes).unwrap_or(u32::MAX);
    let header_bytes_u32 = u32::try_from(header_bytes).unwrap_or(u32::MAX);

    let mut preamble = [0u8; PREAMBLE_BYTES];
    preamble[0..4].copy_from_slice(&frame_bytes.to_be_bytes());
    preamble[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    preamble[6..10].copy_from_slice(&correlation_id.to_be_bytes());
    preamble[10..14].copy_from_slice(&header_bytes_u32.to_be_bytes());

    // The builder writes back to front: the header usually has room before it for the
    // preamble, so chunk 0 is built without copying the header.
    let first = if head >= PREAMBLE_BYTES {
        buf[head - PREAMBLE_BYTES..head].copy_from_slice(&preamble);
        Bytes::from(buf).slice(head - PREAMBLE_BYTES..)
    } else {
        let mut first = Vec::with_capacity(PREAMBLE_BYTES + header_bytes);
        first.extend_from_slice(&preamble);
        first.extend_from_slice(&buf[head..]);
        Bytes::from(first)
    };
    let mut chunks = Vec::with_capacity(1 + payload.len());
    chunks.push(first);
    chunks.extend(payload);
    chunks
}

/// Batches and record chunks are bounded by the frame size, far below `u32::MAX`.
fn chunk_len(chunk: &Bytes) -> u32 {
    debug_assert!(u32::try_from(chunk.len()).is_ok());
    u32::try_from(chunk.len()).unwrap_or(u32::MAX)
}

fn header_capacity_hint_request(request: &Request) -> usize {
    let items = match request {
        Request::Produce { partitions, .. } => partitions.iter().map(|p| 1 + p.batches.len()).sum(),
        Request::Fetch { partitions, .. } => partitions.len(),
        Request::ListOffsets { partitions } => partitions.len(),
        Request::OffsetCommit { offsets, .. } => offsets.len(),
        Request::Metadata { topics, .. } => topics.as_ref().map_or(0, Vec::len),
        Request::OffsetFetch { partitions, .. } => partitions.as_ref().map_or(0, Vec::len),
        Request::JoinGroup { topics, .. } => topics.len(),
        Request::AlterTopicConfig { set, reset, .. } => set.len() + reset.len(),
        Request::Reassign { replicas, .. } => replicas.as_ref().map_or(0, Vec::len),
        Request::ReplicaFetch { partitions, .. } => partitions.len(),
        _ => 0,
    };
    256 + items.min(LIST_ITEMS_MAX) * 48
}

fn header_capacity_hint_response(response: &Response) -> usize {
    let items = match response {
        Response::Metadata { shards, topics, .. } => {
            shards.len() + topics.iter().map(|topic| 1 + topic.partitions.len()).sum::<usize>()
        }
        Response::Produce { partitions } => partitions.iter().map(|p| 1 + p.base_offsets.len()).sum(),
        Response::Fetch { partitions } => partitions.iter().map(|p| 1 + p.records.len()).sum(),
        Response::ListOffsets { partitions } => partitions.len(),
        Response::OffsetCommit { partitions } => partitions.len(),
        Response::OffsetFetch { offsets, .. } => offsets.len(),
        Response::JoinGroup { assignment, .. } => assignment.len(),
        Response::ListGroups { groups } => groups.len(),
        Response::DescribeGroup(described) => described.members.iter().map(|m| 1 + m.assignment.len()).sum(),
        Response::TopicConfig { configs, .. } => configs.len(),
        Response::Reassignments { reassignments, .. } => {
            reassignments.iter().map(|r| 1 + r.replicas.len() + r.adding.len() + r.removing.len()).sum()
        }
        Response::ReplicaFetch { partitions } => partitions.iter().map(|p| 1 + p.records.len()).sum(),
        Response::Status { .. } => 0,
    };
    256 + items.min(LIST_ITEMS_MAX) * 64
}

fn encode_error(error: ErrorCode) -> fb::ErrorCode {
    fb::ErrorCode(error as u16)
}

/// A string that reads as "" when absent: left out when empty.
fn encode_optional_string<'fbb>(fbb: &mut Builder<'fbb>, s: &str) -> Option<WIPOffset<&'fbb str>> {
    (!s.is_empty()).then(|| fbb.create_string(s))
}

fn encode_strings<'fbb>(fbb: &mut Builder<'fbb>, strings: &[String]) -> Offsets<'fbb, &'fbb str> {
    let offsets: Vec<_> = strings.iter().map(|s| fbb.create_string(s)).collect();
    fbb.create_vector(&offsets)
}

fn encode_topic_partitions<'fbb>(
    fbb: &mut Builder<'fbb>,
    partitions: &[TopicPartition],
) -> Offsets<'fbb, fb::TopicPartition<'fbb>> {
    let mut encoded = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let topic = fbb.create_string(&partition.topic);
        let args = fb::TopicPartitionArgs { topic: Some(topic), partition: partition.partition };
        encoded.push(fb::TopicPartition::create(fbb, &args));
    }
    fbb.create_vector(&encoded)
}

fn encode_topic_settings<'fbb>(
    fbb: &mut Builder<'fbb>,
    settings: &TopicSettings,
) -> WIPOffset<fb::TopicSettings<'fbb>> {
    let durability = settings.durability.as_deref().map(|durability| fbb.create_string(durability));
    let args = fb::TopicSettingsArgs {
        retention_ms: settings.retention_ms,
        retention_bytes: settings.retention_bytes,
        segment_bytes: settings.segment_bytes,
        segment_ms: settings.segment_ms,
        durability,
        replication_factor: settings.replication_factor,
        min_insync_replicas: settings.min_insync_replicas,
        unclean_leader_election: settings.unclean_leader_election,
    };
    fb::TopicSettings::create(fbb, &args)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decode a frame body as returned by [`super::frame::read_frame`] (everything after the u32
/// length prefix). Produce batches in the result are slices of `frame`.
pub fn decode_request(frame: Bytes) -> Result<(u32, Request), DecodeError> {
    let (mut decoder, header) = Decoder::new(&frame)?;
    let root = flatbuffers::root_with_opts::<fb::RequestHeader>(&verifier_options(header.len()), &frame[header])
        .map_err(|error| decoder.invalid(&error))?;
    let request = decoder.request(root)?;
    Ok((decoder.correlation_id, request))
}

/// Decode a frame body as returned by [`super::frame::read_frame`] (everything after the u32
/// length prefix). Fetch records in the result are slices of `frame`.
pub fn decode_response(frame: Bytes) -> Result<(u32, Response), DecodeError> {
    let (mut decoder, header) = Decoder::new(&frame)?;
    let root = flatbuffers::root_with_opts::<fb::ResponseHeader>(&verifier_options(header.len()), &frame[header])
        .map_err(|error| decoder.invalid(&error))?;
    let response = decoder.response(root)?;
    Ok((decoder.correlation_id, response))
}

fn verifier_options(header_bytes: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: TABLE_DEPTH_MAX,
        max_tables: FRAME_ITEMS_MAX + 16,
        max_apparent_size: header_bytes.saturating_mul(APPARENT_SIZE_FACTOR).saturating_add(APPARENT_SIZE_SLACK_BYTES),
        ignore_missing_null_terminator: false,
    }
}

/// Decoding state of one frame: what errors need, the list-item budget and the payload.
struct Decoder {
    correlation_id: u32,
    items: usize,
    payload: Bytes,
}

type Strings<'a> = Vector<'a, ForwardsUOffset<&'a str>>;

impl Decoder {
    /// Parses the fixed fields and returns the header's range in the frame.
    fn new(frame: &Bytes) -> Result<(Decoder, Range<usize>), DecodeError> {
        let frame_bytes = frame.len();
        let correlation_id = peek_correlation_id(frame);
        let (Some(version), Some(correlation_id)) = (frame.get(0..2), correlation_id) else {
            return Err(DecodeError::FrameTooShort { frame_bytes, correlation_id });
        };
        let version = u16::from_be_bytes([version[0], version[1]]);
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion { version, correlation_id });
        }
        let Some(header_len) = frame.get(6..FIXED_BYTES) else {
            return Err(DecodeError::FrameTooShort { frame_bytes, correlation_id: Some(correlation_id) });
        };
        let header_bytes = u32::from_be_bytes([header_len[0], header_len[1], header_len[2], header_len[3]]);
        let available_bytes = frame_bytes - FIXED_BYTES;
        if header_bytes as usize > available_bytes {
            return Err(DecodeError::HeaderLength { header_bytes, available_bytes, correlation_id });
        }
        let header_end = FIXED_BYTES + header_bytes as usize;
        let decoder = Decoder { correlation_id, items: 0, payload: frame.slice(header_end..) };
        Ok((decoder, FIXED_BYTES..header_end))
    }

    fn invalid(&self, error: &flatbuffers::InvalidFlatbuffer) -> DecodeError {
        // The verifier's message spans lines (a trace of where the error is): keep one line.
        let message = error.to_string();
        let lines: Vec<&str> = message.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        DecodeError::InvalidHeader { reason: lines.join("; "), correlation_id: self.correlation_id }
    }

    fn unknown_enum(&self, field: &'static str, value: u16) -> DecodeError {
        DecodeError::UnknownEnumValue { field, value, correlation_id: self.correlation_id }
    }

    /// Charges a list of `count` items to the frame's budget.
    fn take_items(&mut self, field: &'static str, count: usize) -> Result<(), DecodeError> {
        if count > LIST_ITEMS_MAX {
            return Err(DecodeError::TooManyItems {
                field,
                count,
                max: LIST_ITEMS_MAX,
                correlation_id: self.correlation_id,
            });
        }
        self.items += count;
        if self.items > FRAME_ITEMS_MAX {
            return Err(DecodeError::TooManyItems {
                field: "the frame (all lists)",
                count: self.items,
                max: FRAME_ITEMS_MAX,
                correlation_id: self.correlation_id,
            });
        }
        Ok(())
    }

    /// Decodes every item of an optional list (absent = empty) after charging it.
    fn list<'a, T, U>(
        &mut self,
        field: &'static str,
        vector: Option<Vector<'a, T>>,
        mut decode: impl FnMut(&mut Self, T::Inner) -> Result<U, DecodeError>,
    ) -> Result<Vec<U>, DecodeError>
    where
        T: Follow<'a> + 'a,
    {
        let Some(vector) = vector else { return Ok(Vec::new()) };
        self.take_items(field, vector.len())?;
        let mut out = Vec::with_capacity(vector.len());
        for item in vector.iter() {
            out.push(decode(self, item)?);
        }
        Ok(out)
    }

    fn strings(&mut self, field: &'static str, vector: Option<Strings<'_>>) -> Result<Vec<String>, DecodeError> {
        self.list(field, vector, |_, s| Ok(s.to_owned()))
    }

    /// Checks that the declared payload lengths add up to the payload exactly.
    fn check_payload(&self, declared_bytes: u64) -> Result<(), DecodeError> {
        if declared_bytes != self.payload.len() as u64 {
            return Err(DecodeError::PayloadLength {
                declared_bytes,
                payload_bytes: self.payload.len(),
                correlation_id: self.correlation_id,
            });
        }
        Ok(())
    }

    /// Slices `lengths` consecutive chunks off the payload, starting at `*position`. Only called
    /// after [`Decoder::check_payload`] accepted the sum of all lengths.
    fn chunks(
        &mut self,
        field: &'static str,
        lengths: Option<Vector<'_, u32>>,
        position: &mut usize,
    ) -> Result<Vec<Bytes>, DecodeError> {
        self.list(field, lengths, |decoder, length| {
            let start = *position;
            let end = start.saturating_add(length as usize);
            if end > decoder.payload.len() {
                // Unreachable after check_payload; kept so a slice can never panic.
                return Err(DecodeError::PayloadLength {
                    declared_bytes: end as u64,
                    payload_bytes: decoder.payload.len(),
                    correlation_id: decoder.correlation_id,
                });
            }
            *position = end;
            Ok(decoder.payload.slice(start..end))
        })
    }

    fn error_code(&self, field: &'static str, error: fb::ErrorCode) -> Result<ErrorCode, DecodeError> {
        ErrorCode::from_u16(error.0).ok_or_else(|| self.unknown_enum(field, error.0))
    }

    fn request(&mut self, root: fb::RequestHeader<'_>) -> Result<Request, DecodeError> {
        let kind = root.body_type();
        let unknown =
            DecodeError::UnknownKind { direction: "request", kind: kind.0, correlation_id: self.correlation_id };
        if kind == fb::RequestBody::NONE || kind.0 > fb::RequestBody::ENUM_MAX {
            return Err(unknown);
        }
        // Only Produce requests carry a payload.
        if kind != fb::RequestBody::ProduceRequest {
            self.check_payload(0)?;
        }
        if let Some(body) = root.body_as_create_topic_request() {
            let settings = body.settings().map(|settings| TopicSettings {
                retention_ms: settings.retention_ms(),
                retention_bytes: settings.retention_bytes(),
                segment_bytes: settings.segment_bytes(),
                segment_ms: settings.segment_ms(),
                durability: settings.durability().map(str::to_owned),
                replication_factor: settings.replication_factor(),
                min_insync_replicas: settings.min_insync_replicas(),
                unclean_leader_election: settings.unclean_leader_election(),
            });
            return Ok(Request::CreateTopic {
                name: body.name().to_owned(),
                partitions: body.partitions(),
                settings: settings.unwrap_or_default(),
            });
        }
        if let Some(body) = root.body_as_delete_topic_request() {
            return Ok(Request::DeleteTopic { name: body.name().to_owned() });
        }
        if let Some(body) = root.body_as_create_partitions_request() {
            return Ok(Request::CreatePartitions { name: body.name().to_owned(), total: body.total() });
        }
        if let Some(body) = root.body_as_metadata_request() {
            let topics = match body.topics() {
                Some(topics) => Some(self.strings("Metadata.topics", Some(topics))?),
                None => None,
            };
            return Ok(Request::Metadata { topics, with_offsets: body.with_offsets() });
        }
        if let Some(body) = root.body_as_produce_request() {
            return self.produce_request(body);
        }
        if let Some(body) = root.body_as_replica_fetch_request() {
            let partitions = self.list("ReplicaFetch.partitions", body.partitions(), |_, partition| {
                Ok(ReplicaFetchPartition {
                    topic: partition.topic().to_owned(),
                    partition: partition.partition(),
                    leader_epoch: partition.leader_epoch(),
                    fetch_offset: partition.fetch_offset(),
                    durable_offset: partition.durable_offset(),
                    last_fetched_epoch: partition.last_fetched_epoch(),
                    bytes_max: partition.bytes_max(),
                    log_start_offset: partition.log_start_offset(),
                })
            })?;
            return Ok(Request::ReplicaFetch {
                replica_node: body.replica_node(),
                wait_ms_max: body.wait_ms_max(),
                bytes_max: body.bytes_max(),
                partitions,
            });
        }
        if let Some(body) = root.body_as_fetch_request() {
            let partitions = self.list("Fetch.partitions", body.partitions(), |_, partition| {
                Ok(FetchPartition {
                    topic: partition.topic().to_owned(),
                    partition: partition.partition(),
                    offset: partition.offset(),
                    bytes_max: partition.bytes_max(),
                })
            })?;
            return Ok(Request::Fetch {
                wait_ms_max: body.wait_ms_max(),
                bytes_min: body.bytes_min(),
                bytes_max: body.bytes_max(),
                partitions,
            });
        }
        if let Some(body) = root.body_as_list_offsets_request() {
            let partitions = self.list("ListOffsets.partitions", body.partitions(), |decoder, partition| {
                let spec = match partition.spec() {
                    fb::OffsetSpecKind::Earliest => OffsetSpec::Earliest,
                    fb::OffsetSpecKind::Latest => OffsetSpec::Latest,
                    fb::OffsetSpecKind::Timestamp => OffsetSpec::Timestamp(partition.timestamp_ms()),
                    other => return Err(decoder.unknown_enum("ListOffsetsPartition.spec", other.0.into())),
                };
                Ok(ListOffsetsPartition { topic: partition.topic().to_owned(), partition: partition.partition(), spec })
            })?;
            return Ok(Request::ListOffsets { partitions });
        }
        if let Some(body) = root.body_as_offset_commit_request() {
            let offsets = self.list("OffsetCommit.offsets", body.offsets(), |_, offset| {
                Ok(CommitOffset {
                    topic: offset.topic().to_owned(),
                    partition: offset.partition(),
                    offset: offset.offset(),
                    metadata: offset.metadata().unwrap_or_default().to_owned(),
                })
            })?;
            return Ok(Request::OffsetCommit {
                group: body.group().to_owned(),
                generation_id: body.generation_id(),
                member_id: body.member_id().unwrap_or_default().to_owned(),
                offsets,
            });
        }
        if let Some(body) = root.body_as_offset_fetch_request() {
            let partitions = match body.partitions() {
                Some(partitions) => Some(self.topic_partitions("OffsetFetch.partitions", Some(partitions))?),
                None => None,
            };
            return Ok(Request::OffsetFetch { group: body.group().to_owned(), partitions });
        }
        if let Some(body) = root.body_as_join_group_request() {
            let assignor = match body.assignor() {
                fb::Assignor::Range => Assignor::Range,
                fb::Assignor::RoundRobin => Assignor::RoundRobin,
                other => return Err(self.unknown_enum("JoinGroup.assignor", other.0.into())),
            };
            return Ok(Request::JoinGroup {
                group: body.group().to_owned(),
                member_id: body.member_id().unwrap_or_default().to_owned(),
                topics: self.strings("JoinGroup.topics", body.topics())?,
                session_timeout_ms: body.session_timeout_ms(),
                assignor,
            });
        }
        if let Some(body) = root.body_as_heartbeat_request() {
            return Ok(Request::Heartbeat {
                group: body.group().to_owned(),
                generation_id: body.generation_id(),
                member_id: body.member_id().unwrap_or_default().to_owned(),
            });
        }
        if let Some(body) = root.body_as_leave_group_request() {
            return Ok(Request::LeaveGroup {
                group: body.group().to_owned(),
                member_id: body.member_id().unwrap_or_default().to_owned(),
            });
        }
        if root.body_as_list_groups_request().is_some() {
            return Ok(Request::ListGroups);
        }
        if let Some(body) = root.body_as_describe_group_request() {
            return Ok(Request::DescribeGroup { group: body.group().to_owned() });
        }
        if let Some(body) = root.body_as_delete_group_request() {
            return Ok(Request::DeleteGroup { group: body.group().to_owned() });
        }
        if let Some(body) = root.body_as_describe_topic_config_request() {
            return Ok(Request::DescribeTopicConfig { name: body.name().to_owned() });
        }
        if let Some(body) = root.body_as_alter_topic_config_request() {
            let set = self.list("AlterTopicConfig.set", body.set(), |_, pair| {
                Ok((pair.name().to_owned(), pair.value().unwrap_or_default().to_owned()))
            })?;
            let reset = self.strings("AlterTopicConfig.reset", body.reset())?;
            return Ok(Request::AlterTopicConfig { name: body.name().to_owned(), set, reset });
        }
        if let Some(body) = root.body_as_reassign_request() {
            let replicas = self.list("Reassign.replicas", body.replicas(), |_, n| Ok(n))?;
            return Ok(Request::Reassign {
                topic: body.topic().to_owned(),
                partition: body.partition(),
                replicas: (!body.cancel()).then_some(replicas),
            });
        }
        if root.body_as_list_reassignments_request().is_some() {
            return Ok(Request::ListReassignments);
        }
        if let Some(body) = root.body_as_elect_leader_request() {
            return Ok(Request::ElectLeader { topic: body.topic().to_owned(), partition: body.partition() });
        }
        if let Some(body) = root.body_as_drain_request() {
            return Ok(Request::Drain { node: body.node(), draining: body.draining() });
        }
        Err(unknown)
    }

    fn produce_request(&mut self, body: fb::ProduceRequest<'_>) -> Result<Request, DecodeError> {
        let acks = match body.acks() {
            fb::Acks::None => Acks::None,
            fb::Acks::Leader => Acks::Leader,
            fb::Acks::Durable => Acks::Durable,
            other => return Err(self.unknown_enum("Produce.acks", other.0.into())),
        };
        // Lists are charged and bounded in the second pass; this one only adds u32s the
        // verifier already bounds-checked, in a u64 that cannot overflow.
        let declared_bytes: u64 = body
            .partitions()
            .iter()
            .flat_map(|partitions| partitions.iter())
            .flat_map(|partition| partition.batch_lengths().into_iter().flat_map(|lengths| lengths.iter()))
            .map(u64::from)
            .sum();
        self.check_payload(declared_bytes)?;
        let mut position = 0;
        let partitions = self.list("Produce.partitions", body.partitions(), |decoder, partition| {
            Ok(ProducePartition {
                topic: partition.topic().to_owned(),
                partition: partition.partition(),
                batches: decoder.chunks("ProducePartition.batch_lengths", partition.batch_lengths(), &mut position)?,
            })
        })?;
        debug_assert_eq!(position, self.payload.len());
        Ok(Request::Produce { acks, timeout_ms: body.timeout_ms(), partitions })
    }

    fn topic_partitions(
        &mut self,
        field: &'static str,
        vector: Option<Vector<'_, ForwardsUOffset<fb::TopicPartition<'_>>>>,
    ) -> Result<Vec<TopicPartition>, DecodeError> {
        self.list(field, vector, |_, partition| {
            Ok(TopicPartition { topic: partition.topic().to_owned(), partition: partition.partition() })
        })
    }

    fn response(&mut self, root: fb::ResponseHeader<'_>) -> Result<Response, DecodeError> {
        let kind = root.body_type();
        let unknown =
            DecodeError::UnknownKind { direction: "response", kind: kind.0, correlation_id: self.correlation_id };
        if kind == fb::ResponseBody::NONE || kind.0 > fb::ResponseBody::ENUM_MAX {
            return Err(unknown);
        }
        // Only Fetch and ReplicaFetch responses carry a payload.
        if kind != fb::ResponseBody::FetchResponse && kind != fb::ResponseBody::ReplicaFetchResponse {
            self.check_payload(0)?;
        }
        if let Some(body) = root.body_as_status_response() {
            return Ok(Response::Status {
                error: self.error_code("Status.error", body.error())?,
                message: body.message().unwrap_or_default().to_owned(),
            });
        }
        if let Some(body) = root.body_as_metadata_response() {
            let shards = self.list("Metadata.shards", body.shards(), |_, shard| {
                Ok(ShardInfo { shard: shard.shard(), address: shard.address().to_owned() })
            })?;
            let topics = self.list("Metadata.topics", body.topics(), |decoder, topic| {
                let partitions =
                    decoder.list("TopicMetadata.partitions", topic.partitions(), |decoder, partition| {
                        Ok(PartitionMetadata {
                            partition: partition.partition(),
                            shard: partition.shard(),
                            log_start_offset: partition.log_start_offset(),
                            log_end_offset: partition.log_end_offset(),
                            size_bytes: partition.size_bytes(),
                            leader_address: partition.leader_address().map(str::to_owned),
                            leader_node: partition.leader_node(),
                            leader_epoch: partition.leader_epoch(),
                            replica_nodes: decoder.list(
                                "PartitionMetadata.replica_nodes",
                                partition.replica_nodes(),
                                |_, n| Ok(n),
                            )?,
                            isr_nodes: decoder
                                .list("PartitionMetadata.isr_nodes", partition.isr_nodes(), |_, n| Ok(n))?,
                            high_watermark: partition.high_watermark(),
                        })
                    })?;
                Ok(TopicMetadata {
                    name: topic.name().to_owned(),
                    error: decoder.error_code("TopicMetadata.error", topic.error())?,
                    id: topic.id(),
                    retention_ms: topic.retention_ms(),
                    retention_bytes: topic.retention_bytes(),
                    segment_bytes: topic.segment_bytes(),
                    durability: topic.durability().unwrap_or_default().to_owned(),
                    partitions,
                })
            })?;
            let coordinator_address = body.coordinator_address().map(str::to_owned);
            return Ok(Response::Metadata { shards, topics, coordinator_address });
        }
        if let Some(body) = root.body_as_produce_response() {
            let partitions = self.list("Produce.partitions", body.partitions(), |decoder, partition| {
                let base_offsets =
                    decoder.list("ProducePartitionResult.base_offsets", partition.base_offsets(), |_, offset| {
                        Ok(offset)
                    })?;
                Ok(ProducePartitionResult {
                    topic: partition.topic().to_owned(),
                    partition: partition.partition(),
                    error: decoder.error_code("ProducePartitionResult.error", partition.error())?,
                    message: partition.message().unwrap_or_default().to_owned(),
                    base_offsets,
                    log_end_offset: partition.log_end_offset(),
                })
            })?;
            return Ok(Response::Produce { partitions });
        }
        if let Some(body) = root.body_as_fetch_response() {
            return self.fetch_response(body);
        }
        if let Some(body) = root.body_as_replica_fetch_response() {
            return self.replica_fetch_response(body);
        }
        if let Some(body) = root.body_as_list_offsets_response() {
            let partitions = self.list("ListOffsets.partitions", body.partitions(), |decoder, partition| {
                Ok(ListOffsetsResult {
                    topic: partition.topic().to_owned(),
                    partition: partition.partition(),
                    error: decoder.error_code("ListOffsetsResult.error", partition.error())?,
                    offset: partition.offset(),
                })
            })?;
            return Ok(Response::ListOffsets { partitions });
        }
        if let Some(body) = root.body_as_offset_commit_response() {
            let partitions = self.list("OffsetCommit.partitions", body.partitions(), |decoder, partition| {
                Ok(PartitionError {
                    topic: partition.topic().to_owned(),
                    partition: partition.partition(),
                    error: decoder.error_code("PartitionError.error", partition.error())?,
                })
            })?;
            return Ok(Response::OffsetCommit { partitions });
        }
        if let Some(body) = root.body_as_offset_fetch_response() {
            let offsets = self.list("OffsetFetch.offsets", body.offsets(), |decoder, offset| {
                Ok(FetchedOffset {
                    topic: offset.topic().to_owned(),
                    partition: offset.partition(),
                    offset: offset.offset(),
                    metadata: offset.metadata().unwrap_or_default().to_owned(),
                    error: decoder.error_code("FetchedOffset.error", offset.error())?,
                })
            })?;
            return Ok(Response::OffsetFetch { error: self.error_code("OffsetFetch.error", body.error())?, offsets });
        }
        if let Some(body) = root.body_as_join_group_response() {
            return Ok(Response::JoinGroup {
                error: self.error_code("JoinGroup.error", body.error())?,
                generation_id: body.generation_id(),
                member_id: body.member_id().unwrap_or_default().to_owned(),
                assignment: self.topic_partitions("JoinGroup.assignment", body.assignment())?,
            });
        }
        if let Some(body) = root.body_as_list_groups_response() {
            let groups = self.list("ListGroups.groups", body.groups(), |_, g| {
                Ok(GroupListing {
                    group: g.group().to_owned(),
                    protocol_type: g.protocol_type().unwrap_or_default().to_owned(),
                    state: g.state().unwrap_or_default().to_owned(),
                })
            })?;
            return Ok(Response::ListGroups { groups });
        }
        if let Some(body) = root.body_as_describe_group_response() {
            let members = self.list("DescribeGroup.members", body.members(), |decoder, m| {
                Ok(GroupMember {
                    member_id: m.member_id().to_owned(),
                    group_instance_id: m.group_instance_id().unwrap_or_default().to_owned(),
                    client_id: m.client_id().unwrap_or_default().to_owned(),
                    client_host: m.client_host().unwrap_or_default().to_owned(),
                    assignment: decoder.topic_partitions("GroupMember.assignment", m.assignment())?,
                })
            })?;
            return Ok(Response::DescribeGroup(Box::new(DescribedGroup {
                error: self.error_code("DescribeGroup.error", body.error())?,
                group: body.group().to_owned(),
                state: body.state().unwrap_or_default().to_owned(),
                protocol_type: body.protocol_type().unwrap_or_default().to_owned(),
                protocol: body.protocol().unwrap_or_default().to_owned(),
                generation_id: body.generation_id(),
                members,
            })));
        }
        if let Some(body) = root.body_as_topic_config_response() {
            let configs = self.list("TopicConfig.configs", body.configs(), |_, c| {
                Ok(TopicConfigEntry {
                    name: c.name().to_owned(),
                    value: c.value().unwrap_or_default().to_owned(),
                    is_default: c.is_default(),
                    applied: c.applied(),
                })
            })?;
            return Ok(Response::TopicConfig {
                error: self.error_code("TopicConfig.error", body.error())?,
                message: body.message().unwrap_or_default().to_owned(),
                configs,
            });
        }
        if let Some(body) = root.body_as_reassignments_response() {
            let reassignments = self.list("Reassignments.reassignments", body.reassignments(), |decoder, r| {
                Ok(ReassignmentEntry {
                    topic: r.topic().to_owned(),
                    partition: r.partition(),
                    replicas: decoder.list("ReassignmentEntry.replicas", r.replicas(), |_, n| Ok(n))?,
                    adding: decoder.list("ReassignmentEntry.adding", r.adding(), |_, n| Ok(n))?,
                    removing: decoder.list("ReassignmentEntry.removing", r.removing(), |_, n| Ok(n))?,
                })
            })?;
            return Ok(Response::Reassignments {
                error: self.error_code("Reassignments.error", body.error())?,
                message: body.message().unwrap_or_default().to_owned(),
                reassignments,
            });
        }
        Err(unknown)
    }

    fn fetch_response(&mut self, body: fb::FetchResponse<'_>) -> Result<Response, DecodeError> {
        let declared_bytes: u64 = body
            .partitions()
            .iter()
            .flat_map(|partitions| partitions.iter())
            .flat_map(|partition| partition.record_chunk_lengths().into_iter().flat_map(|lengths| lengths.iter()))
            .map(u64::from)
            .sum();
        self.check_payload(declared_bytes)?;
        let mut position = 0;
        let partitions = self.list("Fetch.partitions", body.partitions(), |decoder, partition| {
            Ok(FetchPartitionResult {
                topic: partition.topic().to_owned(),
                partition: partition.partition(),
                error: decoder.error_code("FetchPartitionResult.error", partition.error())?,
                log_start_offset: partition.log_start_offset(),
                log_end_offset: partition.log_end_offset(),
                next_offset: partition.next_offset(),
                records: decoder.chunks(
                    "FetchPartitionResult.record_chunk_lengths",
                    partition.record_chunk_lengths(),
                    &mut position,
                )?,
            })
        })?;
        debug_assert_eq!(position, self.payload.len());
        Ok(Response::Fetch { partitions })
    }
}

impl Decoder {
    fn replica_fetch_response(&mut self, body: fb::ReplicaFetchResponse<'_>) -> Result<Response, DecodeError> {
        let declared_bytes: u64 = body
            .partitions()
            .iter()
            .flat_map(|partitions| partitions.iter())
            .flat_map(|partition| partition.record_chunk_lengths().into_iter().flat_map(|lengths| lengths.iter()))
            .map(u64::from)
            .sum();
        self.check_payload(declared_bytes)?;
        let mut position = 0;
        let partitions = self.list("ReplicaFetch.partitions", body.partitions(), |decoder, partition| {
            let diverging = match (partition.diverging_epoch(), partition.diverging_end_offset()) {
                (Some(epoch), Some(end)) => Some((epoch, end)),
                _ => None,
            };
            Ok(ReplicaFetchResult {
                topic: partition.topic().to_owned(),
                partition: partition.partition(),
                error: decoder.error_code("ReplicaFetchResult.error", partition.error())?,
                high_watermark: partition.high_watermark(),
                log_start_offset: partition.log_start_offset(),
                log_end_offset: partition.log_end_offset(),
                diverging,
                records: decoder.chunks(
                    "ReplicaFetchResult.record_chunk_lengths",
                    partition.record_chunk_lengths(),
                    &mut position,
                )?,
            })
        })?;
        debug_assert_eq!(position, self.payload.len());
        Ok(Response::ReplicaFetch { partitions })
    }
}

/// Headers no encoder here would write, built with the generated code directly.
#[cfg(test)]
mod tests {
    use super::*;

    fn frame(correlation_id: u32, header: &[u8], payload: &[u8]) -> Bytes {
        let mut frame = Vec::new();
        frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        frame.extend_from_slice(&correlation_id.to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
        frame.extend_from_slice(header);
        frame.extend_from_slice(payload);
        Bytes::from(frame)
    }

    fn request_frame(
        kind: fb::RequestBody,
        payload: &[u8],
        body: impl FnOnce(&mut Builder<'static>) -> Option<WIPOffset<flatbuffers::UnionWIPOffset>>,
    ) -> Bytes {
        let mut fbb = Builder::new();
        let body = body(&mut fbb);
        let root = fb::RequestHeader::create(&mut fbb, &fb::RequestHeaderArgs { body_type: kind, body });
        fbb.finish_minimal(root);
        frame(11, fbb.finished_data(), payload)
    }

    fn response_frame(
        kind: fb::ResponseBody,
        body: impl FnOnce(&mut Builder<'static>) -> Option<WIPOffset<flatbuffers::UnionWIPOffset>>,
    ) -> Bytes {
        let mut fbb = Builder::new();
        let body = body(&mut fbb);
        let root = fb::ResponseHeader::create(&mut fbb, &fb::ResponseHeaderArgs { body_type: kind, body });
        fbb.finish_minimal(root);
        frame(12, fbb.finished_data(), &[])
    }

    fn produce(
        fbb: &mut Builder<'static>,
        acks: fb::Acks,
        lengths: &[&[u32]],
    ) -> WIPOffset<flatbuffers::UnionWIPOffset> {
        let mut partitions = Vec::new();
        for (i, lengths) in lengths.iter().enumerate() {
            let topic = fbb.create_string("t");
            let batch_lengths = fbb.create_vector(lengths);
            let args = fb::ProducePartitionArgs {
                topic: Some(topic),
                partition: i as u32,
                batch_lengths: Some(batch_lengths),
            };
            partitions.push(fb::ProducePartition::create(fbb, &args));
        }
        let partitions = fbb.create_vector(&partitions);
        let args = fb::ProduceRequestArgs { acks, timeout_ms: 1, partitions: Some(partitions) };
        fb::ProduceRequest::create(fbb, &args).as_union_value()
    }

    #[test]
    fn unknown_enum_values_are_rejected() {
        let frame = response_frame(fb::ResponseBody::StatusResponse, |fbb| {
            let args = fb::StatusResponseArgs { error: fb::ErrorCode(fb::ErrorCode::ENUM_MAX + 1), message: None };
            Some(fb::StatusResponse::create(fbb, &args).as_union_value())
        });
        let error = decode_response(frame).unwrap_err();
        let value = fb::ErrorCode::ENUM_MAX + 1;
        assert_eq!(error, DecodeError::UnknownEnumValue { field: "Status.error", value, correlation_id: 12 });
        assert_eq!(error.error_code(), ErrorCode::MalformedRequest);

        let frame = request_frame(fb::RequestBody::ProduceRequest, &[], |fbb| Some(produce(fbb, fb::Acks(3), &[])));
        let error = decode_request(frame).unwrap_err();
        assert_eq!(error, DecodeError::UnknownEnumValue { field: "Produce.acks", value: 3, correlation_id: 11 });

        let frame = request_frame(fb::RequestBody::ListOffsetsRequest, &[], |fbb| {
            let topic = fbb.create_string("t");
            let args = fb::ListOffsetsPartitionArgs {
                topic: Some(topic),
                partition: 0,
                spec: fb::OffsetSpecKind(3),
                timestamp_ms: 0,
            };
            let partition = fb::ListOffsetsPartition::create(fbb, &args);
            let partitions = fbb.create_vector(&[partition]);
            let args = fb::ListOffsetsRequestArgs { partitions: Some(partitions) };
            Some(fb::ListOffsetsRequest::create(fbb, &args).as_union_value())
        });
        let error = decode_request(frame).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownEnumValue { field: "ListOffsetsPartition.spec", value: 3, .. }));

        let frame = request_frame(fb::RequestBody::JoinGroupRequest, &[], |fbb| {
            let group = fbb.create_string("g");
            let args = fb::JoinGroupRequestArgs {
                group: Some(group),
                member_id: None,
                topics: None,
                session_timeout_ms: 1,
                assignor: fb::Assignor(2),
            };
            Some(fb::JoinGroupRequest::create(fbb, &args).as_union_value())
        });
        let error = decode_request(frame).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownEnumValue { field: "JoinGroup.assignor", value: 2, .. }));

        // A nested error code too.
        let frame = response_frame(fb::ResponseBody::OffsetCommitResponse, |fbb| {
            let topic = fbb.create_string("t");
            let args = fb::PartitionErrorArgs { topic: Some(topic), partition: 0, error: fb::ErrorCode(u16::MAX) };
            let partition = fb::PartitionError::create(fbb, &args);
            let partitions = fbb.create_vector(&[partition]);
            Some(
                fb::OffsetCommitResponse::create(fbb, &fb::OffsetCommitResponseArgs { partitions: Some(partitions) })
                    .as_union_value(),
            )
        });
        let error = decode_response(frame).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownEnumValue { field: "PartitionError.error", value: u16::MAX, .. }));
    }

    #[test]
    fn unknown_or_missing_kinds_are_rejected() {
        let frame = request_frame(fb::RequestBody::NONE, &[], |_| None);
        let error = decode_request(frame).unwrap_err();
        assert_eq!(error, DecodeError::UnknownKind { direction: "request", kind: 0, correlation_id: 11 });
        assert_eq!(error.error_code(), ErrorCode::UnsupportedRequest);

        // A kind from a newer schema, with a body this build cannot interpret.
        let frame = request_frame(fb::RequestBody(200), &[], |fbb| {
            let name = fbb.create_string("x");
            Some(fb::DeleteTopicRequest::create(fbb, &fb::DeleteTopicRequestArgs { name: Some(name) }).as_union_value())
        });
        let error = decode_request(frame).unwrap_err();
        assert_eq!(error, DecodeError::UnknownKind { direction: "request", kind: 200, correlation_id: 11 });

        let frame = response_frame(fb::ResponseBody(fb::ResponseBody::ENUM_MAX + 1), |fbb| {
            Some(fb::StatusResponse::create(fbb, &fb::StatusResponseArgs::default()).as_union_value())
        });
        let error = decode_response(frame).unwrap_err();
        assert!(matches!(error, DecodeError::UnknownKind { direction: "response", .. }), "{error}");

        // A kind without its body.
        let frame = request_frame(fb::RequestBody::DeleteTopicRequest, &[], |_| None);
        let error = decode_request(frame).unwrap_err();
        assert!(matches!(error, DecodeError::InvalidHeader { correlation_id: 11, .. }), "{error}");
    }

    #[test]
    fn missing_required_field_is_invalid() {
        // An empty table where a DeleteTopicRequest (whose name is required) is expected.
        let frame = request_frame(fb::RequestBody::DeleteTopicRequest, &[], |fbb| {
            let start = fbb.start_table();
            let table = fbb.end_table(start);
            Some(WIPOffset::new(table.value()))
        });
        let error = decode_request(frame).unwrap_err();
        let DecodeError::InvalidHeader { reason, .. } = &error else { panic!("{error}") };
        assert!(reason.contains("Missing required field `name`"), "{reason}");
        assert!(!reason.contains('\n'), "{reason}");
    }

    #[test]
    fn list_limits() {
        let too_long = vec![0u32; LIST_ITEMS_MAX + 1];
        let frame = request_frame(fb::RequestBody::ProduceRequest, &[], |fbb| {
            Some(produce(fbb, fb::Acks::Leader, &[&too_long]))
        });
        let error = decode_request(frame).unwrap_err();
        assert_eq!(
            error,
            DecodeError::TooManyItems {
                field: "ProducePartition.batch_lengths",
                count: LIST_ITEMS_MAX + 1,
                max: LIST_ITEMS_MAX,
                correlation_id: 11
            }
        );

        // Each list within its limit, all of them together over the frame's.
        let full = vec![0u32; LIST_ITEMS_MAX];
        let lists = vec![&full[..]; FRAME_ITEMS_MAX / LIST_ITEMS_MAX];
        let frame =
            request_frame(fb::RequestBody::ProduceRequest, &[], |fbb| Some(produce(fbb, fb::Acks::Leader, &lists)));
        let error = decode_request(frame).unwrap_err();
        assert!(matches!(error, DecodeError::TooManyItems { field: "the frame (all lists)", .. }), "{error}");

        // At the limit exactly: fine.
        let lists = vec![&full[..]; FRAME_ITEMS_MAX / LIST_ITEMS_MAX - 1];
        let frame =
            request_frame(fb::RequestBody::ProduceRequest, &[], |fbb| Some(produce(fbb, fb::Acks::Leader, &lists)));
        decode_request(frame).unwrap();
    }

    #[test]
    fn shared_objects_cannot_amplify_a_small_header() {
        // 100 000 references to one 1 KiB string: 400 KB of header, 100 MB once expanded.
        let frame = request_frame(fb::RequestBody::MetadataRequest, &[], |fbb| {
            let topic = fbb.create_string(&"x".repeat(1024));
            let topics = fbb.create_vector(&vec![topic; LIST_ITEMS_MAX]);
            let args = fb::MetadataRequestArgs { topics: Some(topics), with_offsets: false };
            Some(fb::MetadataRequest::create(fbb, &args).as_union_value())
        });
        let error = decode_request(frame).unwrap_err();
        let DecodeError::InvalidHeader { reason, .. } = &error else { panic!("{error}") };
        assert!(reason.contains("Apparent size too large"), "{reason}");

        // A little sharing (a topic name reused by each partition) is fine.
        let frame = request_frame(fb::RequestBody::MetadataRequest, &[], |fbb| {
            let topic = fbb.create_string("orders");
            let topics = fbb.create_vector(&vec![topic; 1000]);
            let args = fb::MetadataRequestArgs { topics: Some(topics), with_offsets: false };
            Some(fb::MetadataRequest::create(fbb, &args).as_union_value())
        });
        let (_, request) = decode_request(frame).unwrap();
        assert_eq!(request, Request::Metadata { topics: Some(vec!["orders".to_owned(); 1000]), with_offsets: false });
    }

    #[test]
    fn payload_must_match_declared_lengths() {
        let frame = request_frame(fb::RequestBody::ProduceRequest, b"abcdef", |fbb| {
            Some(produce(fbb, fb::Acks::Leader, &[&[1, 2], &[], &[3]]))
        });
        let (_, request) = decode_request(frame).unwrap();
        let Request::Produce { partitions, .. } = request else { panic!() };
        let batches: Vec<Vec<Bytes>> = partitions.into_iter().map(|p| p.batches).collect();
        assert_eq!(batches, [vec![Bytes::from("a"), Bytes::from("bc")], vec![], vec![Bytes::from("def")]]);

        // Lengths whose sum overflows u32 (but not u64) against a short payload.
        let frame = request_frame(fb::RequestBody::ProduceRequest, b"abc", |fbb| {
            Some(produce(fbb, fb::Acks::Leader, &[&[u32::MAX, u32::MAX, 5]]))
        });
        let error = decode_request(frame).unwrap_err();
        assert_eq!(
            error,
            DecodeError::PayloadLength {
                declared_bytes: 2 * u64::from(u32::MAX) + 5,
                payload_bytes: 3,
                correlation_id: 11
            }
        );
    }

    #[test]
    fn absent_lists_and_strings_read_as_empty() {
        let frame = request_frame(fb::RequestBody::OffsetCommitRequest, &[], |fbb| {
            let group = fbb.create_string("g");
            let args =
                fb::OffsetCommitRequestArgs { group: Some(group), generation_id: 1, member_id: None, offsets: None };
            Some(fb::OffsetCommitRequest::create(fbb, &args).as_union_value())
        });
        let (_, request) = decode_request(frame).unwrap();
        assert_eq!(
            request,
            Request::OffsetCommit { group: "g".into(), generation_id: 1, member_id: String::new(), offsets: vec![] }
        );

        let frame = request_frame(fb::RequestBody::CreateTopicRequest, &[], |fbb| {
            let name = fbb.create_string("t");
            let args = fb::CreateTopicRequestArgs { name: Some(name), partitions: 1, settings: None };
            Some(fb::CreateTopicRequest::create(fbb, &args).as_union_value())
        });
        let (_, request) = decode_request(frame).unwrap();
        assert_eq!(
            request,
            Request::CreateTopic { name: "t".into(), partitions: 1, settings: TopicSettings::default() }
        );
    }

    #[test]
    fn error_codes_match_the_schema() {
        for value in 0..=u16::MAX {
            match ErrorCode::from_u16(value) {
                Some(code) => {
                    assert_eq!(code as u16, value);
                    assert_eq!(fb::ErrorCode(value).variant_name(), Some(format!("{code:?}").as_str()));
                }
                None => assert_eq!(fb::ErrorCode(value).variant_name(), None, "{value}"),
            }
        }
    }
}
