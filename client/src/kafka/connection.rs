//! One pipelined Kafka connection: frames are a 4-byte big-endian size, a request header
//! (`kafka-protocol` picks its version from the API and version), then the body.
//!
//! Several requests may be in flight. A writer task writes whole frames in the order callers
//! queued them and, just before writing a request that expects an answer, appends its
//! correlation id to a FIFO. Kafka answers a connection's requests in order, so the reader
//! hands each response frame to the FIFO's head after checking the correlation id. A mismatch
//! or a frame over `RESPONSE_BYTES_MAX` means the stream cannot be trusted: the connection is
//! failed, every waiter gets the error, and so does every later call (the cluster then opens a
//! new connection). Requests in flight are bounded by `REQUESTS_IN_FLIGHT_MAX`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_channel::oneshot;
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::Task;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::error::KafkaError;

/// Largest response frame accepted: a fetch answers at most `FETCH_BYTES_MAX` of records
/// (16 MiB) plus per-partition overhead; anything far larger is a broken stream.
pub const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// Requests written and not yet answered, per connection. Brokers stop reading a connection
/// with too many requests in flight anyway; this bounds the client's own memory.
pub const REQUESTS_IN_FLIGHT_MAX: u64 = 1024;
/// Frames queued for the writer before callers wait.
const WRITE_QUEUE_FRAMES_MAX: usize = 256;
/// Sent as the request header's client id.
const CLIENT_ID: &str = "shardlog-loadgen";

type Waiter = oneshot::Sender<Result<Bytes, KafkaError>>;

struct Shared {
    addr: String,
    next_id: Cell<i32>,
    /// Correlation ids written and not yet answered, in wire order.
    in_flight: RefCell<VecDeque<(i32, Waiter)>>,
    /// Set once, by whatever broke the connection first.
    broken: RefCell<Option<KafkaError>>,
}

impl Shared {
    fn check(&self) -> Result<(), KafkaError> {
        match &*self.broken.borrow() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Marks the connection broken (the first error wins) and fails every waiter.
    fn fail(&self, error: KafkaError) -> KafkaError {
        let error = self.broken.borrow_mut().get_or_insert(error).clone();
        let waiters: Vec<(i32, Waiter)> = self.in_flight.borrow_mut().drain(..).collect();
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
        error
    }
}

enum Reply {
    Response(i32, Waiter),
    /// acks=0 produce: no response; this learns when the frame is on the wire.
    Written(oneshot::Sender<Result<(), KafkaError>>),
}

struct WriteItem {
    frame: Bytes,
    reply: Reply,
}

/// One connection; dropping it stops its tasks and closes the socket.
pub struct Connection {
    shared: Rc<Shared>,
    writes: LocalSender<WriteItem>,
    permits: Rc<Semaphore>,
    request_timeout: Duration,
    _reader: Task<()>,
    _writer: Task<()>,
}

impl Connection {
    pub async fn connect(addr: &str, request_timeout: Duration) -> Result<Connection, KafkaError> {
        let connect_error = |reason: String| KafkaError::Connect { addr: addr.to_owned(), reason };
        let candidates: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| connect_error(e.to_string()))?.collect();
        let mut last = connect_error("the address resolves to nothing".to_owned());
        for candidate in candidates {
            match TcpStream::connect_timeout(candidate, request_timeout).await {
                Ok(stream) => return Ok(Connection::start(addr, stream, request_timeout)),
                Err(e) => last = connect_error(e.to_string()),
            }
        }
        Err(last)
    }

    fn start(addr: &str, stream: TcpStream, request_timeout: Duration) -> Connection {
        // Small requests (acks, fetches) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (reader, writer) = futures_lite::io::split(stream);
        let shared = Rc::new(Shared {
            addr: addr.to_owned(),
            next_id: Cell::new(1),
            in_flight: RefCell::new(VecDeque::new()),
            broken: RefCell::new(None),
        });
        let (writes, queued) = local_channel::new_bounded(WRITE_QUEUE_FRAMES_MAX);
        Connection {
            _reader: glommio::spawn_local(read_responses(shared.clone(), reader)),
            _writer: glommio::spawn_local(write_frames(shared.clone(), writer, queued)),
            shared,
            writes,
            permits: Rc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
            request_timeout,
        }
    }

    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    pub fn is_broken(&self) -> bool {
        self.shared.broken.borrow().is_some()
    }

    /// Sends `request` as `version` and decodes its response.
    pub async fn call<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, KafkaError> {
        self.call_with_timeout(request, version, self.request_timeout).await
    }

    /// Like [`Connection::call`], waiting at most `timeout` (a long-poll fetch adds its wait).
    pub async fn call_with_timeout<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, KafkaError> {
        let call = async {
            self.shared.check()?;
            let _permit = self.permits.acquire_permit(1).await.map_err(|_| self.lost("closed"))?;
            let (id, frame) = self.encode(request, version)?;
            let (tx, rx) = oneshot::channel();
            self.queue(WriteItem { frame, reply: Reply::Response(id, tx) }).await?;
            let mut frame = rx.await.map_err(|_| self.lost("closed"))??;
            let header_version = <R::Response as HeaderVersion>::header_version(version);
            let decode_error = |e| KafkaError::Protocol {
                addr: self.addr().to_owned(),
                reason: format!("undecodable response to API {} v{version}: {e}", R::KEY),
            };
            ResponseHeader::decode(&mut frame, header_version).map_err(decode_error)?;
            R::Response::decode(&mut frame, version).map_err(decode_error)
        };
        self.timed(call, timeout).await
    }

