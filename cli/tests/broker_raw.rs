//! The broker served in-process, spoken to with raw protocol frames: produce, fetch (with
//! long-poll), list offsets, metadata, admin errors, cross-shard forwarding, and malformed or
//! oversized frames that must not take the server down.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;

use bytes::Bytes;
use common::raw::Raw;
use engine::batch::{split_batches, BatchBuilder};
use protocol::messages::*;
use shardlog::config::{ServeArgs, ServeConfig};
use shardlog::Node as Broker;

fn start(shards: usize) -> (Broker, tempfile::TempDir) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::Builder::new().prefix("shardlog-broker-").tempdir_in(std::env::temp_dir()).unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        ..ServeArgs::default()
    };
    (Broker::start(ServeConfig::resolve(&args).unwrap()).unwrap(), dir)
}

fn batch(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        b.push(Some(format!("k{i}").as_bytes()), Some(v.as_bytes()), 1_000 + i as i64, &[]);
    }
    b.build().unwrap()
}

fn create(raw: &mut Raw, name: &str, partitions: u32) -> Response {
    raw.call(Request::CreateTopic { name: name.into(), partitions, settings: TopicSettings::default() })
}

fn produce(raw: &mut Raw, topic: &str, partition: u32, batches: Vec<Bytes>, acks: Acks) -> ProducePartitionResult {
    match raw.call(Request::Produce {
        acks,
        timeout_ms: 10_000,
        partitions: vec![ProducePartition { topic: topic.into(), partition, batches }],
    }) {
        Response::Produce { mut partitions } => partitions.remove(0),
        other => panic!("{other:?}"),
    }
}

fn fetch(raw: &mut Raw, topic: &str, partition: u32, offset: u64, wait_ms: u32) -> FetchPartitionResult {
    match raw.call(Request::Fetch {
        wait_ms_max: wait_ms,
        bytes_min: 1,
        bytes_max: 1 << 20,
        partitions: vec![FetchPartition { topic: topic.into(), partition, offset, bytes_max: 1 << 20 }],
    }) {
        Response::Fetch { mut partitions } => partitions.remove(0),
        other => panic!("{other:?}"),
    }
}

