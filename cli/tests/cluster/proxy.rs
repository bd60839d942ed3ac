//! A fault-injecting TCP proxy: one listener per proxied port (the front, on a node's
//! advertised address), each accepted connection copied both ways to the port behind it (the
//! back, on the node's own address), and controls that cut the links between nodes.
//!
//! Who is on each end: the back side belongs to the node the listener was added for; the
//! connecting side is identified by its source address — `127.0.1.M` is node M (the nodes bind
//! their outgoing connections there), anything else is a client. A cut is a set of directed
//! links (who connects → whose ports); `cut(a, b)` sets both directions.
//!
//! What a cut does, per [`CutMode`]:
//! - `Refuse`: new connections over the link are reset at once; existing ones are closed at
//!   once (both sockets, both directions), so the endpoints fail fast instead of hanging.
//! - `BlackHole`: connections over the link are accepted but nothing is forwarded and the
//!   sockets are held, as in a real partition; existing connections stall. On heal, held
//!   connections go on where they stopped (as TCP would after retransmitting), and connections
//!   accepted during the cut are connected upstream only then.
//!
//! When the node closes a connection first (or dies), the proxy passes the end of stream to
//! the client and resets its own upstream side, so the node's side never sits in TIME_WAIT —
//! which would keep a restarted node from binding a port it shares with SO_REUSEPORT.
//!
//! Threads: one accepting thread per listener, two copying threads per connection (bounded by
//! [`ProxyOptions::connections_max`]; past it new connections are reset). Dropping the
//! [`Proxy`] closes its listeners and every connection and waits (bounded) for its threads.
#![allow(dead_code)] // Each test file uses a different subset.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub type NodeId = u32;

/// Nodes are numbered 1..=NODES_MAX: the last octet of their addresses.
pub const NODES_MAX: NodeId = 254;
/// Connections open at once per proxy (each holds two threads); past it new ones are reset.
pub const CONNECTIONS_MAX_DEFAULT: usize = 256;
/// How long the proxy waits for the port behind it to accept a connection.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Bytes a copying thread reads at a time.
pub const COPY_BUFFER_BYTES: usize = 64 << 10;
/// Stack of each proxy thread: they only copy bytes.
const THREAD_STACK_BYTES: usize = 128 << 10;
/// How long dropping the proxy waits for its connection threads (each is woken at once; a
/// thread in an upstream connect takes at most the connect timeout).
const DROP_WAIT: Duration = Duration::from_secs(20);
/// A thread held by a black hole re-checks its link this often even without a notification.
const HOLD_RECHECK: Duration = Duration::from_secs(1);

/// The loopback address node `node` binds everything on, and its outgoing connections' source.
pub fn node_ip(node: NodeId) -> Ipv4Addr {
    assert!((1..=NODES_MAX).contains(&node), "node ids are 1..={NODES_MAX}, got {node}");
    Ipv4Addr::new(127, 0, 1, node as u8)
}

/// The address node `node` advertises: the proxy's front for its ports.
pub fn advertised_ip(node: NodeId) -> Ipv4Addr {
    assert!((1..=NODES_MAX).contains(&node), "node ids are 1..={NODES_MAX}, got {node}");
    Ipv4Addr::new(127, 0, 2, node as u8)
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Node(NodeId),
    Client,
}

impl Peer {
    /// `127.0.1.M` is node M; any other source is a client.
    pub fn of(source: SocketAddr) -> Peer {
        match source.ip() {
            IpAddr::V4(ip) => {
                let [a, b, c, d] = ip.octets();
                if (a, b, c) == (127, 0, 1) && d >= 1 {
                    Peer::Node(NodeId::from(d))
                } else {
                    Peer::Client
                }
            }
            IpAddr::V6(_) => Peer::Client,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Node(n) => write!(f, "node {n}"),
            Peer::Client => write!(f, "clients"),
        }
    }
}

/// How a cut link behaves; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutMode {
    #[default]
    Refuse,
    BlackHole,
}

