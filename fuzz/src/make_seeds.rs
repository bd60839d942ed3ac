//! Writes the seed corpora under fuzz/seeds/<target>/ from valid frames, batches and
//! segments (run by scripts/fuzz.sh --make-seeds; the output is committed). Small on purpose:
//! one file per shape.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use engine::batch::{write_base_offset, BatchBuilder};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use protocol::codec::{encode_request, encode_response};
use protocol::messages::{
    Acks, Assignor, CommitOffset, ErrorCode, FetchPartition, FetchPartitionResult, ListOffsetsPartition, OffsetSpec,
    ProducePartition, ProducePartitionResult, Request, Response, TopicSettings,
};

fn batch(base_offset: i64, records: usize, with_headers: bool) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let key = format!("k{i}");
        let value = format!("value-{i}");
        let headers: &[(&[u8], Option<&[u8]>)] = if with_headers { &[(b"h", Some(b"x")), (b"", None)] } else { &[] };
        let key = if i % 2 == 0 { Some(key.as_bytes()) } else { None };
        builder.push(key, Some(value.as_bytes()), 1_700_000_000_000 + i as i64, headers);
    }
    let mut bytes = builder.build().expect("a small batch builds").to_vec();
    write_base_offset(&mut bytes, base_offset);
    bytes
}

/// As the log stores it: leader epoch 0 (outside the CRC).
fn stored(base_offset: i64, records: usize) -> Vec<u8> {
    let mut bytes = batch(base_offset, records, false);
    bytes[12..16].copy_from_slice(&0i32.to_be_bytes());
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create seed dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");

    let frames = root.join("native_frame");
    let requests = [
        Request::CreateTopic {
            name: "users".into(),
            partitions: 4,
            settings: TopicSettings {
                durability: Some("sync".into()),
                segment_bytes: Some(1 << 20),
                ..Default::default()
            },
        },
        Request::Metadata { topics: Some(vec!["users".into()]), with_offsets: true },
        Request::Produce {
            acks: Acks::Durable,
            timeout_ms: 1000,
            partitions: vec![ProducePartition {
                topic: "users".into(),
                partition: 1,
                batches: vec![Bytes::from(batch(0, 3, true)), Bytes::from(batch(0, 1, false))],
            }],
        },
        Request::Fetch {
            wait_ms_max: 100,
            bytes_min: 1,
            bytes_max: 1 << 20,
            partitions: vec![FetchPartition { topic: "users".into(), partition: 0, offset: 7, bytes_max: 1 << 16 }],
        },
        Request::ListOffsets {
            partitions: vec![ListOffsetsPartition {
                topic: "users".into(),
                partition: 2,
                spec: OffsetSpec::Timestamp(5),
            }],
        },
        Request::OffsetCommit {
            group: "g".into(),
            generation_id: 3,
            member_id: "m-1".into(),
            offsets: vec![CommitOffset { topic: "users".into(), partition: 0, offset: 9, metadata: "meta".into() }],
        },
        Request::JoinGroup {
            group: "g".into(),
            member_id: String::new(),
            topics: vec!["users".into()],
            session_timeout_ms: 6000,
            assignor: Assignor::RoundRobin,
        },
        Request::OffsetFetch { group: "g".into(), partitions: None },
    ];
    let mut all = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let frame = encode_request(i as u32 + 1, request).concat();
        write(&frames, &format!("request-{i}"), &frame);
        all.extend(frame);
    }
    write(&frames, "requests-back-to-back", &all);
    let responses = [
        Response::status(ErrorCode::UnknownTopicOrPartition, "users".to_owned()),
        Response::Fetch {
            partitions: vec![FetchPartitionResult {
                topic: "users".into(),
                partition: 0,
                error: ErrorCode::None,
                log_start_offset: 0,
                log_end_offset: 4,
                next_offset: 4,
                records: vec![Bytes::from(batch(0, 4, false))],
            }],
        },
        Response::Produce {
            partitions: vec![ProducePartitionResult {
                topic: "users".into(),
                partition: 1,
                error: ErrorCode::None,
                message: String::new(),
                base_offsets: vec![0, 3],
                log_end_offset: 4,
            }],
        },
    ];
    for (i, response) in responses.iter().enumerate() {
        write(&frames, &format!("response-{i}"), &encode_response(i as u32 + 100, response).concat());
    }

    let batches = root.join("record_batch");
    for (name, mode, bytes) in [
        ("one-record", 0u8, batch(0, 1, false)),
        ("records-with-headers", 0, batch(41, 5, true)),
        ("resealed", 3, batch(7, 2, true)),
    ] {
        write(&batches, name, &[&[mode][..], &bytes].concat());
    }
    let two = [batch(0, 2, false), batch(2, 1, true)].concat();
    write(&batches, "two-batches", &[&[0u8][..], &two].concat());

    let segments = root.join("segment_recovery");
    let segment = [stored(0, 1), stored(1, 3), stored(4, 2)].concat();
    write(&segments, "three-batches", &[&[0u8][..], &segment].concat());
    write(&segments, "torn-tail", &[&[0u8][..], &segment[..segment.len() - 5]].concat());
    let zeroed = [&[4u8][..], &segment, &[0u8; 512]].concat();
    write(&segments, "zeroed-tail-repaired", &zeroed);
    let mut flipped = segment.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    write(&segments, "bad-crc", &[&[0u8][..], &flipped].concat());
    let based = [stored(1000, 2), stored(1002, 1)].concat();
    write(&segments, "base-1000", &[&[2u8][..], &based].concat());
    kafka_seeds(&root.join("kafka_request"));
    println!("seeds written under {}", root.display());
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// One Kafka request frame: size prefix, request header of the version this API uses, body.
fn kafka_frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, request: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("seed")));
    let mut body = BytesMut::new();
    header.encode(&mut body, api_key.request_header_version(version)).expect("header encodes");
    request.encode(&mut body, version).unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.put_u32(body.len() as u32);
    frame.extend_from_slice(&body);
    frame
}

