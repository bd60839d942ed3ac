//! SIGKILL during `Durability::Sync` appends: every acknowledged batch survives, byte for byte,
//! at its acknowledged offset, and appends continue at the recovered log end.
//!
//! The test binary re-executes itself as the child (`crash_child`, a no-op unless
//! `SHARDLOG_CRASH_CHILD_DIR` is set). The child appends from several tasks and prints one
//! `ACK` line per acknowledged batch; the parent kills it with SIGKILL after a random number
//! of acks, reopens the log in-process and checks it. Set `SHARDLOG_CRASH_SEED` to replay a run.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use engine::batch::{Batch, BatchBuilder};
use engine::{Durability, Log, LogConfig};

const CHILD_DIR_ENV: &str = "SHARDLOG_CRASH_CHILD_DIR";
const CHILD_GEN_ENV: &str = "SHARDLOG_CRASH_CHILD_GEN";
const CHILD_SEED_ENV: &str = "SHARDLOG_CRASH_CHILD_SEED";
const SEED_ENV: &str = "SHARDLOG_CRASH_SEED";

/// Kill/recover cycles on the same directory.
const CYCLES: u64 = 5;
/// Concurrent appending tasks in the child.
const CHILD_TASKS: u64 = 4;
/// The child exits on its own after this many appends, so it can never run forever.
const CHILD_APPENDS_MAX: u64 = 20_000;
/// The kill comes after a random number of acks in this range...
const KILL_AFTER_ACKS: std::ops::RangeInclusive<u64> = 5..=300;
/// ...or this long after the first ack, whichever is first (never hang).
const KILL_DEADLINE: Duration = Duration::from_secs(10);
/// A child that has not acknowledged anything after this long is hung or broken.
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// `task` value of the batch the parent appends after each recovery.
const PARENT_TASK: u64 = 99;

