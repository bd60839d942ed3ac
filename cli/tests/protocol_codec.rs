//! The native protocol's codec and framing, through the public API: every message round trips,
//! batches stay zero-copy, and malformed input of any kind yields an error, never a panic.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use engine::batch::BatchBuilder;
use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use proptest::prelude::*;
use protocol::codec::{
    decode_request, decode_response, encode_request, encode_response, peek_correlation_id, DecodeError, FIXED_BYTES,
};
use protocol::frame::{read_frame, write_chunks, FrameError, FRAME_BYTES_MAX, PROTOCOL_VERSION};
use protocol::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn batch(records: usize, seed: u8) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let value = vec![seed.wrapping_add(i as u8); 10 + i];
        builder.push(Some(format!("key-{i}").as_bytes()), Some(&value), 1_700_000_000_000 + i as i64, &[]);
    }
    builder.build().unwrap()
}

fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|chunk| chunk.iter().copied()).collect()
}

/// Concatenates an encoded frame and strips its length prefix, checking it on the way.
fn body(chunks: &[Bytes]) -> Bytes {
    let all = concat(chunks);
    let prefix = u32::from_be_bytes(all[..4].try_into().unwrap());
    assert_eq!(prefix as usize, all.len() - 4, "length prefix");
    Bytes::from(all).slice(4..)
}

fn request_body(correlation_id: u32, request: &Request) -> Bytes {
    body(&encode_request(correlation_id, request))
}

fn response_body(correlation_id: u32, response: &Response) -> Bytes {
    body(&encode_response(correlation_id, response))
}

fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{:04x}  {}\n", line * 16, hex.join(" ")));
    }
    out
}

fn sample_requests() -> Vec<Request> {
    let mut all = base_requests();
    all.extend(ops_requests());
    all
}

/// The operations requests (issue #13), after the others so their indexes stay.
fn ops_requests() -> Vec<Request> {
    vec![
        Request::ListGroups,
        Request::DescribeGroup { group: "g".into() },
        Request::DeleteGroup { group: "g".into() },
        Request::DescribeTopicConfig { name: "orders".into() },
        Request::AlterTopicConfig {
            name: "orders".into(),
            set: vec![("retention.ms".into(), "1000".into()), ("compression.type".into(), String::new())],
            reset: vec!["flush.ms".into()],
        },
        Request::Reassign { topic: "orders".into(), partition: 3, replicas: Some(vec![2, 3, 4]) },
        Request::Reassign { topic: "orders".into(), partition: 3, replicas: None },
        Request::ListReassignments,
        Request::ElectLeader { topic: "orders".into(), partition: 1 },
        Request::Drain { node: 2, draining: true },
    ]
}