fn values(records: &[Bytes]) -> Vec<String> {
    let mut all = Vec::new();
    for c in records {
        all.extend_from_slice(c);
    }
    split_batches(Bytes::from(all))
        .flat_map(|b| {
            b.unwrap()
                .records()
                .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn produce_fetch_and_metadata_across_shards() {
    let (mut broker, _dir) = start(2);
    let mut raw = Raw::connect(broker.listen);
    assert_eq!(create(&mut raw, "users", 4), Response::ok());
    let Response::Metadata { shards, topics, .. } = raw.call(Request::Metadata { topics: None, with_offsets: false })
    else {
        panic!()
    };
    assert_eq!(shards.len(), 2);
    assert_eq!(topics.len(), 1);
    let owners: Vec<u32> = topics[0].partitions.iter().map(|p| p.shard).collect();
    assert!(owners.contains(&0) && owners.contains(&1), "partitions spread over shards: {owners:?}");
    // Every partition, whichever shard accepted the connection: some requests are forwarded.
    for p in 0..4 {
        let r = produce(&mut raw, "users", p, vec![batch(&["a", "b"]), batch(&["c"])], Acks::Durable);
        assert_eq!(r.error, ErrorCode::None, "{}", r.message);
        assert_eq!(r.base_offsets, vec![0, 2]);
        let f = fetch(&mut raw, "users", p, 0, 0);
        assert_eq!(f.error, ErrorCode::None);
        assert_eq!(values(&f.records), vec!["a", "b", "c"]);
        assert_eq!(f.next_offset, 3);
        assert_eq!(f.log_end_offset, 3);
    }
    // The same data through each shard's own address (shard-aware path).
    for (shard, info) in shards.iter().enumerate() {
        let mut direct = Raw::connect(info.address.as_str());
        let p = owners.iter().position(|&o| o as usize == shard).unwrap() as u32;
        // Offset 1 is inside the first batch: whole batches come back, as in Kafka.
        assert_eq!(values(&fetch(&mut direct, "users", p, 1, 0).records), vec!["a", "b", "c"]);
        assert_eq!(values(&fetch(&mut direct, "users", p, 2, 0).records), vec!["c"]);
    }
    let Response::Metadata { topics, .. } =
        raw.call(Request::Metadata { topics: Some(vec!["users".into()]), with_offsets: true })
    else {
        panic!()
    };
    assert!(topics[0].partitions.iter().all(|p| p.log_end_offset == Some(3) && p.log_start_offset == Some(0)));
    let Response::ListOffsets { partitions } = raw.call(Request::ListOffsets {
        partitions: vec![
            ListOffsetsPartition { topic: "users".into(), partition: 0, spec: OffsetSpec::Earliest },
            ListOffsetsPartition { topic: "users".into(), partition: 1, spec: OffsetSpec::Latest },
            ListOffsetsPartition { topic: "users".into(), partition: 2, spec: OffsetSpec::Timestamp(1_000) },
            ListOffsetsPartition { topic: "nope".into(), partition: 0, spec: OffsetSpec::Latest },
        ],
    }) else {
        panic!()
    };
    let got: Vec<(ErrorCode, i64)> = partitions.iter().map(|p| (p.error, p.offset)).collect();
    assert_eq!(
        got,
        vec![
            (ErrorCode::None, 0),
            (ErrorCode::None, 3),
            (ErrorCode::None, 0),
            (ErrorCode::UnknownTopicOrPartition, -1)
        ]
    );
    broker.shutdown();
}

#[test]
fn long_poll_fetch_returns_when_data_arrives() {
    let (mut broker, _dir) = start(2);
    let mut raw = Raw::connect(broker.listen);
    create(&mut raw, "t", 2);
    for p in 0..2 {
        let mut consumer = Raw::connect(broker.listen);
        let id = consumer.send(&Request::Fetch {
            wait_ms_max: 20_000,
            bytes_min: 1,
            bytes_max: 1 << 20,
            partitions: vec![FetchPartition { topic: "t".into(), partition: p, offset: 0, bytes_max: 1 << 20 }],
        });
        std::thread::sleep(Duration::from_millis(100));
        let produced = std::time::Instant::now();
        produce(&mut raw, "t", p, vec![batch(&["late"])], Acks::Leader);
        let (got, response) = consumer.recv();
        assert_eq!(got, id);
        // Woken by the data, not by its 20 s deadline (a sync topic's long-poll on one node
        // used to run to the deadline: nothing signalled its fdatasync). The bound is loose on
        // purpose: this checks the wake-up, not its speed.
        let waited = produced.elapsed();
        assert!(waited < Duration::from_secs(10), "the long-poll ran to its deadline ({waited:?})");
        let Response::Fetch { partitions } = response else { panic!() };
        assert_eq!(values(&partitions[0].records), vec!["late"]);
    }
    // A long-poll at the tail with nothing arriving returns empty after its wait.
    let f = fetch(&mut raw, "t", 0, 1, 200);
    assert!(f.records.is_empty());
    broker.shutdown();
}

#[test]
fn errors_are_clear_and_the_server_survives_bad_frames() {
    let (mut broker, _dir) = start(2);
    let mut raw = Raw::connect(broker.listen);
    assert!(matches!(create(&mut raw, "../x", 1), Response::Status { error: ErrorCode::InvalidTopicName, .. }));
    assert!(matches!(create(&mut raw, "t", 0), Response::Status { error: ErrorCode::InvalidPartitions, .. }));
    assert_eq!(create(&mut raw, "t", 1), Response::ok());
    assert!(matches!(create(&mut raw, "t", 1), Response::Status { error: ErrorCode::TopicAlreadyExists, .. }));
    assert_eq!(
        produce(&mut raw, "nope", 0, vec![batch(&["x"])], Acks::Leader).error,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(produce(&mut raw, "t", 7, vec![batch(&["x"])], Acks::Leader).error, ErrorCode::UnknownTopicOrPartition);
    let mut bad = batch(&["x"]).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(produce(&mut raw, "t", 0, vec![Bytes::from(bad)], Acks::Leader).error, ErrorCode::CorruptBatch);
    assert_eq!(fetch(&mut raw, "t", 0, 5, 0).error, ErrorCode::OffsetOutOfRange);

    // Garbage with a readable correlation id gets MalformedRequest; the connection goes on.
    let mut garbage = Raw::connect(broker.listen);
    let body = [0u8, 1, 0, 0, 0, 42, 0, 0, 0, 3, 1, 2, 3];
    garbage.stream.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    garbage.stream.write_all(&body).unwrap();
    let (id, response) = garbage.recv();
    assert_eq!(id, 42);
    assert!(matches!(response, Response::Status { error: ErrorCode::MalformedRequest, .. }), "{response:?}");
    assert_eq!(
        garbage.call(Request::Metadata { topics: None, with_offsets: false }).clone(),
        raw.call(Request::Metadata { topics: None, with_offsets: false })
    );

    // A 4 GiB length prefix closes that connection without allocating; others carry on.
    let mut huge = Raw::connect(broker.listen);
    huge.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(huge.stream.read(&mut buf).unwrap_or(0), 0, "connection closed");
    // Truncated frame then disconnect.
    let mut cut = TcpStream::connect(broker.listen).unwrap();
    cut.write_all(&100u32.to_be_bytes()).unwrap();
    cut.write_all(&[1, 2, 3]).unwrap();
    drop(cut);
    assert_eq!(produce(&mut raw, "t", 0, vec![batch(&["still", "here"])], Acks::Durable).error, ErrorCode::None);
    broker.shutdown();
}

#[test]
fn restart_keeps_topics_data_and_committed_offsets() {
    let dir = tempfile::Builder::new().prefix("shardlog-broker-").tempdir_in(std::env::temp_dir()).unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(2),
        ..ServeArgs::default()
    };
    let mut broker = Broker::start(ServeConfig::resolve(&args).unwrap()).unwrap();
    let mut raw = Raw::connect(broker.listen);
    create(&mut raw, "orders", 3);
    for p in 0..3 {
        produce(&mut raw, "orders", p, vec![batch(&["one", "two"])], Acks::Durable);
    }
    let commit = raw.call(Request::OffsetCommit {
        group: "g".into(),
        generation_id: -1,
        member_id: String::new(),
        offsets: vec![CommitOffset { topic: "orders".into(), partition: 1, offset: 1, metadata: "m".into() }],
    });
    assert!(
        matches!(commit, Response::OffsetCommit { ref partitions } if partitions[0].error == ErrorCode::None),
        "{commit:?}"
    );
    broker.shutdown();

    let mut broker = Broker::start(ServeConfig::resolve(&args).unwrap()).unwrap();
    let mut raw = Raw::connect(broker.listen);
    for p in 0..3 {
        assert_eq!(values(&fetch(&mut raw, "orders", p, 0, 0).records), vec!["one", "two"]);
    }
    let Response::OffsetFetch { offsets, .. } = raw.call(Request::OffsetFetch { group: "g".into(), partitions: None })
    else {
        panic!()
    };
    assert_eq!(offsets.len(), 1);
    assert_eq!((offsets[0].partition, offsets[0].offset, offsets[0].metadata.as_str()), (1, 1, "m"));
    // Delete, then the topic is gone everywhere.
    assert_eq!(raw.call(Request::DeleteTopic { name: "orders".into() }), Response::ok());
    assert_eq!(fetch(&mut raw, "orders", 0, 0, 0).error, ErrorCode::UnknownTopicOrPartition);
    assert!(!dir.path().join("orders-0").exists() && !dir.path().join("orders-1").exists());
    broker.shutdown();
}

#[test]
fn group_members_split_partitions_and_take_over() {
    let (mut broker, _dir) = start(2);
    let mut raw = Raw::connect(broker.listen);
    create(&mut raw, "users", 4);
    let join = |raw: &mut Raw, member: &str| match raw.call(Request::JoinGroup {
        group: "g".into(),
        member_id: member.into(),
        topics: vec!["users".into()],
        session_timeout_ms: 1_000,
        assignor: Assignor::Range,
    }) {
        Response::JoinGroup { error: ErrorCode::None, generation_id, member_id, assignment } => {
            (member_id, generation_id, assignment.into_iter().map(|tp| tp.partition).collect::<Vec<_>>())
        }
        other => panic!("{other:?}"),
    };
    let (a, _, _) = join(&mut raw, "");
    let (b, gen, b_parts) = join(&mut raw, "");
    let (_, gen_a, a_parts) = join(&mut raw, &a);
    assert_eq!(gen, gen_a);
    assert_eq!(a_parts.len() + b_parts.len(), 4);
    assert_eq!(a_parts.len(), 2);
    // b stops heartbeating; a keeps going and eventually owns everything.
    let mut owned = a_parts;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        if let Response::Status { error: ErrorCode::RebalanceInProgress, .. } =
            raw.call(Request::Heartbeat { group: "g".into(), generation_id: gen_a, member_id: a.clone() })
        {
            owned = join(&mut raw, &a).2;
            break;
        }
    }
    assert_eq!(owned, vec![0, 1, 2, 3]);
    let _ = b;
    broker.shutdown();
}

/// A broker with a metrics listener, and its data dir.
fn start_with_metrics(shards: usize) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix("shardlog-broker-").tempdir_in(std::env::temp_dir()).unwrap();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        metrics_listen: Some("127.0.0.1:0".into()),
        ..ServeArgs::default()
    };
    (Broker::start(ServeConfig::resolve(&args).unwrap()).unwrap(), dir)
}

