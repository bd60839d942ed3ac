//! Crash loop against the real `shardlog` binary (issue #6, part 1).
//!
//! Each cycle starts the server on the same data directory, verifies everything written so
//! far, then runs producers (`acks=durable`, topic durability `sync`) and a consumer-group
//! committer against it for a random 0.2–1.0 s and kills it with SIGKILL mid-load. The last
//! cycle is followed by one more start and a full verification.
//!
//! What is checked after every restart, per partition:
//! - every batch fetched validates (`Batch::validate`: length, magic, CRC-32C, every record);
//! - offsets start at 0 and continue batch to batch with no gap;
//! - every acknowledged record is at exactly the offset its ack named, with the exact payload;
//! - every record present was sent by this test (acknowledged, or sent and not acknowledged:
//!   "maybe"), and no record appears twice anywhere;
//! - the group's committed offset never moves backwards, is at least every acknowledged commit
//!   and at most the largest commit sent.
//!
//! Nothing is retried: a send that got no ack is recorded as "maybe" and may appear at most
//! once. Usage (harness = false, so it takes its own flags):
//!
//! ```text
//! cargo test -p shardlog-server --test crash_loop -- --cycles 1000 --seed 42
//! ```
//!
//! `--cycles` defaults to 20 (`SHARDLOG_CRASH_CYCLES` also sets it); the seed is printed at
//! the start, so a failure replays (the kill moments are seeded; the interleaving of the load
//! is not, as it races real I/O).
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use client::{
    Acks, Client, ClientOptions, CommitOffset, ErrorCode, FetchPartition, ListOffsetsPartition, OffsetSpec,
    ProducePartition, TopicSettings,
};
use common::{on_executor, temp_dir, Server};
use engine::batch::{split_batches, BatchBuilder};

const TOPIC: &str = "crash";
const GROUP: &str = "crash-group";
const PARTITIONS: u32 = 4;
const PRODUCER_TASKS: u32 = 4;
const RECORDS_PER_BATCH_MAX: u64 = 8;
/// Small segments, so that crashes also land around segment rolls and sealed segments are
/// recovered too.
const SEGMENT_BYTES: u64 = 1 << 20;
const CYCLES_DEFAULT: u64 = 20;
/// How long load runs before the kill: uniform in this range.
const LOAD_MS_MIN: u64 = 200;
const LOAD_MS_MAX: u64 = 1_000;
/// Between full verifications, a cycle checks only what was appended since the last one.
const FULL_VERIFY_EVERY_CYCLES: u64 = 25;
const FETCH_BYTES_MAX: u32 = 4 << 20;
const REQUEST_TIMEOUT_MS: u64 = 5_000;

fn main() {
    let args = Args::parse();
    if args.list {
        println!("crash_loop: test");
        return;
    }
    if args.skip {
        println!("crash_loop: filtered out");
        return;
    }
    common::raise_memlock_limit();
    println!("crash_loop: seed {} cycles {}", args.seed, args.cycles);
    let started = Instant::now();
    let report = run(args.seed, args.cycles);
    println!(
        "crash_loop: seed {} cycles {} acknowledged records verified {} (batches {}), maybe records {} \
         (present {}), commits acknowledged {}, records on disk {}, duration {:.1} s",
        args.seed,
        args.cycles,
        report.acked_records,
        report.acked_batches,
        report.maybe_records,
        report.maybe_present,
        report.commits_acked,
        report.records_on_disk,
        started.elapsed().as_secs_f64()
    );
    println!("crash_loop: 1 passed, 0 failed");
}

struct Args {
    cycles: u64,
    seed: u64,
    list: bool,
    skip: bool,
}

impl Args {
    /// Takes `--cycles N`, `--seed S`, `--list`; ignores libtest's other flags. A positional
    /// argument is a test-name filter, as libtest would treat it.
    fn parse() -> Args {
        let mut cycles =
            std::env::var("SHARDLOG_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(CYCLES_DEFAULT);
        let mut seed = None;
        let mut list = false;
        let mut filters = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--cycles" => cycles = args.next().and_then(|v| v.parse().ok()).expect("--cycles N"),
                "--seed" => seed = Some(args.next().and_then(|v| v.parse().ok()).expect("--seed S")),
                "--list" => list = true,
                // libtest flags that take a value.
                "--test-threads" | "--format" | "--color" | "--skip" | "-Z" | "--logfile" | "--report-time" => {
                    let _ = args.next();
                }
                flag if flag.starts_with('-') => {}
                filter => filters.push(filter.to_owned()),
            }
        }
        let seed = seed.unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        });
        let skip = !filters.is_empty() && !filters.iter().any(|f| "crash_loop".contains(f.as_str()));
        Args { cycles, seed, list, skip }
    }
}