#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The mode of `cut`, `isolate` and `cut_clients` (the `_with` variants take one).
    pub cut_mode: CutMode,
    pub connections_max: usize,
    pub connect_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            cut_mode: CutMode::Refuse,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
        }
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub accepted: u64,
    /// Connections that reached the port behind the proxy.
    pub forwarded: u64,
    /// New connections reset because their link was cut (`Refuse`).
    pub refused: u64,
    /// Existing connections closed because their link was cut.
    pub closed_by_cut: u64,
    /// Connections that a black hole held (new or existing).
    pub held: u64,
    /// New connections reset because the port behind did not accept.
    pub upstream_failed: u64,
    /// New connections reset because `connections_max` were open.
    pub overflow: u64,
    /// Connections open now.
    pub open: u64,
}

/// A running proxy. See the module doc.
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<Acceptor>,
}

struct Acceptor {
    node: NodeId,
    front: SocketAddr,
    back: SocketAddr,
    /// Shared with the accepting thread: the descriptor stays open until both let go, so
    /// `drop` never shuts down a reused descriptor number.
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    options: ProxyOptions,
    state: Mutex<State>,
    /// Notified when a link, a connection or `stopped` changes, and when a thread ends.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    stopped: bool,
    /// Cut links: (who connects, whose ports) → mode.
    cuts: HashMap<(Peer, NodeId), CutMode>,
    /// Nodes with at least one listener (what `isolate` cuts from).
    nodes: BTreeSet<NodeId>,
    connections: HashMap<u64, Conn>,
    next_connection: u64,
    /// Connection threads alive (two per forwarded connection).
    threads: usize,
    stats: ProxyStats,
}

struct Conn {
    from: Peer,
    to: NodeId,
    /// Clones of both sockets, to close them from a control call.
    sockets: Vec<TcpStream>,
    closed: bool,
    held: bool,
    /// Upstream sent its end of stream: the connection is ending.
    upstream_ended: bool,
    /// Copying directions still running.
    directions: u8,
}

/// What a connection may do now.
enum Gate {
    Open,
    Closed,
}

impl State {
    fn link(&self, from: Peer, to: NodeId) -> Option<CutMode> {
        if from == Peer::Node(to) {
            return None; // A node's connections to itself cross no network.
        }
        self.cuts.get(&(from, to)).copied()
    }

    /// Closes every open connection whose link is now refused.
    fn close_refused(&mut self) {
        let refused: Vec<u64> = self
            .connections
            .iter()
            .filter(|(_, c)| !c.closed && self.link(c.from, c.to) == Some(CutMode::Refuse))
            .map(|(id, _)| *id)
            .collect();
        for id in refused {
            self.close(id);
            self.stats.closed_by_cut += 1;
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(conn) = self.connections.get_mut(&id) {
            if !conn.closed {
                conn.closed = true;
                for socket in &conn.sockets {
                    reset(socket);
                }
            }
        }
    }
}

impl Proxy {
    pub fn new(options: ProxyOptions) -> Proxy {
        assert!(options.connections_max >= 1);
        let shared = Arc::new(Shared { options, state: Mutex::new(State::default()), changed: Condvar::new() });
        Proxy { shared, listeners: Vec::new() }
    }

    /// Listens on `front` (port 0: any) and forwards to `back`, which belongs to `node`.
    /// Returns the bound front address.
    pub fn add(&mut self, node: NodeId, front: SocketAddr, back: SocketAddr) -> io::Result<SocketAddr> {
        assert!((1..=NODES_MAX).contains(&node));
        let listener = Arc::new(TcpListener::bind(front)?);
        let front = listener.local_addr()?;
        let (shared, accepting) = (self.shared.clone(), listener.clone());
        let thread = std::thread::Builder::new()
            .name(format!("proxy-accept-{front}"))
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || accept_loop(&shared, &accepting, node, back))?;
        self.lock().nodes.insert(node);
        self.listeners.push(Acceptor { node, front, back, listener, thread: Some(thread) });
        Ok(front)
    }

