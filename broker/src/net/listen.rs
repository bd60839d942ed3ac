//! Listening sockets: bound on the main thread before any shard starts (so a port conflict
//! is one clear error, and port 0 resolves once for every shard), then handed to the shards.
//!
//! A shared address is one SO_REUSEPORT socket per shard (the kernel spreads connections);
//! each shard also has an address of its own (advertised in Metadata, so clients reach the
//! shard that owns a partition directly).
//!
//! A restart right after SIGKILL: the dead process's listening sockets live on while the
//! kernel tears down its io_uring rings (10–70 ms measured here), so binding the same port
//! fails with EADDRINUSE for a moment. Binding retries for up to `BIND_RETRY_MS_MAX`, so a
//! supervisor that restarts at once gets a working broker; a port that stays taken is still
//! reported, once the time is up. Every listener sets SO_REUSEADDR (std's `bind` does too), so
//! the dead process's connections lingering in TIME_WAIT do not block the port.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

use crate::limits::{BIND_RETRY_INTERVAL_MS, BIND_RETRY_MS_MAX, LISTEN_BACKLOG};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Retries `bind` while the address is in use, for up to `BIND_RETRY_MS_MAX`.
fn with_retry<T>(addr: SocketAddr, mut bind: impl FnMut() -> std::io::Result<T>) -> Result<T, ListenError> {
    let deadline = Instant::now() + Duration::from_millis(BIND_RETRY_MS_MAX);
    loop {
        match bind() {
            Ok(bound) => return Ok(bound),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(BIND_RETRY_INTERVAL_MS));
            }
            Err(source) => return Err(ListenError { addr, source }),
        }
    }
}

/// A listener nobody else may share.
pub fn bind_exclusive(addr: SocketAddr) -> Result<StdListener, ListenError> {
    with_retry(addr, || StdListener::bind(addr))
}

/// `shards` SO_REUSEPORT sockets on `addr` (one per shard) and the address they got. Since
/// SO_REUSEPORT would let another process of the same user join the port, an exclusive bind
/// first makes sure nobody listens there.
pub fn bind_shared(addr: SocketAddr, shards: usize) -> Result<(Vec<StdListener>, SocketAddr), ListenError> {
    if addr.port() != 0 {
        drop(bind_exclusive(addr)?);
    }
    let first = with_retry(addr, || bind_reuse_port(addr))?;
    let actual = first.local_addr().map_err(|source| ListenError { addr, source })?;
    let mut listeners = vec![first];
    for _ in 1..shards {
        listeners.push(with_retry(actual, || bind_reuse_port(actual))?);
    }
    Ok((listeners, actual))
}

fn bind_reuse_port(addr: SocketAddr) -> std::io::Result<StdListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std's `TcpListener::bind` does: connections of a killed broker left in TIME_WAIT on
    // this port must not keep its restart from listening (for about a minute).
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Each shard's own listener: port `base + i` (`base` given), or `shared.port() + 1 + i`
/// (the shared port given), or a free port (the shared port was 0).
pub fn bind_per_shard(
    ip: std::net::IpAddr,
    shared: SocketAddr,
    requested_shared_port: u16,
    base: Option<u16>,
    shards: usize,
) -> Result<Vec<StdListener>, ListenError> {
    (0..shards)
        .map(|i| {
            let port = match (base, requested_shared_port) {
                (Some(base), _) => base.checked_add(i as u16),
                (None, 0) => Some(0),
                (None, _) => shared.port().checked_add(1 + i as u16),
            };
            let addr = SocketAddr::new(ip, port.unwrap_or(0));
            if port.is_none() {
                let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "shard port overflows");
                return Err(ListenError { addr, source });
            }
            bind_exclusive(addr)
        })
        .collect()
}

/// Hands a socket bound on the main thread to this shard's executor.
pub fn into_glommio(listener: StdListener) -> TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the fd comes from a listening socket we own and give up here; glommio takes
    // ownership and closes it.
    unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_reported_after_the_retries() {
        let taken = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let started = Instant::now();
        let err = bind_exclusive(addr).unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains(&addr.to_string()));
        assert!(started.elapsed() >= Duration::from_millis(BIND_RETRY_MS_MAX), "it retried");
    }

    #[test]
    fn a_port_freed_while_retrying_is_taken() {
        let taken = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(taken);
        });
        let bound = bind_exclusive(addr).unwrap();
        assert_eq!(bound.local_addr().unwrap(), addr);
        release.join().unwrap();
    }
}
