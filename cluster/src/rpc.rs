//! The node-to-node wire: on a TCP connection, the client sends a frame holding one `Request`
//! and waits for the frame holding its `Response` before it sends another (one request in
//! flight per connection). A frame is a u32 big-endian length, then that many bytes of JSON.
//! Frames are bounded (`RPC_FRAME_BYTES_MAX`); the reader allocates as bytes arrive, so a
//! peer announcing a large frame and sending nothing costs nothing.

use broker::cluster::{MetaCommand, MetaResponse};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::error::RpcError;
use crate::limits::RPC_FRAME_BYTES_MAX;
use crate::types::{RaftNodeId, TypeConfig};

/// Bytes of a frame's length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// What one node asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<RaftNodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata change forwarded to the leader.
    Propose(MetaCommand),
    /// A broker telling the controller it is alive, in this incarnation.
    Heartbeat {
        node: u32,
        incarnation: u64,
    },
    /// A node not among the voters asking the leader to add it as a learner.
    Join {
        node: u32,
        address: String,
    },
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::AppendEntries(_) => "AppendEntries",
            Request::Vote(_) => "Vote",
            Request::InstallSnapshot(_) => "InstallSnapshot",
            Request::Propose(_) => "Propose",
            Request::Heartbeat { .. } => "Heartbeat",
            Request::Join { .. } => "Join",
        }
    }
}

/// The answer to one `Request`.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    Vote(Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>),
    /// A proposal committed and applied on the leader, at this log index.
    Proposed {
        index: u64,
        response: MetaResponse,
    },
    /// The controller knows the broker as registered, unfenced, in the incarnation it named.
    Heartbeat {
        registered: bool,
    },
    Joined,
    /// This node does not lead (Propose, Heartbeat, Join); `leader` is the one it knows of.
    NotLeader {
        leader: Option<RaftNodeId>,
    },
    /// The request was understood but could not be served.
    Failed {
        reason: String,
    },
    /// The request could not be read.
    BadRequest {
        reason: String,
    },
}

impl Response {
    pub fn kind(&self) -> &'static str {
        match self {
            Response::AppendEntries(_) => "AppendEntries",
            Response::Vote(_) => "Vote",
            Response::InstallSnapshot(_) => "InstallSnapshot",
            Response::Proposed { .. } => "Proposed",
            Response::Heartbeat { .. } => "Heartbeat",
            Response::Joined => "Joined",
            Response::NotLeader { .. } => "NotLeader",
            Response::Failed { .. } => "Failed",
            Response::BadRequest { .. } => "BadRequest",
        }
    }
}

/// `message` as a whole frame (length prefix included).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, RpcError> {
    let mut frame = vec![0u8; FRAME_HEADER_BYTES];
    serde_json::to_writer(&mut frame, message).map_err(RpcError::Encode)?;
    let body = frame.len() - FRAME_HEADER_BYTES;
    let len = u32::try_from(body)
        .ok()
        .filter(|n| *n <= RPC_FRAME_BYTES_MAX)
        .ok_or(RpcError::FrameTooLarge { bytes: body, max: RPC_FRAME_BYTES_MAX })?;
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    Ok(frame)
}

/// Why no frame was read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    #[error("a frame of {bytes} bytes passes the limit of {RPC_FRAME_BYTES_MAX} bytes")]
    TooLarge { bytes: u32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame's body.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let first = reader.read(&mut header).await?;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    reader.read_exact(&mut header[first..]).await?;
    let len = u32::from_be_bytes(header);
    if len > RPC_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { bytes: len });
    }
    let mut body = Vec::new();
    reader.take(u64::from(len)).read_to_end(&mut body).await?;
    if body.len() != len as usize {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Writes one whole frame (from `encode_frame`).
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> std::io::Result<()> {
    assert!(frame.len() >= FRAME_HEADER_BYTES, "a frame starts with its length");
    writer.write_all(frame).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::run;

    #[test]
    fn frames_round_trip_and_bad_lengths_are_refused() {
        run(|| async {
            let request = Request::Heartbeat { node: 3, incarnation: 9 };
            let frame = encode_frame(&request).unwrap();
            let mut reader = futures_lite::io::Cursor::new(frame.clone());
            let body = read_frame(&mut reader).await.unwrap();
            let back: Request = serde_json::from_slice(&body).unwrap();
            assert!(matches!(back, Request::Heartbeat { node: 3, incarnation: 9 }));
            assert!(matches!(read_frame(&mut reader).await, Err(FrameError::Closed)));

            let mut huge = (RPC_FRAME_BYTES_MAX + 1).to_be_bytes().to_vec();
            huge.extend_from_slice(b"{}");
            let mut reader = futures_lite::io::Cursor::new(huge);
            assert!(matches!(read_frame(&mut reader).await, Err(FrameError::TooLarge { .. })));

            let mut reader = futures_lite::io::Cursor::new(frame[..frame.len() - 1].to_vec());
            assert!(matches!(read_frame(&mut reader).await, Err(FrameError::Io(_))));
        });
    }
}
