//! One timer per shard for every appender's deadline (a partial tail's delayed write, an
//! `interval` topic's fdatasync), instead of one glommio timer per partition.
//!
//! With a thousand partitions each holding a partial tail, per-partition timers meant a
//! timer (a reactor BTreeMap insert and removal, an `or` future) per partition per delay and
//! a wake-up at as many distinct instants. Here a task registers its waker with the shard's
//! queue under a deadline rounded up to `DEADLINE_TICK`; one driver task per shard sleeps
//! until the earliest deadline and wakes every task due by then, so a shard wakes at most once
//! per tick however many partitions wait, and each deadline is late by less than a tick.
//!
//! A registration is never cancelled: a task that stopped waiting (new work arrived first) is
//! woken once more when its stale deadline passes and finds nothing to do. `SleepUntil` keeps
//! that to one registration per deadline a task actually waits on.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::limits::DEADLINE_TICK;

struct Entry {
    at: Instant,
    /// Registration order: breaks ties so the heap never compares wakers.
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
    /// The executor whose driver task serves this thread's queue. A test thread may run one
    /// executor after another; a new one gets a new driver and the old one's wakers are dropped.
    driver_executor: Option<usize>,
}

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::default());
    /// Wakes the driver when a deadline earlier than every queued one arrives.
    static EARLIER: Event = const { Event::new() };
    /// Registrations so far on this thread (tests check that waiting tasks share the driver).
    #[cfg(test)]
    static REGISTERED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// `at` rounded up to the next multiple of `DEADLINE_TICK` since `base` (never earlier than asked).
fn round_up(at: Instant, base: Instant) -> Instant {
    let tick = DEADLINE_TICK.as_nanos().max(1);
    let since = at.saturating_duration_since(base).as_nanos();
    let ticks = since.div_ceil(tick);
    base + Duration::from_nanos((ticks * tick).min(u128::from(u64::MAX)) as u64)
}

/// The instant deadlines are rounded against: fixed per thread, so equal delays from
/// different partitions land on the same tick.
fn base() -> Instant {
    thread_local! {
        static BASE: Instant = Instant::now();
    }
    BASE.with(|b| *b)
}

/// Wakes `waker` once `at` (rounded up to a tick) has passed. Returns the rounded instant.
fn register(at: Instant, waker: Waker) -> Instant {
    let at = round_up(at, base());
    let executor = glommio::executor().id();
    let (start_driver, earlier) = QUEUE.with(|queue| {
        let mut queue = queue.borrow_mut();
        let start_driver = queue.driver_executor != Some(executor);
        if start_driver {
            queue.heap.clear();
            queue.driver_executor = Some(executor);
        }
        let earlier = queue.heap.peek().is_none_or(|Reverse(head)| at < head.at);
        let seq = queue.next_seq;
        queue.next_seq += 1;
        queue.heap.push(Reverse(Entry { at, seq, waker }));
        (start_driver, earlier)
    });
    #[cfg(test)]
    REGISTERED.with(|r| r.set(r.get() + 1));
    if start_driver {
        glommio::spawn_local(drive()).detach();
    } else if earlier {
        EARLIER.with(|e| e.notify(1));
    }
    at
}

/// The shard's one timer: wakes every registered task whose deadline passed, then sleeps
/// until the next deadline or an earlier registration.
async fn drive() {
    let executor = glommio::executor().id();
    loop {
        let listener = EARLIER.with(Event::listen);
        let now = Instant::now();
        let mut due = Vec::new();
        let next = QUEUE.with(|queue| {
            let mut queue = queue.borrow_mut();
            if queue.driver_executor != Some(executor) {
                return Err(()); // Another executor on this thread took over.
            }
            while queue.heap.peek().is_some_and(|Reverse(head)| head.at <= now) {
                if let Some(Reverse(entry)) = queue.heap.pop() {
                    due.push(entry.waker);
                }
            }
            Ok(queue.heap.peek().map(|Reverse(head)| head.at))
        });
        // Woken outside the borrow: a woken task may register again at once.
        for waker in due {
            waker.wake();
        }
        match next {
            Err(()) => return,
            Ok(None) => listener.await,
            Ok(Some(at)) => {
                let timeout = at.saturating_duration_since(Instant::now()).max(Duration::from_micros(1));
                futures_lite::future::or(listener, glommio::timer::sleep(timeout)).await;
            }
        }
    }
}

