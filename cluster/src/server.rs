//! The server side of the node-to-node RPC (`rpc.rs`): accepts on the node's cluster listener
//! (bound by the caller) and serves each connection's requests one at a time through a
//! `Handler`. Bad input never panics: an undecodable request is answered with `BadRequest`
//! (the framing is intact, so the connection goes on); a frame past the limit is answered the
//! same way and the connection is closed (its body is never read). Connections past
//! `RPC_SERVER_CONNECTIONS_MAX` are closed at accept, and a connection idle for
//! `RPC_SERVER_IDLE_TIMEOUT_MS` is closed.

use std::cell::Cell;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::Duration;

use broker::cluster::LocalFuture;
use glommio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::limits::{RPC_SERVER_CONNECTIONS_MAX, RPC_SERVER_IDLE_TIMEOUT_MS};
use crate::rpc::{self, FrameError, Request, Response};
use crate::shutdown::{within, Shutdown};

/// Serves requests (the node).
pub trait Handler {
    fn handle(&self, request: Request) -> LocalFuture<'_, Response>;
}

/// Starts serving `listener` on the current executor until `shutdown`; the returned task ends
/// (and the listener is closed) once it is triggered.
pub fn serve(
    listener: std::net::TcpListener,
    handler: Rc<dyn Handler>,
    shutdown: Shutdown,
) -> std::io::Result<glommio::Task<()>> {
    let local = listener.local_addr()?;
    // A second descriptor of the same socket, to shut it down when serving ends.
    let control = listener.try_clone()?;
    // SAFETY: the descriptor comes from a bound, listening socket we own (into_raw_fd gives up
    // std's ownership), and glommio's listener closes it when dropped.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let span = tracing::info_span!("cluster_server", %local);
    Ok(glommio::spawn_local(accept_loop(listener, control, handler, shutdown).instrument(span)))
}

async fn accept_loop(
    listener: TcpListener,
    control: std::net::TcpListener,
    handler: Rc<dyn Handler>,
    shutdown: Shutdown,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let accepted = match shutdown.or(listener.accept()).await {
            None => break,
            Some(accepted) => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors or similar: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a cluster connection failed");
                if !shutdown.sleep(Duration::from_millis(100)).await {
                    break;
                }
                continue;
            }
        };
        if open.get() >= RPC_SERVER_CONNECTIONS_MAX {
            tracing::warn!(max = RPC_SERVER_CONNECTIONS_MAX, "too many cluster connections; closing a new one");
            continue;
        }
        open.set(open.get() + 1);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let (handler, shutdown, open) = (handler.clone(), shutdown.clone(), open.clone());
        let span = tracing::debug_span!("cluster_connection", %peer);
        glommio::spawn_local(
            async move {
                serve_connection(stream, handler, &shutdown).await;
                open.set(open.get() - 1);
            }
            .instrument(span),
        )
        .detach();
    }
    // Dropping the listener closes its descriptor, but the socket keeps listening (and
    // completing handshakes nobody will accept) until the reactor has cancelled the pending
    // accept. Shutting it down stops it now, so peers see the node gone at once.
    if let Err(e) = socket2::SockRef::from(&control).shutdown(std::net::Shutdown::Both) {
        tracing::debug!(error = %e, "shutting down the cluster listener");
    }
    tracing::debug!("cluster server stopped");
}

async fn reply(stream: &mut TcpStream, response: &Response) -> bool {
    let frame = match rpc::encode_frame(response) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, kind = response.kind(), "cannot encode a response");
            match rpc::encode_frame(&Response::Failed { reason: e.to_string() }) {
                Ok(frame) => frame,
                Err(_) => return false,
            }
        }
    };
    rpc::write_frame(stream, &frame).await.is_ok()
}

