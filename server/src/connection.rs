//! One client connection: a reader that decodes request frames and starts serving each at
//! once, and a writer that sends the responses in request order. Up to
//! `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` requests run concurrently per connection.
//!
//! Limits, checked before any allocation: a frame longer than `FRAME_BYTES_MAX` closes the
//! connection (the stream cannot be resynchronised); a frame's bytes are taken from the
//! shard's request-memory budget piece by piece before they are read, so when the budget is
//! spent the shard stops reading sockets (TCP pushes back on producers) instead of growing.
//! Pieces grow with what the peer has already sent, so a peer that announces a large frame and
//! stalls pins at most `FRAME_FIRST_PIECE_BYTES` it has not sent (and is cut off after
//! `FRAME_BODY_TIMEOUT_MS`). A frame that does
//! not decode gets a `MalformedRequest` answer when its correlation id is readable, and closes
//! the connection otherwise. An idle connection is closed after `IDLE_CONNECTION_TIMEOUT_MS`.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::sync::StaticPermit;
use glommio::Task;

use crate::limits::{
    FRAME_BODY_TIMEOUT_MS, FRAME_FIRST_PIECE_BYTES, FRAME_READ_CHUNK_BYTES, IDLE_CONNECTION_TIMEOUT_MS,
    REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX,
};
use crate::order::AppendOrder;
use crate::shard::Shard;
use protocol::codec::{decode_request, encode_response};
use protocol::frame::{write_chunks, FRAME_BYTES_MAX};
use protocol::messages::{Request, Response};

/// A request being served: its correlation id and the task producing its response.
struct InFlight {
    correlation_id: u32,
    response: Task<Option<Response>>,
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    shard.metrics.connection_opened();
    let span = tracing::debug_span!("connection", shard = shard.id, %peer);
    let _enter = span.enter();
    let (reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<InFlight>(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX);
    let writer_task = glommio::spawn_local(write_responses(writer, rx));
    let reason = read_requests(&shard, reader, tx).await;
    tracing::debug!(reason, "connection reader done");
    // The writer finishes the responses already queued, then the socket closes.
    writer_task.await;
    shard.metrics.connection_closed();
}

async fn read_requests(
    shard: &Rc<Shard>,
    mut reader: futures_lite::io::ReadHalf<TcpStream>,
    tx: local_channel::LocalSender<InFlight>,
) -> &'static str {
    let order = AppendOrder::default();
    loop {
        if shard.shutting_down.get() {
            return "shutting down";
        }
        let (frame, permit) = match read_frame_budgeted(shard, &mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return "closed by peer",
            Err(reason) => return reason,
        };
        let in_flight = match decode_request(frame) {
            Ok((correlation_id, request)) => {
                // Produces take their turns now, in arrival order (`order.rs`).
                let turns = match &request {
                    Request::Produce { partitions, .. } => {
                        partitions.iter().map(|p| order.take(&p.topic, p.partition)).collect()
                    }
                    _ => Vec::new(),
                };
                let shard = shard.clone();
                let response = glommio::spawn_local(async move {
                    let response = shard.handle(request, turns).await;
                    drop(permit);
                    response
                });
                InFlight { correlation_id, response }
            }
            Err(e) => {
                shard.metrics.malformed_frames.set(shard.metrics.malformed_frames.get() + 1);
                let Some(correlation_id) = e.correlation_id() else {
                    return "undecodable frame";
                };
                tracing::debug!(error = %e, "malformed request");
                let response = Response::status(e.error_code(), e.to_string());
                InFlight { correlation_id, response: glommio::spawn_local(async move { Some(response) }) }
            }
        };
        if tx.send(in_flight).await.is_err() {
            return "writer gone";
        }
    }
}

/// Reads one frame: the 4-byte length, then — after reserving that many bytes of the shard's
/// request memory — the body. `Ok(None)` on a clean close between frames.
pub(crate) async fn read_frame_budgeted(
    shard: &Rc<Shard>,
    reader: &mut futures_lite::io::ReadHalf<TcpStream>,
) -> Result<Option<(Bytes, Vec<StaticPermit>)>, &'static str> {
    let mut prefix = [0u8; 4];
    let idle = Duration::from_millis(IDLE_CONNECTION_TIMEOUT_MS);
    let shutdown = shard.shutdown.listen();
    let read_prefix = async {
        match reader.read(&mut prefix[..1]).await {
            Ok(0) => Ok(None),
            Ok(_) => reader.read_exact(&mut prefix[1..]).await.map(Some),
            Err(e) => Err(e),
        }
    };
    let first = futures_lite::future::or(
        async { Some(read_prefix.await) },
        futures_lite::future::or(
            async {
                glommio::timer::sleep(idle).await;
                None
            },
            async {
                shutdown.await;
                None
            },
        ),
    )
    .await;
    match first {
        None => return Err("idle timeout or shutdown"),
        Some(Ok(None)) => return Ok(None),
        Some(Err(_)) => return Err("read error"),
        Some(Ok(Some(()))) => {}
    }
    let frame_bytes = u32::from_be_bytes(prefix);
    if frame_bytes > FRAME_BYTES_MAX {
        tracing::warn!(frame_bytes, max = FRAME_BYTES_MAX, "frame too large; closing connection");
        shard.metrics.malformed_frames.set(shard.metrics.malformed_frames.get() + 1);
        return Err("frame too large");
    }
    let body = read_body(shard, reader, frame_bytes);
    let timeout = async {
        glommio::timer::sleep(Duration::from_millis(FRAME_BODY_TIMEOUT_MS)).await;
        Err("frame body timed out")
    };
    futures_lite::future::or(body, timeout).await.map(Some)
}

