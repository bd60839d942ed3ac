//! One producer task: sends on the open-loop schedule (`rate.rs`), or as fast as its buffer
//! allows with `--rate max`, and times every acknowledgement from the message's intended send
//! time. Acknowledgements are awaited by detached tasks, so a slow ack never delays the next
//! send (that would be closed-loop timing). One task awaits a group of up to
//! `ACKS_PER_TASK_MAX` consecutive sends (not one task per message: spawning, scheduling and
//! dropping a task per message cost more CPU than the broker spent storing the message). The
//! group task awaits its acks in order and times each by the instant the client resolved it,
//! so a slow ack in the group does not delay the timing of the others.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::driver::{Outgoing, ProducerDriver};
use super::payload::PayloadGen;
use super::rate::Schedule;
use super::stats::{add, Recorders, Shared, Timeline};
use crate::histogram::record;

/// Sends between cooperative yields, so ack tasks and the client's sender run in between.
const SENDS_PER_YIELD: u64 = 64;
/// After a failed send, wait this long: a broken connection must not become a busy loop.
const SEND_ERROR_PAUSE: Duration = Duration::from_millis(1);
/// Spin-until-due: the last stretch before a message's intended send time is waited for by
/// yielding in a loop (other tasks of the executor, such as ack timing and the client's
/// sender, still run) instead of a timer: a parked executor wakes tens of µs after its timer
/// fires, more on a busy machine, and that would show up as the load generator's own send
/// delay. The price is CPU, so a producer spins at most `1 / SPIN_SHARE_DIVISOR` of its
/// interval, and not at all when that is under `SPIN_MIN`.
const SPIN_SHARE_DIVISOR: u32 = 8;
const SPIN_MIN: Duration = Duration::from_micros(20);
/// The shortest timer a producer sleeps on. Below it, messages due within it wait for the
/// next wake-up and leave together, late by at most about this (their latency still counts
/// from the intended time): a timer per message at high rates costs a park and a wake-up each
/// (an io_uring timeout re-armed and a context switch) — at 150 000 msg/s, 4 producers, the
/// load generator spent 7.8 µs of CPU per message, mostly in the kernel's scheduler and
/// timer code.
const SLEEP_MIN: Duration = Duration::from_micros(100);
/// Poll interval while waiting for the last acknowledgements.
const DRAIN_POLL: Duration = Duration::from_millis(1);
/// Sends whose acks one task awaits. The group is also handed off before every wait of the
/// producer (its yield, a schedule sleep, a send that blocks), so the group's acks are
/// polled whenever they could be: a group being filled never delays an ack's timing.
const ACKS_PER_TASK_MAX: usize = SENDS_PER_YIELD as usize;

/// Per-executor state shared by its producer and consumer tasks.
pub struct Local {
    pub recorders: RefCell<Recorders>,
    /// Publish latencies not yet handed to the live line.
    pub live: RefCell<Histogram<u64>>,
}

pub struct ProducerTask {
    pub topics: Rc<Vec<String>>,
    /// This producer's share of the target rate; `None` is closed loop (`--rate max`).
    pub rate_msg_per_s: Option<f64>,
    /// Catch-up mode: stop once all producers together have sent this many value bytes (sends
    /// are counted per group of up to `ACKS_PER_TASK_MAX`, so each may overshoot by a group).
    pub backlog_bytes: Option<u64>,
    pub payload: PayloadGen,
    /// Longest spin-until-due window (`--send-spin-us`); zero sleeps on a timer all the way.
    pub send_spin: Duration,
}

