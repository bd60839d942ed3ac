//! One pipelined connection to a broker address.
//!
//! Any number of calls may be in flight. Each call gets the next correlation id; a writer task
//! writes whole frames one at a time, in the order calls queued them (so a caller that gives up
//! halfway never leaves half a frame on the wire), and appends each request that expects an
//! answer to a FIFO just before writing it. The broker answers a connection's requests in the
//! order it received them (`docs/protocol.md`), so a reader task hands each response to the
//! head of the FIFO after checking that the correlation ids match. A mismatch, or a response
//! that does not decode, means the stream cannot be trusted: the connection is failed. When
//! the connection breaks, every waiter gets the error, and so does every later call.
//!
//! A caller that times out leaves its entry in the FIFO; its response is dropped on arrival.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::Task;

use super::error::ClientError;
use protocol::codec::{decode_response, encode_request};
use protocol::frame::{read_frame, write_chunks, FRAME_BYTES_MAX};
use protocol::messages::{Acks, Request, Response};

/// Default time a call waits for its response (Kafka's `request.timeout.ms` is 30 s too).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Frames queued for the writer before callers wait: bounds memory when the socket is slow.
const WRITE_QUEUE_FRAMES_MAX: usize = 256;

type Waiter = oneshot::Sender<Result<Response, ClientError>>;

/// State shared by the connection handle and its reader and writer tasks.
struct Shared {
    addr: String,
    next_id: Cell<u32>,
    /// Requests written and not yet answered, in wire order.
    in_flight: RefCell<VecDeque<(u32, Waiter)>>,
    /// Set once, by whatever broke the connection first.
    broken: RefCell<Option<ClientError>>,
    /// Notified when the connection breaks, to stop the reader.
    broke: event_listener::Event,
}

