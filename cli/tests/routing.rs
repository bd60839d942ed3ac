//! Routing against the real `shardlog` binary: the forwarding path (everything through the
//! bootstrap address) and the shard-aware path (straight to each partition's shard) store and
//! return identical records, and the metrics show which path forwarded. Malformed, oversized
//! and stalled frames over raw TCP do not take the server down.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use client::{Client, ClientOptions, Consumer, ConsumerOptions, Producer, ProducerOptions, Routing, TopicSettings};
use common::{on_executor, temp_dir, within, Server, ServerOptions, WAIT};
use protocol::codec::{decode_response, encode_request};
use protocol::frame::FRAME_BYTES_MAX;
use protocol::messages::{Request, Response};

const PARTITIONS: u32 = 4;
const PER_PARTITION: u32 = 12;

/// One record as stored: everything a consumer sees of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

type Records = BTreeMap<u32, Vec<Rec>>;

/// The records every test produces, per partition (offsets filled in from the acks). Some have
/// no key, one has no value, some carry headers (one with a null value); timestamps are fixed.
fn record(partition: u32, i: u32) -> Rec {
    let key = (!i.is_multiple_of(5)).then(|| format!("key-{partition}-{i}").into_bytes());
    let value = (i != 3).then(|| format!("value-{partition}-{i}-{}", "x".repeat(i as usize * 7)).into_bytes());
    let headers = match i % 3 {
        0 => Vec::new(),
        1 => vec![(b"trace".to_vec(), Some(format!("t{i}").into_bytes()))],
        _ => vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"empty".to_vec(), None), (b"a".to_vec(), Some(Vec::new()))],
    };
    Rec { offset: 0, timestamp: 1_700_000_000_000 + i64::from(partition) * 1_000 + i64::from(i), key, value, headers }
}

fn client_options(routing: Routing) -> ClientOptions {
    ClientOptions { routing, request_timeout_ms: 10_000, ..ClientOptions::default() }
}

fn create_topics(addr: &str, topics: &[&str]) {
    let addr = addr.to_owned();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    on_executor(move || async move {
        let client = Client::connect(&addr, ClientOptions::default()).await.unwrap();
        for topic in topics {
            client.create_topic(&topic, PARTITIONS, TopicSettings::default()).await.unwrap();
        }
    });
}

/// Produces the records to explicit partitions through `routing`; returns them with the
/// offsets the broker acknowledged.
fn produce(addr: &str, routing: Routing, topic: &str) -> Records {
    let (addr, topic) = (addr.to_owned(), topic.to_owned());
    on_executor(move || async move {
        let client = Rc::new(Client::connect(&addr, client_options(routing)).await.unwrap());
        let producer = Producer::new(client, ProducerOptions::default());
        let mut sent = Vec::new();
        for i in 0..PER_PARTITION {
            for p in 0..PARTITIONS {
                let r = record(p, i);
                let headers: Vec<(&[u8], Option<&[u8]>)> =
                    r.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
                let delivery = producer
                    .enqueue(&topic, Some(p), r.key.as_deref(), r.value.as_deref(), &headers, Some(r.timestamp))
                    .await
                    .unwrap();
                sent.push((p, r, delivery));
            }
        }
        within(WAIT, producer.flush()).await.expect("flush timed out");
        let mut out = Records::new();
        for (p, mut r, delivery) in sent {
            let ack = delivery.await.unwrap();
            assert_eq!(ack.partition, p);
            r.offset = ack.offset.unwrap();
            out.entry(p).or_default().push(r);
        }
        for rs in out.values_mut() {
            rs.sort_by_key(|r| r.offset);
        }
        out
    })
}

/// Reads every partition of `topic` from the beginning through `routing` until `total`
/// records arrived (bounded).
fn read_all(addr: &str, routing: Routing, topic: &str, total: usize) -> Records {
    let (addr, topic) = (addr.to_owned(), topic.to_owned());
    on_executor(move || async move {
        let client = Rc::new(Client::connect(&addr, client_options(routing)).await.unwrap());
        let consumer = Consumer::new(
            client,
            ConsumerOptions {
                topics: vec![topic.clone()],
                from_beginning: true,
                fetch_wait_ms_max: 100,
                ..ConsumerOptions::default()
            },
        );
        let mut out = Records::new();
        let mut count = 0;
        let reading = async {
            while count < total {
                for r in consumer.poll().await.unwrap() {
                    let headers =
                        r.headers.iter().map(|h| (h.key.to_vec(), h.value.as_deref().map(<[u8]>::to_vec))).collect();
                    out.entry(r.partition).or_default().push(Rec {
                        offset: r.offset,
                        timestamp: r.timestamp,
                        key: r.key.map(|k| k.to_vec()),
                        value: r.value.map(|v| v.to_vec()),
                        headers,
                    });
                    count += 1;
                }
            }
        };
        within(WAIT, reading).await.unwrap_or_else(|| panic!("{topic} ({routing:?}): {count} of {total} records"));
        out
    })
}