pub async fn run_producer<P: ProducerDriver>(
    producer: P,
    mut task: ProducerTask,
    timeline: Timeline,
    shared: Arc<Shared>,
    local: Rc<Local>,
) {
    assert!(!task.topics.is_empty());
    let schedule = task.rate_msg_per_s.map(Schedule::for_rate);
    let spin = schedule.map_or(Duration::ZERO, |s| spin_window(task.send_spin, s.interval()));
    let pending = Rc::new(Cell::new(0u64));
    let mut group: Vec<PendingAck<P::Ack>> = Vec::with_capacity(ACKS_PER_TASK_MAX);
    let mut k = 0u64;
    // Closed loop has no schedule to wait on: wait for the common start explicitly.
    let until_start = timeline.start.saturating_duration_since(Instant::now());
    if !until_start.is_zero() {
        glommio::timer::sleep(until_start).await;
    }
    loop {
        let now = Instant::now();
        let intended = schedule.map_or(now, |s| s.intended(timeline.start, k));
        if intended >= timeline.produce_until || shared.stop_producing.load(Ordering::Relaxed) {
            break;
        }
        if task.backlog_bytes.is_some_and(|limit| shared.counters.sent_bytes.load(Ordering::Relaxed) >= limit) {
            break;
        }
        if intended > now {
            // Idle until the next send: the acks gathered so far must be timed meanwhile.
            spawn_ack_group(&mut group, &shared, &local, &pending);
            let wait = intended - now;
            if wait > spin {
                glommio::timer::sleep((wait - spin).max(SLEEP_MIN)).await;
            } else {
                futures_lite::future::yield_now().await;
            }
            continue;
        }
        let measured = timeline.in_window(intended);
        if measured {
            record(&mut local.recorders.borrow_mut().send_delay, (now - intended).as_micros() as u64);
        }
        let topic = &task.topics[(k % task.topics.len() as u64) as usize];
        let message = task.payload.next_message();
        let size_bytes = message.value.len() as u64;
        let outgoing = Outgoing {
            topic,
            partition: message.partition,
            key: message.key,
            value: message.value,
            sent_at_us: timeline.epoch_us(intended),
        };
        // A send that must wait (for buffer space) first hands off the gathered acks, so their
        // timing never waits on this producer.
        let send = producer.send(outgoing);
        futures_lite::pin!(send);
        let sent = match futures_lite::future::poll_once(&mut send).await {
            Some(sent) => sent,
            None => {
                spawn_ack_group(&mut group, &shared, &local, &pending);
                send.await
            }
        };
        match sent {
            Ok(ack) => {
                // Counted as sent when the group is handed off (before any wait).
                pending.set(pending.get() + 1);
                group.push(PendingAck { ack, intended, size_bytes, measured });
            }
            Err(reason) => {
                shared.error(&shared.counters.errors_send, "send", &reason);
                spawn_ack_group(&mut group, &shared, &local, &pending);
                glommio::timer::sleep(SEND_ERROR_PAUSE).await;
            }
        }
        k += 1;
        if group.len() >= ACKS_PER_TASK_MAX || k.is_multiple_of(SENDS_PER_YIELD) {
            spawn_ack_group(&mut group, &shared, &local, &pending);
            glommio::yield_if_needed().await;
        }
    }
    spawn_ack_group(&mut group, &shared, &local, &pending);
    producer.flush().await;
    while pending.get() > 0 {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    shared.producers_done.fetch_add(1, Ordering::SeqCst);
}

/// How long before each intended send a producer with this interval spins (`SPIN_MIN`,
/// `SPIN_SHARE_DIVISOR`).
fn spin_window(send_spin: Duration, interval: Duration) -> Duration {
    let spin = send_spin.min(interval / SPIN_SHARE_DIVISOR);
    if spin < SPIN_MIN {
        Duration::ZERO
    } else {
        spin
    }
}

/// One sent message whose acknowledgement is awaited.
struct PendingAck<A> {
    ack: A,
    intended: Instant,
    size_bytes: u64,
    measured: bool,
}

/// Hands the group's acks to one detached task (nothing if the group is empty).
fn spawn_ack_group<A>(group: &mut Vec<PendingAck<A>>, shared: &Arc<Shared>, local: &Rc<Local>, pending: &Rc<Cell<u64>>)
where
    A: Future<Output = Result<Instant, String>> + 'static,
{
    if group.is_empty() {
        return;
    }
    debug_assert!(group.len() <= ACKS_PER_TASK_MAX);
    // The group's sends are counted here, once per group: two atomic adds per message on
    // counters every executor writes were a visible cost at hundreds of thousands a second.
    add(&shared.counters.sent, group.len() as u64);
    add(&shared.counters.sent_bytes, group.iter().map(|a| a.size_bytes).sum());
    let acks = std::mem::replace(group, Vec::with_capacity(ACKS_PER_TASK_MAX));
    let (shared, local, pending) = (shared.clone(), local.clone(), pending.clone());
    glommio::spawn_local(await_acks(acks, shared, local, pending)).detach();
}

/// Awaits the group's acks in send order. Each is timed by the instant the client resolved
/// it, not by when this task sees it, so waiting on an earlier, slower ack does not inflate a
/// later one's latency. Polling them in order costs one poll per ack and one wake-up per
/// ack still pending when its turn comes; polling every pending ack on each wake-up (as
/// before) was quadratic when a group's 64 acks belonged to 64 batches — at 1 000
/// partitions, a fifth of the load generator's CPU.
async fn await_acks<A>(acks: Vec<PendingAck<A>>, shared: Arc<Shared>, local: Rc<Local>, pending: Rc<Cell<u64>>)
where
    A: Future<Output = Result<Instant, String>> + 'static,
{
    // Counted here and added to the shared counters before each wait and at the end: one
    // atomic add per group and wait, not two per message on cache lines every executor writes.
    let (mut acked, mut acked_bytes) = (0u64, 0u64);
    let flush = |acked: &mut u64, acked_bytes: &mut u64| {
        add(&shared.counters.acked, std::mem::take(acked));
        add(&shared.counters.acked_bytes, std::mem::take(acked_bytes));
    };
    for PendingAck { ack, intended, size_bytes, measured } in acks {
        futures_lite::pin!(ack);
        let result = match futures_lite::future::poll_once(&mut ack).await {
            Some(result) => result,
            None => {
                flush(&mut acked, &mut acked_bytes);
                ack.await
            }
        };
        match result {
            Ok(acked_at) => {
                acked += 1;
                acked_bytes += size_bytes;
                if measured {
                    let latency_us = acked_at.saturating_duration_since(intended).as_micros() as u64;
                    record(&mut local.recorders.borrow_mut().publish, latency_us);
                    record(&mut local.live.borrow_mut(), latency_us);
                }
            }
            Err(reason) => shared.error(&shared.counters.errors_ack, "ack", &reason),
        }
        pending.set(pending.get() - 1);
    }
    flush(&mut acked, &mut acked_bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_is_bounded_by_a_share_of_the_interval() {
        let us = Duration::from_micros;
        // 1 000 msg/s per producer: the whole window.
        assert_eq!(spin_window(us(200), us(1000)), us(125));
        assert_eq!(spin_window(us(100), us(4000)), us(100));
        // 20 000 msg/s per producer: an eighth of 50 µs is under the minimum: timers only.
        assert_eq!(spin_window(us(200), us(50)), Duration::ZERO);
        assert_eq!(spin_window(Duration::ZERO, us(4000)), Duration::ZERO);
    }
}
