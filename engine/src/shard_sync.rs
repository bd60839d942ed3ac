//! One sync for many partitions of a shard: group commit across partitions.
//!
//! Every partition is its own segment file, so a produce touching N partitions of a `sync`
//! topic cost N fdatasyncs, each an io_uring worker's blocking call. On ext4 (and the other
//! journaling file systems) what an fdatasync of an O_DIRECT-written, preallocated file does is
//! commit the journal (the written extents' conversions) and flush the device's write cache —
//! both per file system, not per file. `syncfs(2)` does exactly that once for every file of
//! the file system, covering every write that completed before it was called. On this VM 200
//! fdatasyncs after one write to each of 200 files took 9–14 ms, one `syncfs` 0.8–0.9 ms
//! (docs/benchmarks.md, "Many partitions").
//!
//! Policy, per shard and file system (`st_dev`):
//! - a sync runs alone — its file's own fdatasync — while fewer than `SYNCS_ALONE_MAX` others
//!   do and no round is running or waiting (a lone `syncfs` would also write back other
//!   processes' dirty pages on the same file system, which an fdatasync never waits for);
//! - otherwise it joins the *next* round: one `syncfs` that starts once the running round (if
//!   any) ended, so it covers every write its syncs' callers completed before they asked. A
//!   sync never joins a round already running: that round may have started before the caller's
//!   write completed.
//!
//! A failed round fails every sync in it, as a failed fdatasync fails its own: each appender
//! fences and the log must be reopened (never retried; `segment/appender.rs`). `syncfs` also
//! reports a writeback error of any file of the file system, so one bad file can fence every
//! partition syncing with it — the conservative side.
//!
//! Rounds run on the executor's blocking thread (io_uring has no syncfs), driven by one task
//! per file system that runs rounds while syncs wait for one. That thread also runs the
//! shard's directory work (creating and removing partition directories), so a round can queue
//! behind a large topic's creation or deletion; a thread of the rounds' own would avoid that
//! (not done).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use event_listener::Event;

use crate::io::SegmentFile;
use crate::limits::SYNCS_ALONE_MAX;

/// One `syncfs` shared by every sync that joined it before it started.
struct Round {
    /// Whose `syncfs` runs the round: the first joiner's file, a live handle when it starts.
    file: Rc<SegmentFile>,
    /// Set once the round ended: the error's kind and text if it failed.
    result: RefCell<Option<Result<(), (std::io::ErrorKind, String)>>>,
    done: Event,
}

#[derive(Default)]
struct FileSystem {
    /// fdatasyncs of single files in flight.
    alone: usize,
    /// A driver task is running rounds.
    driving: bool,
    /// The round new syncs join; it starts when the running one ends.
    next: Option<Rc<Round>>,
}

#[derive(Default)]
struct Shard {
    file_systems: HashMap<u64, FileSystem>,
    /// The executor this state belongs to: a test thread may run one executor after another,
    /// and a new one starts afresh (a driver of the old one will never run again).
    executor: Option<usize>,
}

/// Counts of this thread's syncs, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Syncs that ran alone (their file's fdatasync).
    pub alone: u64,
    /// Syncs that joined a round.
    pub shared: u64,
    /// Rounds run (one `syncfs` each).
    pub rounds: u64,
}

thread_local! {
    static SHARD: RefCell<Shard> = RefCell::new(Shard::default());
    static ALONE_MAX: Cell<usize> = const { Cell::new(SYNCS_ALONE_MAX) };
    static STATS: Cell<SyncStats> = const { Cell::new(SyncStats { alone: 0, shared: 0, rounds: 0 }) };
}

/// Overrides `SYNCS_ALONE_MAX` on this thread (0: every sync joins a round; `usize::MAX`:
/// every sync is its file's own fdatasync, as before rounds existed). For tests and A/B runs.
pub fn set_syncs_alone_max(n: usize) {
    ALONE_MAX.with(|m| m.set(n));
}

/// This thread's sync counts so far.
pub fn stats() -> SyncStats {
    STATS.with(Cell::get)
}

fn count(f: impl FnOnce(&mut SyncStats)) {
    STATS.with(|s| {
        let mut stats = s.get();
        f(&mut stats);
        s.set(stats);
    });
}

enum Plan {
    Alone,
    Join { round: Rc<Round>, start_driver: bool },
}