fn base_requests() -> Vec<Request> {
    vec![
        Request::CreateTopic { name: "orders".into(), partitions: 8, settings: TopicSettings::default() },
        Request::CreateTopic {
            name: "zeroes".into(),
            partitions: 0,
            settings: TopicSettings {
                retention_ms: Some(0),
                retention_bytes: Some(0),
                segment_bytes: Some(0),
                segment_ms: Some(0),
                durability: Some(String::new()),
                replication_factor: Some(0),
                min_insync_replicas: Some(0),
                unclean_leader_election: Some(false),
            },
        },
        Request::CreateTopic {
            name: "ünïcode-topic".into(),
            partitions: u32::MAX,
            settings: TopicSettings {
                retention_ms: Some(u64::MAX),
                retention_bytes: None,
                segment_bytes: Some(128 << 20),
                segment_ms: None,
                durability: Some("interval:50".into()),
                replication_factor: Some(3),
                min_insync_replicas: None,
                unclean_leader_election: Some(true),
            },
        },
        Request::DeleteTopic { name: "orders".into() },
        Request::DeleteTopic { name: String::new() },
        Request::CreatePartitions { name: "orders".into(), total: 16 },
        Request::Metadata { topics: None, with_offsets: false },
        Request::Metadata { topics: Some(vec![]), with_offsets: true },
        Request::Metadata { topics: Some(vec!["a".into(), String::new(), "c".into()]), with_offsets: true },
        Request::Produce { acks: Acks::None, timeout_ms: 0, partitions: vec![] },
        Request::Produce {
            acks: Acks::Leader,
            timeout_ms: 30_000,
            partitions: vec![
                ProducePartition { topic: "orders".into(), partition: 3, batches: vec![batch(1, 1), batch(5, 2)] },
                ProducePartition { topic: "empty".into(), partition: 0, batches: vec![] },
                ProducePartition { topic: "orders".into(), partition: 4, batches: vec![batch(2, 3)] },
            ],
        },
        Request::Produce {
            acks: Acks::Durable,
            timeout_ms: u32::MAX,
            partitions: vec![ProducePartition {
                topic: "opaque".into(),
                partition: 1,
                // The codec does not look inside batches: even empty or garbage ones travel.
                batches: vec![Bytes::new(), Bytes::from_static(b"not a batch"), Bytes::new()],
            }],
        },
        Request::Fetch { wait_ms_max: 0, bytes_min: 0, bytes_max: 0, partitions: vec![] },
        Request::Fetch {
            wait_ms_max: 500,
            bytes_min: 1,
            bytes_max: 1 << 20,
            partitions: vec![
                FetchPartition { topic: "orders".into(), partition: 0, offset: 42, bytes_max: 65536 },
                FetchPartition { topic: "orders".into(), partition: 1, offset: u64::MAX, bytes_max: u32::MAX },
            ],
        },
        Request::ListOffsets {
            partitions: vec![
                ListOffsetsPartition { topic: "t".into(), partition: 0, spec: OffsetSpec::Earliest },
                ListOffsetsPartition { topic: "t".into(), partition: 1, spec: OffsetSpec::Latest },
                ListOffsetsPartition { topic: "t".into(), partition: 2, spec: OffsetSpec::Timestamp(0) },
                ListOffsetsPartition { topic: "t".into(), partition: 3, spec: OffsetSpec::Timestamp(-1) },
                ListOffsetsPartition { topic: "t".into(), partition: 4, spec: OffsetSpec::Timestamp(i64::MAX) },
            ],
        },
        Request::OffsetCommit {
            group: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            offsets: vec![
                CommitOffset { topic: "t".into(), partition: 0, offset: 10, metadata: String::new() },
                CommitOffset { topic: "t".into(), partition: 1, offset: 0, metadata: "checkpoint 7".into() },
            ],
        },
        Request::OffsetFetch { group: "g".into(), partitions: None },
        Request::OffsetFetch { group: "g".into(), partitions: Some(vec![]) },
        Request::OffsetFetch {
            group: "g".into(),
            partitions: Some(vec![TopicPartition { topic: "t".into(), partition: 9 }]),
        },
        Request::JoinGroup {
            group: "g".into(),
            member_id: String::new(),
            topics: vec!["t".into(), "u".into()],
            session_timeout_ms: 10_000,
            assignor: Assignor::Range,
        },
        Request::JoinGroup {
            group: "g".into(),
            member_id: "member-1".into(),
            topics: vec![],
            session_timeout_ms: 0,
            assignor: Assignor::RoundRobin,
        },
        Request::Heartbeat { group: "g".into(), generation_id: 3, member_id: "member-1".into() },
        Request::Heartbeat { group: "g".into(), generation_id: i32::MIN, member_id: String::new() },
        Request::LeaveGroup { group: "g".into(), member_id: "member-1".into() },
        Request::ReplicaFetch { replica_node: 0, wait_ms_max: 0, bytes_max: 0, partitions: vec![] },
        Request::ReplicaFetch {
            replica_node: 2,
            wait_ms_max: 500,
            bytes_max: 16 << 20,
            partitions: vec![
                ReplicaFetchPartition {
                    topic: "orders".into(),
                    partition: 3,
                    leader_epoch: 7,
                    fetch_offset: 100,
                    durable_offset: 90,
                    last_fetched_epoch: Some(6),
                    bytes_max: 1 << 20,
                    log_start_offset: 40,
                },
                ReplicaFetchPartition {
                    topic: String::new(),
                    partition: u32::MAX,
                    leader_epoch: 0,
                    fetch_offset: u64::MAX,
                    durable_offset: 0,
                    last_fetched_epoch: None,
                    bytes_max: 0,
                    log_start_offset: 0,
                },
            ],
        },
    ]
}

fn sample_responses() -> Vec<Response> {
    let mut all = base_responses();
    all.extend(ops_responses());
    all
}

/// The operations responses (issue #13), after the others so their indexes stay.
fn ops_responses() -> Vec<Response> {
    vec![
        Response::Reassignments {
            error: ErrorCode::None,
            message: String::new(),
            reassignments: vec![messages::ReassignmentEntry {
                topic: "orders".into(),
                partition: 3,
                replicas: vec![1, 2, 3, 4],
                adding: vec![4],
                removing: vec![1],
            }],
        },
        Response::Reassignments {
            error: ErrorCode::ReassignmentRefused,
            message: "not a cluster".into(),
            reassignments: Vec::new(),
        },
        Response::ListGroups {
            groups: vec![messages::GroupListing {
                group: "g".into(),
                protocol_type: "consumer".into(),
                state: "Stable".into(),
            }],
        },
        Response::DescribeGroup(Box::new(messages::DescribedGroup {
            error: ErrorCode::None,
            group: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            generation_id: 3,
            members: vec![messages::GroupMember {
                member_id: "c-1".into(),
                group_instance_id: String::new(),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                assignment: vec![TopicPartition { topic: "orders".into(), partition: 2 }],
            }],
        })),
        Response::TopicConfig {
            error: ErrorCode::None,
            message: String::new(),
            configs: vec![messages::TopicConfigEntry {
                name: "retention.ms".into(),
                value: "-1".into(),
                is_default: false,
                applied: true,
            }],
        },
        Response::status(ErrorCode::GroupNotEmpty, "g"),
    ]
}

