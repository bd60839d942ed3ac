//! Cross-shard calls. Every pair of shards has a bounded glommio `shared_channel` each way;
//! a shard sends a `ShardCall` (with its reply slot inside) to the owner of what it needs and
//! awaits the typed reply, up to a deadline.
//!
//! The receiving side spawns one task per call (`peer.rs`): glommio hands over a channel's
//! messages one at a time, and a slow call (a long-poll fetch, an fdatasync) must not hold up
//! the ones behind it. Calls sent one after another from one shard reach the other in that
//! order (the channel is FIFO), which is what keeps forwarded produces in order (`order.rs`).

use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::shared_channel::ConnectedSender;

use crate::calls::{Reply, ShardCall};
use crate::error::CallError;
use crate::ids::ShardId;

pub struct Router {
    me: ShardId,
    /// `senders[s]` reaches shard `s`; `None` for this shard itself.
    senders: Vec<Option<ConnectedSender<ShardCall>>>,
}

/// The reply to a call `Router::send` sent.
pub struct PendingReply<T> {
    shard: ShardId,
    rx: oneshot::Receiver<T>,
    deadline: Instant,
}

impl<T> PendingReply<T> {
    pub async fn reply(self) -> Result<T, CallError> {
        let shard = self.shard;
        let answer = async { self.rx.await.map_err(|_| CallError::Unreachable { shard }) };
        futures_lite::future::or(answer, async {
            sleep_until(self.deadline).await;
            Err(CallError::TimedOut { shard })
        })
        .await
    }
}

impl Router {
    pub fn new(me: ShardId, senders: Vec<Option<ConnectedSender<ShardCall>>>) -> Router {
        assert!(senders.get(me.index()).is_some_and(Option::is_none), "a shard has no channel to itself");
        Router { me, senders }
    }

    /// Sends the call `make` builds around its reply slot to `shard`, and waits for the reply
    /// until `deadline`.
    pub async fn call<T>(
        &self,
        shard: ShardId,
        make: impl FnOnce(Reply<T>) -> ShardCall,
        deadline: Instant,
    ) -> Result<T, CallError> {
        self.send(shard, make, deadline).await?.reply().await
    }

    /// Puts the call in `shard`'s channel (waiting while it is full, up to `deadline`); the
    /// reply comes through the returned `PendingReply`.
    pub async fn send<T>(
        &self,
        shard: ShardId,
        make: impl FnOnce(Reply<T>) -> ShardCall,
        deadline: Instant,
    ) -> Result<PendingReply<T>, CallError> {
        assert_ne!(shard, self.me, "local calls are served directly");
        let sender =
            self.senders.get(shard.index()).and_then(Option::as_ref).ok_or(CallError::Unreachable { shard })?;
        let (tx, rx) = oneshot::channel();
        let sent = async { sender.send(make(tx)).await.map_err(|_| CallError::Unreachable { shard }) };
        futures_lite::future::or(sent, async {
            sleep_until(deadline).await;
            Err(CallError::TimedOut { shard })
        })
        .await?;
        Ok(PendingReply { shard, rx, deadline })
    }
}

async fn sleep_until(deadline: Instant) {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
}

/// The default deadline of a cross-shard call made now: `timeout_ms` from now.
pub fn deadline_in(timeout_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(timeout_ms)
}
