//! In-process clusters: each node on its own glommio executor thread with its own data dir and
//! cluster port on 127.0.0.1, driven from the test thread through a command channel, each with
//! a sink recording the metadata it publishes. No timing is asserted: every wait is bounded
//! and fails with what it waited for; the times observed are printed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use broker::cluster::metadata::place;
use broker::cluster::{
    BrokerInfo, ClusterControl, ClusterMetadata, ClusterService, ClusterStart, CommittedMeta, MetaCommand,
    MetaResponse, MetadataSink, ProposeError, ReplicationConfig,
};
use broker::NodeId;
use cluster::{ClusterConfig, ClusterNode, ClusterNodeService};
use futures_lite::StreamExt;
use glommio::{LocalExecutorBuilder, Placement};

/// Bound of every wait: generous, the machine is shared and the build unoptimized.
const WAIT: Duration = Duration::from_secs(60);
/// Bound of one proposal's answer (its own deadline is 10 s).
const PROPOSE_WAIT: Duration = Duration::from_secs(30);

/// One cluster test at a time: each runs 3–4 executors, and several clusters at once on two
/// cores would only cause spurious elections.
static SERIAL: Mutex<()> = Mutex::new(());

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// What a node published.
#[derive(Default)]
struct Published {
    latest: Mutex<Option<Arc<ClusterMetadata>>>,
    count: AtomicUsize,
}

impl Published {
    fn latest(&self) -> Arc<ClusterMetadata> {
        self.latest.lock().unwrap().clone().unwrap_or_default()
    }
}

struct Sink(Arc<Published>);

impl MetadataSink for Sink {
    fn publish(&self, metadata: Arc<ClusterMetadata>) {
        *self.0.latest.lock().unwrap() = Some(metadata);
        self.0.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// Raft's view of a node: (last applied index, snapshot index, purged index).
type RaftView = (Option<u64>, Option<u64>, Option<u64>);

enum Command {
    Propose(MetaCommand, mpsc::Sender<Result<MetaResponse, ProposeError>>),
    Controller(mpsc::Sender<Option<u32>>),
    Raft(mpsc::Sender<Option<RaftView>>),
    Stop(mpsc::Sender<()>),
}

/// Test timing: the defaults, with a shorter broker session so that fencing is quick.
#[derive(Clone, Copy)]
struct Timing {
    heartbeat_interval_ms: u64,
    session_timeout_ms: u64,
    snapshot_logs_since_last: u64,
    snapshot_logs_kept: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_interval_ms: 250,
            session_timeout_ms: 2000,
            snapshot_logs_since_last: 1000,
            snapshot_logs_kept: 100,
        }
    }
}

struct Node {
    node: u32,
    address: String,
    dir: PathBuf,
    published: Arc<Published>,
    commands: futures_channel::mpsc::UnboundedSender<Command>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

fn broker_info(node: u32, address: &str) -> BrokerInfo {
    BrokerInfo {
        node,
        incarnation: 0,
        cluster_address: address.to_string(),
        native_addresses: vec![format!("127.0.0.1:{}", 20000 + node * 10), format!("127.0.0.1:{}", 20001 + node * 10)],
        kafka_addresses: Vec::new(),
        fenced: false,
        draining: false,
    }
}

/// Binds `address` again (the port of a stopped node), retrying while the old socket goes.
fn rebind(address: &str) -> TcpListener {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpListener::bind(address) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding {address}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot bind {address} again: {e}"),
        }
    }
}

