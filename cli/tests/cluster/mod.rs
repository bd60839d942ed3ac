//! The cluster test harness: several `shardlog serve` processes, each behind a fault-injecting
//! proxy ([`proxy`]), with controls to kill, restart, pause and partition them; a seeded
//! [`nemesis`] that runs a schedule of such faults; a Jepsen-style [`history`] and
//! [`checker`]; a [`workload`] driver with adapters for the native and the Kafka clients
//! ([`clients`]); and blocking [`probe`]s of a node (its Kafka Metadata).
//!
//! Addressing: node N binds everything on its own loopback address `127.0.1.N` and advertises
//! `127.0.2.N` (same ports), where the proxy listens and forwards to `127.0.1.N`. Every node
//! uses the same port numbers (their addresses differ), reserved among concurrently running
//! tests with the lock files of `tests/common` (blocks of 8 ports).
//!
//! Every wait is bounded and fails with what the processes printed; every process is
//! SIGKILLed when the [`Cluster`] is dropped, also while a test panics — then the run's
//! directory (data, logs) is kept and its path printed.
//!
//! An end-to-end test, in outline (see `tests/cluster_harness.rs` for one that runs):
//!
//! ```text
//! let cluster = Cluster::start(ClusterOptions { seed: seed_from_env(1), ..Default::default() });
//! cluster.wait_kafka_brokers();
//! let history = Arc::new(History::with_epoch(cluster.epoch()));
//! let nemesis = Nemesis::new(NemesisOptions { seed: cluster.seed(), ..Default::default() }, &cluster.node_ids());
//! thread::scope(|s| {
//!     s.spawn(|| nemesis.run(&cluster, &done, Some(&history)));
//!     on_executor(/* create the topic; produce_loop / read_loop / commit_loop with the
//!                   adapters of `clients` on cluster.bootstrap_kafka() or bootstrap_native() */);
//! });
//! cluster.recover();                      // heal, resume, restart
//! let logs = /* read_final_log of each partition from its leader */;
//! cluster.stop_all_cleanly();
//! let replicas = /* each replica's batches below the HW, read from node_data_dir(n) */;
//! check_all(&history, &logs, &replicas).assert_valid(&nemesis.report());
//! ```
#![allow(dead_code)] // Each test file uses a different subset.
#![allow(clippy::unwrap_used)]

pub mod checker;
pub mod clients;
pub mod history;
pub mod nemesis;
pub mod ports;
pub mod probe;
pub mod proxy;
pub mod startup;
pub mod workload;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use ports::{NodeAddrs, PortKind, PortLayout};
pub use proxy::{advertised_ip, node_ip, NodeId, Proxy, ProxyOptions};
pub use startup::{parse_addresses, Expected, Printed};

use ports::{reserve_ports, PortLocks, SHARDS_MAX};

/// The longest any single wait of the harness takes before it fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long a restart waits for a killed process's listening sockets to go away.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Starts of one process, when it fails because a port is still taken.
const START_ATTEMPTS: usize = 3;
/// Lines of each log shown in failure messages.
const LOG_TAIL_LINES: usize = 40;
/// Environment: where run directories go (else the system temp dir), and keep them even on
/// success.
pub const TEST_DIR_ENV: &str = "SHARDLOG_TEST_DIR";
pub const KEEP_DIR_ENV: &str = "SHARDLOG_KEEP_TEST_DIR";
/// Environment: the seed of a run (decimal or 0x-hex), to replay a failure.
pub const SEED_ENV: &str = "SHARDLOG_TEST_SEED";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_shardlog")
}

