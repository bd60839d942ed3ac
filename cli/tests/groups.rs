//! Consumer groups against the real `shardlog` binary, with the Rust client in-process: two
//! members (each on its own glommio executor thread) split a topic's 4 partitions; when one
//! dies without leaving, the survivor takes every partition once its session expires; when one
//! leaves cleanly, the survivor continues from its committed offsets.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use client::{Client, ClientOptions, Consumer, ConsumerOptions, Producer, ProducerOptions, TopicSettings};
use common::{eventually, on_executor, temp_dir, within, Server, WAIT};

const TOPIC: &str = "events";
const PARTITIONS: u32 = 4;
const SESSION_TIMEOUT_MS: u32 = 2_000;

/// What a member thread reports.
#[derive(Debug, Default, Clone)]
struct View {
    generation: i32,
    assignment: Vec<u32>,
    /// (partition, offset, value) of every record returned by `poll`, in order.
    records: Vec<(u32, u64, String)>,
    errors: Vec<String>,
    done: bool,
}

impl View {
    fn partitions_seen(&self) -> BTreeSet<u32> {
        self.records.iter().map(|r| r.0).collect()
    }

    fn values(&self) -> BTreeSet<String> {
        self.records.iter().map(|r| r.2.clone()).collect()
    }
}

const RUN: u8 = 0;
/// Drop the consumer without leaving the group (as if the process died).
const CRASH: u8 = 1;
/// `close()`: commit and leave.
const LEAVE: u8 = 2;

/// A group member on its own executor thread.
struct Member {
    name: &'static str,
    view: Arc<Mutex<View>>,
    control: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(name: &'static str, addr: &str) -> Member {
        let view = Arc::new(Mutex::new(View::default()));
        let control = Arc::new(AtomicU8::new(RUN));
        let (v, c, addr) = (view.clone(), control.clone(), addr.to_owned());
        let thread = std::thread::spawn(move || on_executor(move || run_member(addr, v, c)));
        Member { name, view, control, thread: Some(thread) }
    }

    fn view(&self) -> View {
        self.view.lock().unwrap().clone()
    }