    /// Every (node, front, back) proxied.
    pub fn routes(&self) -> Vec<(NodeId, SocketAddr, SocketAddr)> {
        self.listeners.iter().map(|a| (a.node, a.front, a.back)).collect()
    }

    pub fn options(&self) -> &ProxyOptions {
        &self.shared.options
    }

    pub fn stats(&self) -> ProxyStats {
        self.lock().stats
    }

    /// Cuts nodes `a` and `b` apart (both directions) with the default mode.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.cut_with(a, b, self.shared.options.cut_mode);
    }

    pub fn cut_with(&self, a: NodeId, b: NodeId, mode: CutMode) {
        assert_ne!(a, b, "a node cannot be cut from itself");
        self.update(|state| {
            state.cuts.insert((Peer::Node(a), b), mode);
            state.cuts.insert((Peer::Node(b), a), mode);
        });
    }

    /// Cuts one direction only: connections opened by `from` to `to`'s ports.
    pub fn cut_one_way(&self, from: Peer, to: NodeId, mode: CutMode) {
        assert_ne!(from, Peer::Node(to), "a node cannot be cut from itself");
        self.update(|state| {
            state.cuts.insert((from, to), mode);
        });
    }

    pub fn heal(&self, a: NodeId, b: NodeId) {
        self.update(|state| {
            state.cuts.remove(&(Peer::Node(a), b));
            state.cuts.remove(&(Peer::Node(b), a));
        });
    }

    /// Cuts `node` from every other node with a listener (clients still reach it).
    pub fn isolate(&self, node: NodeId) {
        self.isolate_with(node, self.shared.options.cut_mode);
    }

    pub fn isolate_with(&self, node: NodeId, mode: CutMode) {
        self.update(|state| {
            let others: Vec<NodeId> = state.nodes.iter().copied().filter(|&n| n != node).collect();
            for other in others {
                state.cuts.insert((Peer::Node(node), other), mode);
                state.cuts.insert((Peer::Node(other), node), mode);
            }
        });
    }

    /// Cuts clients (not nodes) from `node`'s ports.
    pub fn cut_clients(&self, node: NodeId) {
        self.cut_one_way(Peer::Client, node, self.shared.options.cut_mode);
    }

    pub fn heal_clients(&self, node: NodeId) {
        self.update(|state| {
            state.cuts.remove(&(Peer::Client, node));
        });
    }

    /// Removes every cut.
    pub fn heal_all(&self) {
        self.update(|state| state.cuts.clear());
    }

    /// The cut on connections opened by `from` to `to`'s ports, if any.
    pub fn cut_of(&self, from: Peer, to: NodeId) -> Option<CutMode> {
        self.lock().link(from, to)
    }

    /// The cut links, sorted, for failure messages.
    pub fn cuts(&self) -> Vec<(Peer, NodeId, CutMode)> {
        let mut cuts: Vec<_> = self.lock().cuts.iter().map(|(&(from, to), &mode)| (from, to, mode)).collect();
        cuts.sort_by_key(|&(from, to, _)| (from, to));
        cuts
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.lock();
        change(&mut state);
        state.close_refused();
        drop(state);
        self.shared.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        {
            let mut state = self.lock();
            state.stopped = true;
            let ids: Vec<u64> = state.connections.keys().copied().collect();
            for id in ids {
                state.close(id);
            }
        }
        self.shared.changed.notify_all();
        for acceptor in &mut self.listeners {
            // Wakes the blocked accept(2) (Linux returns EINVAL to it); the thread then sees
            // `stopped` and ends.
            // SAFETY: shutdown(2) takes no pointers; the descriptor is open (we hold the
            // listener).
            unsafe { libc::shutdown(acceptor.listener.as_raw_fd(), libc::SHUT_RDWR) };
            if let Some(thread) = acceptor.thread.take() {
                let _ = thread.join();
            }
        }
        let deadline = Instant::now() + DROP_WAIT;
        let mut state = self.lock();
        while state.threads > 0 && Instant::now() < deadline {
            state = self
                .shared
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking proxy thread must not take the controls down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while the connection's link is black-holed; `Closed` once it is closed, refused
    /// or the proxy stops.
    fn gate(&self, id: u64) -> Gate {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return Gate::Closed;
            }
            let Some(conn) = state.connections.get(&id) else { return Gate::Closed };
            if conn.closed {
                return Gate::Closed;
            }
            match state.link(conn.from, conn.to) {
                None => return Gate::Open,
                Some(CutMode::Refuse) => {
                    state.close(id);
                    state.stats.closed_by_cut += 1;
                    return Gate::Closed;
                }
                Some(CutMode::BlackHole) => {
                    if let Some(conn) = state.connections.get_mut(&id) {
                        if !conn.held {
                            conn.held = true;
                            state.stats.held += 1;
                        }
                    }
                    state = self.changed.wait_timeout(state, HOLD_RECHECK).map_or_else(|e| e.into_inner().0, |r| r.0);
                }
            }
        }
    }

    fn upstream_ended(&self, id: u64) -> bool {
        self.lock().connections.get(&id).is_none_or(|c| c.upstream_ended)
    }

    fn end_upstream(&self, id: u64) {
        if let Some(conn) = self.lock().connections.get_mut(&id) {
            conn.upstream_ended = true;
        }
    }

    /// One copying direction of connection `id` ended; the last one removes it.
    fn direction_done(&self, id: u64) {
        let mut state = self.lock();
        state.threads -= 1;
        let last = match state.connections.get_mut(&id) {
            Some(conn) => {
                conn.directions -= 1;
                conn.directions == 0
            }
            None => false,
        };
        if last {
            // Both directions ended (by end of stream or after `close`): dropping the clones
            // closes what the threads did not (upstream with a reset, see `copy`).
            state.connections.remove(&id);
            state.stats.open -= 1;
        }
        drop(state);
        self.changed.notify_all();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, node: NodeId, back: SocketAddr) {
    loop {
        let accepted = listener.accept();
        if shared.lock().stopped {
            return;
        }
        match accepted {
            Ok((socket, source)) => admit(shared, socket, Peer::of(source), node, back),
            // Out of descriptors or an aborted handshake: try again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Registers an accepted connection and starts its thread, or resets it.
fn admit(shared: &Arc<Shared>, socket: TcpStream, from: Peer, to: NodeId, back: SocketAddr) {
    let Ok(clone) = socket.try_clone() else {
        reset(&socket);
        return;
    };
    let id = {
        let mut state = shared.lock();
        state.stats.accepted += 1;
        if state.connections.len() >= shared.options.connections_max {
            state.stats.overflow += 1;
            drop(state);
            reset(&socket);
            return;
        }
        if state.link(from, to) == Some(CutMode::Refuse) {
            state.stats.refused += 1;
            drop(state);
            reset(&socket);
            return;
        }
        let id = state.next_connection;
        state.next_connection += 1;
        let conn =
            Conn { from, to, sockets: vec![clone], closed: false, held: false, upstream_ended: false, directions: 2 };
        state.connections.insert(id, conn);
        state.threads += 2;
        state.stats.open += 1;
        id
    };
    let spawned =
        std::thread::Builder::new().name(format!("proxy-{from}-to-{to}")).stack_size(THREAD_STACK_BYTES).spawn({
            let shared = shared.clone();
            move || connect_and_copy(&shared, id, socket, back)
        });
    if spawned.is_err() {
        let mut state = shared.lock();
        state.close(id);
        state.connections.remove(&id);
        state.threads -= 2;
        state.stats.open -= 1;
    }
}

/// Connects upstream (once the link is open), then copies client → upstream here and
/// upstream → client in a second thread.
fn connect_and_copy(shared: &Arc<Shared>, id: u64, down: TcpStream, back: SocketAddr) {
    let upstream = match shared.gate(id) {
        Gate::Open => TcpStream::connect_timeout(&back, shared.options.connect_timeout),
        Gate::Closed => Err(io::Error::other("closed before connecting")),
    };
    // Reset, not FIN, when the proxy closes it: see `copy`.
    let upstream = upstream.inspect(set_linger_zero);
    let up = match upstream.and_then(|up| up.try_clone().map(|clone| (up, clone))) {
        Ok((up, clone)) => {
            let mut state = shared.lock();
            let registered = match state.connections.get_mut(&id) {
                Some(conn) if !conn.closed => {
                    conn.sockets.push(clone);
                    true
                }
                _ => false,
            };
            if registered {
                state.stats.forwarded += 1;
                Some(up)
            } else {
                reset(&up);
                None
            }
        }
        Err(_) => {
            let mut state = shared.lock();
            if !state.connections.get(&id).is_some_and(|c| c.closed) {
                state.stats.upstream_failed += 1;
            }
            state.close(id);
            None
        }
    };
    let Some(up) = up else {
        // Neither direction will run.
        shared.direction_done(id);
        shared.direction_done(id);
        return;
    };
    let (Ok(down_reader), Ok(up_reader)) = (down.try_clone(), up.try_clone()) else {
        shared.lock().close(id);
        shared.direction_done(id);
        shared.direction_done(id);
        return;
    };
    let back_thread =
        std::thread::Builder::new().name(format!("proxy-back-{id}")).stack_size(THREAD_STACK_BYTES).spawn({
            let shared = shared.clone();
            move || {
                copy(&shared, id, up_reader, down, Direction::ToClient);
                shared.direction_done(id);
            }
        });
    if back_thread.is_err() {
        shared.lock().close(id);
        shared.direction_done(id);
    }
    copy(shared, id, down_reader, up, Direction::ToUpstream);
    shared.direction_done(id);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// Copies `from` → `to` until end of stream or an error (then closes the whole connection),
/// waiting before each write while the link is black-holed.
///
/// End of stream from the client is passed on as a half-close. End of stream from upstream
/// (the node closed, or died) ends the connection: the client gets the end of stream, and the
/// upstream socket is reset instead of closed in order. An orderly close would leave the
/// node's side of it in TIME_WAIT (the node closed first) for a minute, and a TIME_WAIT
/// socket on a port the node shares with SO_REUSEPORT keeps the restarted node from binding
/// it again.
fn copy(shared: &Shared, id: u64, mut from: TcpStream, mut to: TcpStream, direction: Direction) {
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Gate::Closed = shared.gate(id) {
            return;
        }
        if read == 0 {
            match direction {
                Direction::ToUpstream => {
                    if !shared.upstream_ended(id) {
                        let _ = to.shutdown(Shutdown::Write);
                    }
                }
                Direction::ToClient => {
                    shared.end_upstream(id);
                    // The client sees the end; the other direction wakes and ends too.
                    let _ = to.shutdown(Shutdown::Both);
                }
            }
            return;
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    shared.lock().close(id);
}

fn set_linger_zero(socket: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads `linger` (its size is passed) on a descriptor `socket` owns.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Closes a socket abortively: SO_LINGER 0 makes the final close send a RST, and the shutdown
/// wakes every thread blocked on it now.
fn reset(socket: &TcpStream) {
    set_linger_zero(socket);
    let _ = socket.shutdown(Shutdown::Both);
}

/// Connects to `to` from `source` (port chosen by the kernel), as a node's outgoing connection
/// does: how tests make the proxy see a node.
pub fn connect_from(source: Ipv4Addr, to: SocketAddrV4) -> io::Result<TcpStream> {
    let sockaddr = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) takes no pointers; a non-negative result is a descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let local = sockaddr(SocketAddrV4::new(source, 0));
    // SAFETY: bind reads `size` bytes of `local`, a sockaddr_in.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sockaddr(to);
    // SAFETY: connect reads `size` bytes of `remote`, a sockaddr_in.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpStream::from(owned))
}