/// The metrics page, as served.
fn metrics_text(broker: &Broker) -> String {
    let mut http = TcpStream::connect(broker.metrics_listen.unwrap()).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    text
}

/// The value of the first series of `text` starting with `series`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
}

#[test]
fn metrics_endpoint_reports_per_shard_counters_and_fdatasync_latency() {
    let (mut broker, _dir) = start_with_metrics(2);
    let mut raw = Raw::connect(broker.listen);
    create(&mut raw, "m", 2);
    for p in 0..2 {
        assert_eq!(produce(&mut raw, "m", p, vec![batch(&["x"])], Acks::Durable).error, ErrorCode::None);
    }
    let text = metrics_text(&broker);
    let value = |series: &str| metric(&text, series);
    let produced =
        value("shardlog_produce_requests_total{shard=\"0\"}") + value("shardlog_produce_requests_total{shard=\"1\"}");
    assert_eq!(produced, 2);
    let syncs = value("shardlog_fdatasync_latency_seconds_count{shard=\"0\"}")
        + value("shardlog_fdatasync_latency_seconds_count{shard=\"1\"}");
    assert!(syncs >= 2, "every durable produce needs an fdatasync: {syncs}");
    assert_eq!(value("shardlog_partitions{shard=\"0\"}") + value("shardlog_partitions{shard=\"1\"}"), 2);
    broker.shutdown();
}