/// Valid requests of every API the Kafka listener serves, at its lowest and highest versions
/// (flexible and not), and a whole group session back to back.
fn kafka_seeds(dir: &Path) {
    let topic = || TopicName(s("users"));
    let group = || GroupId(s("g"));
    let records = Bytes::from(batch(0, 2, true));
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic()))]));
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(topic()).with_partition_data(vec![
            produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records.clone())),
        ]),
    ]);
    let fetch = |version: i16| {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic()).with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(3)
                    .with_log_start_offset(if version >= 5 { 0 } else { -1 })
                    .with_partition_max_bytes(1 << 16),
            ])])
    };
    let list_offsets = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default().with_name(topic()).with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2),
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(1)
                .with_timestamp(1_700_000_000_000),
        ]),
    ]);
    let find_coordinator = |version: i16| {
        if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g"), s("h")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        }
    };
    let init_producer_id = InitProducerIdRequest::default().with_transaction_timeout_ms(60_000);
    let join = |version: i16| {
        JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(if version >= 1 { 30_000 } else { -1 })
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\x01\0\0\0\x01\0\x05users\xff\xff\xff\xff"))])
    };
    let sync = |version: i16| {
        let sync = SyncGroupRequest::default()
            .with_group_id(group())
            .with_generation_id(1)
            .with_member_id(s("member-0"))
            .with_assignments(vec![sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s("member-0"))
                .with_assignment(Bytes::from_static(
                    b"\0\x01\0\0\0\x01\0\x05users\0\0\0\x01\0\0\0\0\xff\xff\xff\xff",
                ))]);
        if version >= 5 {
            sync.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")))
        } else {
            sync
        }
    };
    let heartbeat =
        HeartbeatRequest::default().with_group_id(group()).with_generation_id(1).with_member_id(s("member-0"));
    let leave = |version: i16| {
        if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group())
                .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(s("member-0"))])
        } else {
            LeaveGroupRequest::default().with_group_id(group()).with_member_id(s("member-0"))
        }
    };
    let commit = |version: i16| {
        OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(1)
            .with_member_id(s("member-0"))
            .with_retention_time_ms(if (2..=4).contains(&version) { 60_000 } else { -1 })
            .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic())
                .with_partitions(vec![offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)
                    .with_committed_metadata(Some(s("meta")))])])
    };
    let offset_fetch = OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![
        offset_fetch_request::OffsetFetchRequestTopic::default().with_name(topic()).with_partition_indexes(vec![0, 1]),
    ]));
    let create_topics = CreateTopicsRequest::default().with_timeout_ms(1000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(topic())
            .with_num_partitions(3)
            .with_replication_factor(1)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("3600000")))]),
    ]);
    let delete_topics = DeleteTopicsRequest::default().with_topic_names(vec![topic()]).with_timeout_ms(1000);
    let create_partitions = CreatePartitionsRequest::default().with_timeout_ms(1000).with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default().with_name(topic()).with_count(6),
    ]);

    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, frame: Vec<u8>| seeds.push((name.to_owned(), frame));
    for v in [0, 3] {
        let request = ApiVersionsRequest::default();
        let request = if v >= 3 {
            request.with_client_software_name(s("seed")).with_client_software_version(s("1"))
        } else {
            request
        };
        add(&format!("api-versions-v{v}"), kafka_frame(ApiKey::ApiVersions, v, 1, &request));
    }
    // A newer ApiVersions than served: answered with UNSUPPORTED_VERSION in v0.
    add("api-versions-v4", kafka_frame(ApiKey::ApiVersions, 4, 1, &ApiVersionsRequest::default()));
    for v in [0, 4, 9] {
        add(&format!("metadata-v{v}"), kafka_frame(ApiKey::Metadata, v, 2, &metadata));
    }
    for v in [3, 9] {
        add(&format!("produce-v{v}"), kafka_frame(ApiKey::Produce, v, 3, &produce));
    }
    for v in [4, 12] {
        add(&format!("fetch-v{v}"), kafka_frame(ApiKey::Fetch, v, 4, &fetch(v)));
    }
    for v in [1, 7] {
        add(&format!("list-offsets-v{v}"), kafka_frame(ApiKey::ListOffsets, v, 5, &list_offsets));
    }
    for v in [0, 4] {
        add(&format!("find-coordinator-v{v}"), kafka_frame(ApiKey::FindCoordinator, v, 6, &find_coordinator(v)));
        add(&format!("init-producer-id-v{v}"), kafka_frame(ApiKey::InitProducerId, v, 7, &init_producer_id));
        add(&format!("heartbeat-v{v}"), kafka_frame(ApiKey::Heartbeat, v, 8, &heartbeat));
        add(&format!("leave-group-v{v}"), kafka_frame(ApiKey::LeaveGroup, v, 9, &leave(v)));
    }
    for v in [0, 7] {
        add(&format!("join-group-v{v}"), kafka_frame(ApiKey::JoinGroup, v, 10, &join(v)));
        add(&format!("offset-fetch-v{}", v.max(1)), kafka_frame(ApiKey::OffsetFetch, v.max(1), 11, &offset_fetch));
    }
    for v in [0, 5] {
        add(&format!("sync-group-v{v}"), kafka_frame(ApiKey::SyncGroup, v, 12, &sync(v)));
    }
    for v in [2, 8] {
        add(&format!("offset-commit-v{v}"), kafka_frame(ApiKey::OffsetCommit, v, 13, &commit(v)));
    }
    for v in [2, 7] {
        add(&format!("create-topics-v{v}"), kafka_frame(ApiKey::CreateTopics, v, 14, &create_topics));
    }
    for v in [1, 5] {
        add(&format!("delete-topics-v{v}"), kafka_frame(ApiKey::DeleteTopics, v, 15, &delete_topics));
    }
    for v in [0, 3] {
        add(&format!("create-partitions-v{v}"), kafka_frame(ApiKey::CreatePartitions, v, 16, &create_partitions));
    }
    // A consumer's whole group session on one connection: join (alone, so it leads at
    // generation 1 as member-0), sync its assignment, heartbeat, commit, leave.
    let session = [
        kafka_frame(ApiKey::FindCoordinator, 4, 20, &find_coordinator(4)),
        kafka_frame(ApiKey::JoinGroup, 5, 21, &join(5)),
        kafka_frame(ApiKey::SyncGroup, 3, 22, &sync(3)),
        kafka_frame(ApiKey::Heartbeat, 3, 23, &heartbeat),
        kafka_frame(ApiKey::OffsetCommit, 7, 24, &commit(7)),
        kafka_frame(ApiKey::LeaveGroup, 3, 25, &leave(3)),
    ]
    .concat();
    add("group-session", session);
    for (name, frame) in seeds {
        write(dir, &name, &frame);
    }
}
