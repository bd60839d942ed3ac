//! Memory with many partitions (issue #11): one batch cache per shard with one byte budget.
//! 2 000 partitions are each written 256 KiB (512 MiB in all, 8× the two shards' budgets of
//! 32 MiB each); the broker's resident memory must stay within what it used with the 2 000
//! partitions idle, plus the cache budgets, plus the appenders' chunk pools, plus a fixed
//! allowance for request buffers and allocator slack. Before, every partition had its own
//! 16 MiB tail cache: all 512 MiB stayed resident.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::raw::Raw;
use common::{temp_dir, Server, ServerOptions};
use engine::batch::BatchBuilder;
use protocol::messages::{Acks, ErrorCode, ProducePartition, Request, Response, TopicSettings};

const PARTITIONS: u32 = 2_000;
const SHARDS: usize = 2;
const CACHE_BYTES_PER_SHARD: u64 = 32 << 20;
/// Bytes written to each partition, in batches of `BATCH_BYTES`.
const BYTES_PER_PARTITION: usize = 256 << 10;
const BATCH_BYTES: usize = 32 << 10;
/// Partitions per produce request (one request in flight at a time).
const PARTITIONS_PER_REQUEST: u32 = 100;
/// Each shard's pool of free 1 MiB write buffers (`engine::limits::CHUNK_POOL_BUFFERS_MAX`).
const CHUNK_POOL_BYTES_PER_SHARD: u64 =
    (engine::limits::CHUNK_POOL_BUFFERS_MAX * engine::limits::WRITE_CHUNK_BYTES) as u64;
/// The request being served, its copy in flight to another shard, allocator slack.
const FIXED_ALLOWANCE_BYTES: u64 = 96 << 20;

fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

fn batch(value: &[u8]) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(BATCH_BYTES + 64);
    builder.push(None, Some(value), 1_700_000_000_000, &[]);
    builder.build().unwrap()
}

/// What one run measured.
struct Measured {
    idle: u64,
    after: u64,
    cached: u64,
    written: u64,
}

impl Measured {
    /// Idle RSS plus the two caches' budgets of `CACHE_BYTES_PER_SHARD`, the chunk pools and the
    /// fixed allowance.
    fn bound(&self) -> u64 {
        self.idle + SHARDS as u64 * (CACHE_BYTES_PER_SHARD + CHUNK_POOL_BYTES_PER_SHARD) + FIXED_ALLOWANCE_BYTES
    }
}

/// Writes `BYTES_PER_PARTITION` to each of `PARTITIONS` partitions of a broker whose shards
/// have `cache_bytes` of batch cache each; measures its RSS before and after.
fn write_and_measure(cache_bytes: u64) -> Measured {
    let data = temp_dir("shardlog-memory-");
    let options = ServerOptions {
        shards: SHARDS,
        metrics: true,
        extra_args: vec!["--batch-cache-bytes".into(), cache_bytes.to_string()],
        ..ServerOptions::default()
    };
    let server = Server::start_with(data.path(), options);
    let mut raw = Raw::connect(&server.addr);
    let settings = TopicSettings { durability: Some("none".into()), ..TopicSettings::default() };
    match raw.call(Request::CreateTopic { name: "many".into(), partitions: PARTITIONS, settings }) {
        Response::Status { error: ErrorCode::None, .. } => {}
        other => panic!("{other:?}"),
    }
    let idle = rss_bytes(server.pid());
    let value = vec![b'x'; BATCH_BYTES - 100];
    let one = batch(&value);
    for _round in 0..BYTES_PER_PARTITION / BATCH_BYTES {
        for first in (0..PARTITIONS).step_by(PARTITIONS_PER_REQUEST as usize) {
            let partitions = (first..first + PARTITIONS_PER_REQUEST)
                .map(|p| ProducePartition { topic: "many".into(), partition: p, batches: vec![one.clone()] })
                .collect();
            let request = Request::Produce { acks: Acks::Leader, timeout_ms: 30_000, partitions };
            let (id, frame) = raw.frame(&request);
            if std::io::Write::write_all(&mut raw.stream, &frame).is_err() {
                panic!("the broker closed the connection\n{}", server.diagnostics());
            }
            let mut prefix = [0u8; 4];
            if std::io::Read::read_exact(&mut raw.stream, &mut prefix).is_err() {
                panic!("the broker closed the connection\n{}", server.diagnostics());
            }
            let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
            std::io::Read::read_exact(&mut raw.stream, &mut body).unwrap();
            let (got, response) = protocol::codec::decode_response(Bytes::from(body)).unwrap();
            assert_eq!(got, id);
            match response {
                Response::Produce { partitions } => {
                    assert!(partitions.iter().all(|p| p.error == ErrorCode::None), "{:?}", partitions[0])
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let measured = Measured {
        idle,
        after: rss_bytes(server.pid()),
        cached: server.metrics().get("shardlog_batch_cache_bytes"),
        written: u64::from(PARTITIONS) * BYTES_PER_PARTITION as u64,
    };
    eprintln!(
        "memory: cache {} MiB per shard; {PARTITIONS} partitions, {} MiB written; RSS idle {} MiB, after {} MiB \
         (bound {} MiB); cached {} MiB",
        cache_bytes >> 20,
        measured.written >> 20,
        measured.idle >> 20,
        measured.after >> 20,
        measured.bound() >> 20,
        measured.cached >> 20
    );
    measured
}

#[test]
fn two_thousand_partitions_written_past_the_cache_budget_stay_within_it() {
    let m = write_and_measure(CACHE_BYTES_PER_SHARD);
    assert!(m.cached <= SHARDS as u64 * CACHE_BYTES_PER_SHARD, "the caches hold {} bytes", m.cached);
    assert!(
        m.after <= m.bound(),
        "RSS {} bytes after writing {}: over {} (idle {})",
        m.after,
        m.written,
        m.bound(),
        m.idle
    );
}

/// Negative control: with caches large enough to keep everything written (as one 16 MiB tail
/// cache per partition did), the same measure goes over the bound — the test can fail.
#[test]
fn caches_that_keep_everything_go_over_the_bound() {
    let m = write_and_measure(1 << 30);
    assert!(m.cached >= m.written / 2, "the caches should have kept most of it: {}", m.cached);
    assert!(
        m.after > m.bound(),
        "RSS {} bytes: not over {}, so the bound would not catch an unbounded cache",
        m.after,
        m.bound()
    );
}
