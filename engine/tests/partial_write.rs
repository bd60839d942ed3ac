//! The partial write delay (`LogConfig::partial_write_delay`): bytes no one waits on stay in
//! the active segment's write buffer until the delay passes, so a light stream of small
//! appends shares one O_DIRECT write; anything that needs them on disk (a sync, an interval
//! deadline, a close) writes them at once. Each test would fail on an appender that writes
//! every partial tail as soon as the disk is idle (the first) or on one that waits for the
//! delay regardless (the others).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use engine::{Durability, Log, LogConfig};

/// Longer than any test: only something that needs the bytes gets them written.
const LONG_DELAY: Duration = Duration::from_secs(600);
/// Generous bound on "soon" for a loaded CI machine; what it bounds is a liveness property
/// (the write happens at all), not a latency.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(20);

fn config(partial_write_delay: Duration) -> LogConfig {
    LogConfig { partial_write_delay, ..small_config() }
}

/// Whole batches at the start of an active segment file, as the disk holds them now (the
/// preallocated rest reads as zeroes: a batch length of 0 ends the walk).
fn batches_on_disk(path: &std::path::Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let (mut at, mut count) = (0usize, 0usize);
    while at + 16 <= bytes.len() {
        let size = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        if size <= 0 || at + 12 + size as usize > bytes.len() {
            break;
        }
        at += 12 + size as usize;
        count += 1;
    }
    count
}

/// Polls `done` every millisecond until it holds; panics after `LIVENESS_TIMEOUT`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < LIVENESS_TIMEOUT, "{what} did not happen within {LIVENESS_TIMEOUT:?}");
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn small_appends_share_one_write_until_something_needs_them() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        let mut expected = Vec::new();
        for seed in 0..20u64 {
            let b = batch(seed, 1, 200, 1_000 + seed as i64);
            let info = log.append(std::slice::from_ref(&b), Durability::None).await.unwrap();
            expected.push((info.base_offsets[0].to_wire(), 1, b.slice(16..)));
            // Room for the flusher to run: an appender writing whenever the disk is idle
            // would write each of these on its own.
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(log.stats().writes_count, 0, "nothing asked for the bytes yet");
        assert_eq!(batches_on_disk(&segment_files(&path)[0]), 0, "the file holds nothing yet");
        // Readers see them all the same (from the shard's cache).
        assert_eq!(read_all(&log, o(0)).await, expected);

        log.flush().await.unwrap();
        let stats = log.stats();
        assert_eq!(stats.writes_count, 1, "one write carries all twenty appends");
        assert_eq!(stats.syncs_count, 1);
        assert_eq!(batches_on_disk(&segment_files(&path)[0]), expected.len());
        log.close().await.unwrap();

        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        assert_eq!(read_all(&log, o(0)).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_partial_tail_is_written_once_the_delay_passes() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, config(Duration::from_millis(20))).await.unwrap();
        log.append(&[batch(1, 3, 500, 1_000)], Durability::None).await.unwrap();
        // `writes_count` counts a write when it is issued; the file shows it once it landed.
        let file = segment_files(&path)[0].clone();
        eventually("the delayed write", || batches_on_disk(&file) == 1).await;
        assert_eq!(log.stats().writes_count, 1);
        assert_eq!(log.stats().syncs_count, 0, "durability none never syncs on its own");
        log.close().await.unwrap();
    });
}

#[test]
fn syncs_and_interval_deadlines_do_not_wait_for_the_delay() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        // Durability::Sync resolves after its fdatasync (it would hang for LONG_DELAY otherwise).
        let appended = futures_lite::future::or(
            async { Some(log.append(&[batch(1, 2, 300, 1_000)], Durability::Sync).await.unwrap()) },
            async {
                glommio::timer::sleep(LIVENESS_TIMEOUT).await;
                None
            },
        )
        .await;
        let info = appended.expect("a sync append waited for the partial write delay");
        assert_eq!(log.durable_end_offset(), info.log_end_offset);

        // Interval: acknowledged at once, durable by its deadline, long before the delay.
        let info = log.append(&[batch(2, 2, 300, 2_000)], Durability::Interval { ms: 10 }).await.unwrap();
        eventually("the interval sync", || log.durable_end_offset() == info.log_end_offset).await;
        log.close().await.unwrap();
    });
}

#[test]
fn close_writes_a_waiting_tail() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        let b = batch(7, 4, 900, 1_000);
        let info = log.append(std::slice::from_ref(&b), Durability::None).await.unwrap();
        log.close().await.unwrap();
        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        assert_eq!(read_all(&log, o(0)).await, vec![(info.base_offsets[0].to_wire(), 4, b.slice(16..))]);
        log.close().await.unwrap();
    });
}

/// A partial write leaves its last page half full; the next write must rewrite that page on
/// its own, never together with the fresh (preallocated, still unwritten) pages after it:
/// ext4 cannot do such a mixed O_DIRECT write without blocking, so io_uring hands it to a
/// worker thread (a thread wake-up per write; every write did it at 1 000 partitions). The
/// check runs over every write the appender issued (recorded by the fault layer, with no
/// fault planned); it fails on an appender that grows the rewritten page into a full chunk.
#[test]
fn a_rewritten_page_is_never_written_together_with_fresh_ones() {
    let dir = temp_dir();
    let path = dir.path().join("t-0");
    run(move || async move {
        let injector = engine::io::faulty::FaultInjector::install(engine::io::faulty::FaultPlan::default());
        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        let mut expected = Vec::new();
        // Each sync writes the partial tail at once; ~1.5 KiB batches end mid-page, and
        // some cross into the next page.
        for seed in 0..24u64 {
            let b = batch(seed, 1, 1_400 + 97 * seed as usize, 1_000 + seed as i64);
            let info = log.append(std::slice::from_ref(&b), Durability::Sync).await.unwrap();
            expected.push((info.base_offsets[0].to_wire(), 1, b.slice(16..)));
        }
        let file = segment_files(&path)[0].clone();
        let writes: Vec<(u64, u64)> =
            injector.writes().into_iter().filter(|(p, _, _)| *p == file).map(|(_, at, len)| (at, len)).collect();
        // Pages below `written_end` have been written before.
        let (mut written_end, mut rewrites, mut fresh) = (0u64, 0, 0);
        for &(at, len) in &writes {
            let end = at + len;
            assert!(
                at >= written_end || end <= written_end,
                "the write [{at}, {end}) rewrites pages below {written_end} and writes fresh ones (writes: {writes:?})"
            );
            if at < written_end {
                rewrites += 1;
            } else {
                fresh += 1;
            }
            written_end = written_end.max(end);
        }
        assert!(rewrites >= 10 && fresh >= 10, "the workload must rewrite tails and write fresh pages: {writes:?}");
        assert_eq!(read_all(&log, o(0)).await, expected);
        log.close().await.unwrap();
        let log = Log::open(&path, config(LONG_DELAY)).await.unwrap();
        assert_eq!(read_all(&log, o(0)).await, expected);
        log.close().await.unwrap();
        engine::io::faulty::FaultInjector::uninstall();
    });
}
