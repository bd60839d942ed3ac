//! The client side of the node-to-node RPC (`rpc.rs`): a small pool of persistent
//! connections per peer address, one request in flight on each, and openraft's
//! `RaftNetwork` on top of it.
//!
//! Connections bind their source address to this node's cluster IP when the node listens on a
//! specific IP: peers (and the cluster test harness, which gives each node its own loopback
//! IP) can then tell nodes apart by source address. The connect is non-blocking, so neither
//! the executor nor its blocking pool waits for a peer that does not answer.
//!
//! A request on a pooled connection that fails before its answer is sent once more on a fresh
//! connection (the peer may have restarted and closed the pooled one). Requests are therefore
//! delivered at least once: Raft's are idempotent, and a proposal's effect is decided by
//! `ClusterMetadata::apply` (a repeated CreateTopic answers TopicExists).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::RpcError;
use crate::limits::{
    RAFT_UNREACHABLE_BACKOFF_MS, RPC_CONNECT_TIMEOUT_MS, RPC_PEER_CONNECTIONS_MAX, RPC_POOLED_IDLE_MS_MAX,
};
use crate::rpc::{self, FrameError, Request, Response};
use crate::shutdown::within;
use crate::types::{RaftNodeId, TypeConfig};

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// The connections to one peer address.
struct Pool {
    idle: RefCell<Vec<Idle>>,
    /// One per open connection: bounds the connections to the peer.
    permits: glommio::sync::Semaphore,
}

impl Pool {
    fn new() -> Pool {
        Pool { idle: RefCell::new(Vec::new()), permits: glommio::sync::Semaphore::new(RPC_PEER_CONNECTIONS_MAX as u64) }
    }

    /// The most recently used idle connection young enough to trust; older ones are closed.
    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let max = Duration::from_millis(RPC_POOLED_IDLE_MS_MAX);
        idle.retain(|c| c.since.elapsed() < max);
        idle.pop().map(|c| c.stream)
    }

    fn put_back(&self, stream: TcpStream) {
        let mut idle = self.idle.borrow_mut();
        // Each connection in use holds a permit, so there are never more than the permits.
        assert!(idle.len() < RPC_PEER_CONNECTIONS_MAX, "more idle connections than permits");
        idle.push(Idle { stream, since: Instant::now() });
    }
}

/// Sends requests to peers, by address; shared by everything of one node that talks to others.
pub struct RpcClient {
    /// Outgoing connections bind to this IP.
    source_ip: Option<IpAddr>,
    pools: RefCell<HashMap<String, Rc<Pool>>>,
}

/// Why one exchange on one connection failed.
enum Exchange {
    Io(std::io::Error),
    Frame(FrameError),
}

impl Exchange {
    fn into_rpc_error(self, addr: &str) -> RpcError {
        let source = match self {
            Exchange::Io(e) | Exchange::Frame(FrameError::Io(e)) => e,
            Exchange::Frame(FrameError::Closed) => std::io::ErrorKind::UnexpectedEof.into(),
            Exchange::Frame(FrameError::TooLarge { bytes }) => {
                return RpcError::FrameTooLarge { bytes: bytes as usize, max: crate::limits::RPC_FRAME_BYTES_MAX }
            }
        };
        RpcError::Io { addr: addr.to_string(), source }
    }
}

/// Sends `frame` and reads the answer's body.
async fn exchange(stream: &mut TcpStream, frame: &[u8]) -> Result<Vec<u8>, Exchange> {
    rpc::write_frame(stream, frame).await.map_err(Exchange::Io)?;
    rpc::read_frame(stream).await.map_err(Exchange::Frame)
}

async fn resolve(addr: &str) -> Result<SocketAddr, RpcError> {
    if let Ok(parsed) = addr.parse::<SocketAddr>() {
        return Ok(parsed);
    }
    let name = addr.to_string();
    let resolved = crate::durable::blocking(move || name.to_socket_addrs().map(|mut a| a.next())).await;
    match resolved {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(RpcError::Resolve { addr: addr.to_string(), reason: "no address".into() }),
        Err(e) => Err(RpcError::Resolve { addr: addr.to_string(), reason: e.to_string() }),
    }
}

impl RpcClient {
    /// A client whose connections come from `source_ip` (unless it is unspecified: 0.0.0.0).
    pub fn new(source_ip: Option<IpAddr>) -> RpcClient {
        let source_ip = source_ip.filter(|ip| !ip.is_unspecified());
        RpcClient { source_ip, pools: RefCell::new(HashMap::new()) }
    }

    fn pool(&self, addr: &str) -> Rc<Pool> {
        self.pools.borrow_mut().entry(addr.to_string()).or_insert_with(|| Rc::new(Pool::new())).clone()
    }