#[test]
fn partitions_syncing_at_once_share_a_syncfs_round() {
    // One shard, so every partition's sync is this shard's; each durable produce to all 16
    // partitions asks for 16 syncs within a few writes' completion times.
    let (mut broker, _dir) = start_with_metrics(1);
    let mut raw = Raw::connect(broker.listen);
    create(&mut raw, "s", 16);
    let mut requests = 0;
    let text = loop {
        requests += 1;
        let partitions: Vec<ProducePartition> = (0..16)
            .map(|p| ProducePartition {
                topic: "s".into(),
                partition: p,
                batches: vec![batch(&[&format!("v{requests}")])],
            })
            .collect();
        match raw.call(Request::Produce { acks: Acks::Durable, timeout_ms: 10_000, partitions }) {
            Response::Produce { partitions } => {
                assert!(partitions.iter().all(|p| p.error == ErrorCode::None), "{partitions:?}")
            }
            other => panic!("{other:?}"),
        }
        let text = metrics_text(&broker);
        if metric(&text, "shardlog_syncs_shared_total{shard=\"0\"}") > 0 || requests == 100 {
            break text;
        }
    };
    let (alone, shared, rounds) = (
        metric(&text, "shardlog_syncs_alone_total{shard=\"0\"}"),
        metric(&text, "shardlog_syncs_shared_total{shard=\"0\"}"),
        metric(&text, "shardlog_sync_rounds_total{shard=\"0\"}"),
    );
    assert!(shared > 0 && rounds > 0, "no sync shared a round in {requests} requests of 16 partitions: {alone} alone");
    assert!(rounds <= shared, "{rounds} rounds for {shared} shared syncs");
    // What was acknowledged reads back from every partition.
    for p in 0..16 {
        let got = fetch(&mut raw, "s", p, 0, 0);
        assert_eq!(got.error, ErrorCode::None);
        assert_eq!(values(&got.records).len(), requests, "partition {p}");
    }
    broker.shutdown();
}
