//! One consumer task: a group member reading every topic, counting what arrives and timing
//! each record end to end (the producer's intended send time, from the record's header, to
//! the moment `poll` returned it).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::driver::{ConsumerDriver, Received};
use super::producer::Local;
use super::stats::{add, epoch_us_now, Shared, Timeline};
use crate::histogram::{latency_from_intended_us, record};

/// How often a consumer waiting for the catch-up phase checks whether it may start.
const GO_POLL: Duration = Duration::from_millis(10);
const POLL_ERROR_PAUSE: Duration = Duration::from_millis(10);

pub async fn run_consumer<C: ConsumerDriver>(
    consumer: C,
    timeline: Timeline,
    shared: Arc<Shared>,
    local: Rc<Local>,
    record_end_to_end: bool,
) {
    while !shared.consumers_go.load(Ordering::SeqCst) {
        if shared.stop_consuming.load(Ordering::SeqCst) {
            break;
        }
        glommio::timer::sleep(GO_POLL).await;
    }
    let mut received: Vec<Received> = Vec::new();
    while !shared.stop_consuming.load(Ordering::SeqCst) {
        received.clear();
        if let Err(reason) = consumer.poll(&mut received).await {
            shared.error(&shared.counters.errors_consume, "consume", &reason);
            glommio::timer::sleep(POLL_ERROR_PAUSE).await;
            continue;
        }
        let now_us = epoch_us_now();
        let bytes: u64 = received.iter().map(|r| r.value_bytes as u64).sum();
        add(&shared.counters.consumed, received.len() as u64);
        add(&shared.counters.consumed_bytes, bytes);
        if record_end_to_end {
            let mut recorders = local.recorders.borrow_mut();
            for sent_at_us in received.iter().filter_map(|r| r.sent_at_us) {
                if timeline.in_window_epoch_us(sent_at_us) {
                    record(&mut recorders.end_to_end, latency_from_intended_us(sent_at_us, now_us));
                }
            }
        }
    }
    consumer.close().await;
}