/// `SHARDLOG_TEST_SEED` if set, else `default`. Print it in failure messages.
pub fn seed_from_env(default: u64) -> u64 {
    let Ok(text) = std::env::var(SEED_ENV) else { return default };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not a u64"))
}

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes 1..=nodes.
    pub nodes: u32,
    pub shards: u32,
    /// Nodes 1..=voters are in `--cluster-peers`; the others join as learners.
    pub voters: u32,
    /// Kafka listeners (bootstrap and one per shard).
    pub kafka: bool,
    /// A metrics listener on each node's own address (not proxied).
    pub metrics: bool,
    /// The run's seed: not used by the harness itself; shown in its failure messages, for the
    /// nemesis and workload to use.
    pub seed: u64,
    /// Extra `serve` flags for every node.
    pub extra_args: Vec<String>,
    /// Extra environment for every node.
    pub env: Vec<(String, String)>,
    /// `false` starts every node as an independent single-node broker: no `--cluster-*` and no
    /// native `--advertised-host` flags, no proxy for a cluster port. For the harness's own
    /// tests against a binary without the cluster.
    pub cluster_flags: bool,
    pub proxy: ProxyOptions,
    /// Keep the run directory even when the test passes (also: `SHARDLOG_KEEP_TEST_DIR`).
    pub keep_dir: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            shards: 1,
            voters: 3,
            kafka: true,
            metrics: false,
            seed: 1,
            extra_args: Vec::new(),
            env: Vec::new(),
            cluster_flags: true,
            proxy: ProxyOptions::default(),
            keep_dir: false,
        }
    }
}

/// How a node ended in [`Cluster::stop_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    Exited(ExitStatus),
    /// Still running `WAIT` after SIGTERM: SIGKILLed.
    Killed,
    NotRunning,
}

/// What the harness did, for failure messages (times from [`Cluster::epoch`]).
#[derive(Debug, Clone)]
pub struct ClusterEvent {
    pub at: Duration,
    pub what: String,
}

/// A node's process and logs.
struct NodeProcess {
    id: NodeId,
    /// `<run>/node-N`: `data/`, `stdout.log`, `stderr.log`.
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    starts: u32,
    /// How the previous processes ended, for failure messages.
    ended: Vec<String>,
}

impl NodeProcess {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().unwrap_or_else(|| panic!("node {} is not running", self.id));
        // SAFETY: kill(2) on our own child, not reaped yet (so the pid is still ours).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) for node {} failed", self.id);
    }

    /// SIGKILL and reap; `false` if it was not running.
    fn kill(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = child.kill();
        let status = child.wait();
        self.paused = false;
        self.ended.push(format!("SIGKILLed ({status:?})"));
        true
    }

    /// Waits up to `timeout` for the process to exit; reaps it.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.paused = false;
                self.ended.push(format!("exited: {status}"));
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Running (not exited), paused or not.
    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    self.child = None;
                    self.paused = false;
                    self.ended.push(format!("exited on its own: {status}"));
                    false
                }
                Err(_) => true,
            },
            None => false,
        }
    }

    fn state(&mut self) -> String {
        let pid = self.pid();
        match (self.is_running(), self.paused) {
            (true, true) => format!("paused (pid {})", pid.unwrap_or(0)),
            (true, false) => format!("running (pid {})", pid.unwrap_or(0)),
            (false, _) => format!("down (last: {})", self.ended.last().map_or("never started", String::as_str)),
        }
    }
}

/// A running cluster. See the module doc.
pub struct Cluster {
    options: ClusterOptions,
    run_dir: Option<tempfile::TempDir>,
    run_path: PathBuf,
    ports: PortLayout,
    _port_locks: PortLocks,
    proxy: Proxy,
    /// Node N at index N-1.
    nodes: Vec<Mutex<NodeProcess>>,
    epoch: Instant,
    events: Mutex<Vec<ClusterEvent>>,
}