/// splitmix64: small, seeded, good enough for kill moments and load shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.next() % (high_inclusive - low + 1)
    }
}

/// A record's payload is a function of its id, so a changed byte is caught even under a valid
/// CRC: 8 bytes of id, then 0..120 filler bytes derived from it.
fn payload(id: u64) -> Vec<u8> {
    let filler_bytes = (id.wrapping_mul(2_654_435_761) % 120) as usize;
    let mut value = id.to_be_bytes().to_vec();
    value.extend((0..filler_bytes).map(|i| (id as u8).wrapping_add((i as u8).wrapping_mul(31))));
    value
}

fn id_of(value: &[u8]) -> Option<u64> {
    let id = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    (payload(id) == value).then_some(id)
}

/// Ids: cycle in the top 24 bits, task in the next 8, a per-task sequence in the low 32.
fn record_id(cycle: u64, task: u32, seq: u64) -> u64 {
    assert!(cycle < 1 << 24);
    assert!(seq < 1 << 32);
    (cycle << 40) | (u64::from(task) << 32) | seq
}

/// What one load phase saw before the kill.
#[derive(Default)]
struct LoadOutcome {
    /// (partition, base offset, ids in batch order) of every acknowledged produce.
    acked: Vec<(u32, u64, Vec<u64>)>,
    /// (partition, ids) of every produce sent without an ack.
    maybe: Vec<(u32, Vec<u64>)>,
    /// Per partition: the largest acknowledged commit and the largest commit sent.
    commit_acked: HashMap<u32, u64>,
    commit_sent: HashMap<u32, u64>,
    commits_acked: u64,
}

/// Everything the test knows, across cycles.
#[derive(Default)]
struct Model {
    /// Per partition, per offset: the acknowledged record's id + 1 (0: nothing acknowledged).
    acked_at: Vec<Vec<u64>>,
    /// Ids sent without an ack → their partition.
    maybe: HashMap<u64, u32>,
    /// Ids acknowledged → partition (to tell a misplaced record from a phantom).
    acked_partition: HashMap<u64, u32>,
    /// Ids seen in the verified part of each log, for the at-most-once check.
    seen: HashSet<u64>,
    /// Per partition, the log end offset verified so far.
    verified_end: Vec<u64>,
    commit_acked_max: Vec<u64>,
    commit_sent_max: Vec<u64>,
    /// Committed offset seen at the previous restart (-1: none).
    committed_seen: Vec<i64>,
    acked_records: u64,
    acked_batches: u64,
    commits_acked: u64,
}

struct Report {
    acked_records: u64,
    acked_batches: u64,
    maybe_records: u64,
    maybe_present: u64,
    commits_acked: u64,
    records_on_disk: u64,
}

fn run(seed: u64, cycles: u64) -> Report {
    let mut rng = Rng(seed);
    let data = temp_dir("shardlog-crash-loop-");
    let mut model = Model {
        acked_at: vec![Vec::new(); PARTITIONS as usize],
        verified_end: vec![0; PARTITIONS as usize],
        commit_acked_max: vec![0; PARTITIONS as usize],
        commit_sent_max: vec![0; PARTITIONS as usize],
        committed_seen: vec![-1; PARTITIONS as usize],
        ..Model::default()
    };
    let context = |cycle: u64| format!("seed {seed}, cycle {cycle}, data dir {}", data.path().display());
    let mut records_on_disk = 0;
    for cycle in 0..=cycles {
        let mut server = Server::start(data.path());
        let addr = server.addr.clone();
        if cycle == 0 {
            on_executor(move || async move {
                let client = connect(&addr).await;
                let settings = TopicSettings {
                    segment_bytes: Some(SEGMENT_BYTES),
                    durability: Some("sync".to_owned()),
                    ..TopicSettings::default()
                };
                client.create_topic(TOPIC, PARTITIONS, settings).await.unwrap();
            });
        } else {
            let full = cycle == cycles || cycle % FULL_VERIFY_EVERY_CYCLES == 0;
            records_on_disk = verify(&server, &mut model, full, &context(cycle));
        }
        if cycle == cycles {
            server.assert_running();
            server.terminate();
            break;
        }
        if cycle > 0 && cycle % 50 == 0 {
            println!("crash_loop: cycle {cycle}: {} acknowledged records verified so far", model.acked_records);
        }
        let load_ms = rng.range(LOAD_MS_MIN, LOAD_MS_MAX);
        let outcome = load_then_kill(&mut server, cycle, load_ms, &model.committed_seen);
        model.absorb(outcome);
    }
    let maybe_present = model.maybe.keys().filter(|id| model.seen.contains(id)).count() as u64;
    Report {
        acked_records: model.acked_records,
        acked_batches: model.acked_batches,
        maybe_records: model.maybe.len() as u64,
        maybe_present,
        commits_acked: model.commits_acked,
        records_on_disk,
    }
}