    /// Stops the member (`CRASH` or `LEAVE`) and waits for its thread.
    fn stop(&mut self, how: u8) {
        self.control.store(how, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            eventually(WAIT, || thread.is_finished().then_some(()), || format!("{} did not stop", self.name));
            thread.join().unwrap();
        }
        assert!(self.view().done, "{} did not finish: {:?}", self.name, self.view());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.control.store(CRASH, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // Bounded: the member loop checks `control` after every (bounded) poll.
            // No panic here (this may run while a failed test unwinds): give up after WAIT.
            let deadline = std::time::Instant::now() + WAIT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

async fn run_member(addr: String, view: Arc<Mutex<View>>, control: Arc<AtomicU8>) {
    let options = ClientOptions { request_timeout_ms: 5_000, ..ClientOptions::default() };
    let client = match within(WAIT, Client::connect(&addr, options)).await {
        Some(Ok(client)) => Rc::new(client),
        other => {
            let mut v = view.lock().unwrap();
            v.errors.push(format!("connect: {other:?}"));
            v.done = true;
            return;
        }
    };
    let consumer = Consumer::new(
        client,
        ConsumerOptions {
            group: Some("g".to_owned()),
            topics: vec![TOPIC.to_owned()],
            from_beginning: true,
            fetch_wait_ms_max: 100,
            session_timeout_ms: SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: 200,
            ..ConsumerOptions::default()
        },
    );
    loop {
        match control.load(Ordering::SeqCst) {
            CRASH => {
                drop(consumer); // Stops heartbeating; no LeaveGroup, no commit.
                break;
            }
            LEAVE => {
                let closed = within(WAIT, consumer.close()).await;
                if !matches!(closed, Some(Ok(()))) {
                    view.lock().unwrap().errors.push(format!("close: {closed:?}"));
                }
                break;
            }
            _ => {}
        }
        let polled = within(WAIT, consumer.poll()).await;
        let mut v = view.lock().unwrap();
        match polled {
            Some(Ok(records)) => {
                for r in records {
                    let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                    v.records.push((r.partition, r.offset, value));
                }
            }
            Some(Err(e)) => v.errors.push(format!("poll: {e}")),
            None => v.errors.push("poll: no answer".to_owned()),
        }
        v.generation = consumer.membership().0;
        v.assignment = consumer.assignment().into_iter().map(|tp| tp.partition).collect();
        v.assignment.sort_unstable();
    }
    view.lock().unwrap().done = true;
}

/// `per_partition` records `r<round>-p<partition>-<i>` to every partition, acknowledged.
fn produce_round(server: &Server, round: u32, per_partition: u32) -> BTreeSet<String> {
    let addr = server.addr.clone();
    let produced: Result<BTreeSet<String>, String> = on_executor(move || async move {
        let options = ClientOptions { request_timeout_ms: 10_000, ..ClientOptions::default() };
        let client = Rc::new(Client::connect(&addr, options).await.map_err(|e| e.to_string())?);
        let producer = Producer::new(client, ProducerOptions::default());
        let mut values = BTreeSet::new();
        let mut deliveries = Vec::new();
        for p in 0..PARTITIONS {
            for i in 0..per_partition {
                let value = format!("r{round}-p{p}-{i}");
                let delivery = producer.enqueue(TOPIC, Some(p), None, Some(value.as_bytes()), &[], None).await;
                deliveries.push((value.clone(), delivery.map_err(|e| e.to_string())?));
                values.insert(value);
            }
        }
        if within(WAIT, producer.flush()).await.is_none() {
            return Err(format!("flush: {} records unacknowledged after {WAIT:?}", producer.outstanding()));
        }
        for (value, delivery) in deliveries {
            delivery.await.map_err(|e| format!("{value}: {e}"))?;
        }
        Ok(values)
    });
    produced.unwrap_or_else(|e| panic!("producing round {round}: {e}\nserver stderr:\n{}", server.stderr()))
}

fn create_topic(addr: &str) {
    let addr = addr.to_owned();
    on_executor(move || async move {
        let client = Client::connect(&addr, ClientOptions::default()).await.unwrap();
        client.create_topic(TOPIC, PARTITIONS, TopicSettings::default()).await.unwrap();
    });
}

fn all_partitions() -> Vec<u32> {
    (0..PARTITIONS).collect()
}

/// Waits until both members are in the same generation with disjoint, non-empty shares that
/// cover every partition.
fn settle(a: &Member, b: &Member, server: &Server) {
    eventually(
        WAIT,
        || {
            let (va, vb) = (a.view(), b.view());
            let union: BTreeSet<u32> = va.assignment.iter().chain(&vb.assignment).copied().collect();
            let settled = va.generation == vb.generation
                && va.generation >= 0
                && !va.assignment.is_empty()
                && !vb.assignment.is_empty()
                && va.assignment.len() + vb.assignment.len() == PARTITIONS as usize
                && union.len() == PARTITIONS as usize;
            settled.then_some(())
        },
        || format!("group did not settle: a={:?} b={:?}\nserver stderr:\n{}", a.view(), b.view(), server.stderr()),
    );
}

/// Starts a server, a topic and two settled members that together consumed round 1, each
/// only from its own share. Returns the round-1 values.
fn two_members_sharing(server: &Server) -> (Member, Member, BTreeSet<String>) {
    create_topic(&server.addr);
    let a = Member::start("a", &server.addr);
    let b = Member::start("b", &server.addr);
    settle(&a, &b, server);
    let (share_a, share_b) = (a.view().assignment, b.view().assignment);

    let round1 = produce_round(server, 1, 5);
    eventually(
        WAIT,
        || {
            let seen: BTreeSet<String> = a.view().values().union(&b.view().values()).cloned().collect();
            (seen == round1).then_some(())
        },
        || format!("round 1 not consumed: a={:?} b={:?}", a.view(), b.view()),
    );
    let (va, vb) = (a.view(), b.view());
    // Nobody rebalanced meanwhile, and each read only its own share.
    assert_eq!((va.assignment.clone(), vb.assignment.clone()), (share_a.clone(), share_b.clone()), "{va:?} {vb:?}");
    assert_eq!(va.partitions_seen(), share_a.iter().copied().collect(), "a read outside its share: {va:?}");
    assert_eq!(vb.partitions_seen(), share_b.iter().copied().collect(), "b read outside its share: {vb:?}");
    assert!(va.partitions_seen().len() < PARTITIONS as usize && vb.partitions_seen().len() < PARTITIONS as usize);
    assert_eq!(va.records.len() + vb.records.len(), round1.len(), "duplicates while both were alive: {va:?} {vb:?}");
    (a, b, round1)
}

#[test]
fn survivor_takes_over_the_partitions_of_a_dead_member() {
    let data = temp_dir("shardlog-itest-groups-");
    let server = Server::start(data.path());
    let (a, mut b, _round1) = two_members_sharing(&server);

    b.stop(CRASH);
    let round2 = produce_round(&server, 2, 5);
    // Once b's session expires, a owns every partition and gets all of round 2 (records b had
    // not committed may come again: at-least-once).
    eventually(
        WAIT,
        || {
            let va = a.view();
            (va.values().is_superset(&round2) && va.assignment == all_partitions()).then_some(())
        },
        || format!("a did not take over: a={:?}\nserver stderr:\n{}", a.view(), server.stderr()),
    );
    let va = a.view();
    assert_eq!(va.partitions_seen(), all_partitions().into_iter().collect());
    assert!(va.errors.is_empty(), "a's polls failed: {:?}", va.errors);
    assert!(b.view().errors.is_empty(), "b's polls failed: {:?}", b.view().errors);
}

#[test]
fn survivor_continues_from_the_offsets_a_leaving_member_committed() {
    let data = temp_dir("shardlog-itest-groups-leave-");
    let server = Server::start(data.path());
    let (a, mut b, _round1) = two_members_sharing(&server);
    let b_share = b.view().assignment;
    let a_before = a.view().records.len();

    b.stop(LEAVE); // Commits its positions (past round 1) and leaves.
    let round2 = produce_round(&server, 2, 5);
    eventually(
        WAIT,
        || {
            let va = a.view();
            (va.values().is_superset(&round2) && va.assignment == all_partitions()).then_some(())
        },
        || format!("a did not take over: a={:?}\nserver stderr:\n{}", a.view(), server.stderr()),
    );
    // Nothing b had read and committed comes again: after b left, a read exactly round 2.
    let va = a.view();
    let after: Vec<&(u32, u64, String)> = va.records[a_before..].iter().collect();
    let again: Vec<_> = after.iter().filter(|r| r.2.starts_with("r1-")).collect();
    assert!(again.is_empty(), "records of b's share {b_share:?} delivered again after b committed: {again:?}");
    assert_eq!(after.len(), round2.len(), "{after:?}");
    assert!(va.errors.is_empty(), "a's polls failed: {:?}", va.errors);
    assert!(b.view().errors.is_empty(), "b failed: {:?}", b.view().errors);
}
