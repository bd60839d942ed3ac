//! Order within a partition under pipelined produces (issue #10).
//!
//! Kafka's first guarantee: the batches a producer sends to one partition on one connection
//! are appended in the order they were sent, however many requests are in flight. These tests
//! pipeline many produce requests of mixed sizes on one connection to one partition — small
//! ones, then ones large enough to fill the appender's unwritten-bytes budget (so appends wait
//! for capacity) on a topic with 1 MiB segments (so appends roll segments) — then read the
//! partition back and check that every record's sequence number is exactly one more than the
//! one before it. They do so over the native protocol and raw Kafka frames, to the partition's
//! owning shard and through another shard (forwarding). Before the fix, requests with later
//! correlation ids regularly got lower offsets here (see the closing note of issue #10 for
//! counts); `ROUNDS` repetitions make a 1-in-3 failure all but certain to show.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use common::raw::Raw;
use common::{temp_dir, Server, ServerOptions, WAIT};
use engine::batch::{split_batches, BatchBuilder};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use protocol::codec::encode_request;
use protocol::messages::{Acks, ErrorCode, FetchPartition, ProducePartition, Request, Response, TopicSettings};

/// Rounds per test, each on a fresh topic: alternately to the owning shard and through the
/// other one.
const ROUNDS: usize = 12;
/// Small requests first: one batch of `SMALL_RECORDS` records of `SMALL_RECORD_BYTES` each.
const SMALL_REQUESTS: u64 = 200;
const SMALL_RECORDS: u64 = 10;
const SMALL_RECORD_BYTES: usize = 1000;
/// Then large ones: one record of `LARGE_RECORD_BYTES` each. 64 of them in flight are twice
/// the appender's unwritten-bytes budget (`engine::limits::UNWRITTEN_BYTES_MAX`, 16 MiB).
const LARGE_REQUESTS: u64 = 100;
const LARGE_RECORD_BYTES: usize = 500 * 1000;
/// Small segments, so the large requests roll one every two appends.
const SEGMENT_BYTES: u64 = 1 << 20;

/// The batch of one request: records numbered `first..first + count`, each keyed by its
/// sequence number (8 bytes, big-endian).
fn numbered_batch(first: u64, count: u64, value_bytes: usize) -> Bytes {
    let value = vec![b'v'; value_bytes];
    let mut builder = BatchBuilder::with_capacity(count as usize * (value_bytes + 32));
    for seq in first..first + count {
        builder.push(Some(&seq.to_be_bytes()), Some(&value), 1_700_000_000_000 + seq as i64, &[]);
    }
    builder.build().unwrap()
}

/// Every request's batch, in send order, and the number of records they hold.
fn workload() -> (Vec<Bytes>, u64) {
    let mut batches = Vec::new();
    let mut next = 0;
    for _ in 0..SMALL_REQUESTS {
        batches.push(numbered_batch(next, SMALL_RECORDS, SMALL_RECORD_BYTES));
        next += SMALL_RECORDS;
    }
    for _ in 0..LARGE_REQUESTS {
        batches.push(numbered_batch(next, 1, LARGE_RECORD_BYTES));
        next += 1;
    }
    (batches, next)
}

fn start() -> (Server, tempfile::TempDir) {
    let data = temp_dir("shardlog-produce-order-");
    let server = Server::start_with(data.path(), ServerOptions { kafka: true, ..ServerOptions::default() });
    (server, data)
}

/// Creates a one-partition topic with small segments; returns the shard that owns it.
fn create_topic(server: &Server, topic: &str) -> usize {
    let mut admin = Raw::connect(&server.addr);
    let settings = TopicSettings { segment_bytes: Some(SEGMENT_BYTES), ..TopicSettings::default() };
    match admin.call(Request::CreateTopic { name: topic.into(), partitions: 1, settings }) {
        Response::Status { error: ErrorCode::None, .. } => {}
        other => panic!("creating {topic}: {other:?}"),
    }
    match admin.call(Request::Metadata { topics: Some(vec![topic.into()]), with_offsets: false }) {
        Response::Metadata { topics, .. } => topics[0].partitions[0].shard as usize,
        other => panic!("{other:?}"),
    }
}

/// Reads partition 0 of `topic` from the start and returns every record's sequence number in
/// offset order, checking that offsets are contiguous.
fn read_back(server: &Server, topic: &str) -> Vec<u64> {
    let mut client = Raw::connect(&server.addr);
    let mut seqs = Vec::new();
    let mut offset = 0u64;
    loop {
        let request = Request::Fetch {
            wait_ms_max: 0,
            bytes_min: 0,
            bytes_max: 8 << 20,
            partitions: vec![FetchPartition { topic: topic.into(), partition: 0, offset, bytes_max: 8 << 20 }],
        };
        let result = match client.call(request) {
            Response::Fetch { mut partitions } => partitions.remove(0),
            other => panic!("{other:?}"),
        };
        assert_eq!(result.error, ErrorCode::None, "{result:?}");
        if result.records.is_empty() {
            assert_eq!(offset, result.log_end_offset, "an empty read before the log end");
            return seqs;
        }
        let mut all = BytesMut::new();
        for chunk in &result.records {
            all.extend_from_slice(chunk);
        }
        for batch in split_batches(all.freeze()) {
            let batch = batch.unwrap();
            for record in batch.records() {
                let record = record.unwrap();
                assert_eq!(record.offset as u64, offset, "offsets are contiguous");
                let key: [u8; 8] = record.key.as_deref().unwrap().try_into().unwrap();
                seqs.push(u64::from_be_bytes(key));
                offset += 1;
            }
        }
    }
}