/// Segments of 1.5 MiB: several rolls per cycle, and each segment crosses a 1 MiB write chunk.
fn crash_config() -> LogConfig {
    LogConfig { segment_bytes: 1536 << 10, preallocate_step_bytes: 64 << 10, ..LogConfig::default() }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The batch the child (or the parent, with `PARENT_TASK`) appends as `(gen, task, seq)`:
/// deterministic, 1–8 records, about 100 B to 64 KiB in all.
fn crash_batch(seed: u64, gen: u64, task: u64, seq: u64) -> Bytes {
    let mut state = seed ^ (gen << 48) ^ (task << 40) ^ seq;
    let h = splitmix64(&mut state);
    let total_bytes = match h % 100 {
        0..50 => 100 + (h >> 8) % 4_000,
        50..80 => 4_096 + (h >> 8) % (28 << 10),
        _ => (32 << 10) + (h >> 8) % (31 << 10),
    } as usize;
    let count = 1 + (h >> 40) % 8;
    let value_bytes = (total_bytes / count as usize).saturating_sub(40).max(1);
    let mut builder = BatchBuilder::new();
    for i in 0..count {
        let key = format!("g{gen}-t{task}-s{seq}-r{i}");
        let mut value = Vec::with_capacity(value_bytes + 8);
        while value.len() < value_bytes {
            value.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        value.truncate(value_bytes);
        builder.push(Some(key.as_bytes()), Some(&value), 1_700_000_000_000 + (seq * 10 + i) as i64, &[]);
    }
    builder.build().unwrap()
}

/// `(gen, task, seq)` from a stored batch body (bytes 16.. as `read_all` returns them).
fn batch_id(base_offset: i64, body: &Bytes) -> (u64, u64, u64) {
    let mut bytes = Vec::with_capacity(body.len() + 16);
    bytes.extend_from_slice(&base_offset.to_be_bytes());
    bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    bytes.extend_from_slice(&0i32.to_be_bytes()); // Leader epoch: not covered by the CRC.
    bytes.extend_from_slice(body);
    let batch = Batch::validate(Bytes::from(bytes)).unwrap();
    let record = batch.records().next().unwrap().unwrap();
    let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
    let parts: Vec<u64> =
        key.split('-').take(3).map(|p| p[1..].parse().unwrap_or_else(|_| panic!("bad key {key:?}"))).collect();
    (parts[0], parts[1], parts[2])
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a u64")))
}

/// Child mode: the SIGKILL tests re-execute this binary to run it (`--ignored`); on its own it
/// is ignored, and says so if run anyway.
#[test]
#[ignore = "the child process of the SIGKILL tests; they start it"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV).map(PathBuf::from) else {
        let line =
            format!("\nSKIPPED: crash_child runs only as the child of the SIGKILL tests ({CHILD_DIR_ENV} unset)\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    };
    let gen = env_u64(CHILD_GEN_ENV).unwrap();
    let seed = env_u64(CHILD_SEED_ENV).unwrap();
    run(move || async move {
        engine::cache::set_shard_budget_bytes(256 << 10);
        let log = Log::open(&dir, crash_config()).await.unwrap();
        say(&format!("READY {}", log.log_end_offset()));
        let budget = Rc::new(Cell::new(CHILD_APPENDS_MAX));
        let mut tasks = Vec::new();
        for task in 0..CHILD_TASKS {
            let (log, budget) = (log.clone(), budget.clone());
            tasks.push(glommio::spawn_local(async move {
                let mut seq = 0u64;
                while budget.get() > 0 {
                    budget.set(budget.get() - 1);
                    let batch = crash_batch(seed, gen, task, seq);
                    let info = log.append(&[batch], Durability::Sync).await.unwrap();
                    let count = info.log_end_offset.delta_from(info.base_offsets[0]).unwrap();
                    say(&format!("ACK {} {task} {seq} {count}", info.base_offsets[0]));
                    seq += 1;
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        say("DONE");
        // Exit without closing: to the next open this is a crash too.
        std::process::exit(0);
    });
}

/// One line to the parent, flushed at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Kills the child if the parent fails while it runs.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    offset: u64,
    task: u64,
    seq: u64,
    count: u32,
}

struct ChildRun {
    ready_end_offset: u64,
    acks: Vec<Ack>,
    /// The child ran out of appends and exited before the kill.
    done: bool,
}

/// Runs the child on `dir` as generation `gen` and SIGKILLs it after `kill_after` acks.
fn run_child(dir: &Path, seed: u64, gen: u64, kill_after: u64) -> ChildRun {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_GEN_ENV, gen.to_string())
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut run = ChildRun { ready_end_offset: u64::MAX, acks: Vec::new(), done: false };
    let started = Instant::now();
    let mut first_ack_at: Option<Instant> = None;
    let mut eof = false;
    while (run.acks.len() as u64) < kill_after {
        let deadline = match first_ack_at {
            Some(at) => at + KILL_DEADLINE,
            None => started + FIRST_ACK_TIMEOUT,
        };
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            assert!(first_ack_at.is_some(), "child (gen {gen}) acknowledged nothing in {FIRST_ACK_TIMEOUT:?}");
            break;
        };
        match rx.recv_timeout(left) {
            Ok(line) => {
                parse_line(&line, &mut run);
                if !run.acks.is_empty() && first_ack_at.is_none() {
                    first_ack_at = Some(Instant::now());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eof = true;
                break;
            }
        }
    }
    if !eof {
        child.0.kill().unwrap(); // SIGKILL.
    }
    let status = child.0.wait().unwrap();
    // The pipe keeps what the child wrote before it died: those acks count too.
    reader.join().unwrap();
    for line in rx.try_iter() {
        parse_line(&line, &mut run);
    }
    use std::os::unix::process::ExitStatusExt;
    let killed = !eof && status.signal() == Some(libc::SIGKILL);
    // Otherwise it must have exited normally after its last append (it may beat the kill).
    assert!(killed || (status.success() && run.done), "child (gen {gen}) ended with {status}");
    assert_ne!(run.ready_end_offset, u64::MAX, "child (gen {gen}) never opened the log");
    run
}

fn parse_line(line: &str, run: &mut ChildRun) {
    // libtest prints "test crash_child ... " before the first line of the child's output.
    let line = line.strip_prefix("test crash_child ... ").unwrap_or(line);
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["READY", end] => run.ready_end_offset = end.parse().unwrap(),
        ["ACK", offset, task, seq, count] => run.acks.push(Ack {
            offset: offset.parse().unwrap(),
            task: task.parse().unwrap(),
            seq: seq.parse().unwrap(),
            count: count.parse().unwrap(),
        }),
        ["DONE"] => run.done = true,
        _ => {} // libtest's own output.
    }
}

/// What an acknowledged batch must look like after recovery.
#[derive(Clone)]
struct Expected {
    id: (u64, u64, u64),
    count: u32,
    body: Bytes,
}

struct Recovered {
    /// The whole log after recovery plus the parent's append.
    batches: Vec<(i64, u32, Bytes)>,
    log_end_offset: u64,
    unacked_survivors: usize,
    segments: u32,
}

/// Reopens the log after a crash and checks it against everything acknowledged so far and
/// against what the previous recovery found (`baseline`); then appends one batch.
fn recover_and_check(
    dir: PathBuf,
    seed: u64,
    gen: u64,
    acked: BTreeMap<u64, Expected>,
    baseline: Vec<(i64, u32, Bytes)>,
    close_cleanly: bool,
) -> Recovered {
    run(move || async move {
        let log = Log::open(&dir, crash_config()).await.unwrap();
        assert_eq!(log.log_start_offset(), o(0));
        let end = log.log_end_offset();
        assert_eq!(log.durable_end_offset(), end, "everything recovered is durable");
        // Each acknowledged batch on its own first, for a clear message when one is lost.
        for (offset, expected) in &acked {
            let read = log.read(o(*offset), 1).await.unwrap_or_else(|e| {
                panic!(
                    "gen {gen}: acknowledged batch {:?} at offset {offset} unreadable (log end {end}): {e}",
                    expected.id
                )
            });
            let first = batch_bodies(read.to_bytes()).into_iter().next();
            assert!(
                first.is_some_and(|(base, _, body)| base as u64 == *offset && body == expected.body),
                "gen {gen}: acknowledged batch {:?} at offset {offset} is missing or differs (log end {end})",
                expected.id
            );
        }
        // Contiguous offsets from 0 to the log end, every batch CRC-valid.
        let all = read_all(&log, o(0)).await;
        assert_eq!(o(all.last().map_or(0, |(base, count, _)| *base as u64 + u64::from(*count))), end);
        // What an earlier recovery found (and the parent then synced past) is still there.
        assert!(all.len() >= baseline.len(), "gen {gen}: {} batches now, {} before", all.len(), baseline.len());
        for (i, (now, before)) in all.iter().zip(&baseline).enumerate() {
            assert!(now == before, "gen {gen}: batch #{i} at offset {} changed since the last recovery", before.0);
        }
        // Every acknowledged batch, byte for byte, at its offset.
        let by_offset: BTreeMap<u64, &(i64, u32, Bytes)> = all.iter().map(|b| (b.0 as u64, b)).collect();
        for (offset, expected) in &acked {
            let Some((_, count, body)) = by_offset.get(offset) else {
                panic!("gen {gen}: acknowledged batch {:?} at offset {offset} is missing (log end {end})", expected.id);
            };
            assert_eq!(*count, expected.count, "gen {gen}: record count at offset {offset}");
            assert!(*body == expected.body, "gen {gen}: batch {:?} at offset {offset} differs", expected.id);
        }
        // Everything present, acknowledged or not, is a batch that was appended, intact, once.
        let mut seen = HashSet::new();
        let mut unacked_survivors = 0;
        for (base, count, body) in &all {
            let id = batch_id(*base, body);
            assert!(seen.insert(id), "gen {gen}: batch {id:?} present twice (again at offset {base})");
            let rebuilt = crash_batch(seed, id.0, id.1, id.2);
            assert!(*body == rebuilt.slice(16..), "gen {gen}: batch {id:?} at offset {base} is not what was appended");
            assert!(id.0 <= gen, "gen {gen}: batch {id:?} from the future");
            assert_eq!(*count, Batch::validate(rebuilt).unwrap().record_count(), "gen {gen}: batch {id:?} count");
            if id.0 == gen && !acked.contains_key(&(*base as u64)) {
                unacked_survivors += 1;
            }
        }
        // Appends continue at the recovered end, and read back.
        let batch = crash_batch(seed, gen, PARENT_TASK, 0);
        let info = log.append(std::slice::from_ref(&batch), Durability::Sync).await.unwrap();
        assert_eq!(info.base_offsets, vec![end], "gen {gen}: first append after recovery");
        let read = log.read(end, 1 << 20).await.unwrap();
        let bodies = batch_bodies(read.to_bytes());
        assert_eq!(bodies.len(), 1);
        assert_eq!(o(bodies[0].0 as u64), end);
        assert!(bodies[0].2 == batch.slice(16..));
        let batches = read_all(&log, o(0)).await;
        let log_end_offset = log.log_end_offset().get();
        let segments = log.stats().segments;
        // Alternate a clean close and a plain drop, so the child opens both kinds of log.
        if close_cleanly {
            log.close().await.unwrap();
        }
        Recovered { batches, log_end_offset, unacked_survivors, segments }
    })
}

#[test]
fn sigkill_during_sync_appends_keeps_every_acknowledged_batch() {
    let seed = env_u64(SEED_ENV).unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        nanos ^ u64::from(std::process::id())
    });
    println!("crash test seed: {seed} (replay with {SEED_ENV}={seed})");
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    let mut rng = seed;
    let mut acked: BTreeMap<u64, Expected> = BTreeMap::new();
    let mut baseline: Vec<(i64, u32, Bytes)> = Vec::new();
    let mut log_end_offset = 0u64;
    let mut acked_bytes = 0u64;
    for gen in 0..CYCLES {
        let span = KILL_AFTER_ACKS.end() - KILL_AFTER_ACKS.start() + 1;
        let kill_after = KILL_AFTER_ACKS.start() + splitmix64(&mut rng) % span;
        let child = run_child(&path, seed, gen, kill_after);
        assert_eq!(child.ready_end_offset, log_end_offset, "gen {gen}: the child opened a different log end");
        for ack in &child.acks {
            let batch = crash_batch(seed, gen, ack.task, ack.seq);
            let expected = Expected { id: (gen, ack.task, ack.seq), count: ack.count, body: batch.slice(16..) };
            assert!(ack.offset >= log_end_offset, "gen {gen}: ack {ack:?} below the log end {log_end_offset} at start");
            acked_bytes += batch.len() as u64;
            if let Some(other) = acked.insert(ack.offset, expected) {
                panic!("gen {gen}: offset {} acknowledged twice ({:?} and {ack:?})", ack.offset, other.id);
            }
        }
        let recovered = recover_and_check(path.clone(), seed, gen, acked.clone(), baseline, gen % 2 == 0);
        println!(
            "gen {gen}: kill after {kill_after} acks, {} acked, {} unacked survived, log end {} -> {}, {} segments",
            child.acks.len(),
            recovered.unacked_survivors,
            log_end_offset,
            recovered.log_end_offset,
            recovered.segments
        );
        // The parent's append is acknowledged too.
        let (base, count, body) = recovered.batches.last().unwrap().clone();
        acked.insert(base as u64, Expected { id: (gen, PARENT_TASK, 0), count, body });
        log_end_offset = recovered.log_end_offset;
        baseline = recovered.batches;
    }
    // Enough was acknowledged to fill a segment, so recovery ran across rolled segments.
    if acked_bytes > crash_config().segment_bytes {
        assert!(segment_files(&path).len() > 1, "{acked_bytes} bytes acknowledged but no segment rolled");
    }
    println!("acknowledged {} batches, {acked_bytes} bytes, {} segments", acked.len(), segment_files(&path).len());
}

/// The on-disk state a SIGKILL leaves between a roll and the end of the old segment's seal,
/// made deterministic: the log was closed cleanly (so the active segment has an index file),
/// reopened, appended to with `Sync`, then rolled — the next segment's file exists, empty —
/// and killed before the seal rewrote the old segment's index. Recovery must not trust the
/// index left by the clean close: the batches acknowledged after the reopen are in the file.
#[test]
fn crash_between_roll_and_seal_keeps_batches_acked_after_a_clean_reopen() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    let config = crash_config();
    let (p, c) = (path.clone(), config.clone());
    let mut expected = run(move || async move {
        let log = Log::open(&p, c).await.unwrap();
        let mut expected = Vec::new();
        for seq in 0..3 {
            let b = crash_batch(1, 0, 0, seq);
            let info = log.append(std::slice::from_ref(&b), Durability::Sync).await.unwrap();
            expected.push((
                info.base_offsets[0].to_wire(),
                info.log_end_offset.delta_from(info.base_offsets[0]).unwrap(),
                b.slice(16..),
            ));
        }
        log.close().await.unwrap();
        expected
    });
    let (p, c) = (path.clone(), config.clone());
    let (acked, end) = run(move || async move {
        let log = Log::open(&p, c).await.unwrap();
        let mut acked = Vec::new();
        for seq in 0..5 {
            let b = crash_batch(1, 1, 0, seq);
            let info = log.append(std::slice::from_ref(&b), Durability::Sync).await.unwrap();
            acked.push((
                info.base_offsets[0].to_wire(),
                info.log_end_offset.delta_from(info.base_offsets[0]).unwrap(),
                b.slice(16..),
            ));
        }
        assert_eq!(log.stats().segments, 1, "no roll yet");
        // Dropped without close: the crash. The roll had created the next segment.
        (acked, log.log_end_offset())
    });
    std::fs::File::create(path.join(format!("{:020}.log", end.get()))).unwrap().sync_all().unwrap();
    expected.extend(acked);
    let expected: Vec<(i64, u32, Bytes)> = expected.into_iter().map(|(b, n, body)| (b, n as u32, body)).collect();
    run(move || async move {
        let log = Log::open(&path, config).await.unwrap();
        assert_eq!(log.log_end_offset(), end);
        for (base, count, body) in &expected {
            let read = log.read(o(*base as u64), 1 << 20).await;
            let read = read.unwrap_or_else(|e| panic!("acknowledged batch at offset {base} lost after recovery: {e}"));
            assert_eq!(batch_bodies(read.to_bytes())[0], (*base, *count, body.clone()));
        }
        assert_eq!(read_all(&log, o(0)).await, expected);
        log.close().await.unwrap();
    });
}