impl Cluster {
    /// Reserves ports, starts a proxy in front of every port and every node behind it, and
    /// waits until each node printed its addresses and accepts on every port.
    pub fn start(options: ClusterOptions) -> Cluster {
        assert!(options.nodes >= 1 && options.nodes <= proxy::NODES_MAX, "nodes: {}", options.nodes);
        assert!(options.voters >= 1 && options.voters <= options.nodes, "voters: {}", options.voters);
        assert!(options.shards >= 1 && options.shards <= SHARDS_MAX, "shards: {}", options.shards);
        let epoch = Instant::now();
        let base = std::env::var_os(TEST_DIR_ENV).map_or_else(std::env::temp_dir, PathBuf::from);
        std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
        let run_dir = tempfile::Builder::new().prefix("shardlog-cluster-").tempdir_in(&base).unwrap();
        let run_path = run_dir.path().to_path_buf();
        let shards = options.shards as u16;
        let count = PortLayout::count(shards, options.kafka, options.metrics);
        let node_ids: Vec<NodeId> = (1..=options.nodes).collect();
        let (locks, ports, proxy) = proxied_ports(&options, count, &node_ids);
        let nodes = node_ids
            .iter()
            .map(|&id| {
                let dir = run_path.join(format!("node-{id}"));
                std::fs::create_dir_all(dir.join("data")).unwrap();
                Mutex::new(NodeProcess { id, dir, child: None, paused: false, starts: 0, ended: Vec::new() })
            })
            .collect();
        let cluster = Cluster {
            options,
            run_dir: Some(run_dir),
            run_path,
            ports,
            _port_locks: locks,
            proxy,
            nodes,
            epoch,
            events: Mutex::new(Vec::new()),
        };
        // All at once: a node may wait for its peers before it is ready.
        let mut starting = Vec::new();
        for &node in &node_ids {
            let spawned = cluster.spawn(&mut cluster.node(node));
            match spawned {
                Ok(lines) => starting.push((node, lines)),
                Err(message) => cluster.fail(&format!("node {node} did not start: {message}")),
            }
        }
        for (node, lines) in starting {
            let ready = cluster.await_ready(&mut cluster.node(node), &lines);
            match ready {
                Ok(()) => {}
                // A port was still taken (by a process of an earlier test that just died).
                Err((message, true)) => {
                    cluster.event(format!("node {node} failed to start, trying again: {message}"));
                    cluster.restart(node);
                }
                Err((message, false)) => cluster.fail(&format!("node {node} did not become ready: {message}")),
            }
        }
        cluster.event(format!("started {} nodes", node_ids.len()));
        cluster
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    pub fn seed(&self) -> u64 {
        self.options.seed
    }

    /// Node ids, 1..=nodes.
    pub fn node_ids(&self) -> Vec<NodeId> {
        (1..=self.options.nodes).collect()
    }

    /// When the harness started: the zero of every time it reports.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn ports(&self) -> PortLayout {
        self.ports
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The run's directory (node-N/data, node-N/stdout.log, node-N/stderr.log).
    pub fn run_dir(&self) -> &Path {
        &self.run_path
    }

    pub fn node_data_dir(&self, node: NodeId) -> PathBuf {
        self.node(node).data_dir()
    }

    /// Node `node`'s addresses as advertised (through the proxy).
    pub fn advertised(&self, node: NodeId) -> NodeAddrs {
        let mut addrs = NodeAddrs::on(advertised_ip(node), &self.ports);
        addrs.metrics = NodeAddrs::on(node_ip(node), &self.ports).metrics;
        addrs
    }

    /// Node `node`'s own addresses (bypassing the proxy).
    pub fn bound(&self, node: NodeId) -> NodeAddrs {
        NodeAddrs::on(node_ip(node), &self.ports)
    }

    /// The advertised native bootstrap addresses, comma-separated.
    pub fn bootstrap_native(&self) -> String {
        self.node_ids().iter().map(|&n| self.advertised(n).native.to_string()).collect::<Vec<_>>().join(",")
    }

    /// The advertised Kafka bootstrap addresses, comma-separated.
    pub fn bootstrap_kafka(&self) -> String {
        assert!(self.options.kafka, "started without Kafka listeners");
        let addrs: Vec<String> =
            self.node_ids().iter().filter_map(|&n| self.advertised(n).kafka).map(|a| a.to_string()).collect();
        addrs.join(",")
    }

    /// The `--cluster-peers` value: voters' advertised cluster addresses.
    pub fn cluster_peers(&self) -> String {
        let peers: Vec<String> =
            (1..=self.options.voters).map(|n| format!("{n}={}:{}", advertised_ip(n), self.ports.cluster)).collect();
        peers.join(",")
    }

    pub fn pid(&self, node: NodeId) -> Option<i32> {
        self.node(node).pid()
    }

    pub fn is_running(&self, node: NodeId) -> bool {
        self.node(node).is_running()
    }

    /// Running and stopped by [`Cluster::pause`].
    pub fn is_paused(&self, node: NodeId) -> bool {
        let mut process = self.node(node);
        process.is_running() && process.paused
    }

    /// SIGKILL (a paused node too) and reap. No-op if it is down.
    pub fn kill9(&self, node: NodeId) {
        let killed = self.node(node).kill();
        self.event(format!("kill -9 node {node}{}", if killed { "" } else { " (was down)" }));
    }

    /// Starts the node again on the same data directory and ports (SIGKILLing it first if it
    /// runs), waiting for its old listening sockets to go, and until it is ready.
    pub fn restart(&self, node: NodeId) {
        let mut process = self.node(node);
        if process.kill() {
            self.event(format!("kill -9 node {node} (to restart it)"));
        }
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let attempt = self
                .wait_ports_released(node)
                .and_then(|()| self.spawn(&mut process))
                .map_err(|m| (m, false))
                .and_then(|lines| self.await_ready(&mut process, &lines));
            match attempt {
                Ok(()) => {
                    drop(process);
                    self.event(format!("restarted node {node}"));
                    return;
                }
                Err((message, retry)) => {
                    failures.push(message);
                    if !retry {
                        break;
                    }
                }
            }
        }
        drop(process);
        self.fail(&format!("node {node} did not restart:\n{}", failures.join("\n---\n")));
    }