impl Shared {
    fn check(&self) -> Result<(), ClientError> {
        match &*self.broken.borrow() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Marks the connection broken (first error wins) and fails every waiter.
    fn fail(&self, error: ClientError) -> ClientError {
        let error = {
            let mut broken = self.broken.borrow_mut();
            match &*broken {
                Some(first) => first.clone(),
                None => {
                    tracing::debug!(addr = %self.addr, %error, "connection broken");
                    *broken = Some(error.clone());
                    error
                }
            }
        };
        let waiters: Vec<(u32, Waiter)> = self.in_flight.borrow_mut().drain(..).collect();
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
        self.broke.notify(usize::MAX);
        error
    }
}

/// A frame for the writer task.
struct WriteItem {
    chunks: Vec<Bytes>,
    reply: Reply,
}

enum Reply {
    /// The request's correlation id and who waits for its response.
    Response(u32, Waiter),
    /// No response comes (acks=none); this learns when the frame is on the wire.
    Written(oneshot::Sender<Result<(), ClientError>>),
}

/// One connection. Dropping it stops its tasks and closes the socket; calls still waiting
/// fail with `ConnectionLost`.
pub struct Connection {
    shared: Rc<Shared>,
    writes: LocalSender<WriteItem>,
    request_timeout: Duration,
    _reader: Task<()>,
    _writer: Task<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.shared.addr).finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects with the default request timeout.
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        Connection::connect_with_timeout(addr, Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT)).await
    }

    /// Connects; every call on the connection waits at most `request_timeout` for its
    /// response (the connect itself too). Each address `addr` resolves to is tried in turn.
    pub async fn connect_with_timeout(addr: &str, request_timeout: Duration) -> Result<Connection, ClientError> {
        let request_timeout = request_timeout.max(Duration::from_millis(1));
        let candidates: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ClientError::Connect { addr: addr.to_owned(), reason: e.to_string() })?
            .collect();
        let mut last_error =
            ClientError::Connect { addr: addr.to_owned(), reason: "the address resolves to nothing".to_owned() };
        for candidate in candidates {
            match TcpStream::connect_timeout(candidate, request_timeout).await {
                Ok(stream) => return Ok(Connection::start(addr, stream, request_timeout)),
                Err(e) => last_error = ClientError::connect(addr, &std::io::Error::from(e)),
            }
        }
        Err(last_error)
    }

    fn start(addr: &str, stream: TcpStream, request_timeout: Duration) -> Connection {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%addr, error = %e, "set_nodelay failed");
        }
        let (reader, writer) = futures_lite::io::split(stream);
        let shared = Rc::new(Shared {
            addr: addr.to_owned(),
            next_id: Cell::new(0),
            in_flight: RefCell::new(VecDeque::new()),
            broken: RefCell::new(None),
            broke: event_listener::Event::new(),
        });
        let (writes, queued) = local_channel::new_bounded(WRITE_QUEUE_FRAMES_MAX);
        let reader_task = glommio::spawn_local(read_responses(shared.clone(), reader));
        let writer_task = glommio::spawn_local(write_frames(shared.clone(), writer, queued));
        Connection { shared, writes, request_timeout, _reader: reader_task, _writer: writer_task }
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// True once the connection failed; every call now fails. Open a new connection.
    pub fn is_broken(&self) -> bool {
        self.shared.broken.borrow().is_some()
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends a request and waits for its response, at most the request timeout.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        self.call_with_timeout(request, self.request_timeout).await
    }

    /// Sends a request and waits for its response, at most `timeout`.
    pub async fn call_with_timeout(&self, request: Request, timeout: Duration) -> Result<Response, ClientError> {
        if matches!(request, Request::Produce { acks: Acks::None, .. }) {
            return Err(ClientError::InvalidArgument(
                "a Produce with acks=none gets no response: use send_no_response".to_owned(),
            ));
        }
        let call = async {
            self.shared.check()?;
            let id = self.next_id();
            let (tx, rx) = oneshot::channel();
            self.queue(WriteItem { chunks: encode_request(id, &request), reply: Reply::Response(id, tx) }).await?;
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(self.shared.check().err().unwrap_or_else(|| ClientError::lost(self.addr(), "closed"))),
            }
        };
        with_timeout(call, timeout, || ClientError::Timeout {
            addr: self.addr().to_owned(),
            timeout_ms: timeout.as_millis() as u64,
        })
        .await
    }

    /// Sends a request that gets no response (a Produce with acks=none); returns once the
    /// frame is written to the socket.
    pub async fn send_no_response(&self, request: Request) -> Result<(), ClientError> {
        if !matches!(request, Request::Produce { acks: Acks::None, .. }) {
            return Err(ClientError::InvalidArgument(
                "only a Produce with acks=none goes without a response".to_owned(),
            ));
        }
        let timeout = self.request_timeout;
        let send = async {
            self.shared.check()?;
            let id = self.next_id();
            let (tx, rx) = oneshot::channel();
            self.queue(WriteItem { chunks: encode_request(id, &request), reply: Reply::Written(tx) }).await?;
            match rx.await {
                Ok(result) => result,
                Err(_) => Err(self.shared.check().err().unwrap_or_else(|| ClientError::lost(self.addr(), "closed"))),
            }
        };
        with_timeout(send, timeout, || ClientError::Timeout {
            addr: self.addr().to_owned(),
            timeout_ms: timeout.as_millis() as u64,
        })
        .await
    }

    fn next_id(&self) -> u32 {
        let id = self.shared.next_id.get();
        self.shared.next_id.set(id.wrapping_add(1));
        id
    }

    async fn queue(&self, item: WriteItem) -> Result<(), ClientError> {
        if self.writes.send(item).await.is_err() {
            return Err(self.shared.check().err().unwrap_or_else(|| ClientError::lost(self.addr(), "writer stopped")));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.fail(ClientError::lost(&self.shared.addr, "connection closed by the client"));
    }
}

async fn with_timeout<T>(
    future: impl std::future::Future<Output = Result<T, ClientError>>,
    timeout: Duration,
    timed_out: impl FnOnce() -> ClientError,
) -> Result<T, ClientError> {
    futures_lite::future::or(future, async {
        glommio::timer::sleep(timeout).await;
        Err(timed_out())
    })
    .await
}

async fn write_frames(shared: Rc<Shared>, mut writer: WriteHalf<TcpStream>, queued: LocalReceiver<WriteItem>) {
    while let Some(WriteItem { chunks, reply }) = queued.recv().await {
        if let Err(error) = shared.check() {
            match reply {
                Reply::Response(_, waiter) => drop(waiter.send(Err(error))),
                Reply::Written(written) => drop(written.send(Err(error))),
            }
            continue;
        }
        // Registered before the first byte goes out, so the answer always finds it.
        let written = match reply {
            Reply::Response(id, waiter) => {
                shared.in_flight.borrow_mut().push_back((id, waiter));
                None
            }
            Reply::Written(written) => Some(written),
        };
        let result = match write_chunks(&mut writer, &chunks).await {
            Ok(()) => Ok(()),
            Err(e) => Err(shared.fail(ClientError::lost(&shared.addr, format!("write failed: {e}")))),
        };
        if let Some(written) = written {
            let _ = written.send(result);
        }
    }
    let _ = writer.close().await;
}