fn base_responses() -> Vec<Response> {
    vec![
        Response::ok(),
        Response::status(ErrorCode::TopicAlreadyExists, "topic orders already exists"),
        Response::status(ErrorCode::Internal, ""),
        Response::Metadata { shards: vec![], topics: vec![], coordinator_address: None },
        Response::Metadata {
            coordinator_address: Some("127.0.2.1:9292".into()),
            shards: vec![
                ShardInfo { shard: 0, address: "127.0.0.1:9092".into() },
                ShardInfo { shard: 1, address: "127.0.0.1:9093".into() },
            ],
            topics: vec![
                TopicMetadata {
                    name: "orders".into(),
                    error: ErrorCode::None,
                    id: 7,
                    retention_ms: Some(0),
                    retention_bytes: None,
                    segment_bytes: 128 << 20,
                    durability: "sync".into(),
                    partitions: vec![
                        PartitionMetadata {
                            log_start_offset: Some(0),
                            log_end_offset: Some(0),
                            size_bytes: Some(0),
                            ..PartitionMetadata::single(0)
                        },
                        PartitionMetadata {
                            shard: 1,
                            log_start_offset: Some(10),
                            log_end_offset: Some(u64::MAX),
                            ..PartitionMetadata::single(1)
                        },
                        PartitionMetadata::single(2),
                        PartitionMetadata {
                            shard: 1,
                            leader_address: Some("127.0.2.2:9301".into()),
                            leader_node: 2,
                            leader_epoch: 4,
                            replica_nodes: vec![2, 3, 1],
                            isr_nodes: vec![2, 1],
                            high_watermark: Some(42),
                            ..PartitionMetadata::single(3)
                        },
                    ],
                },
                TopicMetadata {
                    name: "missing".into(),
                    error: ErrorCode::UnknownTopicOrPartition,
                    id: 0,
                    retention_ms: None,
                    retention_bytes: Some(u64::MAX),
                    segment_bytes: 0,
                    durability: String::new(),
                    partitions: vec![],
                },
            ],
        },
        Response::Produce {
            partitions: vec![
                ProducePartitionResult {
                    topic: "orders".into(),
                    partition: 3,
                    error: ErrorCode::None,
                    message: String::new(),
                    base_offsets: vec![0, 1, 6],
                    log_end_offset: 8,
                },
                ProducePartitionResult {
                    topic: "orders".into(),
                    partition: 4,
                    error: ErrorCode::CorruptBatch,
                    message: "batch 0: CRC mismatch".into(),
                    base_offsets: vec![],
                    log_end_offset: 0,
                },
            ],
        },
        Response::Fetch { partitions: vec![] },
        Response::Fetch {
            partitions: vec![
                FetchPartitionResult {
                    topic: "orders".into(),
                    partition: 0,
                    error: ErrorCode::None,
                    log_start_offset: 0,
                    log_end_offset: 8,
                    next_offset: 8,
                    records: vec![batch(3, 9), batch(1, 4)],
                },
                FetchPartitionResult {
                    topic: "orders".into(),
                    partition: 1,
                    error: ErrorCode::OffsetOutOfRange,
                    log_start_offset: 5,
                    log_end_offset: 9,
                    next_offset: 100,
                    records: vec![],
                },
                FetchPartitionResult {
                    topic: "orders".into(),
                    partition: 2,
                    error: ErrorCode::None,
                    log_start_offset: 0,
                    log_end_offset: 1,
                    next_offset: 1,
                    records: vec![Bytes::new(), batch(1, 7)],
                },
            ],
        },
        Response::ListOffsets {
            partitions: vec![
                ListOffsetsResult { topic: "t".into(), partition: 0, error: ErrorCode::None, offset: 5 },
                ListOffsetsResult { topic: "t".into(), partition: 1, error: ErrorCode::None, offset: -1 },
            ],
        },
        Response::OffsetCommit {
            partitions: vec![
                PartitionError { topic: "t".into(), partition: 0, error: ErrorCode::None },
                PartitionError { topic: "t".into(), partition: 1, error: ErrorCode::IllegalGeneration },
            ],
        },
        Response::OffsetFetch {
            error: ErrorCode::None,
            offsets: vec![
                FetchedOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: -1,
                    metadata: String::new(),
                    error: ErrorCode::None,
                },
                FetchedOffset {
                    topic: "t".into(),
                    partition: 1,
                    offset: 77,
                    metadata: "m".into(),
                    error: ErrorCode::None,
                },
            ],
        },
        Response::OffsetFetch { error: ErrorCode::InvalidGroupId, offsets: vec![] },
        Response::JoinGroup {
            error: ErrorCode::None,
            generation_id: 2,
            member_id: "member-1".into(),
            assignment: vec![
                TopicPartition { topic: "t".into(), partition: 0 },
                TopicPartition { topic: "u".into(), partition: 5 },
            ],
        },
        Response::JoinGroup {
            error: ErrorCode::RebalanceInProgress,
            generation_id: -1,
            member_id: String::new(),
            assignment: vec![],
        },
    ]
}