    /// SIGSTOP; returns once the process is stopped.
    pub fn pause(&self, node: NodeId) {
        let mut process = self.node(node);
        process.signal(libc::SIGSTOP);
        process.paused = true;
        let pid = process.pid().unwrap_or(0);
        drop(process);
        self.await_proc_state(node, pid, true);
        self.event(format!("pause node {node}"));
    }

    /// SIGCONT; returns once the process runs again.
    pub fn resume(&self, node: NodeId) {
        let mut process = self.node(node);
        process.signal(libc::SIGCONT);
        process.paused = false;
        let pid = process.pid().unwrap_or(0);
        drop(process);
        self.await_proc_state(node, pid, false);
        self.event(format!("resume node {node}"));
    }

    /// Cuts nodes `a` and `b` apart (both directions), in the proxy's default mode.
    pub fn partition(&self, a: NodeId, b: NodeId) {
        self.proxy.cut(a, b);
        self.event(format!("partition {a} | {b}"));
    }

    /// Heals the link between `a` and `b` only.
    pub fn heal_pair(&self, a: NodeId, b: NodeId) {
        self.proxy.heal(a, b);
        self.event(format!("heal {a} | {b}"));
    }

    /// Cuts `node` from every other node (clients still reach it).
    pub fn isolate(&self, node: NodeId) {
        self.proxy.isolate(node);
        self.event(format!("isolate node {node}"));
    }

    /// Heals every link of `node` with the other nodes.
    pub fn heal_node(&self, node: NodeId) {
        for other in self.node_ids().into_iter().filter(|&o| o != node) {
            self.proxy.heal(node, other);
        }
        self.event(format!("heal node {node}"));
    }

    /// Cuts clients (not nodes) from `node`.
    pub fn cut_clients(&self, node: NodeId) {
        self.proxy.cut_clients(node);
        self.event(format!("cut clients from node {node}"));
    }

    pub fn heal_clients(&self, node: NodeId) {
        self.proxy.heal_clients(node);
        self.event(format!("heal clients of node {node}"));
    }

