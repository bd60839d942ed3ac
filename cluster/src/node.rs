//! One node's part of the cluster, on the node's coordinator shard: the Raft node of the
//! metadata log (durable log, state machine, network), the RPC server, the controller (active
//! on the Raft leader), and this broker's registration and heartbeats.
//!
//! Start: the log and the snapshot are opened and Raft re-applies the committed log, so the
//! restored metadata is published before `start` returns. A voter (listed in `peers`)
//! initializes the cluster with all voters (every voter does, with the same membership, which
//! is harmless; on a restart the log already holds it); any other node asks the voters, in the
//! background and until one answers, to add it as a learner. The broker then registers itself
//! (retried until committed) and heartbeats the controller.
//!
//! Proposals go to the leader (`client_write` here, or forwarded over RPC), are retried across
//! leader changes until `PROPOSE_DEADLINE_MS`, and resolve only once this node has applied the
//! entry, so the change is in this node's published metadata.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use broker::cluster::{
    BrokerInfo, ClusterControl, ClusterService, ClusterStart, LocalFuture, MetaCommand, MetaResponse, ProposeError,
};
use broker::NodeId;
use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use tracing::Instrument;

use crate::config::ClusterConfig;
use crate::controller::{Action, Controller};
use crate::error::{IoError, StartError};
use crate::limits::{
    BACKGROUND_RETRY_MS, COMMAND_BYTES_MAX, CONTROLLER_TICK_MS, PROPOSE_BACKOFF_MS_MAX, PROPOSE_BACKOFF_MS_MIN,
    PROPOSE_DEADLINE_MS, RPC_REQUEST_TIMEOUT_MS,
};
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, RpcClient};
use crate::rpc::{Request, Response};
use crate::server::{self, Handler};
use crate::shutdown::{within, Shutdown};
use crate::state_machine::StateMachine;
use crate::types::{broker_node, raft_id, Raft, RaftMetrics, RaftNodeId};

/// The subdirectory of the broker's data dir that holds the metadata log and snapshot.
pub const CLUSTER_DIR: &str = "cluster";

/// The `broker::cluster::ClusterService` of a clustered node: built from the cluster flags,
/// started once by the broker on its coordinator shard.
pub struct ClusterNodeService {
    /// Taken by `start` (the listener cannot be shared).
    config: Mutex<Option<ClusterConfig>>,
}

impl ClusterNodeService {
    pub fn new(config: ClusterConfig) -> ClusterNodeService {
        ClusterNodeService { config: Mutex::new(Some(config)) }
    }
}

impl ClusterService for ClusterNodeService {
    fn start(&self, start: ClusterStart) -> LocalFuture<'static, Result<Rc<dyn ClusterControl>, String>> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner).take();
        Box::pin(async move {
            let config = config.ok_or(StartError::AlreadyStarted).map_err(|e| e.to_string())?;
            let node = ClusterNode::start(config, start).await.map_err(|e| e.to_string())?;
            Ok(Rc::new(node) as Rc<dyn ClusterControl>)
        })
    }
}

/// A running node; `ClusterControl` for the broker.
pub struct ClusterNode {
    core: Rc<NodeCore>,
}

/// One proposal attempt's outcome.
enum Attempt {
    Done(MetaResponse),
    /// Worth another try (no leader, leadership moved, transport failure).
    Retry(String),
    Fail(ProposeError),
}

struct NodeCore {
    node: u32,
    id: RaftNodeId,
    peers: std::collections::BTreeMap<u32, String>,
    advertised: String,
    heartbeat_interval: Duration,
    session_timeout: Duration,
    raft: Raft,
    metrics: tokio::sync::watch::Receiver<RaftMetrics>,
    state_machine: StateMachine,
    client: Rc<RpcClient>,
    controller: Controller,
    shutdown: Shutdown,
    /// This broker as it registers (incarnation chosen for this process).
    broker: BrokerInfo,
    registering: Cell<bool>,
    server: RefCell<Option<glommio::Task<()>>>,
    stopped: Cell<bool>,
}

fn spawn(future: impl std::future::Future<Output = ()> + 'static, span: tracing::Span) {
    glommio::spawn_local(future.instrument(span)).detach();
}