async fn connect(addr: &str) -> Client {
    let options = ClientOptions { request_timeout_ms: REQUEST_TIMEOUT_MS, ..ClientOptions::default() };
    Client::connect(addr, options).await.unwrap()
}

/// Runs producers and a committer against `server` and SIGKILLs it after `load_ms`.
fn load_then_kill(server: &mut Server, cycle: u64, load_ms: u64, committed: &[i64]) -> LoadOutcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let addr = server.addr.clone();
    let positions: Vec<u64> = committed.iter().map(|&c| c.max(0) as u64).collect();
    let load = {
        let (stop, started) = (stop.clone(), started.clone());
        std::thread::spawn(move || on_executor(move || load(addr, cycle, positions, stop, started)))
    };
    // Count the load time from when the client is connected.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "load did not start; {}", server.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(load_ms));
    server.assert_running();
    server.kill();
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap()
}

async fn load(
    addr: String,
    cycle: u64,
    positions: Vec<u64>,
    stop: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
) -> LoadOutcome {
    let client = Rc::new(connect(&addr).await);
    let outcome = Rc::new(RefCell::new(LoadOutcome::default()));
    started.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for task in 0..PRODUCER_TASKS {
        let (client, outcome, stop) = (client.clone(), outcome.clone(), stop.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut rng = Rng(record_id(cycle, task, 0) ^ 0x5EED);
            let mut seq = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let partition = rng.range(0, u64::from(PARTITIONS) - 1) as u32;
                let count = rng.range(1, RECORDS_PER_BATCH_MAX);
                let ids: Vec<u64> = (0..count).map(|i| record_id(cycle, task, seq + i)).collect();
                seq += count;
                let mut builder = BatchBuilder::new();
                // Real timestamps: the topic keeps Kafka's default 7-day time retention, and a
                // cycle whose server lives past the 30 s retention check (a full re-verification
                // of a large log) would otherwise rightly delete every sealed segment.
                let timestamp_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                for &id in &ids {
                    builder.push(None, Some(&payload(id)), timestamp_ms, &[]);
                }
                let batch = builder.build().unwrap();
                let request = vec![ProducePartition { topic: TOPIC.to_owned(), partition, batches: vec![batch] }];
                match client.produce(Acks::Durable, request).await {
                    Ok(results) if results.len() == 1 && results[0].error == ErrorCode::None => {
                        assert_eq!(results[0].base_offsets.len(), 1, "{results:?}");
                        outcome.borrow_mut().acked.push((partition, results[0].base_offsets[0], ids));
                    }
                    Ok(results) => {
                        // Refused outright (e.g. shutting down): it may still not be half
                        // there, but count it as maybe, which is the weaker claim.
                        outcome.borrow_mut().maybe.push((partition, ids));
                        assert!(results.len() == 1, "{results:?}");
                    }
                    Err(_) => {
                        outcome.borrow_mut().maybe.push((partition, ids));
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    let committer = {
        let (client, outcome, stop) = (client.clone(), outcome.clone(), stop.clone());
        glommio::spawn_local(commit_loop(client, outcome, stop, positions))
    };
    for task in tasks {
        task.await;
    }
    committer.await;
    drop(client);
    Rc::try_unwrap(outcome).ok().unwrap().into_inner()
}

/// Reads each partition forward from its committed offset and commits the new position, as a
/// consumer group member would (outside a generation).
async fn commit_loop(
    client: Rc<Client>,
    outcome: Rc<RefCell<LoadOutcome>>,
    stop: Arc<AtomicBool>,
    mut positions: Vec<u64>,
) {
    let mut partition = 0u32;
    while !stop.load(Ordering::SeqCst) {
        partition = (partition + 1) % PARTITIONS;
        let position = positions[partition as usize];
        let fetch = FetchPartition { topic: TOPIC.to_owned(), partition, offset: position, bytes_max: 64 << 10 };
        let next = match client.fetch(20, 1, 64 << 10, vec![fetch]).await {
            Ok(results) if results[0].error == ErrorCode::None => results[0].next_offset,
            Ok(_) => continue, // e.g. out of range after a lost unacknowledged tail.
            Err(_) => {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if next <= position {
            continue;
        }
        positions[partition as usize] = next;
        {
            let mut outcome = outcome.borrow_mut();
            let sent = outcome.commit_sent.entry(partition).or_insert(0);
            *sent = (*sent).max(next);
        }
        let commit = CommitOffset { topic: TOPIC.to_owned(), partition, offset: next, metadata: String::new() };
        match client.commit_offsets(GROUP, -1, "", vec![commit]).await {
            Ok(errors) if errors.iter().all(|e| e.error == ErrorCode::None) => {
                let mut outcome = outcome.borrow_mut();
                let acked = outcome.commit_acked.entry(partition).or_insert(0);
                *acked = (*acked).max(next);
                outcome.commits_acked += 1;
            }
            Ok(errors) => panic!("commit refused: {errors:?}"),
            Err(_) => glommio::timer::sleep(Duration::from_millis(5)).await,
        }
    }
}

impl Model {
    fn absorb(&mut self, outcome: LoadOutcome) {
        for (partition, base, ids) in outcome.acked {
            let at = &mut self.acked_at[partition as usize];
            let end = (base + ids.len() as u64) as usize;
            if at.len() < end {
                at.resize(end, 0);
            }
            for (i, id) in ids.into_iter().enumerate() {
                let slot = &mut at[base as usize + i];
                assert_eq!(*slot, 0, "two acks for offset {} of partition {partition}", base as usize + i);
                *slot = id + 1;
                self.acked_partition.insert(id, partition);
                self.acked_records += 1;
            }
            self.acked_batches += 1;
        }
        for (partition, ids) in outcome.maybe {
            for id in ids {
                self.maybe.insert(id, partition);
            }
        }
        for (partition, offset) in outcome.commit_acked {
            let max = &mut self.commit_acked_max[partition as usize];
            *max = (*max).max(offset);
        }
        for (partition, offset) in outcome.commit_sent {
            let max = &mut self.commit_sent_max[partition as usize];
            *max = (*max).max(offset);
        }
        self.commits_acked += outcome.commits_acked;
    }
}

/// One partition's batches from `from` to its end, concatenated raw.
async fn fetch_raw(client: &Client, partition: u32, from: u64) -> (Vec<Bytes>, u64) {
    let mut offset = from;
    let mut chunks = Vec::new();
    loop {
        let fetch = FetchPartition { topic: TOPIC.to_owned(), partition, offset, bytes_max: FETCH_BYTES_MAX };
        let results = client.fetch(0, 0, FETCH_BYTES_MAX, vec![fetch]).await.unwrap();
        let result = &results[0];
        assert_eq!(result.error, ErrorCode::None, "fetch {partition}@{offset}: {result:?}");
        let end = result.log_end_offset;
        if offset >= end {
            return (chunks, end);
        }
        let mut bytes = BytesMut::new();
        for chunk in &result.records {
            bytes.extend_from_slice(chunk);
        }
        assert!(!bytes.is_empty() || result.next_offset > offset, "no progress at {partition}@{offset}: {result:?}");
        offset = result.next_offset.max(offset);
        chunks.push(bytes.freeze());
    }
}

/// Checks the logs against the model; returns the records on disk. `full` re-reads every log
/// from offset 0, otherwise only what follows the previously verified end.
fn verify(server: &Server, model: &mut Model, full: bool, context: &str) -> u64 {
    let addr = server.addr.clone();
    let ends = model.verified_end.clone();
    let fetched: Vec<(Vec<Bytes>, u64, u64)> = on_executor(move || async move {
        let client = connect(&addr).await;
        let latest = (0..PARTITIONS)
            .map(|partition| ListOffsetsPartition { topic: TOPIC.to_owned(), partition, spec: OffsetSpec::Latest })
            .collect();
        let latest = client.list_offsets(latest).await.unwrap();
        // A log that ends before what was verified lost (unacknowledged) records: re-read all.
        let shrank = latest.iter().any(|l| (l.offset as u64) < ends[l.partition as usize]);
        let mut out = Vec::new();
        for partition in 0..PARTITIONS {
            let from = if full || shrank { 0 } else { ends[partition as usize] };
            let (chunks, end) = fetch_raw(&client, partition, from).await;
            out.push((chunks, from, end));
        }
        out
    });
    if fetched.iter().all(|(_, from, _)| *from == 0) {
        model.seen.clear();
    }
    let mut records_on_disk = 0;
    for (partition, (chunks, from, end)) in fetched.into_iter().enumerate() {
        let partition = partition as u32;
        let mut next = from;
        for chunk in chunks {
            for batch in split_batches(chunk) {
                let batch = batch.unwrap_or_else(|e| panic!("{context}: partition {partition} at {next}: {e}"));
                assert_eq!(batch.base_offset() as u64, next, "{context}: offset gap in partition {partition}");
                for record in batch.records() {
                    let record = record.unwrap_or_else(|e| panic!("{context}: {partition}@{next}: {e}"));
                    assert_eq!(record.offset as u64, next, "{context}: partition {partition}");
                    let value = record.value.unwrap_or_else(|| panic!("{context}: {partition}@{next} has no value"));
                    let id = id_of(&value)
                        .unwrap_or_else(|| panic!("{context}: {partition}@{next}: payload not one this test sent"));
                    model.check_record(partition, next, id, context);
                    next += 1;
                }
            }
        }
        assert_eq!(next, end, "{context}: partition {partition} fetched up to {next}, log end {end}");
        // Every acknowledged offset lies below the end.
        let at = &model.acked_at[partition as usize];
        if let Some(last) = at.iter().rposition(|&slot| slot != 0) {
            assert!(
                (last as u64) < end,
                "{context}: acknowledged record {partition}@{last} lost: the log ends at {end}"
            );
        }
        model.verified_end[partition as usize] = end;
        records_on_disk += end;
    }
    model.check_commits(server, context);
    records_on_disk
}

impl Model {
    fn check_record(&mut self, partition: u32, offset: u64, id: u64, context: &str) {
        let expected = self.acked_at[partition as usize].get(offset as usize).copied().unwrap_or(0);
        if expected != 0 {
            assert_eq!(
                id,
                expected - 1,
                "{context}: {partition}@{offset} holds record {id:#x}, acknowledged there was {:#x}",
                expected - 1
            );
        } else {
            match (self.maybe.get(&id), self.acked_partition.get(&id)) {
                (Some(&p), _) if p == partition => {}
                (_, Some(&p)) => panic!(
                    "{context}: record {id:#x} (acknowledged in partition {p}) appears again at {partition}@{offset}"
                ),
                _ => panic!("{context}: {partition}@{offset} holds record {id:#x}, never sent to this partition"),
            }
        }
        assert!(self.seen.insert(id), "{context}: record {id:#x} appears twice (again at {partition}@{offset})");
    }

    fn check_commits(&mut self, server: &Server, context: &str) {
        let addr = server.addr.clone();
        let offsets = on_executor(move || async move {
            let client = connect(&addr).await;
            client.fetch_offsets(GROUP, None).await.unwrap()
        });
        let mut committed = vec![-1i64; PARTITIONS as usize];
        for offset in offsets {
            assert_eq!(offset.error, ErrorCode::None, "{context}: {offset:?}");
            assert_eq!(offset.topic, TOPIC);
            committed[offset.partition as usize] = offset.offset;
        }
        for (p, &now) in committed.iter().enumerate() {
            assert!(
                now >= self.committed_seen[p],
                "{context}: committed offset of partition {p} went back from {} to {now}",
                self.committed_seen[p]
            );
            let acked = self.commit_acked_max[p];
            if acked > 0 {
                assert!(
                    now >= acked as i64,
                    "{context}: partition {p}: acknowledged commit {acked} lost, committed {now}"
                );
            }
            assert!(now <= self.commit_sent_max[p] as i64, "{context}: partition {p}: committed {now}, never sent");
            self.committed_seen[p] = now;
        }
    }
}