    /// Removes every network cut.
    pub fn heal(&self) {
        self.proxy.heal_all();
        self.event("heal all".to_owned());
    }

    /// Undoes every fault: heals the network, resumes paused nodes, restarts stopped ones.
    pub fn recover(&self) {
        self.heal();
        for node in self.node_ids() {
            let (running, paused) = {
                let mut process = self.node(node);
                (process.is_running(), process.paused)
            };
            if running && paused {
                self.resume(node);
            } else if !running {
                self.restart(node);
            }
        }
    }

    /// SIGTERM to every running node (resuming paused ones first, else the signal waits), then
    /// waits for each; SIGKILLs those still running after `WAIT`.
    pub fn stop_all(&self) -> Vec<(NodeId, StopOutcome)> {
        let mut outcomes = Vec::new();
        for node in self.node_ids() {
            let mut process = self.node(node);
            if process.is_running() {
                if process.paused {
                    process.signal(libc::SIGCONT);
                    process.paused = false;
                }
                process.signal(libc::SIGTERM);
            }
        }
        for node in self.node_ids() {
            let mut process = self.node(node);
            let outcome = if process.child.is_none() {
                StopOutcome::NotRunning
            } else {
                match process.wait_exit(WAIT) {
                    Some(status) => StopOutcome::Exited(status),
                    None => {
                        process.kill();
                        StopOutcome::Killed
                    }
                }
            };
            outcomes.push((node, outcome));
        }
        self.event(format!("stop all: {outcomes:?}"));
        outcomes
    }