fn every_error_code() -> Vec<ErrorCode> {
    (0..).map_while(ErrorCode::from_u16).collect()
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn every_request_round_trips() {
    for (i, request) in sample_requests().into_iter().enumerate() {
        let correlation_id = 1000 + i as u32;
        let frame = request_body(correlation_id, &request);
        assert_eq!(peek_correlation_id(&frame), Some(correlation_id));
        let (decoded_id, decoded) = decode_request(frame).unwrap();
        assert_eq!(decoded_id, correlation_id);
        assert_eq!(decoded, request);
    }
}

#[test]
fn every_response_round_trips() {
    let mut responses = sample_responses();
    responses.extend(every_error_code().into_iter().map(|code| Response::status(code, format!("{code:?}"))));
    for (i, response) in responses.into_iter().enumerate() {
        let correlation_id = u32::MAX - i as u32;
        let frame = response_body(correlation_id, &response);
        assert_eq!(peek_correlation_id(&frame), Some(correlation_id));
        let (decoded_id, decoded) = decode_response(frame).unwrap();
        assert_eq!(decoded_id, correlation_id);
        assert_eq!(decoded, response);
    }
}

#[test]
fn frame_layout_matches_the_spec() {
    let request = &sample_requests()[10]; // A Produce with three batches.
    let Request::Produce { partitions, .. } = request else { unreachable!() };
    let batches: Vec<&Bytes> = partitions.iter().flat_map(|p| &p.batches).collect();
    let chunks = encode_request(0xdead_beef, request);
    // Chunk 0 holds prefix, fixed fields and header; then each batch, as given.
    assert_eq!(chunks.len(), 1 + batches.len());
    for (chunk, batch) in chunks[1..].iter().zip(&batches) {
        assert_eq!(chunk.as_ptr(), batch.as_ptr(), "payload chunks are not copies");
        assert_eq!(chunk.len(), batch.len());
    }
    let first = &chunks[0];
    let frame_len = u32::from_be_bytes(first[0..4].try_into().unwrap()) as usize;
    let version = u16::from_be_bytes(first[4..6].try_into().unwrap());
    let correlation_id = u32::from_be_bytes(first[6..10].try_into().unwrap());
    let header_len = u32::from_be_bytes(first[10..14].try_into().unwrap()) as usize;
    assert_eq!(version, PROTOCOL_VERSION);
    assert_eq!(correlation_id, 0xdead_beef);
    assert_eq!(first.len(), 14 + header_len);
    let payload_len: usize = batches.iter().map(|b| b.len()).sum();
    assert_eq!(frame_len, FIXED_BYTES + header_len + payload_len);

    // A message without payload is a single chunk.
    assert_eq!(encode_request(1, &Request::DeleteTopic { name: "x".into() }).len(), 1);
    assert_eq!(encode_response(1, &Response::ok()).len(), 1);
}

#[test]
fn produce_batches_are_slices_of_the_frame() {
    let request = &sample_requests()[10];
    let frame = request_body(5, request);
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let (_, decoded) = decode_request(frame.clone()).unwrap();
    let Request::Produce { partitions, .. } = &decoded else { panic!("not a produce: {decoded:?}") };
    let mut batches = 0;
    for batch in partitions.iter().flat_map(|p| &p.batches) {
        let start = batch.as_ptr() as usize;
        assert!(frame_range.contains(&start) && start + batch.len() <= frame_range.end, "batch copied");
        engine::batch::Batch::validate(batch.clone()).unwrap();
        batches += 1;
    }
    assert_eq!(batches, 3);
    assert_eq!(decoded, *request);
}

#[test]
fn fetch_records_are_slices_of_the_frame() {
    let response = &sample_responses()[7];
    let frame = response_body(5, response);
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let (_, decoded) = decode_response(frame.clone()).unwrap();
    let Response::Fetch { partitions } = &decoded else { panic!("not a fetch: {decoded:?}") };
    for chunk in partitions.iter().flat_map(|p| &p.records).filter(|chunk| !chunk.is_empty()) {
        let start = chunk.as_ptr() as usize;
        assert!(frame_range.contains(&start) && start + chunk.len() <= frame_range.end, "records copied");
    }
    assert_eq!(decoded, *response);
}

#[test]
fn frames_back_to_back_through_read_frame() {
    let requests = sample_requests();
    let responses = sample_responses();
    let mut stream = Cursor::new(Vec::new());
    block_on(async {
        for (i, request) in requests.iter().enumerate() {
            write_chunks(&mut stream, &encode_request(i as u32, request)).await.unwrap();
        }
        for (i, response) in responses.iter().enumerate() {
            write_chunks(&mut stream, &encode_response(i as u32, response)).await.unwrap();
        }
    });
    let mut reader = Cursor::new(stream.into_inner());
    block_on(async {
        for (i, request) in requests.iter().enumerate() {
            let frame = read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap();
            assert_eq!(decode_request(frame).unwrap(), (i as u32, request.clone()));
        }
        for (i, response) in responses.iter().enumerate() {
            let frame = read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap();
            assert_eq!(decode_response(frame).unwrap(), (i as u32, response.clone()));
        }
        assert!(read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().is_none(), "clean EOF");
    });
}

/// The example in docs/protocol.md is this exact dump: keep them in sync.
#[test]
fn documented_example_dump() {
    let request = Request::DeleteTopic { name: "orders".into() };
    let chunks = encode_request(7, &request);
    let dump = hex_dump(&concat(&chunks));
    println!("{dump}");
    let expected = "\
0000  00 00 00 3e 00 01 00 00 00 07 00 00 00 34 0c 00
0010  00 00 08 00 0e 00 07 00 08 00 08 00 00 00 00 00
0020  00 02 0c 00 00 00 00 00 06 00 08 00 04 00 06 00
0030  00 00 04 00 00 00 06 00 00 00 6f 72 64 65 72 73
0040  00 00
";
    assert_eq!(dump, expected);

    let produce = Request::Produce {
        acks: Acks::Leader,
        timeout_ms: 5000,
        partitions: vec![ProducePartition { topic: "t".into(), partition: 0, batches: vec![batch(1, 0)] }],
    };
    println!("{}", hex_dump(&concat(&encode_request(8, &produce))));
}

// ---------------------------------------------------------------------------------------------
// Malformed input

fn assert_no_panic_request(frame: Bytes) -> Result<(u32, Request), DecodeError> {
    decode_request(frame)
}

fn assert_no_panic_response(frame: Bytes) -> Result<(u32, Response), DecodeError> {
    decode_response(frame)
}

#[test]
fn every_truncation_is_an_error() {
    for request in sample_requests() {
        let frame = request_body(77, &request);
        for cut in 0..frame.len() {
            let error = decode_request(frame.slice(..cut)).unwrap_err();
            // From 6 bytes on the correlation id is readable and reported.
            let expected = (cut >= 6).then_some(77);
            assert_eq!(error.correlation_id(), expected, "{request:?} cut at {cut}: {error}");
        }
    }
    for response in sample_responses() {
        let frame = response_body(78, &response);
        for cut in 0..frame.len() {
            let error = decode_response(frame.slice(..cut)).unwrap_err();
            assert_eq!(error.correlation_id(), (cut >= 6).then_some(78), "{response:?} cut at {cut}: {error}");
        }
    }
}

#[test]
fn flipped_bytes_in_fixed_fields_and_header_never_panic() {
    let mut frames: Vec<(bool, Bytes)> = sample_requests().iter().map(|r| (true, request_body(3, r))).collect();
    frames.extend(sample_responses().iter().map(|r| (false, response_body(3, r))));
    for (is_request, frame) in frames {
        let header_len = u32::from_be_bytes(frame[6..10].try_into().unwrap()) as usize;
        for position in 0..FIXED_BYTES + header_len {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut flipped = BytesMut::from(&frame[..]);
                flipped[position] ^= mask;
                let flipped = flipped.freeze();
                // Either an error or some valid message: never a panic.
                if is_request {
                    let _ = assert_no_panic_request(flipped);
                } else {
                    let _ = assert_no_panic_response(flipped);
                }
            }
        }
    }
}