async fn serve_connection(mut stream: TcpStream, handler: Rc<dyn Handler>, shutdown: &Shutdown) {
    let idle = Duration::from_millis(RPC_SERVER_IDLE_TIMEOUT_MS);
    loop {
        let Some(read) = shutdown.or(within(idle, rpc::read_frame(&mut stream))).await else { return };
        let body = match read {
            None => {
                tracing::debug!("closing an idle cluster connection");
                return;
            }
            Some(Ok(body)) => body,
            Some(Err(FrameError::Closed)) => return,
            Some(Err(FrameError::TooLarge { bytes })) => {
                let reason = format!("a frame of {bytes} bytes passes the limit");
                tracing::warn!(bytes, "refusing an oversized cluster frame");
                reply(&mut stream, &Response::BadRequest { reason }).await;
                return;
            }
            Some(Err(FrameError::Io(e))) => {
                tracing::debug!(error = %e, "cluster connection failed");
                return;
            }
        };
        let response = match serde_json::from_slice::<Request>(&body) {
            Ok(request) => match shutdown.or(handler.handle(request)).await {
                Some(response) => response,
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "undecodable cluster request");
                Response::BadRequest { reason: e.to_string() }
            }
        };
        if !reply(&mut stream, &response).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::IpAddr;

    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::error::RpcError;
    use crate::network::RpcClient;
    use crate::test_util::run;

    struct Echo;

    impl Handler for Echo {
        fn handle(&self, request: Request) -> LocalFuture<'_, Response> {
            Box::pin(async move {
                match request {
                    Request::Heartbeat { node, .. } => Response::Heartbeat { registered: node % 2 == 0 },
                    other => Response::Failed { reason: other.kind().to_string() },
                }
            })
        }
    }

    fn listener() -> (std::net::TcpListener, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (listener, addr)
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    #[test]
    fn requests_are_answered_and_pooled_connections_survive_a_server_restart() {
        run(|| async {
            let (std_listener, addr) = listener();
            let shutdown = Shutdown::new();
            let task = serve(std_listener, Rc::new(Echo), shutdown.clone()).unwrap();
            let client = Rc::new(RpcClient::new(None));
            let calls = (0..8u32).map(|node| {
                let (client, addr) = (client.clone(), addr.clone());
                glommio::spawn_local(async move {
                    client.call(&addr, &Request::Heartbeat { node, incarnation: 1 }, TIMEOUT).await
                })
            });
            for (node, call) in calls.collect::<Vec<_>>().into_iter().enumerate() {
                let response = call.await.unwrap();
                assert!(matches!(response, Response::Heartbeat { registered } if registered == (node % 2 == 0)));
            }
            // The server goes away and comes back on the same port: the pooled connections are
            // dead, the next call reconnects.
            shutdown.trigger();
            task.await;
            let err = client.call(&addr, &Request::Heartbeat { node: 2, incarnation: 1 }, TIMEOUT).await;
            assert!(matches!(err, Err(RpcError::Connect { .. })), "{err:?}");
            let std_listener = std::net::TcpListener::bind(&addr).unwrap();
            let _task = serve(std_listener, Rc::new(Echo), Shutdown::new()).unwrap();
            let response = client.call(&addr, &Request::Heartbeat { node: 2, incarnation: 1 }, TIMEOUT).await;
            assert!(matches!(response, Ok(Response::Heartbeat { registered: true })), "{response:?}");
        });
    }

    #[test]
    fn bad_input_is_answered_or_closed_never_a_panic() {
        run(|| async {
            let (std_listener, addr) = listener();
            let _task = serve(std_listener, Rc::new(Echo), Shutdown::new()).unwrap();
            let mut raw = glommio::net::TcpStream::connect(addr.as_str()).await.unwrap();
            // Undecodable JSON: BadRequest, and the connection goes on.
            let mut frame = 5u32.to_be_bytes().to_vec();
            frame.extend_from_slice(b"{{{{{");
            raw.write_all(&frame).await.unwrap();
            let body = rpc::read_frame(&mut raw).await.unwrap();
            assert!(matches!(serde_json::from_slice(&body).unwrap(), Response::BadRequest { .. }));
            let good = rpc::encode_frame(&Request::Heartbeat { node: 4, incarnation: 1 }).unwrap();
            raw.write_all(&good).await.unwrap();
            let body = rpc::read_frame(&mut raw).await.unwrap();
            assert!(matches!(serde_json::from_slice(&body).unwrap(), Response::Heartbeat { registered: true }));
            // An oversized frame: BadRequest, then the connection is closed.
            raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
            let body = rpc::read_frame(&mut raw).await.unwrap();
            assert!(matches!(serde_json::from_slice(&body).unwrap(), Response::BadRequest { .. }));
            let mut rest = Vec::new();
            raw.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "closed after the answer");
        });
    }

    #[test]
    fn outgoing_connections_come_from_the_node_ip() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut stream, peer) = listener.accept().unwrap();
            let mut header = [0u8; 4];
            stream.read_exact(&mut header).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
            stream.read_exact(&mut body).unwrap();
            stream.write_all(&rpc::encode_frame(&Response::Joined).unwrap()).unwrap();
            peer.ip()
        });
        let source: IpAddr = "127.0.0.3".parse().unwrap();
        run(move || async move {
            let client = RpcClient::new(Some(source));
            let request = Request::Join { node: 4, address: "x".into() };
            assert!(matches!(client.call(&addr, &request, TIMEOUT).await, Ok(Response::Joined)));
        });
        assert_eq!(server.join().unwrap(), source);
    }
}