impl ClusterNode {
    /// Starts this node's part of the cluster (see the module comment).
    pub async fn start(config: ClusterConfig, start: ClusterStart) -> Result<ClusterNode, StartError> {
        config.validate()?;
        if config.node != start.node.get() {
            let reason = format!("cluster config of node {} started as node {}", config.node, start.node);
            return Err(crate::error::ConfigError::Invalid(reason).into());
        }
        let span = tracing::info_span!("cluster", node = config.node);
        Self::start_inner(config, start).instrument(span).await
    }

    async fn start_inner(config: ClusterConfig, start: ClusterStart) -> Result<ClusterNode, StartError> {
        let id = raft_id(config.node);
        let dir = start.data_dir.join(CLUSTER_DIR);
        let log = LogStore::open(&dir).await?;
        let state_machine = StateMachine::open(&dir, start.sink.clone()).await?;
        let restored = log.has_state() || state_machine.last_applied().is_some();
        let local = config.listen.local_addr().map_err(|e| IoError::new("local address", &dir, e))?;
        let client = Rc::new(RpcClient::new(Some(local.ip())));
        let raft_config = Arc::new(config.raft_config()?);
        let network = NetworkFactory::new(client.clone(), id);
        let raft = Raft::new(id, raft_config, network, log, state_machine.clone())
            .await
            .map_err(|e| StartError::Raft { reason: e.to_string() })?;
        if restored {
            // Raft re-applied the committed log on top of the snapshot (publishing each batch);
            // a snapshot with nothing after it was not published yet.
            state_machine.publish();
            tracing::info!(applied = ?state_machine.last_applied(), "restored the cluster metadata from disk");
        }

        let mut broker = start.broker.clone();
        broker.node = config.node;
        broker.fenced = false;
        if broker.incarnation == 0 {
            broker.incarnation = rand::random::<u64>().max(1);
        }
        let core = Rc::new(NodeCore {
            node: config.node,
            id,
            peers: config.peers.clone(),
            advertised: config.advertised.clone(),
            heartbeat_interval: config.heartbeat_interval(),
            session_timeout: config.session_timeout(),
            metrics: raft.metrics(),
            raft,
            state_machine,
            client,
            controller: Controller::new(config.session_timeout(), Instant::now()),
            shutdown: Shutdown::new(),
            broker,
            registering: Cell::new(false),
            server: RefCell::new(None),
            stopped: Cell::new(false),
        });
        if let Err(e) = core.begin(config.listen, &dir).await {
            // Nothing half started stays behind: Raft's tasks and the server end.
            core.stop().await;
            return Err(e);
        }
        tracing::info!(
            advertised = %core.advertised,
            voter = core.peers.contains_key(&core.node),
            incarnation = core.broker.incarnation,
            "cluster node started"
        );
        Ok(ClusterNode { core })
    }

    /// The Raft handle (diagnostics and tests).
    pub fn raft(&self) -> &Raft {
        &self.core.raft
    }

    /// Raft's current view of this node.
    pub fn metrics(&self) -> RaftMetrics {
        self.core.metrics.borrow().clone()
    }

    /// This broker as it registers (with its incarnation).
    pub fn broker(&self) -> &BrokerInfo {
        &self.core.broker
    }
}

impl ClusterControl for ClusterNode {
    fn propose(&self, command: MetaCommand) -> LocalFuture<'_, Result<MetaResponse, ProposeError>> {
        Box::pin(self.core.propose(command))
    }

    fn controller(&self) -> Option<NodeId> {
        self.core.current_leader().and_then(broker_node).map(NodeId::new)
    }

    fn stop(&self) -> LocalFuture<'_, ()> {
        Box::pin(self.core.stop())
    }
}

impl NodeCore {
    fn current_leader(&self) -> Option<RaftNodeId> {
        self.metrics.borrow().current_leader
    }

