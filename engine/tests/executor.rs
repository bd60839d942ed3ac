//! The glommio executor every shard runs on never goes to sleep while a task is runnable
//! (third_party/glommio/PATCHES.md).
//!
//! glommio 0.9.0's `run_task_queues` returned "nothing ran" when preemption was already due
//! before it ran a single task queue, and the executor then parked: it slept in
//! `io_uring_enter` with runnable tasks. The completion that made preemption due (here the
//! preempt timer; in the engine's fault suite the blocking thread's or the throughput timer's
//! eventfd write) wakes no task, so with nothing else in flight the executor never woke. The
//! engine's fault suite hung that way now and then (in 6 of 8 runs of
//! `SHARDLOG_FAULT_SEEDS=1500` with two runs at once).
//!
//! A task that only yields, on an executor whose preempt timer is short enough to fire
//! between one poll of the rings and the next run of the task queues, hits that window within
//! a second or two; unpatched, this test hangs (and fails on its watchdog) on every run here.

use std::time::Duration;

/// Short enough that the preempt timer often fires before the task queues run (20 and 50 µs
/// both hung the unpatched executor on every run; 5 µs livelocks any executor that re-arms
/// the timer on each pass, patched or not).
const PREEMPT_TIMER: Duration = Duration::from_micros(50);
/// How long the task keeps yielding. Unpatched, 6 of 6 runs of 1.5 s parked (5 of 6 of 0.35 s).
const YIELDING: Duration = Duration::from_secs(2);
/// A liveness bound, not a timing assertion: the patched run ends after `YIELDING`.
const WATCHDOG: Duration = Duration::from_secs(60);

#[test]
fn the_executor_never_parks_with_a_runnable_task() {
    let (done, finished) = std::sync::mpsc::channel();
    // The executor runs on its own thread so that a parked one cannot block the watchdog; on
    // failure the test process exits with the executor thread still asleep.
    std::thread::spawn(move || {
        let executor = glommio::LocalExecutorBuilder::default()
            .preempt_timer(PREEMPT_TIMER)
            .spawn(|| async {
                let start = std::time::Instant::now();
                let mut yields = 0u64;
                while !yields.is_multiple_of(1024) || start.elapsed() < YIELDING {
                    futures_lite::future::yield_now().await;
                    yields += 1;
                }
                yields
            })
            .expect("spawn executor");
        let _ = done.send(executor.join().expect("executor panicked"));
    });
    match finished.recv_timeout(WATCHDOG) {
        Ok(yields) => assert!(yields > 0),
        Err(_) => panic!(
            "the executor did not finish {YIELDING:?} of yielding within {WATCHDOG:?}: it parked \
             with a runnable task (see third_party/glommio/PATCHES.md)"
        ),
    }
}
