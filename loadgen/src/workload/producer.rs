//! One producer task: sends on the open-loop schedule (`rate.rs`), or as fast as its buffer
//! allows with `--rate max`, and times every acknowledgement from the message's intended send
//! time. Acknowledgements are awaited by small detached tasks, so a slow ack never delays the
//! next send (that would be closed-loop timing).

use std::cell::{Cell, RefCell};
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
/// Poll interval while waiting for the last acknowledgements.
const DRAIN_POLL: Duration = Duration::from_millis(1);

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
    /// Catch-up mode: stop once all producers together have sent this many value bytes.
    pub backlog_bytes: Option<u64>,
    pub payload: PayloadGen,
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
    let pending = Rc::new(Cell::new(0u64));
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
            glommio::timer::sleep(intended - now).await;
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
        match producer.send(outgoing).await {
            Ok(ack) => {
                add(&shared.counters.sent, 1);
                add(&shared.counters.sent_bytes, size_bytes);
                pending.set(pending.get() + 1);
                let (shared, local, pending) = (shared.clone(), local.clone(), pending.clone());
                glommio::spawn_local(async move {
                    let result = ack.await;
                    match result {
                        Ok(()) => {
                            add(&shared.counters.acked, 1);
                            add(&shared.counters.acked_bytes, size_bytes);
                            if measured {
                                let latency_us = intended.elapsed().as_micros() as u64;
                                record(&mut local.recorders.borrow_mut().publish, latency_us);
                                record(&mut local.live.borrow_mut(), latency_us);
                            }
                        }
                        Err(reason) => shared.error(&shared.counters.errors_ack, "ack", &reason),
                    }
                    pending.set(pending.get() - 1);
                })
                .detach();
            }
            Err(reason) => {
                shared.error(&shared.counters.errors_send, "send", &reason);
                glommio::timer::sleep(SEND_ERROR_PAUSE).await;
            }
        }
        k += 1;
        if k.is_multiple_of(SENDS_PER_YIELD) {
            glommio::yield_if_needed().await;
        }
    }
    producer.flush().await;
    while pending.get() > 0 {
        glommio::timer::sleep(DRAIN_POLL).await;
    }
    shared.producers_done.fetch_add(1, Ordering::SeqCst);
}