#[test]
fn forward_and_shard_aware_paths_store_and_return_the_same_records() {
    let data = temp_dir("shardlog-itest-routing-");
    let server = Server::start_with(data.path(), ServerOptions { metrics: true, ..ServerOptions::default() });
    create_topics(&server.addr, &["forwarded", "direct"]);
    let total = (PARTITIONS * PER_PARTITION) as usize;

    let m0 = server.metrics();
    let forwarded = produce(&server.addr, Routing::Forward, "forwarded");
    let m1 = server.metrics();
    let direct = produce(&server.addr, Routing::ShardAware, "direct");
    let m2 = server.metrics();

    // What was acknowledged: the same records at the same offsets, dense from 0.
    assert_eq!(forwarded, direct);
    for (p, rs) in &direct {
        assert_eq!(rs.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..u64::from(PER_PARTITION)).collect::<Vec<_>>());
        assert_eq!(rs.len(), PER_PARTITION as usize, "partition {p}");
    }

    let delta = |a: &common::Metrics, b: &common::Metrics, name: &str| b.get(name) - a.get(name);
    let forwards = "shardlog_forwards_out_total";
    // Half of the partitions live on the shard that did not accept the bootstrap connection.
    assert!(delta(&m0, &m1, forwards) > 0, "forward routing forwarded nothing:\n{}", m1.text);
    assert_eq!(delta(&m1, &m2, forwards), 0, "shard-aware produce was forwarded:\n{}", m2.text);
    for (from, to) in [(&m0, &m1), (&m1, &m2)] {
        assert!(delta(from, to, "shardlog_produce_requests_total") >= u64::from(PARTITIONS), "{}", to.text);
        assert!(delta(from, to, "shardlog_produce_bytes_total") > 0, "{}", to.text);
        assert_eq!(delta(from, to, "shardlog_produce_errors_total"), 0, "{}", to.text);
    }
    // Every forwarded request arrived at its owner (forwards_in also counts other cross-shard
    // messages, such as the metrics scrape's).
    assert!(delta(&m0, &m1, "shardlog_forwards_in_total") >= delta(&m0, &m1, forwards), "{}", m1.text);

    // Read back both topics through both paths. Shard-aware first: a forwarded long-poll fetch
    // still running after its reader is gone would count as a forward in the next interval.
    let mut reads = Vec::new();
    for routing in [Routing::ShardAware, Routing::Forward] {
        let before = server.metrics();
        for topic in ["forwarded", "direct"] {
            reads.push((routing, topic, read_all(&server.addr, routing, topic, total)));
        }
        let after = server.metrics();
        assert!(delta(&before, &after, "shardlog_fetch_requests_total") > 0);
        match routing {
            Routing::ShardAware => assert_eq!(delta(&before, &after, forwards), 0, "{}", after.text),
            Routing::Forward => assert!(delta(&before, &after, forwards) > 0, "{}", after.text),
        }
    }
    for (routing, topic, got) in &reads {
        assert_eq!(got, &direct, "{topic} read through {routing:?} differs from what was produced");
    }
}

/// A blocking connection speaking raw frames.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Raw { stream }
    }

    /// Sends `request`; the response, or `None` if the connection closed or nothing came
    /// within `timeout`.
    fn call(&mut self, id: u32, request: &Request, timeout: Duration) -> Option<Response> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        for chunk in encode_request(id, request) {
            self.stream.write_all(&chunk).ok()?;
        }
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut body).ok()?;
        let (got, response) = decode_response(Bytes::from(body)).unwrap();
        assert_eq!(got, id);
        Some(response)
    }

    /// Reads until the server closes the connection (or `timeout`); true if it closed.
    fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// xorshift64*: reproducible garbage.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn metadata_request() -> Request {
    Request::Metadata { topics: None, with_offsets: false }
}

/// Produce and consume one record with the CLI: the server still serves normal clients.
fn assert_serves_normally(server: &mut Server, topic: &str, value: &str) {
    server.assert_running();
    server.cli_stdin(&["produce", topic], format!("{value}\n").as_bytes()).success();
    let consumed = server.cli(&["consume", topic, "--from-beginning", "--timeout-ms", "3000"]);
    assert!(consumed.success().lines().any(|l| l == value), "{consumed}");
}