#[test]
fn fixed_field_errors() {
    let frame = request_body(9, &Request::DeleteTopic { name: "x".into() });

    assert_eq!(decode_request(Bytes::new()), Err(DecodeError::FrameTooShort { frame_bytes: 0, correlation_id: None }));
    assert_eq!(
        decode_request(frame.slice(..8)),
        Err(DecodeError::FrameTooShort { frame_bytes: 8, correlation_id: Some(9) })
    );

    let mut bad_version = BytesMut::from(&frame[..]);
    bad_version[0..2].copy_from_slice(&2u16.to_be_bytes());
    let error = decode_request(bad_version.freeze()).unwrap_err();
    assert_eq!(error, DecodeError::UnsupportedVersion { version: 2, correlation_id: 9 });
    assert_eq!(error.error_code(), ErrorCode::UnsupportedRequest);

    let mut long_header = BytesMut::from(&frame[..]);
    long_header[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    let error = decode_request(long_header.freeze()).unwrap_err();
    assert!(matches!(error, DecodeError::HeaderLength { header_bytes: u32::MAX, correlation_id: 9, .. }), "{error}");
    assert_eq!(error.error_code(), ErrorCode::MalformedRequest);

    let mut empty_header = BytesMut::from(&frame[..FIXED_BYTES]);
    empty_header[6..10].copy_from_slice(&0u32.to_be_bytes());
    let error = decode_request(empty_header.freeze()).unwrap_err();
    assert!(matches!(error, DecodeError::InvalidHeader { correlation_id: 9, .. }), "{error}");
}

#[test]
fn decoding_in_the_wrong_direction_never_panics() {
    // Request and response kinds share numbers but not tables: the result is an error or some
    // unrelated message, never a panic.
    for request in sample_requests() {
        let _ = decode_response(request_body(1, &request));
    }
    for response in sample_responses() {
        let _ = decode_request(response_body(1, &response));
    }
}

#[test]
fn payload_length_mismatch() {
    // One byte too many after a Produce's batches.
    let frame = request_body(4, &sample_requests()[10]);
    let mut longer = BytesMut::from(&frame[..]);
    longer.extend_from_slice(&[0]);
    let error = decode_request(longer.freeze()).unwrap_err();
    assert!(matches!(error, DecodeError::PayloadLength { correlation_id: 4, .. }), "{error}");
    // One byte too few.
    let error = decode_request(frame.slice(..frame.len() - 1)).unwrap_err();
    assert!(matches!(error, DecodeError::PayloadLength { correlation_id: 4, .. }), "{error}");

    // A payload behind a message that has none.
    for frame in [request_body(5, &Request::DeleteTopic { name: "x".into() }), response_body(5, &Response::ok())] {
        let mut longer = BytesMut::from(&frame[..]);
        longer.extend_from_slice(b"junk");
        let is_request = decode_request(frame.clone()).is_ok();
        let error = if is_request {
            decode_request(longer.freeze()).unwrap_err()
        } else {
            decode_response(longer.freeze()).unwrap_err()
        };
        assert_eq!(error, DecodeError::PayloadLength { declared_bytes: 0, payload_bytes: 4, correlation_id: 5 });
    }

    // Fetch records one byte short.
    let frame = response_body(6, &sample_responses()[7]);
    let error = decode_response(frame.slice(..frame.len() - 1)).unwrap_err();
    assert!(matches!(error, DecodeError::PayloadLength { correlation_id: 6, .. }), "{error}");
}

#[test]
fn huge_length_prefix_is_rejected_without_allocating() {
    // 4 GiB - 1, then nothing: TooLarge comes before any allocation or body read.
    let mut reader = Cursor::new(u32::MAX.to_be_bytes().to_vec());
    let error = block_on(read_frame(&mut reader, FRAME_BYTES_MAX)).unwrap_err();
    assert!(matches!(error, FrameError::TooLarge { frame_bytes: u32::MAX, max: FRAME_BYTES_MAX }), "{error}");
    let mut reader = Cursor::new((FRAME_BYTES_MAX + 1).to_be_bytes().to_vec());
    let error = block_on(read_frame(&mut reader, FRAME_BYTES_MAX)).unwrap_err();
    assert!(matches!(error, FrameError::TooLarge { .. }), "{error}");
}

#[test]
fn eof_mid_frame_is_truncated() {
    let stream = concat(&encode_request(1, &sample_requests()[10]));
    for cut in [1, 3, 4, 5, 14, stream.len() / 2, stream.len() - 1] {
        let mut reader = Cursor::new(stream[..cut].to_vec());
        let error = block_on(read_frame(&mut reader, FRAME_BYTES_MAX)).unwrap_err();
        assert!(matches!(error, FrameError::Truncated), "cut at {cut}: {error}");
    }
    // A whole frame then a partial one: the first is read, the second is truncated.
    let mut two = stream.clone();
    two.extend_from_slice(&stream[..10]);
    let mut reader = Cursor::new(two);
    block_on(async {
        assert!(read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().is_some());
        assert!(matches!(read_frame(&mut reader, FRAME_BYTES_MAX).await, Err(FrameError::Truncated)));
    });
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9._-]{0,12}", "\\PC{0,6}"]
}