/// The stored sequence numbers are exactly `0..count`, in order; otherwise a description of
/// the first inversions.
fn check_order(seqs: &[u64], count: u64) -> Result<(), String> {
    let inversions: Vec<String> = seqs
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] != w[0] + 1)
        .take(5)
        .map(|(i, w)| format!("offset {}: seq {} after seq {}", i + 1, w[1], w[0]))
        .collect();
    if !inversions.is_empty() {
        return Err(format!("records out of order: {}", inversions.join("; ")));
    }
    if seqs.len() as u64 != count || seqs.first().is_some_and(|&s| s != 0) {
        return Err(format!("{} records stored, {count} sent", seqs.len()));
    }
    Ok(())
}

/// Writes every frame on one connection without waiting (the broker bounds what it takes in
/// flight; TCP pushes back), while this thread reads the responses and hands each to `check`.
fn pipeline(addr: &str, frames: Vec<Vec<u8>>, mut check: impl FnMut(usize, Bytes)) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let count = frames.len();
    let sender = std::thread::spawn(move || {
        for frame in frames {
            writer.write_all(&frame).unwrap();
        }
    });
    let mut reader = stream;
    for i in 0..count {
        let mut prefix = [0u8; 4];
        reader.read_exact(&mut prefix).unwrap_or_else(|e| panic!("response {i} of {count}: {e}"));
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        reader.read_exact(&mut body).unwrap();
        check(i, Bytes::from(body));
    }
    sender.join().unwrap();
}

/// Which shard's address a round connects to: the owner's own address on even rounds, the
/// other shard's on odd ones (so the produce is forwarded to the owner).
fn target(round: usize, owner: usize, shards: usize) -> usize {
    if round.is_multiple_of(2) {
        owner
    } else {
        (owner + 1) % shards
    }
}

#[test]
fn native_pipelined_produces_to_one_partition_are_appended_in_order() {
    let (server, _data) = start();
    let (batches, count) = workload();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let topic = format!("order-native-{round}");
        let owner = create_topic(&server, &topic);
        let via = target(round, owner, server.shard_addrs.len());
        let frames: Vec<Vec<u8>> = batches
            .iter()
            .enumerate()
            .map(|(i, batch)| {
                let partition = ProducePartition { topic: topic.clone(), partition: 0, batches: vec![batch.clone()] };
                let request = Request::Produce { acks: Acks::Durable, timeout_ms: 30_000, partitions: vec![partition] };
                encode_request(i as u32 + 1, &request).concat()
            })
            .collect();
        pipeline(&server.shard_addrs[via], frames, |i, body| {
            let (id, response) = protocol::codec::decode_response(body).unwrap();
            assert_eq!(id, i as u32 + 1, "responses come back in request order");
            match response {
                Response::Produce { partitions } => assert_eq!(partitions[0].error, ErrorCode::None, "{partitions:?}"),
                other => panic!("{other:?}"),
            }
        });
        if let Err(e) = check_order(&read_back(&server, &topic), count) {
            failures.push(format!("round {round} (owner shard {owner}, via shard {via}): {e}"));
        }
    }
    assert!(failures.is_empty(), "{} of {ROUNDS} rounds out of order:\n{}", failures.len(), failures.join("\n"));
}

/// A Kafka Produce v9 frame (size prefix included) for partition 0 of `topic`.
fn kafka_produce_frame(correlation_id: i32, topic: &str, batch: Bytes) -> Vec<u8> {
    let version = 9;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]),
    ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("produce-order-test")));
    let mut body = BytesMut::new();
    header.encode(&mut body, ApiKey::Produce.request_header_version(version)).unwrap();
    request.encode(&mut body, version).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn kafka_pipelined_produces_to_one_partition_are_appended_in_order() {
    let (server, _data) = start();
    let (batches, count) = workload();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let topic = format!("order-kafka-{round}");
        let owner = create_topic(&server, &topic);
        let via = target(round, owner, server.kafka_shard_addrs.len());
        let frames: Vec<Vec<u8>> = batches
            .iter()
            .enumerate()
            .map(|(i, batch)| kafka_produce_frame(i as i32 + 1, &topic, batch.clone()))
            .collect();
        let mut base_offsets = Vec::new();
        pipeline(&server.kafka_shard_addrs[via], frames, |i, mut body| {
            let header = ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(9)).unwrap();
            assert_eq!(header.correlation_id, i as i32 + 1, "responses come back in request order");
            let response = ProduceResponse::decode(&mut body, 9).unwrap();
            let p = &response.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "{p:?}");
            base_offsets.push(p.base_offset);
        });
        let stored = read_back(&server, &topic);
        let acked_in_order = base_offsets.windows(2).all(|w| w[0] < w[1]);
        match check_order(&stored, count) {
            Ok(()) => assert!(acked_in_order, "stored in order but acknowledged base offsets are not"),
            Err(e) => failures.push(format!("round {round} (owner shard {owner}, via Kafka broker {via}): {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {ROUNDS} rounds out of order:\n{}", failures.len(), failures.join("\n"));
}