    /// `stop_all`, failing (with the logs) unless every running node exited 0.
    pub fn stop_all_cleanly(&self) {
        let outcomes = self.stop_all();
        let bad: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| {
                !matches!(o, StopOutcome::NotRunning) && !matches!(o, StopOutcome::Exited(s) if s.success())
            })
            .collect();
        if !bad.is_empty() {
            self.fail(&format!("nodes did not stop cleanly on SIGTERM: {bad:?}"));
        }
    }

    /// The harness's own record of what it did.
    pub fn events(&self) -> Vec<ClusterEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Node `node`'s stderr (all its processes, each after a `--- start` line).
    pub fn stderr(&self, node: NodeId) -> String {
        std::fs::read_to_string(self.node(node).stderr_path()).unwrap_or_default()
    }

    pub fn stdout(&self, node: NodeId) -> String {
        std::fs::read_to_string(self.node(node).stdout_path()).unwrap_or_default()
    }

    /// The Kafka brokers node `node` lists in Metadata, asked through its proxy.
    pub fn kafka_brokers(&self, node: NodeId) -> Result<Vec<probe::KafkaBroker>, String> {
        let addr = self.advertised(node).kafka.ok_or("started without Kafka listeners")?;
        probe::kafka_brokers(addr, Duration::from_secs(2))
    }

    /// Waits until every running, unpaused node lists in Kafka Metadata a broker on every
    /// node's advertised address (the cluster has formed, as Kafka clients see it).
    pub fn wait_kafka_brokers(&self) {
        let hosts: Vec<String> = self.node_ids().iter().map(|&n| advertised_ip(n).to_string()).collect();
        let answers = std::cell::RefCell::new(Vec::new());
        self.wait_until(
            WAIT,
            || {
                let mut answers = answers.borrow_mut();
                answers.clear();
                for node in self.node_ids() {
                    if self.is_running(node) && !self.is_paused(node) {
                        answers.push((node, self.kafka_brokers(node)));
                    }
                }
                let complete =
                    |brokers: &Vec<probe::KafkaBroker>| hosts.iter().all(|h| brokers.iter().any(|b| b.host == *h));
                answers.iter().all(|(_, answer)| answer.as_ref().is_ok_and(complete)).then_some(())
            },
            || {
                format!(
                    "every node's Kafka Metadata to list brokers on {hosts:?}; last answers: {:?}",
                    answers.borrow()
                )
            },
        );
    }

    /// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`; fails with
    /// `what()` and the cluster's diagnostics otherwise.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
        what: impl Fn() -> String,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return value;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?}: {}", what()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with `message` and the cluster's diagnostics.
    pub fn fail(&self, message: &str) -> ! {
        panic!("{message}\n{}", self.diagnostics());
    }

    /// Every node's state and log tails, the proxy's cuts and counters, and the harness's
    /// events.
    pub fn diagnostics(&self) -> String {
        let mut text = format!(
            "cluster: seed {} ({SEED_ENV}), {} nodes, run dir {}, ports {:?}\n",
            self.options.seed,
            self.options.nodes,
            self.run_path.display(),
            self.ports
        );
        for node in self.node_ids() {
            let Ok(mut process) = self.nodes[node as usize - 1].try_lock() else {
                let _ = writeln!(text, "node {node}: (busy)");
                continue;
            };
            let state = process.state();
            let _ = writeln!(text, "node {node}: {state}, started {} times", process.starts);
            for path in [process.stderr_path(), process.stdout_path()] {
                let _ = writeln!(text, "  {} (last {LOG_TAIL_LINES} lines):", path.display());
                for line in tail(&path, LOG_TAIL_LINES) {
                    let _ = writeln!(text, "    {line}");
                }
            }
        }
        let _ = writeln!(text, "proxy: cuts {:?}; {:?}", self.proxy.cuts(), self.proxy.stats());
        let _ = writeln!(text, "harness events:");
        for event in self.events() {
            let _ = writeln!(text, "  +{:.3}s {}", event.at.as_secs_f64(), event.what);
        }
        text
    }

    // ---- internals ----------------------------------------------------------------------

    fn node(&self, node: NodeId) -> MutexGuard<'_, NodeProcess> {
        assert!(node >= 1 && node <= self.options.nodes, "no node {node} (nodes are 1..={})", self.options.nodes);
        // A panic while holding a node must not hide its logs from the failure message.
        self.nodes[node as usize - 1].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event(&self, what: String) {
        let at = self.epoch.elapsed();
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(ClusterEvent { at, what });
    }

    /// `serve`'s flags for node `node`.
    fn serve_args(&self, node: NodeId, data_dir: &Path) -> Vec<String> {
        let ip = node_ip(node);
        let advertised = advertised_ip(node).to_string();
        let p = &self.ports;
        let mut args: Vec<String> = vec!["serve".into(), "--data-dir".into(), data_dir.display().to_string()];
        let mut flag = |name: &str, value: String| {
            args.push(name.to_owned());
            args.push(value);
        };
        flag("--node-id", node.to_string());
        flag("--shards", self.options.shards.to_string());
        flag("--listen", format!("{ip}:{}", p.native));
        flag("--shard-base-port", p.native_shard_base.to_string());
        if self.options.cluster_flags {
            flag("--advertised-host", advertised.clone());
        }
        if let (Some(kafka), Some(base)) = (p.kafka, p.kafka_shard_base) {
            flag("--kafka-listen", format!("{ip}:{kafka}"));
            flag("--kafka-shard-base-port", base.to_string());
            flag("--kafka-advertised-host", advertised);
        }
        if self.options.cluster_flags {
            flag("--cluster-listen", format!("{ip}:{}", p.cluster));
            flag("--cluster-peers", self.cluster_peers());
        }
        if let Some(metrics) = p.metrics {
            flag("--metrics-listen", format!("{ip}:{metrics}"));
        }
        args.push("--no-pin".into());
        args.extend(self.options.extra_args.iter().cloned());
        args
    }

    /// Starts the process; returns the channel of its stdout lines.
    fn spawn(&self, process: &mut NodeProcess) -> Result<mpsc::Receiver<String>, String> {
        assert!(process.child.is_none(), "node {} is already running", process.id);
        process.starts += 1;
        let marker = format!(
            "--- node {} start #{} at +{:.3}s ---\n",
            process.id,
            process.starts,
            self.epoch.elapsed().as_secs_f64()
        );
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut stderr = open(&process.stderr_path())?;
        let mut stdout_log = open(&process.stdout_path())?;
        let _ = stderr.write_all(marker.as_bytes());
        let _ = stdout_log.write_all(marker.as_bytes());
        let args = self.serve_args(process.id, &process.data_dir());
        let mut child = Command::new(binary())
            .args(&args)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("spawning {} {}: {e}", binary(), args.join(" ")))?;
        let Some(stdout) = child.stdout.take() else { return Err("no stdout pipe".to_owned()) };
        let (tx, rx) = mpsc::channel();
        // Copies stdout to its log and, while someone listens, to the channel; ends with the
        // process.
        std::thread::Builder::new()
            .name(format!("node-{}-stdout", process.id))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(stdout_log, "{line}");
                    let _ = tx.send(line);
                }
            })
            .map_err(|e| format!("stdout thread: {e}"))?;
        process.child = Some(child);
        process.paused = false;
        Ok(rx)
    }

    /// Waits until the process printed every address and accepts on every port. Err: the
    /// message, and whether a new attempt may help (a port was still taken).
    fn await_ready(&self, process: &mut NodeProcess, lines: &mpsc::Receiver<String>) -> Result<(), (String, bool)> {
        let deadline = Instant::now() + WAIT;
        let expected =
            Expected { shards: self.options.shards as usize, kafka: self.options.kafka, metrics: self.options.metrics };
        let mut seen = Vec::new();
        let printed = loop {
            if let Some(printed) = parse_addresses(&seen, &expected) {
                break printed;
            }
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    process.kill();
                    return Err((format!("no addresses printed within {WAIT:?}; stdout so far: {seen:?}"), false));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = process.wait_exit(WAIT);
                    let stderr = tail(&process.stderr_path(), LOG_TAIL_LINES).join("\n");
                    let retry = stderr.contains("in use") || stderr.contains("binding");
                    return Err((
                        format!("exited during startup ({status:?}); stdout: {seen:?}; stderr:\n{stderr}"),
                        retry,
                    ));
                }
            }
        };
        let node = process.id;
        if let Err(message) = self.check_printed(node, &printed) {
            process.kill();
            return Err((message, false));
        }
        // Every port accepts (the cluster port is not printed).
        for (kind, port) in self.ports.all() {
            if kind == PortKind::Cluster && !self.options.cluster_flags {
                continue;
            }
            let addr = SocketAddr::V4(SocketAddrV4::new(node_ip(node), port));
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    break;
                }
                if !process.is_running() || Instant::now() >= deadline {
                    let status = process.wait_exit(Duration::ZERO);
                    process.kill();
                    return Err((format!("{kind:?} port {addr} does not accept ({status:?})"), false));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The printed ports must be ours, on the node's own or advertised address.
    fn check_printed(&self, node: NodeId, printed: &Printed) -> Result<(), String> {
        let ours = [node_ip(node), advertised_ip(node)];
        let check = |what: &str, addr: &SocketAddr, port: u16| {
            let ip_ok = matches!(addr, SocketAddr::V4(a) if ours.contains(a.ip()));
            if ip_ok && addr.port() == port {
                Ok(())
            } else {
                Err(format!("node {node} printed {what} {addr}, expected port {port} on {} or {}", ours[0], ours[1]))
            }
        };
        let p = &self.ports;
        check("its native address", &printed.native, p.native)?;
        for (i, addr) in printed.native_shards.iter().enumerate() {
            check(&format!("shard {i}"), addr, p.native_shard_base + i as u16)?;
        }
        if let (Some(addr), Some(port)) = (&printed.kafka, p.kafka) {
            check("its Kafka address", addr, port)?;
        }
        if let Some(base) = p.kafka_shard_base {
            for (i, addr) in printed.kafka_shards.iter().enumerate() {
                check(&format!("Kafka broker {i}"), addr, base + i as u16)?;
            }
        }
        if let (Some(addr), Some(port)) = (&printed.metrics, p.metrics) {
            check("its metrics address", addr, port)?;
        }
        Ok(())
    }

    /// After SIGKILL a listening socket can outlive the process briefly: wait until every
    /// port of the node can be bound again.
    fn wait_ports_released(&self, node: NodeId) -> Result<(), String> {
        let deadline = Instant::now() + PORT_RELEASE_WAIT;
        for (kind, port) in self.ports.all() {
            let addr = SocketAddr::V4(SocketAddrV4::new(node_ip(node), port));
            // std sets SO_REUSEADDR, so connections in TIME_WAIT do not count; a listener does.
            while let Err(e) = TcpListener::bind(addr) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{kind:?} port {addr} still taken {PORT_RELEASE_WAIT:?} after the node died: {e}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Waits until /proc says the process is stopped (`T`) or not.
    fn await_proc_state(&self, node: NodeId, pid: i32, stopped: bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("?");
            if (state == "T") == stopped {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("node {node} (pid {pid}) is in state {state:?}, expected stopped={stopped}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        // Taken before the kill, so it shows the state the test failed in.
        let diagnostics = panicking.then(|| self.diagnostics());
        for process in &self.nodes {
            process.lock().unwrap_or_else(|e| e.into_inner()).kill();
        }
        let keep = panicking || self.options.keep_dir || std::env::var_os(KEEP_DIR_ENV).is_some();
        if keep {
            if let Some(dir) = self.run_dir.take() {
                let path = dir.keep();
                eprintln!("cluster run kept at {} (seed {})", path.display(), self.options.seed);
                if let Some(diagnostics) = diagnostics {
                    eprintln!("{diagnostics}");
                }
            }
        }
    }
}

/// Reserves the ports and starts a proxy on every node's advertised address for each of them
/// (not metrics; the cluster port only with `cluster_flags`). Something outside these tests
/// may take a port between the check and the proxy's bind: then other ports are tried (the
/// failed block stays locked meanwhile, so it is not picked again).
fn proxied_ports(options: &ClusterOptions, count: u16, node_ids: &[NodeId]) -> (PortLocks, PortLayout, Proxy) {
    let mut failures = Vec::new();
    let mut failed_blocks = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let locks = reserve_ports(count, node_ids);
        let ports = PortLayout::new(locks.base, options.shards as u16, options.kafka, options.metrics);
        let mut proxy = Proxy::new(options.proxy.clone());
        let added = node_ids.iter().try_for_each(|&node| {
            let proxied = ports.all().into_iter().filter(|(kind, _)| match kind {
                PortKind::Metrics => false,
                PortKind::Cluster => options.cluster_flags,
                _ => true,
            });
            for (_, port) in proxied {
                let front = SocketAddr::V4(SocketAddrV4::new(advertised_ip(node), port));
                let back = SocketAddr::V4(SocketAddrV4::new(node_ip(node), port));
                proxy.add(node, front, back).map_err(|e| format!("proxy on {front}: {e}"))?;
            }
            Ok::<(), String>(())
        });
        match added {
            Ok(()) => return (locks, ports, proxy),
            Err(message) => {
                failures.push(message);
                failed_blocks.push(locks);
            }
        }
    }
    panic!("no proxy ports after {START_ATTEMPTS} attempts: {failures:?}");
}

/// The last `lines` lines of a file (empty if unreadable).
fn tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].iter().map(|l| (*l).to_owned()).collect()
}

/// Runs `make()`'s future on a fresh glommio executor thread and returns its output.
pub fn on_executor<G, F, T>(make: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    raise_memlock_limit();
    glommio::LocalExecutorBuilder::default().spawn(make).unwrap().join().unwrap()
}

/// `future`'s output, or `None` after `timeout`.
pub async fn within<F: std::future::Future>(timeout: Duration, future: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
}

/// glommio's io_uring rings need locked memory; raise the soft limit to the hard one.
fn raise_memlock_limit() {
    // SAFETY: getrlimit / setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
        }
    }
}
