//! Reading one request frame — a 4-byte big-endian length, then the body — under the shard's
//! request-memory budget, for every protocol (both the native and the Kafka protocol frame
//! requests this way).
//!
//! Limits, checked before any allocation: a length over `FRAME_BYTES_MAX` closes the
//! connection (the stream cannot be resynchronised); the body's bytes are taken from the
//! shard's request-memory budget piece by piece before they are read, so when the budget is
//! spent the shard stops reading sockets (TCP pushes back on producers) instead of growing.
//! Pieces grow with what the peer has already sent, so a peer that announces a large frame
//! and stalls pins at most `FRAME_FIRST_PIECE_BYTES` it has not sent (and is cut off after
//! `FRAME_BODY_TIMEOUT_MS`). A connection idle for `IDLE_CONNECTION_TIMEOUT_MS` closes.

use std::os::fd::RawFd;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use glommio::sync::StaticPermit;

use crate::limits::{
    FRAME_BODY_TIMEOUT_MS, FRAME_BYTES_MAX, FRAME_FIRST_PIECE_BYTES, FRAME_READ_CHUNK_BYTES, IDLE_CONNECTION_TIMEOUT_MS,
};
use crate::shard::Shard;

/// Why a connection closes.
pub type Close = &'static str;

/// A frame body and the request-memory budget it holds until its request is answered.
pub type Frame = (Bytes, Vec<StaticPermit>);

/// Reads one frame. `Ok(None)` on a clean close between frames.
/// `fd` is the stream's socket: body bytes already received are copied straight from it
/// into the frame (`recv_ready`).
pub async fn read_frame_budgeted(
    shard: &Shard,
    reader: &mut futures_lite::io::ReadHalf<TcpStream>,
    fd: RawFd,
) -> Result<Option<Frame>, Close> {
    let mut prefix = [0u8; 4];
    let idle = Duration::from_millis(IDLE_CONNECTION_TIMEOUT_MS);
    let stopping = shard.stopping();
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
                stopping.await;
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
        shard.metrics().malformed_frame();
        return Err("frame too large");
    }
    let body = read_body(shard, reader, fd, frame_bytes);
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
///
/// Bytes the socket already holds are received straight into the body's spare capacity
/// (`recv_ready`); only the part of a piece still to arrive is zero-filled and awaited through
/// the stream. Zero-filling every body before reading into it cost 7.6 % of a broker's CPU at
/// 640 MB/s (issue #14's profile).
async fn read_body(
    shard: &Shard,
    reader: &mut futures_lite::io::ReadHalf<TcpStream>,
    fd: RawFd,
    frame_bytes: u32,
) -> Result<Frame, Close> {
    let total = frame_bytes as usize;
    let budget = shard.request_memory();
    // Capacity is address space, not memory, until written: reserve the first 1 MiB at once (no
    // copy while growing through the small pieces), and the whole frame once the peer has sent
    // that much. Resident memory grows only with the charged pieces below.
    let mut body = BytesMut::with_capacity(total.min(FRAME_READ_CHUNK_BYTES as usize));
    let mut permits = Vec::new();
    if total == 0 {
        permits.push(budget.acquire_static_permit(1).await.map_err(|_| "request memory closed")?);
    }
    while body.len() < total {
        let piece = body_piece_bytes(body.len(), total);
        permits.push(budget.acquire_static_permit(piece as u64).await.map_err(|_| "request memory closed")?);
        let start = body.len();
        if start + piece > body.capacity() {
            body.reserve(total - start);
        }
        let ready = recv_ready(fd, &mut body, piece);
        if ready < piece {
            let waiting = body.len();
            body.resize(start + piece, 0);
            reader.read_exact(&mut body[waiting..]).await.map_err(|_| "truncated frame")?;
        }
        assert_eq!(body.len(), start + piece);
    }
    assert_eq!(body.len(), total);
    Ok((body.freeze(), permits))
}

/// Receives up to `want` bytes the socket already holds into `body`'s spare capacity, without
/// waiting and without initialising that memory first; returns how many arrived (0 when none
/// are ready, at end of stream or on an error: the awaited read that follows reports those).
fn recv_ready(fd: RawFd, body: &mut BytesMut, want: usize) -> usize {
    let mut received = 0usize;
    while received < want {
        let spare = body.spare_capacity_mut();
        let room = (want - received).min(spare.len());
        if room == 0 {
            break;
        }
        // SAFETY: the pointer and length describe `spare`, writable memory owned by `body`
        // (written through a raw pointer, so no reference to uninitialised bytes is made);
        // recv writes at most `room` bytes there, and only the count it reports is marked
        // initialised below.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), room, libc::MSG_DONTWAIT) };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 {
            break;
        }
        assert!(n <= room);
        // SAFETY: recv initialised the first `n` bytes of the spare capacity.
        unsafe { body.set_len(body.len() + n) };
        received += n;
    }
    received
}

/// The next piece of a frame body to charge and read, given `received` of `total` bytes.
fn body_piece_bytes(received: usize, total: usize) -> usize {
    debug_assert!(received < total);
    let piece = received.clamp(FRAME_FIRST_PIECE_BYTES as usize, FRAME_READ_CHUNK_BYTES as usize);
    piece.min(total - received)
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