async fn read_responses(shared: Rc<Shared>, mut reader: ReadHalf<TcpStream>) {
    let broke = shared.broke.listen();
    if shared.check().is_err() {
        return;
    }
    let read_loop = async {
        loop {
            let frame = match read_frame(&mut reader, FRAME_BYTES_MAX).await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    shared.fail(ClientError::lost(&shared.addr, "closed by the broker"));
                    return;
                }
                Err(e) => {
                    shared.fail(ClientError::lost(&shared.addr, e.to_string()));
                    return;
                }
            };
            if let Err(error) = route_response(&shared, frame) {
                shared.fail(error);
                return;
            }
        }
    };
    futures_lite::future::or(read_loop, broke).await;
}

/// Hands one response frame to the oldest request in flight. An error means the stream can no
/// longer be trusted.
fn route_response(shared: &Shared, frame: Bytes) -> Result<(), ClientError> {
    let (id, response) = decode_response(frame)
        .map_err(|e| ClientError::protocol(&shared.addr, format!("undecodable response: {e}")))?;
    let head = shared.in_flight.borrow_mut().pop_front();
    match head {
        // A caller that gave up (timeout) dropped its receiver: the response is dropped here.
        Some((expected, waiter)) if expected == id => {
            let _ = waiter.send(Ok(response));
            Ok(())
        }
        Some((expected, waiter)) => {
            let error = ClientError::protocol(
                &shared.addr,
                format!("response has correlation id {id}, expected {expected} (the oldest request in flight)"),
            );
            let _ = waiter.send(Err(error.clone()));
            Err(error)
        }
        None => Err(ClientError::protocol(
            &shared.addr,
            format!("response with correlation id {id} while no request is in flight"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::codec::encode_response;
    use protocol::messages::ErrorCode;

    fn shared() -> Shared {
        Shared {
            addr: "test".to_owned(),
            next_id: Cell::new(0),
            in_flight: RefCell::new(VecDeque::new()),
            broken: RefCell::new(None),
            broke: event_listener::Event::new(),
        }
    }

    /// The response frame body (without the length prefix) the broker would send.
    fn frame(id: u32, response: &Response) -> Bytes {
        let chunks = encode_response(id, response);
        let mut all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        all.drain(..4);
        Bytes::from(all)
    }

    #[test]
    fn responses_go_to_the_requests_in_order_with_matching_ids() {
        let s = shared();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let (tx3, rx3) = oneshot::channel();
        s.in_flight.borrow_mut().extend([(7, tx1), (8, tx2), (9, tx3)]);
        let second = Response::status(ErrorCode::UnknownTopicOrPartition, "x");
        route_response(&s, frame(7, &Response::ok())).unwrap();
        route_response(&s, frame(8, &second)).unwrap();
        assert_eq!(rx1.try_recv().unwrap().unwrap().unwrap(), Response::ok());
        assert_eq!(rx2.try_recv().unwrap().unwrap().unwrap(), second);
        // A caller that timed out dropped its receiver: its response is consumed quietly.
        drop(rx3);
        route_response(&s, frame(9, &Response::ok())).unwrap();
        assert!(s.in_flight.borrow().is_empty());
        assert!(s.check().is_ok());
    }

    #[test]
    fn mismatched_id_fails_loudly_and_fails_every_waiter() {
        let s = shared();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        s.in_flight.borrow_mut().extend([(1, tx1), (2, tx2)]);
        let error = route_response(&s, frame(2, &Response::ok())).unwrap_err();
        assert!(error.to_string().contains("correlation id 2, expected 1"), "{error}");
        assert_eq!(rx1.try_recv().unwrap().unwrap().unwrap_err(), error);
        s.fail(error.clone());
        assert_eq!(rx2.try_recv().unwrap().unwrap().unwrap_err(), error);
        assert_eq!(s.check().unwrap_err(), error);
        // The first error sticks.
        assert_eq!(s.fail(ClientError::lost("test", "later")), error);
    }

    #[test]
    fn response_without_request_or_undecodable_is_fatal() {
        let s = shared();
        let error = route_response(&s, frame(3, &Response::ok())).unwrap_err();
        assert!(error.to_string().contains("no request is in flight"), "{error}");
        // Version 1, correlation id 5, header length 1000 (more than present).
        let mut body = vec![0, 1, 0, 0, 0, 5, 0, 0, 3, 232];
        body.extend_from_slice(&[0; 8]);
        let error = route_response(&s, Bytes::from(body)).unwrap_err();
        assert!(matches!(error, ClientError::Protocol { .. }), "{error}");
    }

    #[test]
    fn correlation_ids_wrap() {
        let s = shared();
        s.next_id.set(u32::MAX);
        let (tx, mut rx) = oneshot::channel();
        s.in_flight.borrow_mut().push_back((u32::MAX, tx));
        route_response(&s, frame(u32::MAX, &Response::ok())).unwrap();
        assert!(rx.try_recv().unwrap().is_some());
    }
}
