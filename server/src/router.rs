//! Cross-shard calls. Every pair of shards has a bounded glommio `shared_channel` each way; a
//! shard forwards a request for a partition it does not own to the owner and awaits the
//! reply. Replies are matched to calls by id, so many calls may be in flight at once.
//!
//! The receiving side spawns one task per request (`shard::serve_peer`): glommio handles a
//! channel's messages one at a time, and a slow request (a long-poll fetch, an fdatasync) must
//! not hold up the ones behind it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use bytes::Bytes;
use engine::catalog::TopicConfig;
use futures_channel::oneshot;
use glommio::channels::shared_channel::ConnectedSender;

use protocol::messages::{
    Acks, FetchPartition, FetchPartitionResult, ListOffsetsPartition, ListOffsetsResult, ProducePartitionResult,
    Request, Response,
};

/// What one shard asks another to do. Everything in it is `Send` (strings, `Bytes`).
#[derive(Debug)]
pub enum ShardRequest {
    Produce {
        topic: String,
        partition: u32,
        batches: Vec<Bytes>,
        acks: Acks,
    },
    Fetch(FetchPartition),
    /// Resolve when `offset` exists in the partition or `wait_ms` passed.
    Wait {
        topic: String,
        partition: u32,
        offset: u64,
        wait_ms: u32,
    },
    ListOffsets(ListOffsetsPartition),
    Stats {
        topic: String,
        partition: u32,
    },
    OpenPartitions {
        topic: String,
        partitions: Vec<u32>,
        config: TopicConfig,
    },
    DropPartitions {
        topic: String,
        partitions: Vec<u32>,
    },
    /// Admin and group requests, which shard 0 (the coordinator) serves.
    Coordinator(Request),
    /// Counters for the metrics endpoint.
    Metrics,
    /// A Kafka-protocol operation for the owning (or coordinator) shard.
    Kafka(crate::kafka::ShardCall),
}

impl ShardRequest {
    /// The partition a produce appends to (native or Kafka); `None` for other requests.
    pub fn produce_partition(&self) -> Option<(&str, u32)> {
        match self {
            ShardRequest::Produce { topic, partition, .. } => Some((topic, *partition)),
            ShardRequest::Kafka(crate::kafka::ShardCall::Produce { topic, partition, .. }) => Some((topic, *partition)),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum ShardResponse {
    Produce(ProducePartitionResult),
    Fetch(FetchPartitionResult),
    Waited,
    ListOffsets(ListOffsetsResult),
    Stats(Option<(u64, u64, u64)>),
    Done(Result<(), String>),
    Coordinator(Response),
    Metrics(Box<crate::metrics::ShardMetricsSnapshot>),
    Kafka(crate::kafka::ShardReply),
}

#[derive(Debug)]
pub enum Envelope {
    Request { id: u64, from: usize, request: ShardRequest },
    Response { id: u64, response: ShardResponse },
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("shard {shard} is unreachable (shutting down?)")]
    Unreachable { shard: usize },
}

/// The reply to a request `Router::send` sent.
pub struct PendingReply {
    shard: usize,
    rx: oneshot::Receiver<ShardResponse>,
}

impl PendingReply {
    pub async fn reply(self) -> Result<ShardResponse, RouterError> {
        self.rx.await.map_err(|_| RouterError::Unreachable { shard: self.shard })
    }
}

pub struct Router {
    me: usize,
    /// `senders[s]` reaches shard `s`; `None` for this shard itself.
    senders: Vec<Option<ConnectedSender<Envelope>>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<ShardResponse>>>,
    next_id: Cell<u64>,
}

impl Router {
    pub fn new(me: usize, senders: Vec<Option<ConnectedSender<Envelope>>>) -> Router {
        Router { me, senders, pending: RefCell::new(HashMap::new()), next_id: Cell::new(0) }
    }

    /// Sends `request` to `shard` and waits for its reply.
    pub async fn call(&self, shard: usize, request: ShardRequest) -> Result<ShardResponse, RouterError> {
        self.send(shard, request).await?.reply().await
    }

    /// Sends `request` to `shard`; the reply comes through the returned `PendingReply`.
    /// Requests sent one after another from this shard reach `shard` in that order (the
    /// channel between two shards is FIFO), which is what keeps forwarded produces in order
    /// (`order.rs`).
    pub async fn send(&self, shard: usize, request: ShardRequest) -> Result<PendingReply, RouterError> {
        assert_ne!(shard, self.me, "local requests are served directly");
        let sender = self.senders.get(shard).and_then(Option::as_ref).ok_or(RouterError::Unreachable { shard })?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        if sender.send(Envelope::Request { id, from: self.me, request }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(RouterError::Unreachable { shard });
        }
        Ok(PendingReply { shard, rx })
    }

    /// Sends a reply back to the shard that called.
    pub async fn reply(&self, to: usize, id: u64, response: ShardResponse) {
        if let Some(sender) = self.senders.get(to).and_then(Option::as_ref) {
            if sender.send(Envelope::Response { id, response }).await.is_err() {
                tracing::debug!(to, id, "reply dropped: caller shard gone");
            }
        }
    }

    /// Completes the call waiting for `id`.
    pub fn complete(&self, id: u64, response: ShardResponse) {
        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
            let _ = tx.send(response);
        }
    }
}