    /// Opens a connection to `addr`, from this node's IP.
    async fn connect(&self, addr: &str) -> Result<TcpStream, RpcError> {
        let target = resolve(addr).await?;
        let failed = |source: std::io::Error| RpcError::Connect { addr: addr.to_string(), source };
        let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP)).map_err(failed)?;
        socket.set_nodelay(true).map_err(failed)?;
        if let Some(ip) = self.source_ip.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
            socket.bind(&SocketAddr::new(ip, 0).into()).map_err(failed)?;
        }
        socket.set_nonblocking(true).map_err(failed)?;
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(failed(e)),
        }
        let mut stream = TcpStream::from(socket);
        // A zero-byte send waits (through glommio's reactor) until the connection is
        // established, and fails with the connect error if it is refused.
        let connected = within(Duration::from_millis(RPC_CONNECT_TIMEOUT_MS), stream.write(&[])).await;
        match connected {
            Some(Ok(_)) => Ok(stream),
            Some(Err(e)) => Err(failed(e)),
            None => Err(failed(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {RPC_CONNECT_TIMEOUT_MS} ms"),
            ))),
        }
    }

    /// Sends `request` to `addr` and returns the answer, within `timeout`.
    pub async fn call(&self, addr: &str, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let frame = rpc::encode_frame(request)?;
        let answer = within(timeout, self.call_frame(addr, &frame)).await;
        let body = answer.unwrap_or_else(|| {
            Err(RpcError::TimedOut { addr: addr.to_string(), after_ms: timeout.as_millis() as u64 })
        })?;
        match serde_json::from_slice::<Response>(&body).map_err(RpcError::Decode)? {
            Response::BadRequest { reason } => Err(RpcError::BadRequest { addr: addr.to_string(), reason }),
            response => Ok(response),
        }
    }

    async fn call_frame(&self, addr: &str, frame: &[u8]) -> Result<Vec<u8>, RpcError> {
        let pool = self.pool(addr);
        // The semaphore is never closed.
        let _permit = pool
            .permits
            .acquire_permit(1)
            .await
            .map_err(|e| RpcError::Io { addr: addr.to_string(), source: std::io::Error::other(e.to_string()) })?;
        if let Some(mut stream) = pool.take_idle() {
            match exchange(&mut stream, frame).await {
                Ok(body) => {
                    pool.put_back(stream);
                    return Ok(body);
                }
                Err(Exchange::Frame(FrameError::TooLarge { bytes })) => {
                    return Err(Exchange::Frame(FrameError::TooLarge { bytes }).into_rpc_error(addr))
                }
                Err(e) => {
                    let e = e.into_rpc_error(addr);
                    tracing::debug!(addr, error = %e, "pooled connection failed; retrying on a new one");
                }
            }
        }
        let mut stream = self.connect(addr).await?;
        let body = exchange(&mut stream, frame).await.map_err(|e| e.into_rpc_error(addr))?;
        pool.put_back(stream);
        Ok(body)
    }
}

/// openraft's view of the network: one `PeerNetwork` per replication target.
pub struct NetworkFactory {
    client: Rc<RpcClient>,
    id: RaftNodeId,
}

impl NetworkFactory {
    pub fn new(client: Rc<RpcClient>, id: RaftNodeId) -> NetworkFactory {
        NetworkFactory { client, id }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork { client: self.client.clone(), id: self.id, target, addr: node.addr.clone() }
    }
}

/// Raft RPCs to one peer.
pub struct PeerNetwork {
    client: Rc<RpcClient>,
    id: RaftNodeId,
    target: RaftNodeId,
    addr: String,
}

impl PeerNetwork {
    /// openraft's classification of a failed call: a peer that cannot be reached is backed off
    /// from; a frame too large is split (AppendEntries of more than one entry).
    fn failed<E: std::error::Error>(
        &self,
        e: RpcError,
        action: RPCTypes,
        timeout: Duration,
        entries: usize,
    ) -> RPCError<RaftNodeId, BasicNode, E> {
        match e {
            RpcError::Connect { .. } | RpcError::Resolve { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            RpcError::TimedOut { .. } => {
                RPCError::Timeout(Timeout { action, id: self.id, target: self.target, timeout })
            }
            RpcError::FrameTooLarge { .. } if entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
            }
            e => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(
        &self,
        request: &'static str,
        response: &Response,
    ) -> RPCError<RaftNodeId, BasicNode, E> {
        let e = RpcError::Unexpected { addr: self.addr.clone(), request, response: response.kind().to_string() };
        RPCError::Network(NetworkError::new(&e))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<RaftNodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>> {
        let entries = rpc.entries.len();
        let timeout = option.hard_ttl();
        let request = Request::AppendEntries(rpc);
        let response = self
            .client
            .call(&self.addr, &request, timeout)
            .await
            .map_err(|e| self.failed(e, RPCTypes::AppendEntries, timeout, entries))?;
        match response {
            Response::AppendEntries(Ok(r)) => Ok(r),
            Response::AppendEntries(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected("AppendEntries", &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        let timeout = option.hard_ttl();
        let request = Request::InstallSnapshot(rpc);
        let response = self
            .client
            .call(&self.addr, &request, timeout)
            .await
            .map_err(|e| self.failed(e, RPCTypes::InstallSnapshot, timeout, 0))?;
        match response {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected("InstallSnapshot", &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>> {
        let timeout = option.hard_ttl();
        let request = Request::Vote(rpc);
        let response = self
            .client
            .call(&self.addr, &request, timeout)
            .await
            .map_err(|e| self.failed(e, RPCTypes::Vote, timeout, 0))?;
        match response {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(self.remote(e)),
            other => Err(self.unexpected("Vote", &other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(RAFT_UNREACHABLE_BACKOFF_MS)))
    }
}