    /// The term this node leads in, if it is the leader.
    fn leader_term(&self) -> Option<u64> {
        let m = self.metrics.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.id)).then_some(m.current_term)
    }

    /// Where node `id` listens: from the membership, else from the voters' list.
    fn address_of(&self, id: RaftNodeId) -> Option<String> {
        let from_membership =
            self.metrics.borrow().membership_config.membership().get_node(&id).map(|n: &BasicNode| n.addr.clone());
        from_membership.or_else(|| broker_node(id).and_then(|n| self.peers.get(&n).cloned()))
    }

    /// Serves peers, forms or joins the cluster, and starts the background work.
    async fn begin(self: &Rc<Self>, listen: std::net::TcpListener, dir: &std::path::Path) -> Result<(), StartError> {
        let handler: Rc<dyn Handler> = self.clone();
        let server =
            server::serve(listen, handler, self.shutdown.clone()).map_err(|e| IoError::new("serve", dir, e))?;
        self.server.replace(Some(server));
        if self.peers.contains_key(&self.node) {
            self.initialize().await?;
        } else {
            spawn(self.clone().join(), tracing::info_span!("join"));
        }
        self.clone().ensure_registered();
        spawn(self.clone().heartbeat_loop(), tracing::debug_span!("heartbeat"));
        spawn(self.clone().controller_loop(), tracing::info_span!("controller"));
        spawn(self.clone().watch_fatal(), tracing::info_span!("raft_watch"));
        Ok(())
    }

    async fn initialize(&self) -> Result<(), StartError> {
        let initialized = self.raft.is_initialized().await.map_err(|e| StartError::Raft { reason: e.to_string() })?;
        if initialized {
            return Ok(());
        }
        let members: std::collections::BTreeMap<RaftNodeId, BasicNode> =
            self.peers.iter().map(|(node, addr)| (raft_id(*node), BasicNode::new(addr))).collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StartError::Raft { reason: e.to_string() }),
        }
    }

    async fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        tracing::info!(node = self.node, "stopping the cluster node");
        self.shutdown.trigger();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.node, error = %e, "Raft did not shut down cleanly");
        }
        let server = self.server.borrow_mut().take();
        if let Some(server) = server {
            server.await;
        }
    }

    // ---- Proposals ----

    async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, ProposeError> {
        let bytes = serde_json::to_vec(&command).map(|b| b.len()).unwrap_or(usize::MAX);
        if bytes > COMMAND_BYTES_MAX {
            return Err(ProposeError::Failed {
                reason: format!("command of {bytes} bytes, limit {COMMAND_BYTES_MAX}"),
            });
        }
        let deadline = Instant::now() + Duration::from_millis(PROPOSE_DEADLINE_MS);
        let mut backoff = Duration::from_millis(PROPOSE_BACKOFF_MS_MIN);
        let mut last = "no metadata leader known".to_string();
        let mut leader_seen = false;
        loop {
            if self.shutdown.is_triggered() {
                return Err(ProposeError::Failed { reason: "the cluster node is stopping".into() });
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let attempt = match self.current_leader() {
                Some(leader) if leader == self.id => {
                    self.shutdown.or(self.propose_here(command.clone(), remaining)).await
                }
                Some(leader) => self.shutdown.or(self.propose_at(leader, command.clone(), remaining)).await,
                None => Some(Attempt::Retry("no metadata leader known".into())),
            };
            let Some(attempt) = attempt else {
                return Err(ProposeError::Failed { reason: "the cluster node is stopping".into() });
            };
            leader_seen |= self.current_leader().is_some();
            match attempt {
                Attempt::Done(response) => return Ok(response),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(reason) => {
                    tracing::debug!(reason, "proposal retried");
                    last = reason;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.shutdown.sleep(backoff.min(remaining)).await {
                return Err(ProposeError::Failed { reason: "the cluster node is stopping".into() });
            }
            backoff = (backoff * 2).min(Duration::from_millis(PROPOSE_BACKOFF_MS_MAX));
        }
        let reason = format!("no answer within {PROPOSE_DEADLINE_MS} ms: {last}");
        Err(if leader_seen { ProposeError::TimedOut { reason } } else { ProposeError::NoLeader { reason } })
    }

    /// On the leader: the response comes once the entry is applied here.
    async fn propose_here(&self, command: MetaCommand, remaining: Duration) -> Attempt {
        match within(remaining, self.raft.client_write(command)).await {
            None => Attempt::Fail(ProposeError::TimedOut {
                reason: "the leader did not commit the proposal before the deadline".into(),
            }),
            Some(Ok(written)) => Attempt::Done(written.data),
            Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Attempt::Retry(format!("leadership moved to {:?}", f.leader_id))
            }
            Some(Err(e)) => Attempt::Fail(ProposeError::Failed { reason: e.to_string() }),
        }
    }

    /// Forwarded to `leader`; then waits until this node has applied the entry.
    async fn propose_at(&self, leader: RaftNodeId, command: MetaCommand, remaining: Duration) -> Attempt {
        let Some(address) = self.address_of(leader) else {
            return Attempt::Retry(format!("no address for leader {leader}"));
        };
        let (index, response) = match self.client.call(&address, &Request::Propose(command), remaining).await {
            Ok(Response::Proposed { index, response }) => (index, response),
            Ok(Response::NotLeader { leader: hint }) => {
                return Attempt::Retry(format!("{leader} no longer leads (it knows {hint:?})"))
            }
            Ok(Response::Failed { reason }) => return Attempt::Fail(ProposeError::Failed { reason }),
            Ok(other) => return Attempt::Retry(format!("{address} answered a proposal with {}", other.kind())),
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        let remaining = remaining.max(Duration::from_millis(1));
        match self.raft.wait(Some(remaining)).applied_index_at_least(Some(index), "proposal applied").await {
            Ok(_) => Attempt::Done(response),
            Err(e) => Attempt::Fail(ProposeError::TimedOut {
                reason: format!("committed at index {index} but not applied here: {e}"),
            }),
        }
    }

    // ---- Serving peers ----

    fn not_leader(&self) -> Response {
        Response::NotLeader { leader: self.current_leader() }
    }

    async fn serve_propose(&self, command: MetaCommand) -> Response {
        if self.leader_term().is_none() {
            return self.not_leader();
        }
        let deadline = Duration::from_millis(PROPOSE_DEADLINE_MS);
        match within(deadline, self.raft.client_write(command)).await {
            None => Response::Failed { reason: "the leader did not commit the proposal before the deadline".into() },
            Some(Ok(written)) => Response::Proposed { index: written.log_id.index, response: written.data },
            Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Response::NotLeader { leader: f.leader_id }
            }
            Some(Err(e)) => Response::Failed { reason: e.to_string() },
        }
    }

    async fn serve_join(&self, node: u32, address: String) -> Response {
        if self.leader_term().is_none() {
            return self.not_leader();
        }
        let id = raft_id(node);
        let known = {
            let metrics = self.metrics.borrow();
            let membership = metrics.membership_config.membership();
            let voter = membership.voter_ids().any(|v| v == id);
            voter || membership.get_node(&id).is_some_and(|n| n.addr == address)
        };
        if known {
            return Response::Joined;
        }
        tracing::info!(node, %address, "adding a learner");
        let deadline = Duration::from_millis(PROPOSE_DEADLINE_MS);
        match within(deadline, self.raft.add_learner(id, BasicNode::new(address), false)).await {
            None => Response::Failed { reason: "adding the learner timed out".into() },
            Some(Ok(_)) => Response::Joined,
            Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Response::NotLeader { leader: f.leader_id }
            }
            Some(Err(e)) => Response::Failed { reason: e.to_string() },
        }
    }

    fn serve_heartbeat(&self, node: u32, incarnation: u64) -> Response {
        if self.leader_term().is_none() {
            return self.not_leader();
        }
        let metadata = self.state_machine.metadata();
        Response::Heartbeat { registered: self.controller.on_heartbeat(Instant::now(), node, incarnation, &metadata) }
    }

    // ---- Background work ----

    /// A learner asks the voters (then whoever they say leads) to add it, until one does.
    async fn join(self: Rc<Self>) {
        let request = Request::Join { node: self.node, address: self.advertised.clone() };
        let timeout = Duration::from_millis(RPC_REQUEST_TIMEOUT_MS);
        loop {
            for address in self.peers.values() {
                let mut target = address.clone();
                // At most one redirect per voter asked.
                for _ in 0..2 {
                    let Some(answer) = self.shutdown.or(self.client.call(&target, &request, timeout)).await else {
                        return;
                    };
                    match answer {
                        Ok(Response::Joined) => {
                            tracing::info!(via = %target, "joined the cluster as a learner");
                            return;
                        }
                        Ok(Response::NotLeader { leader: Some(leader) }) => match self.address_of(leader) {
                            Some(next) => target = next,
                            None => break,
                        },
                        Ok(other) => {
                            tracing::debug!(%target, answer = other.kind(), "join not accepted");
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(%target, error = %e, "join request failed");
                            break;
                        }
                    }
                }
            }
            if !self.shutdown.sleep(Duration::from_millis(BACKGROUND_RETRY_MS)).await {
                return;
            }
        }
    }

    /// Registers this broker in the background unless a registration is under way.
    fn ensure_registered(self: Rc<Self>) {
        if self.registering.replace(true) {
            return;
        }
        spawn(self.register(), tracing::info_span!("register"));
    }

    async fn register(self: Rc<Self>) {
        loop {
            match self.propose(MetaCommand::RegisterBroker(self.broker.clone())).await {
                Ok(MetaResponse::Ok) => {
                    tracing::info!(incarnation = self.broker.incarnation, "broker registered");
                    break;
                }
                Ok(other) => {
                    tracing::warn!(response = ?other, "broker registration refused");
                    break;
                }
                Err(e) => tracing::info!(error = %e, "broker registration not committed yet; retrying"),
            }
            if !self.shutdown.sleep(Duration::from_millis(BACKGROUND_RETRY_MS)).await {
                break;
            }
        }
        self.registering.set(false);
    }

    /// Tells the controller this broker is alive; registers again when it does not know it.
    async fn heartbeat_loop(self: Rc<Self>) {
        let timeout = (self.session_timeout / 2).min(Duration::from_millis(RPC_REQUEST_TIMEOUT_MS));
        let request = Request::Heartbeat { node: self.node, incarnation: self.broker.incarnation };
        while self.shutdown.sleep(self.heartbeat_interval).await {
            let registered = match self.current_leader() {
                None => None,
                Some(leader) if leader == self.id => match self.serve_heartbeat(self.node, self.broker.incarnation) {
                    Response::Heartbeat { registered } => Some(registered),
                    _ => None,
                },
                Some(leader) => {
                    let Some(address) = self.address_of(leader) else { continue };
                    match self.shutdown.or(self.client.call(&address, &request, timeout)).await {
                        None => return,
                        Some(Ok(Response::Heartbeat { registered })) => Some(registered),
                        Some(Ok(other)) => {
                            tracing::debug!(answer = other.kind(), "heartbeat not taken");
                            None
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "heartbeat failed");
                            None
                        }
                    }
                }
            };
            if registered == Some(false) {
                self.clone().ensure_registered();
            }
        }
    }

    /// A Raft node that stopped on its own (its log could not be written, or its core
    /// panicked) leaves this broker unable to agree on metadata, yet alive to clients. Take the
    /// coordinator shard down instead (the broker exits on a shard panic), so that the node
    /// restarts and recovers from disk rather than serving stale metadata half alive.
    async fn watch_fatal(self: Rc<Self>) {
        let mut metrics = self.metrics.clone();
        loop {
            let fatal = match &metrics.borrow().running_state {
                Err(Fatal::Stopped) => return,
                Err(fatal) => Some(fatal.to_string()),
                Ok(()) => None,
            };
            if let Some(fatal) = fatal {
                if self.shutdown.is_triggered() {
                    return;
                }
                tracing::error!(node = self.node, error = %fatal, "the metadata Raft node failed");
                panic!("node {}: the metadata Raft node failed: {fatal}", self.node);
            }
            match self.shutdown.or(metrics.changed()).await {
                None | Some(Err(_)) => return,
                Some(Ok(())) => {}
            }
        }
    }

    /// Runs the controller's decisions while this node leads.
    async fn controller_loop(self: Rc<Self>) {
        while self.shutdown.sleep(Duration::from_millis(CONTROLLER_TICK_MS)).await {
            let metadata = self.state_machine.metadata();
            for action in self.controller.tick(Instant::now(), self.leader_term(), &metadata) {
                let core = self.clone();
                match action {
                    Action::Fence(node) => spawn(
                        async move {
                            match core.propose(MetaCommand::FenceBroker { node }).await {
                                Ok(response) => tracing::info!(node, ?response, "fenced a silent broker"),
                                Err(e) => tracing::warn!(node, error = %e, "fencing a silent broker failed"),
                            }
                            core.controller.fence_done(node);
                        },
                        tracing::info_span!("fence", node),
                    ),
                    Action::Balance(elections) => spawn(
                        async move {
                            for election in elections {
                                if let Err(e) = core.propose(election).await {
                                    tracing::warn!(error = %e, "preferred-leader election failed");
                                }
                            }
                            core.controller.balance_done();
                        },
                        tracing::info_span!("balance"),
                    ),
                }
            }
        }
    }
}

impl Handler for NodeCore {
    fn handle(&self, request: Request) -> LocalFuture<'_, Response> {
        Box::pin(async move {
            match request {
                Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
                Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
                Request::InstallSnapshot(r) => Response::InstallSnapshot(self.raft.install_snapshot(r).await),
                Request::Propose(command) => self.serve_propose(command).await,
                Request::Heartbeat { node, incarnation } => self.serve_heartbeat(node, incarnation),
                Request::Join { node, address } => self.serve_join(node, address).await,
            }
        })
    }
}
