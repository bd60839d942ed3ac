//! Writes the seed corpora under fuzz/seeds/<target>/ from valid frames, batches and
//! segments (run by scripts/fuzz.sh --make-seeds; the output is committed). Small on purpose:
//! one file per shape.

use std::path::Path;

use bytes::Bytes;
use engine::batch::{write_base_offset, BatchBuilder};
use server::protocol::codec::{encode_request, encode_response};
use server::protocol::messages::*;

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
    println!("seeds written under {}", root.display());
}
