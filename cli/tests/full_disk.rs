//! A full disk under the real `shardlog` binary (issue #6, part 3). The data directory is a
//! small ext4 file system on a loop device (needs root; `SHARDLOG_SKIP_LOOP_TESTS=1` skips
//! where that is impossible, saying so). Two runs:
//! - with `--disk-free-floor-bytes`: producing until rejected ends with `DiskFull` naming the
//!   floor, while the disk still has room;
//! - with no floor: producing until rejected ends with `DiskFull` from a real ENOSPC.
//!
//! In both, fetches keep working, every acknowledged batch reads back intact (a topic written
//! before the fill, and the filled one from its log start), the rejection makes the broker
//! apply retention at once, produce works again once retention freed space, and everything
//! is still intact after a graceful restart.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../engine/tests/common/loop_mount.rs"]
mod loop_mount;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::Raw;
use engine::batch::{split_batches, BatchBuilder};
use loop_mount::LoopMount;
use protocol::messages::*;

const IMAGE_BYTES: u64 = 64 << 20;
/// 64 records of 4000 bytes ≈ 256 KiB a batch.
const BATCH_RECORDS: u32 = 64;
const VALUE_BYTES: usize = 4000;
/// A 64 MiB file system holds at most ~250 such batches: the fill must stop well before this.
const PRODUCES_MAX: u64 = 1_000;
const SEGMENT_BYTES: u64 = 1 << 20;
const RETENTION_BYTES: u64 = 4 << 20;
/// How long produce may keep failing after the rejection (retention runs at once; the floor
/// is re-read every 100 ms). A bound for the test, not a timing assertion.
const RECOVERY_WAIT: Duration = Duration::from_secs(30);

fn free_bytes(path: &Path) -> u64 {
    engine::free_bytes(path).unwrap()
}

// ---- the broker process and a blocking client -------------------------------------------

/// `shardlog serve` on one shard; SIGKILLed on drop if still running.
struct Broker {
    child: Child,
    addr: String,
    stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

impl Broker {
    fn start(data_dir: &Path, floor_bytes: u64) -> Broker {
        Broker::start_logging(data_dir, floor_bytes, None)
    }

    /// `stderr`: where the server logs (default: a file the test reads on failure).
    fn start_logging(data_dir: &Path, floor_bytes: u64, stderr: Option<std::fs::File>) -> Broker {
        common::raise_memlock_limit();
        let logs = common::temp_dir("shardlog-fulldisk-logs-");
        let stderr_path = logs.path().join("stderr");
        // Logging somewhere given: log everything, so that every request writes log lines.
        let log_level = if stderr.is_some() { "debug" } else { "info" };
        let stderr = stderr.unwrap_or_else(|| std::fs::File::create(&stderr_path).unwrap());
        let mut child = Command::new(common::binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--data-dir"])
            .arg(data_dir)
            .args(["--disk-free-floor-bytes", &floor_bytes.to_string()])
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let addr = first
            .strip_prefix("shardlog listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!("server did not start: {first:?}\n{}", std::fs::read_to_string(&stderr_path).unwrap_or_default())
            })
            .to_owned();
        Broker { child, addr, stderr_path, _logs: logs }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + common::WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "server exited with {status}:\n{}", self.stderr());
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's client: the shared raw client plus the calls this test makes.
struct Client(Raw);

impl Client {
    fn connect(addr: &str) -> Client {
        Client(Raw::connect(addr))
    }

    fn call(&mut self, request: Request) -> Response {
        self.0.call(request)
    }

    fn create_topic(&mut self, name: &str, retention_bytes: Option<u64>) {
        let settings =
            TopicSettings { segment_bytes: Some(SEGMENT_BYTES), retention_bytes, ..TopicSettings::default() };
        let response = self.call(Request::CreateTopic { name: name.into(), partitions: 1, settings });
        assert_eq!(response, Response::ok(), "create {name}");
    }

