//! Framing of the native protocol: every frame is a big-endian `u32` length followed by that
//! many bytes (the frame body, decoded by [`super::codec`]). See `docs/protocol.md`.

use std::io::ErrorKind;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame body accepted by default (the bytes after the `u32` length prefix).
pub const FRAME_BYTES_MAX: u32 = 64 << 20;
/// The protocol version this build speaks, the first field of every frame body.
pub const PROTOCOL_VERSION: u16 = 1;
/// Size of the length prefix in front of every frame body.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// A frame body is read into a buffer of at most this size up front; a larger frame's buffer
/// grows (doubling) only as its bytes actually arrive, so a peer that announces a large frame
/// and then stalls cannot make the reader hold more than this per connection.
const READ_BUFFER_INITIAL_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the limit; nothing was allocated. The stream is
    /// no longer framed: close the connection.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge { frame_bytes: u32, max: u32 },
    #[error("I/O error reading a frame: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended in the middle of a frame (inside its length prefix or its body).
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// Reads one frame body (everything after the u32 length). `Ok(None)` on a clean EOF before any
/// byte of a frame.
///
/// The length is checked against `frame_bytes_max` before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: u32,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    let mut filled = 0;
    while filled < prefix.len() {
        match read_some(reader, &mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let frame_bytes = u32::from_be_bytes(prefix);
    if frame_bytes > frame_bytes_max {
        return Err(FrameError::TooLarge { frame_bytes, max: frame_bytes_max });
    }

    let frame_len = frame_bytes as usize;
    let mut body = BytesMut::new();
    let mut filled = 0;
    while filled < frame_len {
        if filled == body.len() {
            let grown = if body.is_empty() { READ_BUFFER_INITIAL_BYTES } else { body.len().saturating_mul(2) };
            body.resize(grown.min(frame_len), 0);
        }
        match read_some(reader, &mut body[filled..]).await? {
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    debug_assert_eq!(body.len(), frame_len);
    Ok(Some(body.freeze()))
}

/// One `read`, retried on `Interrupted`.
async fn read_some<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf).await {
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// Writes chunks back to back (`write_all` each: glommio sockets have no writev), without
/// copying them, then flushes the writer.
///
/// A frame is only ever written whole by one caller at a time: interleaving two callers'
/// chunks on one connection corrupts the stream.
pub async fn write_chunks<W: AsyncWrite + Unpin>(writer: &mut W, chunks: &[Bytes]) -> std::io::Result<()> {
    for chunk in chunks {
        if !chunk.is_empty() {
            writer.write_all(chunk).await?;
        }
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_frames_back_to_back_then_clean_eof() {
        let big = vec![7u8; READ_BUFFER_INITIAL_BYTES * 2 + 5];
        let mut stream = framed(b"hello");
        stream.extend(framed(b""));
        stream.extend(framed(&big));
        let mut reader = Cursor::new(stream);
        block_on(async {
            assert_eq!(read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap(), &b"hello"[..]);
            assert_eq!(read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap(), &b""[..]);
            assert_eq!(read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().unwrap(), &big[..]);
            assert!(read_frame(&mut reader, FRAME_BYTES_MAX).await.unwrap().is_none());
        });
    }

    #[test]
    fn eof_inside_prefix_or_body_is_truncated() {
        let stream = framed(b"hello world");
        for cut in 1..stream.len() {
            let mut reader = Cursor::new(stream[..cut].to_vec());
            let result = block_on(read_frame(&mut reader, FRAME_BYTES_MAX));
            assert!(matches!(result, Err(FrameError::Truncated)), "cut at {cut}: {result:?}");
        }
    }

    #[test]
    fn oversized_prefix_is_rejected_before_reading_the_body() {
        let mut reader = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let result = block_on(read_frame(&mut reader, FRAME_BYTES_MAX));
        assert!(matches!(result, Err(FrameError::TooLarge { frame_bytes: u32::MAX, max: FRAME_BYTES_MAX })));
        let mut reader = Cursor::new(framed(b"12345"));
        let result = block_on(read_frame(&mut reader, 4));
        assert!(matches!(result, Err(FrameError::TooLarge { frame_bytes: 5, max: 4 })));
    }

    #[test]
    fn write_chunks_concatenates() {
        let mut out = Cursor::new(Vec::new());
        let chunks = [Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"cde")];
        block_on(write_chunks(&mut out, &chunks)).unwrap();
        assert_eq!(out.into_inner(), b"abcde");
    }
}