/// Makes every write to `file` that completed before this call durable: its own fdatasync, or
/// a share of one `syncfs` with other partitions of the shard syncing at the same time.
pub(crate) async fn sync(file: &Rc<SegmentFile>) -> std::io::Result<()> {
    // Errors say which call failed (the appender fences with it as the reason).
    let fdatasync =
        || async { file.fdatasync().await.map_err(|e| std::io::Error::new(e.kind(), format!("fdatasync: {e}"))) };
    let Ok(device) = file.device() else {
        count(|s| s.alone += 1);
        return fdatasync().await;
    };
    let executor = glommio::executor().id();
    let plan = SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        if shard.executor != Some(executor) {
            *shard = Shard { executor: Some(executor), ..Shard::default() };
        }
        let fs = shard.file_systems.entry(device).or_default();
        if !fs.driving && fs.next.is_none() && fs.alone < ALONE_MAX.with(Cell::get) {
            fs.alone += 1;
            return Plan::Alone;
        }
        let round = fs
            .next
            .get_or_insert_with(|| {
                Rc::new(Round { file: file.clone(), result: RefCell::new(None), done: Event::new() })
            })
            .clone();
        let start_driver = !fs.driving;
        fs.driving = true;
        Plan::Join { round, start_driver }
    });
    match plan {
        Plan::Alone => {
            count(|s| s.alone += 1);
            let result = fdatasync().await;
            SHARD.with(|shard| {
                let mut shard = shard.borrow_mut();
                if shard.executor == Some(executor) {
                    if let Some(fs) = shard.file_systems.get_mut(&device) {
                        fs.alone = fs.alone.saturating_sub(1);
                    }
                }
            });
            result
        }
        Plan::Join { round, start_driver } => {
            count(|s| s.shared += 1);
            if start_driver {
                glommio::spawn_local(drive(device, executor)).detach();
            }
            loop {
                let listener = round.done.listen();
                if let Some(result) = round.result.borrow().as_ref() {
                    return result.clone().map_err(|(kind, text)| std::io::Error::new(kind, format!("syncfs: {text}")));
                }
                listener.await;
            }
        }
    }
}

/// Runs rounds for one file system while syncs wait for one.
async fn drive(device: u64, executor: usize) {
    loop {
        let round = SHARD.with(|shard| {
            let mut shard = shard.borrow_mut();
            if shard.executor != Some(executor) {
                return None;
            }
            let fs = shard.file_systems.get_mut(&device)?;
            let next = fs.next.take();
            if next.is_none() {
                fs.driving = false;
            }
            next
        });
        let Some(round) = round else { break };
        count(|s| s.rounds += 1);
        let result = round.file.sync_file_system().await;
        *round.result.borrow_mut() = Some(result.map_err(|e| (e.kind(), e.to_string())));
        round.done.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files in a fresh directory on the work tree's file system (O_DIRECT needs a real one).
    async fn files(dir: &std::path::Path, n: usize) -> Vec<Rc<SegmentFile>> {
        let mut files = Vec::new();
        for i in 0..n {
            files.push(SegmentFile::open(&dir.join(format!("f{i}")), true).await.expect("open"));
        }
        files
    }

    async fn write_page(file: &SegmentFile, position: u64) {
        let mut buf = file.alloc_dma_buffer(4096);
        buf.as_bytes_mut().fill(7);
        let n = file.write_rc_at(Rc::new(buf), position).await.expect("write");
        assert_eq!(n, 4096);
    }

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(f)
            .expect("executor")
            .join()
            .expect("join");
    }

    #[test]
    fn concurrent_syncs_share_rounds_and_a_lone_one_runs_alone() {
        run(|| async {
            let base = std::env::var_os("SHARDLOG_TEST_DIR").map_or_else(std::env::temp_dir, Into::into);
            let dir = tempfile::Builder::new().prefix("shardlog-test-").tempdir_in(base).expect("dir");
            let files = files(dir.path(), 16).await;
            // A lone sync: its own fdatasync.
            write_page(&files[0], 0).await;
            let before = stats();
            sync(&files[0]).await.expect("sync");
            assert_eq!(stats().alone, before.alone + 1);
            assert_eq!(stats().rounds, before.rounds);
            // Sixteen at once: one alone, the rest share rounds (far fewer than fifteen).
            for f in &files {
                write_page(f, 4096).await;
            }
            let before = stats();
            let tasks: Vec<_> = files
                .iter()
                .map(|f| {
                    let f = f.clone();
                    glommio::spawn_local(async move { sync(&f).await })
                })
                .collect();
            for t in tasks {
                t.await.expect("sync");
            }
            let after = stats();
            assert_eq!(after.alone + after.shared - before.alone - before.shared, 16);
            assert!(after.shared - before.shared >= 14, "{before:?} -> {after:?}");
            assert!(after.rounds - before.rounds <= 2, "{before:?} -> {after:?}");
            // Every driver ended: the next lone sync runs alone again.
            let before = stats();
            sync(&files[3]).await.expect("sync");
            assert_eq!(stats().alone, before.alone + 1);
        });
    }
}