impl Node {
    /// Starts node `node` (through the `ClusterService` seam when `via_service`) and waits
    /// until `start` resolved; returns it with the metadata published by then.
    #[allow(clippy::too_many_arguments)]
    fn start(
        node: u32,
        listener: TcpListener,
        peers: &BTreeMap<u32, String>,
        dir: &Path,
        timing: Timing,
        via_service: bool,
    ) -> (Node, Option<Arc<ClusterMetadata>>) {
        let address = listener.local_addr().unwrap().to_string();
        let mut config = ClusterConfig::new(node, listener, address.clone(), peers.clone());
        config.heartbeat_interval_ms = timing.heartbeat_interval_ms;
        config.session_timeout_ms = timing.session_timeout_ms;
        config.snapshot_logs_since_last = timing.snapshot_logs_since_last;
        config.snapshot_logs_kept = timing.snapshot_logs_kept;
        let published = Arc::new(Published::default());
        let (commands, mut receiver) = futures_channel::mpsc::unbounded::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Option<Arc<ClusterMetadata>>, String>>();
        let (sink_published, data_dir, broker) = (published.clone(), dir.to_path_buf(), broker_info(node, &address));
        let thread = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("node-{node}"))
            .spawn(move || async move {
                let start = ClusterStart {
                    node: NodeId::new(node),
                    data_dir,
                    broker,
                    sink: Rc::new(Sink(sink_published.clone())),
                };
                let (control, direct): (Rc<dyn ClusterControl>, Option<Rc<ClusterNode>>) = if via_service {
                    let service = ClusterNodeService::new(config);
                    match service.start(start).await {
                        Ok(control) => (control, None),
                        Err(e) => return drop(ready_tx.send(Err(e))),
                    }
                } else {
                    match ClusterNode::start(config, start).await {
                        Ok(node) => {
                            let node = Rc::new(node);
                            (node.clone(), Some(node))
                        }
                        Err(e) => return drop(ready_tx.send(Err(e.to_string()))),
                    }
                };
                let published_then = sink_published.latest.lock().unwrap().clone();
                ready_tx.send(Ok(published_then)).unwrap();
                while let Some(command) = receiver.next().await {
                    match command {
                        Command::Propose(command, reply) => {
                            let control = control.clone();
                            glommio::spawn_local(async move {
                                let _ = reply.send(control.propose(command).await);
                            })
                            .detach();
                        }
                        Command::Controller(reply) => {
                            let _ = reply.send(control.controller().map(|n| n.get()));
                        }
                        Command::Raft(reply) => {
                            let view = direct.as_ref().map(|n| {
                                let m = n.metrics();
                                (
                                    m.last_applied.map(|l| l.index),
                                    m.snapshot.map(|l| l.index),
                                    m.purged.map(|l| l.index),
                                )
                            });
                            let _ = reply.send(view);
                        }
                        Command::Stop(reply) => {
                            control.stop().await;
                            let _ = reply.send(());
                            break;
                        }
                    }
                }
            })
            .unwrap();
        let started = ready_rx.recv_timeout(WAIT).expect("node start timed out").expect("node start failed");
        let node = Node { node, address, dir: dir.to_path_buf(), published, commands, thread: Some(thread) };
        (node, started)
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Command, timeout: Duration) -> T {
        let (tx, rx) = mpsc::channel();
        self.commands.unbounded_send(make(tx)).expect("node is running");
        rx.recv_timeout(timeout).unwrap_or_else(|e| panic!("node {} did not answer: {e}", self.node))
    }

    fn propose(&self, command: MetaCommand) -> Result<MetaResponse, ProposeError> {
        self.ask(|tx| Command::Propose(command, tx), PROPOSE_WAIT)
    }

    fn controller(&self) -> Option<u32> {
        self.ask(Command::Controller, WAIT)
    }

    fn raft(&self) -> Option<RaftView> {
        self.ask(Command::Raft, WAIT)
    }

    fn metadata(&self) -> Arc<ClusterMetadata> {
        self.published.latest()
    }

    /// Stops the node and ends its executor thread.
    fn stop(mut self) {
        self.ask(Command::Stop, WAIT);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Waits until `check` holds, failing with `what` after `WAIT`; returns how long it took.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out after {WAIT:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The leader all `nodes` agree on.
fn agreed_leader(nodes: &[&Node]) -> Option<u32> {
    let first = nodes.first()?.controller()?;
    nodes.iter().all(|n| n.controller() == Some(first)).then_some(first)
}

fn live_registered(metadata: &ClusterMetadata, nodes: &[u32]) -> bool {
    nodes.iter().all(|n| metadata.brokers.get(n).is_some_and(|b| !b.fenced))
}

fn same_metadata(nodes: &[&Node]) -> bool {
    let first = nodes[0].metadata();
    nodes.iter().all(|n| *n.metadata() == *first)
}

fn create_topic(metadata: &ClusterMetadata, name: &str, partitions: u32) -> MetaCommand {
    let assignment = place(0, partitions, 3, &metadata.placeable_brokers(), &mut metadata.replica_load()).unwrap();
    let replication =
        ReplicationConfig { replication_factor: 3, min_insync_replicas: 2, unclean_leader_election: false };
    MetaCommand::CreateTopic { name: name.into(), config: Default::default(), replication, assignment }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("shardlog-cluster-test-").tempdir_in(std::env::temp_dir()).unwrap()
}

/// Binds a cluster port per node and starts them all as voters.
fn start_cluster(voters: &[u32], base: &Path, timing: Timing) -> (Vec<Node>, BTreeMap<u32, String>) {
    let listeners: Vec<(u32, TcpListener)> =
        voters.iter().map(|n| (*n, TcpListener::bind("127.0.0.1:0").unwrap())).collect();
    let peers: BTreeMap<u32, String> =
        listeners.iter().map(|(n, l)| (*n, l.local_addr().unwrap().to_string())).collect();
    let nodes = listeners
        .into_iter()
        .map(|(n, l)| Node::start(n, l, &peers, &base.join(format!("node-{n}")), timing, n % 2 == 0).0)
        .collect();
    (nodes, peers)
}

#[test]
fn three_voters_elect_replicate_fence_restart_and_a_learner_joins() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_tracing();
    let base = temp_dir();
    let timing = Timing::default();
    let started = Instant::now();
    let (mut nodes, peers) = start_cluster(&[1, 2, 3], base.path(), timing);

    // A leader is elected and every broker's registration is applied everywhere.
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until("the three nodes agree on a leader", || agreed_leader(&all).is_some());
    eprintln!("observed: first leader elected {:?} after the nodes started", started.elapsed());
    let leader = agreed_leader(&all).unwrap();
    wait_until("every node has applied the three registrations", || {
        all.iter().all(|n| live_registered(&n.metadata(), &[1, 2, 3]))
    });

    // A topic proposed on a follower is in that follower's metadata when the proposal returns,
    // and then everywhere.
    let follower = nodes.iter().find(|n| n.node != leader).unwrap();
    let create = create_topic(&follower.metadata(), "t", 6);
    assert_eq!(follower.propose(create.clone()).unwrap(), MetaResponse::Ok);
    assert!(follower.metadata().topics.contains_key("t"), "applied locally before propose returned");
    wait_until("all three publish the same metadata with the topic", || same_metadata(&all));
    assert_eq!(follower.propose(create).unwrap(), MetaResponse::TopicExists);
    let topic = nodes[0].metadata().topics["t"].clone();
    let led_by_leader: Vec<usize> =
        (0..topic.partitions.len()).filter(|p| topic.partitions[*p].leader == Some(leader)).collect();
    assert!(!led_by_leader.is_empty(), "placement rotates leaders over the nodes");

    // The leader's node stops: the other two elect a new leader and commit new proposals.
    let index = nodes.iter().position(|n| n.node == leader).unwrap();
    let old = nodes.remove(index);
    let (old_address, old_dir) = (old.address.clone(), old.dir.clone());
    let stopped = Instant::now();
    old.stop();
    let survivors: Vec<&Node> = nodes.iter().collect();
    wait_until("the survivors agree on a new leader", || agreed_leader(&survivors).is_some_and(|l| l != leader));
    eprintln!("observed: new leader elected {:?} after the leader stopped", stopped.elapsed());
    let create2 = create_topic(&nodes[0].metadata(), "t2", 2);
    assert_eq!(nodes[1].propose(create2).unwrap(), MetaResponse::Ok);
    wait_until("both survivors have t2", || survivors.iter().all(|n| n.metadata().topics.contains_key("t2")));

    // The new controller fences the silent broker: its partitions get other leaders.
    wait_until("the stopped broker is fenced", || {
        survivors.iter().all(|n| n.metadata().brokers.get(&leader).is_some_and(|b| b.fenced))
    });
    eprintln!("observed: stopped broker fenced {:?} after it stopped", stopped.elapsed());
    wait_until("the survivors agree", || same_metadata(&survivors));
    let after = nodes[0].metadata();
    for p in &led_by_leader {
        let partition = &after.topics["t"].partitions[*p];
        assert!(partition.leader.is_some() && partition.leader != Some(leader), "partition {p}: {partition:?}");
        assert!(!partition.isr.contains(&leader));
        assert_eq!(partition.leader_epoch, topic.partitions[*p].leader_epoch + 1);
    }

    // Restarted from its data dir: its metadata is restored from disk before start returns,
    // then it catches up and registers again (a new incarnation).
    let (restarted, restored) = Node::start(leader, rebind(&old_address), &peers, &old_dir, timing, false);
    let restored = restored.expect("metadata published before start returned");
    assert!(restored.topics.contains_key("t"), "restored from disk: {:?}", restored.topics.keys());
    nodes.push(restarted);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until("the restarted node catches up and everyone sees it registered again", || {
        same_metadata(&all) && live_registered(&all[0].metadata(), &[1, 2, 3])
    });
    assert!(nodes.iter().all(|n| n.metadata().topics.contains_key("t2")));

    // A fourth node, not among the voters, joins as a learner and receives the metadata.
    let (learner, _) =
        Node::start(4, TcpListener::bind("127.0.0.1:0").unwrap(), &peers, &base.path().join("node-4"), timing, true);
    nodes.push(learner);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until("the learner registers and all four publish the same metadata", || {
        live_registered(&all[0].metadata(), &[1, 2, 3, 4]) && same_metadata(&all)
    });
    let learner = nodes.last().unwrap();
    assert!(learner.controller().is_some_and(|c| c != 4), "a learner never leads");
    let offsets = MetaCommand::CommitOffsets {
        group: "g".into(),
        offsets: vec![(
            "t".into(),
            0,
            CommittedMeta { offset: 5, metadata: String::new(), commit_timestamp_ms: 1, leader_epoch: None },
        )],
    };
    assert_eq!(learner.propose(offsets).unwrap(), MetaResponse::Ok, "a learner's proposals are forwarded");
    assert_eq!(learner.metadata().offsets["g"]["t"][&0].offset, 5);

    // The restarted broker caught up (here: put back in the ISR by hand); the controller hands
    // its preferred leaderships back.
    let metadata = nodes[0].metadata();
    let p = *led_by_leader.first().unwrap();
    let partition = metadata.topics["t"].partitions[p].clone();
    let mut isr = partition.isr.clone();
    isr.push(leader);
    let expand = MetaCommand::AlterIsr {
        topic: "t".into(),
        partition: p as u32,
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
        isr,
    };
    assert_eq!(nodes[0].propose(expand).unwrap(), MetaResponse::Ok);
    let balanced = wait_until("the preferred replica leads again", || {
        nodes.iter().all(|n| n.metadata().topics["t"].partitions[p].leader == Some(leader))
    });
    eprintln!("observed: preferred leader restored {balanced:?} after it rejoined the ISR");

    for node in nodes {
        node.stop();
    }
}

#[test]
fn a_node_restarted_after_many_proposals_catches_up_through_snapshots() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_tracing();
    let base = temp_dir();
    let timing = Timing { snapshot_logs_since_last: 20, snapshot_logs_kept: 5, ..Timing::default() };
    let (mut nodes, peers) = start_cluster(&[1, 2, 3], base.path(), timing);
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until("a leader and three registrations", || {
        agreed_leader(&all).is_some() && all.iter().all(|n| live_registered(&n.metadata(), &[1, 2, 3]))
    });

    // A follower (started directly, so its Raft view can be read) stops.
    let leader = agreed_leader(&all).unwrap();
    let index = nodes.iter().position(|n| n.node != leader && n.node % 2 == 1).unwrap();
    let behind = nodes.remove(index);
    let (behind_node, behind_address, behind_dir) = (behind.node, behind.address.clone(), behind.dir.clone());
    behind.stop();

    // Many proposals, so that the others snapshot and purge past where it stopped.
    let proposals = 120u32;
    for i in 0..proposals {
        let offsets = MetaCommand::CommitOffsets {
            group: format!("g{i}"),
            offsets: vec![(
                "t".into(),
                i,
                CommittedMeta {
                    offset: u64::from(i),
                    metadata: String::new(),
                    commit_timestamp_ms: 1,
                    leader_epoch: None,
                },
            )],
        };
        assert_eq!(nodes[(i % 2) as usize].propose(offsets).unwrap(), MetaResponse::Ok, "proposal {i}");
    }
    let survivors: Vec<&Node> = nodes.iter().collect();
    wait_until("the survivors agree", || same_metadata(&survivors));
    for node in &nodes {
        assert!(node.dir.join("cluster/snapshot.json").exists(), "node {} built a snapshot", node.node);
    }

    // It comes back: its log ends before what the leader still has, so it gets a snapshot.
    let (back, restored) = Node::start(behind_node, rebind(&behind_address), &peers, &behind_dir, timing, false);
    assert!(restored.is_some_and(|m| m.offsets.is_empty()), "it had none of the offsets");
    nodes.push(back);
    let all: Vec<&Node> = nodes.iter().collect();
    let caught_up = wait_until("the restarted node has every offset", || {
        all.last().unwrap().metadata().offsets.len() == proposals as usize && same_metadata(&all)
    });
    eprintln!("observed: restarted node caught up {caught_up:?} after it started");
    let (_, snapshot, purged) = nodes.last().unwrap().raft().unwrap();
    assert!(snapshot.is_some() && purged.is_some(), "caught up through a snapshot: {snapshot:?} {purged:?}");

    // Restarted again: everything is restored from its own disk (snapshot + log) before start
    // returns.
    let again = nodes.pop().unwrap();
    let expected = again.metadata();
    again.stop();
    let (again, restored) = Node::start(behind_node, rebind(&behind_address), &peers, &behind_dir, timing, false);
    let restored = restored.expect("restored metadata published before start returned");
    assert_eq!(restored.offsets, expected.offsets, "restored from its snapshot and log");
    nodes.push(again);
    for node in nodes {
        node.stop();
    }
}

#[test]
fn without_a_majority_a_proposal_fails_at_its_deadline() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    init_tracing();
    let base = temp_dir();
    let (mut nodes, _) = start_cluster(&[1, 2, 3], base.path(), Timing::default());
    let all: Vec<&Node> = nodes.iter().collect();
    wait_until("a leader and three registrations", || {
        agreed_leader(&all).is_some() && all.iter().all(|n| live_registered(&n.metadata(), &[1, 2, 3]))
    });
    let last = nodes.pop().unwrap();
    for node in nodes {
        node.stop();
    }
    let before = last.metadata();
    let proposed = Instant::now();
    let result = last.propose(create_topic(&before, "lost", 1));
    eprintln!("observed: a proposal without a majority failed after {:?}: {result:?}", proposed.elapsed());
    assert!(matches!(result, Err(ProposeError::TimedOut { .. }) | Err(ProposeError::NoLeader { .. })), "{result:?}");
    assert!(!last.metadata().topics.contains_key("lost"), "nothing was applied without a majority");
    last.stop();
}