/// Reads `frame_bytes` of body, taking request-memory budget piece by piece as bytes arrive.
/// Pieces start at `FRAME_FIRST_PIECE_BYTES` and then match what the peer has already sent
/// (doubling up to `FRAME_READ_CHUNK_BYTES`), so the budget a frame holds but has not yet
/// filled is at most `max(FRAME_FIRST_PIECE_BYTES, bytes received)`: a peer that announces a
/// large frame and stalls pins 4 KiB, not a megabyte, and thousands of them cannot starve the
/// shard's other clients.
async fn read_body(
    shard: &Rc<Shard>,
    reader: &mut futures_lite::io::ReadHalf<TcpStream>,
    frame_bytes: u32,
) -> Result<(Bytes, Vec<StaticPermit>), &'static str> {
    let total = frame_bytes as usize;
    // Capacity is address space, not memory, until written: reserve the first 1 MiB at once (no
    // copy while growing through the small pieces), and the whole frame once the peer has sent
    // that much. Resident memory grows only with the charged pieces below.
    let mut body = BytesMut::with_capacity(total.min(FRAME_READ_CHUNK_BYTES as usize));
    let mut permits = Vec::new();
    if total == 0 {
        let permit = shard.request_memory.acquire_static_permit(1).await.map_err(|_| "request memory closed")?;
        permits.push(permit);
    }
    while body.len() < total {
        let piece = body_piece_bytes(body.len(), total);
        let permit =
            shard.request_memory.acquire_static_permit(piece as u64).await.map_err(|_| "request memory closed")?;
        permits.push(permit);
        let start = body.len();
        if start + piece > body.capacity() {
            body.reserve(total - start);
        }
        body.resize(start + piece, 0);
        reader.read_exact(&mut body[start..]).await.map_err(|_| "truncated frame")?;
    }
    debug_assert_eq!(body.len(), total);
    Ok((body.freeze(), permits))
}

/// The next piece of a frame body to charge and read, given `received` of `total` bytes.
fn body_piece_bytes(received: usize, total: usize) -> usize {
    debug_assert!(received < total);
    let piece = received.clamp(FRAME_FIRST_PIECE_BYTES as usize, FRAME_READ_CHUNK_BYTES as usize);
    piece.min(total - received)
}

async fn write_responses(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    rx: local_channel::LocalReceiver<InFlight>,
) {
    while let Some(in_flight) = rx.recv().await {
        let Some(response) = in_flight.response.await else {
            continue; // acks=none: the producer expects no answer.
        };
        let chunks = encode_response(in_flight.correlation_id, &response);
        if write_chunks(&mut writer, &chunks).await.is_err() {
            // The peer is gone; drain the rest so their tasks still finish.
            while let Some(rest) = rx.recv().await {
                let _ = rest.response.await;
            }
            break;
        }
    }
    let _ = writer.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_pieces_never_charge_more_than_was_received_beyond_the_first() {
        for total in [1usize, 4095, 4096, 4097, 100_000, 1 << 20, (64 << 20) - 3] {
            let mut received = 0usize;
            let mut pieces = 0usize;
            while received < total {
                let piece = body_piece_bytes(received, total);
                assert!(piece > 0 && piece <= FRAME_READ_CHUNK_BYTES as usize);
                // The budget taken ahead of the peer's bytes is bounded by what it already sent.
                assert!(piece <= received.max(FRAME_FIRST_PIECE_BYTES as usize), "{total} {received} {piece}");
                received += piece;
                pieces += 1;
            }
            assert_eq!(received, total);
            // Doubling up to 1 MiB: a 64 MiB frame still takes few reads.
            assert!(pieces <= 8 + total / FRAME_READ_CHUNK_BYTES as usize + 1, "{total}: {pieces} pieces");
        }
    }
}
