//! One client connection, whatever its protocol: a reader that reads frames under the
//! shard's memory budget (`frame.rs`), decodes each and starts serving it at once, and a
//! writer that sends the answers in request order (both Kafka and the native protocol match
//! responses to requests by order). At most `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` requests
//! of a connection are served at a time; then the reader waits.
//!
//! Requests are served concurrently, so their appends could reach a partition in any order;
//! a produce takes its turns (`order.rs`) here, in the reader, in arrival order, and appends
//! in turn.

use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::Task;

use super::frame::{read_frame_budgeted, Close};
use crate::limits::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX;
use crate::order::{AppendOrder, Turn};
use crate::shard::Shard;

/// A request's answer: chunks written back to back (`None`: no response, e.g. a produce
/// with acks=0), or the reason the connection must close.
pub type Answer = Result<Option<Vec<Bytes>>, Close>;

/// What a frame decodes to.
pub enum Decoded<R> {
    /// A request to serve.
    Request(R),
    /// Answer at once, without serving anything (e.g. an error for a malformed request whose
    /// correlation id was readable), and go on reading.
    Answer(Vec<Bytes>),
    /// The stream cannot go on.
    Close(Close),
}

/// A wire protocol served on this broker's listeners.
pub trait Protocol: 'static {
    type Request: 'static;

    /// Decodes one frame (the bytes after the length prefix).
    fn decode(&self, shard: &Shard, frame: Bytes) -> Decoded<Self::Request>;

    /// The turns a produce takes, one per partition it appends to (see `order.rs`); taken
    /// in arrival order. Other requests take none.
    fn turns(&self, request: &Self::Request, order: &AppendOrder) -> Vec<Turn>;

    /// Serves a request and encodes its answer.
    fn serve(
        self: Rc<Self>,
        shard: Rc<Shard>,
        request: Self::Request,
        turns: Vec<Turn>,
    ) -> impl Future<Output = Answer> + 'static;
}

/// Serves one connection until the peer closes it, it breaks a limit, or the shard stops.
pub async fn serve_connection<P: Protocol>(shard: Rc<Shard>, protocol: Rc<P>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    shard.metrics().connection_opened();
    let span = tracing::debug_span!("connection", shard = %shard.id(), %peer);
    let _enter = span.enter();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let (mut reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Task<Answer>>(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX);
    let writer_task = glommio::spawn_local(write_answers(writer, rx));
    let order = AppendOrder::default();
    let reason = loop {
        if shard.is_stopping() {
            break "shutting down";
        }
        let (frame, permit) = match read_frame_budgeted(&shard, &mut reader, fd).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "closed by peer",
            Err(reason) => break reason,
        };
        let task = match protocol.decode(&shard, frame) {
            Decoded::Request(request) => {
                // In arrival order, before the request runs (tasks run in no fixed order).
                let turns = protocol.turns(&request, &order);
                let (shard, protocol) = (shard.clone(), protocol.clone());
                glommio::spawn_local(async move {
                    let answer = protocol.serve(shard, request, turns).await;
                    drop(permit);
                    answer
                })
            }
            Decoded::Answer(chunks) => {
                drop(permit);
                glommio::spawn_local(async move { Ok(Some(chunks)) })
            }
            Decoded::Close(reason) => {
                shard.metrics().malformed_frame();
                break reason;
            }
        };
        if tx.send(task).await.is_err() {
            break "writer gone";
        }
    };
    tracing::debug!(reason, "connection reader done");
    drop(tx);
    // The writer finishes the answers already queued, then the socket closes.
    writer_task.await;
    shard.metrics().connection_closed();
}

async fn write_answers(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    rx: local_channel::LocalReceiver<Task<Answer>>,
) {
    while let Some(task) = rx.recv().await {
        let chunks = match task.await {
            Ok(Some(chunks)) => chunks,
            Ok(None) => continue,
            Err(reason) => {
                tracing::debug!(reason, "closing connection");
                break;
            }
        };
        if write_chunks(&mut writer, &chunks).await.is_err() {
            break; // The peer is gone.
        }
    }
    // Tell the peer at once; requests still queued run to completion (their work is done,
    // their answers go nowhere).
    let _ = writer.close().await;
    while let Some(task) = rx.recv().await {
        let _ = task.await;
    }
}

/// Writes chunks back to back (`write_all` each: glommio sockets have no writev).
async fn write_chunks(writer: &mut futures_lite::io::WriteHalf<TcpStream>, chunks: &[Bytes]) -> std::io::Result<()> {
    for chunk in chunks {
        writer.write_all(chunk).await?;
    }
    Ok(())
}