    /// Sends a request that gets no response (Produce with acks=0); returns once written.
    pub async fn send_no_response<R: Request>(&self, request: &R, version: i16) -> Result<(), KafkaError> {
        let send = async {
            self.shared.check()?;
            let (_, frame) = self.encode(request, version)?;
            let (tx, rx) = oneshot::channel();
            self.queue(WriteItem { frame, reply: Reply::Written(tx) }).await?;
            rx.await.map_err(|_| self.lost("closed"))?
        };
        self.timed(send, self.request_timeout).await
    }

    fn encode<R: Request>(&self, request: &R, version: i16) -> Result<(i32, Bytes), KafkaError> {
        let id = self.shared.next_id.get();
        self.shared.next_id.set(id.wrapping_add(1));
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let encode_error = |e| KafkaError::Encode { api_key: R::KEY, version, reason: format!("{e}") };
        let mut frame = BytesMut::with_capacity(64);
        frame.put_u32(0); // size, written below
        header.encode(&mut frame, R::header_version(version)).map_err(encode_error)?;
        request.encode(&mut frame, version).map_err(encode_error)?;
        let size = u32::try_from(frame.len() - 4).map_err(|_| KafkaError::Encode {
            api_key: R::KEY,
            version,
            reason: "request over 4 GiB".to_owned(),
        })?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        Ok((id, frame.freeze()))
    }

    async fn queue(&self, item: WriteItem) -> Result<(), KafkaError> {
        if self.writes.send(item).await.is_err() {
            return Err(self.shared.check().err().unwrap_or_else(|| self.lost("writer stopped")));
        }
        Ok(())
    }

    fn lost(&self, reason: &str) -> KafkaError {
        self.shared
            .check()
            .err()
            .unwrap_or_else(|| KafkaError::Lost { addr: self.addr().to_owned(), reason: reason.to_owned() })
    }

    async fn timed<T>(
        &self,
        future: impl std::future::Future<Output = Result<T, KafkaError>>,
        timeout: Duration,
    ) -> Result<T, KafkaError> {
        futures_lite::future::or(future, async {
            glommio::timer::sleep(timeout).await;
            Err(KafkaError::Timeout { addr: self.addr().to_owned(), timeout_ms: timeout.as_millis() as u64 })
        })
        .await
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared
            .fail(KafkaError::Lost { addr: self.shared.addr.clone(), reason: "closed by the client".to_owned() });
    }
}

async fn write_frames(shared: Rc<Shared>, mut writer: WriteHalf<TcpStream>, queued: LocalReceiver<WriteItem>) {
    while let Some(item) = queued.recv().await {
        if shared.check().is_err() {
            fail_item(item, &shared);
            continue;
        }
        let written = match item.reply {
            Reply::Response(id, waiter) => {
                shared.in_flight.borrow_mut().push_back((id, waiter));
                writer.write_all(&item.frame).await.map_err(|e| e.to_string())
            }
            Reply::Written(done) => {
                let result = writer.write_all(&item.frame).await.map_err(|e| e.to_string());
                let _ = done.send(result.clone().map_err(|reason| lost(&shared, reason)));
                result
            }
        };
        if let Err(reason) = written {
            shared.fail(lost(&shared, reason));
        }
    }
}

fn lost(shared: &Shared, reason: String) -> KafkaError {
    KafkaError::Lost { addr: shared.addr.clone(), reason }
}

fn fail_item(item: WriteItem, shared: &Shared) {
    let error = shared.check().err().unwrap_or_else(|| lost(shared, "broken".to_owned()));
    match item.reply {
        Reply::Response(_, waiter) => {
            let _ = waiter.send(Err(error));
        }
        Reply::Written(done) => {
            let _ = done.send(Err(error));
        }
    }
}

async fn read_responses(shared: Rc<Shared>, mut reader: ReadHalf<TcpStream>) {
    loop {
        let frame = match read_frame(&mut reader).await {
            Ok(frame) => frame,
            Err(reason) => {
                shared.fail(lost(&shared, reason));
                return;
            }
        };
        // The correlation id leads every response header version.
        let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let head = shared.in_flight.borrow_mut().pop_front();
        match head {
            Some((expected, waiter)) if expected == id => {
                let _ = waiter.send(Ok(frame));
            }
            Some((expected, _)) => {
                let reason = format!("response correlation id {id}, expected {expected}");
                shared.fail(KafkaError::Protocol { addr: shared.addr.clone(), reason });
                return;
            }
            None => {
                let reason = format!("unsolicited response with correlation id {id}");
                shared.fail(KafkaError::Protocol { addr: shared.addr.clone(), reason });
                return;
            }
        }
    }
}

/// One response frame (without its size prefix); checks the size before allocating.
async fn read_frame(reader: &mut ReadHalf<TcpStream>) -> Result<Bytes, String> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await.map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes(prefix) as usize;
    if !(4..=RESPONSE_BYTES_MAX).contains(&size) {
        return Err(format!("response frame of {size} bytes (limit {RESPONSE_BYTES_MAX})"));
    }
    let mut frame = vec![0u8; size];
    reader.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
    Ok(Bytes::from(frame))
}