fn opaque() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(every_error_code())
}

fn topic_partition() -> impl Strategy<Value = TopicPartition> {
    (text(), any::<u32>()).prop_map(|(topic, partition)| TopicPartition { topic, partition })
}

fn request() -> impl Strategy<Value = Request> {
    let settings = (
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        prop::option::of(text()),
    )
        .prop_map(|(retention_ms, retention_bytes, segment_bytes, segment_ms, durability)| TopicSettings {
            retention_ms,
            retention_bytes,
            segment_bytes,
            segment_ms,
            durability,
            ..TopicSettings::default()
        });
    let settings = (settings, any::<Option<u32>>(), any::<Option<u32>>(), any::<Option<bool>>()).prop_map(
        |(settings, replication_factor, min_insync_replicas, unclean_leader_election)| TopicSettings {
            replication_factor,
            min_insync_replicas,
            unclean_leader_election,
            ..settings
        },
    );
    let replica_partition = (
        (text(), any::<u32>(), any::<u32>(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<Option<u32>>(), any::<u32>()),
    )
        .prop_map(
            |(
                (topic, partition, leader_epoch, log_start_offset),
                (fetch_offset, durable_offset, last_fetched_epoch, bytes_max),
            )| {
                ReplicaFetchPartition {
                    topic,
                    partition,
                    leader_epoch,
                    fetch_offset,
                    durable_offset,
                    last_fetched_epoch,
                    bytes_max,
                    log_start_offset,
                }
            },
        );
    let acks = prop::sample::select(vec![Acks::None, Acks::Leader, Acks::Durable]);
    let produce_partition = (text(), any::<u32>(), prop::collection::vec(opaque(), 0..4))
        .prop_map(|(topic, partition, batches)| ProducePartition { topic, partition, batches });
    let fetch_partition = (text(), any::<u32>(), any::<u64>(), any::<u32>())
        .prop_map(|(topic, partition, offset, bytes_max)| FetchPartition { topic, partition, offset, bytes_max });
    let spec =
        prop_oneof![Just(OffsetSpec::Earliest), Just(OffsetSpec::Latest), any::<i64>().prop_map(OffsetSpec::Timestamp)];
    let list_partition = (text(), any::<u32>(), spec).prop_map(|(topic, partition, spec)| ListOffsetsPartition {
        topic,
        partition,
        spec,
    });
    let commit = (text(), any::<u32>(), any::<u64>(), text())
        .prop_map(|(topic, partition, offset, metadata)| CommitOffset { topic, partition, offset, metadata });
    let assignor = prop::sample::select(vec![Assignor::Range, Assignor::RoundRobin]);
    prop_oneof![
        (text(), any::<u32>(), settings).prop_map(|(name, partitions, settings)| Request::CreateTopic {
            name,
            partitions,
            settings
        }),
        text().prop_map(|name| Request::DeleteTopic { name }),
        (text(), any::<u32>()).prop_map(|(name, total)| Request::CreatePartitions { name, total }),
        (prop::option::of(prop::collection::vec(text(), 0..4)), any::<bool>())
            .prop_map(|(topics, with_offsets)| Request::Metadata { topics, with_offsets }),
        (acks, any::<u32>(), prop::collection::vec(produce_partition, 0..4))
            .prop_map(|(acks, timeout_ms, partitions)| Request::Produce { acks, timeout_ms, partitions }),
        (any::<u32>(), any::<u32>(), any::<u32>(), prop::collection::vec(fetch_partition, 0..4)).prop_map(
            |(wait_ms_max, bytes_min, bytes_max, partitions)| Request::Fetch {
                wait_ms_max,
                bytes_min,
                bytes_max,
                partitions
            }
        ),
        prop::collection::vec(list_partition, 0..4).prop_map(|partitions| Request::ListOffsets { partitions }),
        (text(), any::<i32>(), text(), prop::collection::vec(commit, 0..4)).prop_map(
            |(group, generation_id, member_id, offsets)| Request::OffsetCommit {
                group,
                generation_id,
                member_id,
                offsets
            }
        ),
        (text(), prop::option::of(prop::collection::vec(topic_partition(), 0..4)))
            .prop_map(|(group, partitions)| Request::OffsetFetch { group, partitions }),
        (text(), text(), prop::collection::vec(text(), 0..4), any::<u32>(), assignor).prop_map(
            |(group, member_id, topics, session_timeout_ms, assignor)| Request::JoinGroup {
                group,
                member_id,
                topics,
                session_timeout_ms,
                assignor
            }
        ),
        (text(), any::<i32>(), text()).prop_map(|(group, generation_id, member_id)| Request::Heartbeat {
            group,
            generation_id,
            member_id
        }),
        (text(), text()).prop_map(|(group, member_id)| Request::LeaveGroup { group, member_id }),
        (any::<u32>(), any::<u32>(), any::<u32>(), prop::collection::vec(replica_partition, 0..4)).prop_map(
            |(replica_node, wait_ms_max, bytes_max, partitions)| Request::ReplicaFetch {
                replica_node,
                wait_ms_max,
                bytes_max,
                partitions
            }
        ),
    ]
}

fn replica_result() -> impl Strategy<Value = ReplicaFetchResult> {
    (
        (text(), any::<u32>(), error_code()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<Option<(u32, u64)>>(), prop::collection::vec(opaque(), 0..4)),
    )
        .prop_map(
            |((topic, partition, error), (high_watermark, log_start_offset, log_end_offset, diverging, records))| {
                ReplicaFetchResult {
                    topic,
                    partition,
                    error,
                    high_watermark,
                    log_start_offset,
                    log_end_offset,
                    diverging,
                    records,
                }
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    let shard = (any::<u32>(), text()).prop_map(|(shard, address)| ShardInfo { shard, address });
    let partition_metadata =
        (any::<u32>(), any::<u32>(), any::<Option<u64>>(), any::<Option<u64>>(), any::<Option<u64>>()).prop_map(
            |(partition, shard, log_start_offset, log_end_offset, size_bytes)| PartitionMetadata {
                shard,
                log_start_offset,
                log_end_offset,
                size_bytes,
                ..PartitionMetadata::single(partition)
            },
        );
    let partition_metadata = (
        partition_metadata,
        (prop::option::of(text()), any::<i32>(), any::<u32>()),
        (prop::collection::vec(any::<u32>(), 0..4), prop::collection::vec(any::<u32>(), 0..4), any::<Option<u64>>()),
    )
        .prop_map(
            |(p, (leader_address, leader_node, leader_epoch), (replica_nodes, isr_nodes, high_watermark))| {
                PartitionMetadata {
                    leader_address,
                    leader_node,
                    leader_epoch,
                    replica_nodes,
                    isr_nodes,
                    high_watermark,
                    ..p
                }
            },
        );
    let topic = (
        (text(), error_code(), any::<u64>(), any::<Option<u64>>(), any::<Option<u64>>()),
        (any::<u64>(), text(), prop::collection::vec(partition_metadata, 0..4)),
    )
        .prop_map(|((name, error, id, retention_ms, retention_bytes), (segment_bytes, durability, partitions))| {
            TopicMetadata { name, error, id, retention_ms, retention_bytes, segment_bytes, durability, partitions }
        });
    let produce_result =
        (text(), any::<u32>(), error_code(), text(), prop::collection::vec(any::<u64>(), 0..4), any::<u64>()).prop_map(
            |(topic, partition, error, message, base_offsets, log_end_offset)| ProducePartitionResult {
                topic,
                partition,
                error,
                message,
                base_offsets,
                log_end_offset,
            },
        );
    let fetch_result = (
        (text(), any::<u32>(), error_code()),
        (any::<u64>(), any::<u64>(), any::<u64>(), prop::collection::vec(opaque(), 0..4)),
    )
        .prop_map(|((topic, partition, error), (log_start_offset, log_end_offset, next_offset, records))| {
            FetchPartitionResult { topic, partition, error, log_start_offset, log_end_offset, next_offset, records }
        });
    let list_result = (text(), any::<u32>(), error_code(), any::<i64>())
        .prop_map(|(topic, partition, error, offset)| ListOffsetsResult { topic, partition, error, offset });
    let partition_error = (text(), any::<u32>(), error_code()).prop_map(|(topic, partition, error)| PartitionError {
        topic,
        partition,
        error,
    });
    let fetched = (text(), any::<u32>(), any::<i64>(), text(), error_code()).prop_map(
        |(topic, partition, offset, metadata, error)| FetchedOffset { topic, partition, offset, metadata, error },
    );
    prop_oneof![
        (error_code(), text()).prop_map(|(error, message)| Response::Status { error, message }),
        (prop::collection::vec(shard, 0..3), prop::collection::vec(topic, 0..3))
            .prop_map(|(shards, topics)| Response::Metadata { shards, topics, coordinator_address: None }),
        (prop::collection::vec(replica_result(), 0..4)).prop_map(|partitions| Response::ReplicaFetch { partitions }),
        prop::collection::vec(produce_result, 0..4).prop_map(|partitions| Response::Produce { partitions }),
        prop::collection::vec(fetch_result, 0..4).prop_map(|partitions| Response::Fetch { partitions }),
        prop::collection::vec(list_result, 0..4).prop_map(|partitions| Response::ListOffsets { partitions }),
        prop::collection::vec(partition_error, 0..4).prop_map(|partitions| Response::OffsetCommit { partitions }),
        (error_code(), prop::collection::vec(fetched, 0..4))
            .prop_map(|(error, offsets)| Response::OffsetFetch { error, offsets }),
        (error_code(), any::<i32>(), text(), prop::collection::vec(topic_partition(), 0..4)).prop_map(
            |(error, generation_id, member_id, assignment)| Response::JoinGroup {
                error,
                generation_id,
                member_id,
                assignment
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_request_round_trips(correlation_id in any::<u32>(), request in request()) {
        let frame = request_body(correlation_id, &request);
        prop_assert_eq!(decode_request(frame).unwrap(), (correlation_id, request));
    }

    #[test]
    fn any_response_round_trips(correlation_id in any::<u32>(), response in response()) {
        let frame = response_body(correlation_id, &response);
        prop_assert_eq!(decode_response(frame).unwrap(), (correlation_id, response));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Bytes::from(bytes.clone()));
        let _ = decode_response(Bytes::from(bytes));
    }

    /// Random bytes behind valid fixed fields, so that they reach the flatbuffers verifier.
    #[test]
    fn random_headers_never_panic(
        header in prop::collection::vec(any::<u8>(), 0..256),
        payload in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut frame = Vec::new();
        frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        frame.extend_from_slice(&42u32.to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&payload);
        let frame = Bytes::from(frame);
        if let Err(error) = decode_request(frame.clone()) {
            prop_assert_eq!(error.correlation_id(), Some(42));
        }
        if let Err(error) = decode_response(frame) {
            prop_assert_eq!(error.correlation_id(), Some(42));
        }
    }

    /// Random corruption of a valid frame's header region.
    #[test]
    fn corrupted_valid_frames_never_panic(
        request in request(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let frame = request_body(1, &request);
        let header_end = FIXED_BYTES + u32::from_be_bytes(frame[6..10].try_into().unwrap()) as usize;
        let mut corrupted = BytesMut::from(&frame[..]);
        for (index, value) in edits {
            let position = FIXED_BYTES + index.index(header_end - FIXED_BYTES);
            corrupted[position] = value;
        }
        let _ = decode_request(corrupted.freeze());
    }
}