#[test]
fn malformed_and_oversized_frames_do_not_take_the_server_down() {
    let data = temp_dir("shardlog-itest-frames-");
    let mut server = Server::start_with(data.path(), ServerOptions { metrics: true, ..ServerOptions::default() });
    server.cli(&["topic", "create", "t", "--partitions", "2"]).success();
    let malformed_before = server.metrics().get("shardlog_malformed_frames_total");
    let mut targets = vec![server.addr.clone()];
    targets.extend(server.shard_addrs.iter().cloned());

    for addr in &targets {
        // A 4 GiB length prefix: that connection is closed, without allocating.
        let mut huge = Raw::connect(addr);
        huge.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(huge.closed_within(WAIT), "{addr}: the connection stayed open after a 4 GiB length prefix");

        // Just over the frame limit, with some body: closed too.
        let mut over = Raw::connect(addr);
        over.stream.write_all(&(FRAME_BYTES_MAX + 1).to_be_bytes()).unwrap();
        let _ = over.stream.write_all(&garbage(7, 1024));
        assert!(over.closed_within(WAIT), "{addr}: the connection stayed open after an oversized frame");

        // A well-framed body of garbage: answered MalformedRequest or closed; never a crash.
        for seed in 0..16u64 {
            let body = garbage(seed, 1 + (seed as usize * 97) % 600);
            let mut framed = Raw::connect(addr);
            let _ = framed.stream.write_all(&(body.len() as u32).to_be_bytes());
            let _ = framed.stream.write_all(&body);
            let _ = framed.stream.shutdown(Shutdown::Write);
            assert!(framed.closed_within(WAIT), "{addr}: seed {seed}: not closed after our end of stream");
        }

        // Raw garbage, its first 4 bytes taken as whatever length they say, then our end of
        // stream: the server drops the connection.
        for seed in 100..116u64 {
            let mut raw = Raw::connect(addr);
            let _ = raw.stream.write_all(&garbage(seed, 64 + (seed as usize * 131) % 8_192));
            let _ = raw.stream.shutdown(Shutdown::Write);
            assert!(raw.closed_within(WAIT), "{addr}: seed {seed}: not closed after our end of stream");
        }

        // A truncated frame, then a disconnect mid-body.
        let mut cut = Raw::connect(addr);
        cut.stream.write_all(&100u32.to_be_bytes()).unwrap();
        cut.stream.write_all(&[1, 2, 3]).unwrap();
        drop(cut);

        // And a normal request on a fresh connection to the same listener.
        let mut fine = Raw::connect(addr);
        let response = fine.call(1, &metadata_request(), WAIT);
        assert!(matches!(response, Some(Response::Metadata { .. })), "{addr}: {response:?}");
    }
    // Garbage with a readable correlation id is answered, and the connection goes on.
    let mut raw = Raw::connect(&server.addr);
    let body = [0u8, 1, 0, 0, 0, 42, 0, 0, 0, 3, 1, 2, 3];
    raw.stream.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    raw.stream.write_all(&body).unwrap();
    let mut prefix = [0u8; 4];
    raw.stream.read_exact(&mut prefix).unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(prefix) as usize];
    raw.stream.read_exact(&mut reply).unwrap();
    let (id, response) = decode_response(Bytes::from(reply)).unwrap();
    assert_eq!(id, 42);
    assert!(matches!(response, Response::Status { .. }), "{response:?}");
    assert!(matches!(raw.call(43, &metadata_request(), WAIT), Some(Response::Metadata { .. })));

    let malformed_after = server.metrics().get("shardlog_malformed_frames_total");
    assert!(malformed_after > malformed_before, "malformed frames were not counted");
    assert_serves_normally(&mut server, "t", "still-here");
}

#[test]
fn stalled_large_frames_do_not_block_other_clients() {
    let data = temp_dir("shardlog-itest-stalled-");
    let mut server = Server::start(data.path());
    server.cli(&["topic", "create", "t", "--partitions", "2"]).success();
    let shard0 = server.shard_addrs[0].clone();
    // Peers that announce frames of the largest allowed size, send a few bytes of the body and
    // then stall (a slow or malicious client). Each may cost its connection, but not the shard.
    let mut stalled = Vec::new();
    for _ in 0..5 {
        let mut raw = Raw::connect(&shard0);
        raw.stream.write_all(&FRAME_BYTES_MAX.to_be_bytes()).unwrap();
        raw.stream.write_all(&garbage(1, 100)).unwrap();
        stalled.push(raw);
    }
    std::thread::sleep(Duration::from_millis(200)); // Let the server read what they sent.
                                                    // A normal client of the same shard is still served.
    let mut fine = Raw::connect(&shard0);
    let response = fine.call(1, &metadata_request(), Duration::from_secs(10));
    assert!(
        matches!(response, Some(Response::Metadata { .. })),
        "shard 0 stopped serving other clients while 5 peers stall mid-frame: {response:?}"
    );
    drop(stalled);
    assert_serves_normally(&mut server, "t", "after-stall");
}