/// Completes once `at` has passed, woken by the shard's driver. `armed` is the caller's last
/// registration (kept across its waits): a wait that an earlier, still pending registration
/// already covers does not register again.
pub(crate) struct SleepUntil<'a> {
    at: Instant,
    armed: &'a mut Option<Instant>,
}

pub(crate) fn sleep_until(at: Instant, armed: &mut Option<Instant>) -> SleepUntil<'_> {
    SleepUntil { at, armed }
}

impl Future for SleepUntil<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let now = Instant::now();
        if now >= this.at {
            return Poll::Ready(());
        }
        // A registration still to fire at or before `at` wakes this task in time to look again;
        // otherwise (none, one already fired, or one later than `at`) register anew.
        let covered = this.armed.is_some_and(|armed| armed > now && armed <= round_up(this.at, base()));
        if !covered {
            *this.armed = Some(register(this.at, cx.waker().clone()));
        }
        Poll::Pending
    }
}

/// Registrations made on this thread so far.
#[cfg(test)]
pub(crate) fn registered() -> u64 {
    REGISTERED.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn rounds_up_to_the_tick_never_earlier() {
        let base = Instant::now();
        assert_eq!(round_up(base, base), base);
        assert_eq!(round_up(base + Duration::from_nanos(1), base), base + DEADLINE_TICK);
        assert_eq!(round_up(base + DEADLINE_TICK, base), base + DEADLINE_TICK);
        let at = base + DEADLINE_TICK * 3 + Duration::from_micros(1);
        assert_eq!(round_up(at, base), base + DEADLINE_TICK * 4);
        assert!(round_up(at, base) >= at);
    }

    /// Many tasks with deadlines in any order each wake no earlier than asked and within a
    /// generous bound after (no timing assertion beyond liveness: the bound is seconds).
    #[test]
    fn every_waiter_wakes_after_its_deadline() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let start = Instant::now();
                let woken = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                for i in [7u64, 1, 5, 3, 3, 9, 2, 0] {
                    let woken = woken.clone();
                    tasks.push(glommio::spawn_local(async move {
                        let at = start + Duration::from_millis(i * 3);
                        let mut armed = None;
                        sleep_until(at, &mut armed).await;
                        let now = Instant::now();
                        assert!(now >= at, "woke before its deadline");
                        woken.borrow_mut().push(i);
                    }));
                }
                for task in tasks {
                    glommio::timer::timeout(Duration::from_secs(10), async {
                        task.await;
                        Ok(())
                    })
                    .await
                    .expect("a waiter was never woken");
                }
                let mut woken = woken.borrow().clone();
                woken.sort_unstable();
                assert_eq!(woken, vec![0, 1, 2, 3, 3, 5, 7, 9]);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A task that waits again for a deadline its pending registration already covers does
    /// not register again; one that needs an earlier deadline does.
    #[test]
    fn a_covered_wait_does_not_register_again() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let at = Instant::now() + Duration::from_millis(50);
                let mut armed = None;
                let before = registered();
                for _ in 0..10 {
                    let waited = glommio::timer::timeout(Duration::from_millis(1), async {
                        sleep_until(at, &mut armed).await;
                        Ok(())
                    })
                    .await;
                    assert!(waited.is_err(), "the deadline is 50 ms away");
                }
                assert_eq!(registered() - before, 1, "ten waits on one deadline: one registration");
                let earlier = Instant::now() + Duration::from_millis(10);
                sleep_until(earlier, &mut armed).await;
                assert_eq!(registered() - before, 2, "an earlier deadline registers again");
                assert!(Instant::now() >= earlier);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