    fn produce(&mut self, topic: &str, batch: &Bytes) -> ProducePartitionResult {
        let partitions = vec![ProducePartition { topic: topic.into(), partition: 0, batches: vec![batch.clone()] }];
        match self.call(Request::Produce { acks: Acks::Durable, timeout_ms: 30_000, partitions }) {
            Response::Produce { mut partitions } => partitions.pop().unwrap(),
            other => panic!("produce to {topic}: {other:?}"),
        }
    }

    fn fetch(&mut self, topic: &str, offset: u64) -> FetchPartitionResult {
        let partitions = vec![FetchPartition { topic: topic.into(), partition: 0, offset, bytes_max: 4 << 20 }];
        match self.call(Request::Fetch { wait_ms_max: 0, bytes_min: 0, bytes_max: 4 << 20, partitions }) {
            Response::Fetch { mut partitions } => partitions.pop().unwrap(),
            other => panic!("fetch {topic}@{offset}: {other:?}"),
        }
    }

    /// Reads `topic` from its log start to its end; checks each batch is one we had
    /// acknowledged at that offset, and that every acknowledged batch from the start is there.
    fn check_topic(&mut self, topic: &str, acked: &[(u64, Bytes)]) -> u64 {
        let first = self.fetch(topic, 0);
        let start = match first.error {
            ErrorCode::None => 0,
            ErrorCode::OffsetOutOfRange => first.log_start_offset,
            e => panic!("fetch {topic}@0: {e:?}"),
        };
        let mut offset = start;
        let mut got = Vec::new();
        loop {
            let r = self.fetch(topic, offset);
            assert_eq!(r.error, ErrorCode::None, "fetch {topic}@{offset}: {r:?}");
            if r.records.is_empty() {
                assert_eq!(offset, r.log_end_offset, "empty fetch before the end of {topic}");
                break;
            }
            let mut bytes = Vec::new();
            for c in &r.records {
                bytes.extend_from_slice(c);
            }
            for b in split_batches(Bytes::from(bytes)) {
                let b = b.unwrap();
                assert_eq!(b.base_offset() as u64, offset, "{topic}: offsets not contiguous");
                got.push((offset, b.bytes().slice(16..)));
                offset = b.last_offset() as u64 + 1;
            }
        }
        let expected: Vec<(u64, Bytes)> =
            acked.iter().filter(|(o, _)| *o >= start).map(|(o, b)| (*o, b.slice(16..))).collect();
        assert_eq!(got.len(), expected.len(), "{topic}: batches from {start}");
        assert!(got == expected, "{topic}: a fetched batch differs from what was acknowledged");
        start
    }
}

fn big_batch(seed: u64) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..BATCH_RECORDS {
        let mut value = vec![(seed % 251) as u8; VALUE_BYTES];
        value[..8].copy_from_slice(&seed.to_be_bytes());
        value[8..12].copy_from_slice(&i.to_be_bytes());
        builder.push(Some(format!("k{seed}-{i}").as_bytes()), Some(&value), 1_000 + i64::from(i), &[]);
    }
    builder.build().unwrap()
}

/// Produces one batch that must be acknowledged at the end of `topic`.
fn produce_ok(client: &mut Client, topic: &str, seed: u64, acked: &mut Vec<(u64, Bytes)>) {
    let b = big_batch(seed);
    let r = client.produce(topic, &b);
    assert_eq!(r.error, ErrorCode::None, "produce {topic}: {}", r.message);
    acked.push((r.base_offsets[0], b));
}

fn fill_then_recover(test: &str, floor_bytes: u64) {
    let Some(mount) = LoopMount::new_or_skip(test, IMAGE_BYTES) else {
        return;
    };
    let data_dir = mount.path().join("data");
    let broker = Broker::start(&data_dir, floor_bytes);
    let mut client = Client::connect(&broker.addr);
    client.create_topic("keep", None);
    client.create_topic("roll", Some(RETENTION_BYTES));

    // Written before the disk fills: must stay intact throughout.
    let mut keep = Vec::new();
    for seed in 0..4 {
        produce_ok(&mut client, "keep", seed, &mut keep);
    }

    // Fill until a produce is refused.
    let mut roll = Vec::new();
    let mut refused = None;
    for seed in 100..100 + PRODUCES_MAX {
        let b = big_batch(seed);
        let r = client.produce("roll", &b);
        if r.error != ErrorCode::None {
            refused = Some(r);
            break;
        }
        roll.push((r.base_offsets[0], b));
    }
    let refused = refused.unwrap_or_else(|| panic!("{PRODUCES_MAX} produces never filled {IMAGE_BYTES} bytes"));
    let free_at_refusal = free_bytes(mount.path());
    println!(
        "{test}: {} batches acknowledged, then {:?}: {} ({free_at_refusal} bytes free)",
        roll.len(),
        refused.error,
        refused.message
    );
    assert_eq!(refused.error, ErrorCode::DiskFull, "{}\n{}", refused.message, broker.stderr());
    assert!(roll.len() > 20, "only {} batches fitted", roll.len());
    if floor_bytes > 0 {
        assert!(refused.message.contains("disk_free_floor_bytes"), "{}", refused.message);
        assert!(free_at_refusal > floor_bytes / 2, "the floor did not keep space free: {free_at_refusal}");
    } else {
        assert!(refused.message.contains("disk full"), "{}", refused.message);
    }

    // Fetches keep working; nothing acknowledged is damaged. (The refusal already woke
    // retention, so `roll` may start later than 0; everything from its start is checked.)
    client.check_topic("keep", &keep);
    client.check_topic("roll", &roll);

    // Retention frees space; produce works again.
    let deadline = Instant::now() + RECOVERY_WAIT;
    let mut seed = 10_000;
    loop {
        let b = big_batch(seed);
        let r = client.produce("roll", &b);
        if r.error == ErrorCode::None {
            roll.push((r.base_offsets[0], b));
            break;
        }
        assert_eq!(r.error, ErrorCode::DiskFull, "{}", r.message);
        assert!(Instant::now() < deadline, "produce still refused after {RECOVERY_WAIT:?}: {}", r.message);
        std::thread::sleep(Duration::from_millis(100));
        seed += 1;
    }
    let start = client.check_topic("roll", &roll);
    assert!(start > 0, "retention deleted nothing, yet produce works again");
    for seed in 20_000..20_004 {
        produce_ok(&mut client, "roll", seed, &mut roll);
    }
    produce_ok(&mut client, "keep", 20_010, &mut keep);
    client.check_topic("keep", &keep);
    let start = client.check_topic("roll", &roll);
    drop(client);
    broker.stop();

    // Everything survives a graceful restart.
    let broker = Broker::start(&data_dir, floor_bytes);
    let mut client = Client::connect(&broker.addr);
    client.check_topic("keep", &keep);
    assert_eq!(client.check_topic("roll", &roll), start);
    produce_ok(&mut client, "roll", 30_000, &mut roll);
    drop(client);
    broker.stop();
}

#[test]
fn free_space_floor_refuses_producers_before_the_disk_is_full() {
    fill_then_recover("free_space_floor_refuses_producers_before_the_disk_is_full", 16 << 20);
}

#[test]
fn full_disk_without_a_floor_refuses_producers_and_recovers() {
    fill_then_recover("full_disk_without_a_floor_refuses_producers_and_recovers", 0);
}

/// The disk the broker logs to is full (stderr on /dev/full: every write fails with ENOSPC)
/// while its data disk is fine: it must keep serving and stop cleanly. tracing-subscriber
/// reported a failed log write with `eprintln!`, which panics when stderr cannot be written;
/// on a shard that was a shard panic and exit 70 (seen with a full /tmp).
#[test]
fn a_full_log_disk_does_not_stop_the_broker() {
    let data = common::temp_dir("shardlog-fulllog-");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let broker = Broker::start_logging(data.path(), 0, Some(full));
    let mut client = Client::connect(&broker.addr);
    client.create_topic("t", None);
    let mut acked = Vec::new();
    for seed in 0..8 {
        produce_ok(&mut client, "t", seed, &mut acked);
    }
    client.check_topic("t", &acked);
    broker.stop();
}
