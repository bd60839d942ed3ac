//! A follower shard's fetches from its leaders: one session per leader shard address (all of
//! this shard's partitions that follow that leader shard share its requests), each a loop of
//! `ReplicaFetch` round trips over one native-protocol connection:
//!
//! 1. ask for every followed partition from its log end, with its durable end and the epoch of
//!    its last batch;
//! 2. a partition whose log diverges is truncated where the leader says its epoch ends (by
//!    epoch, never by high watermark alone); records are appended exactly as the leader
//!    stored them (`Log::append_replica`), and — for a topic whose durability is `sync` — made
//!    durable before the next request, so the durable end the leader hears is true;
//! 3. the leader's high watermark becomes the follower's (bounded by its log end).
//!
//! The session ends when no partition of this shard follows that address any more; the
//! reconciler starts sessions as roles change (`reconcile.rs`). Connections bind their source
//! address to this node's cluster IP when one is set, so a network fault injector can tell
//! nodes apart.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use engine::batch::BatchHeader;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use protocol::codec::{decode_response, encode_request};
use protocol::frame::{read_frame, write_chunks};
use protocol::messages::{ErrorCode, ReplicaFetchPartition as WirePartition, ReplicaFetchResult, Request, Response};

use crate::ids::{LeaderEpoch, Offset};
use crate::isr::{FollowerRole, Role};
use crate::limits::{
    FRAME_BYTES_MAX, REPLICA_CONNECT_TIMEOUT_MS, REPLICA_FETCH_BYTES_MAX, REPLICA_FETCH_PARTITION_BYTES_MAX,
    REPLICA_FETCH_TIMEOUT_MS, REPLICA_FETCH_WAIT_MS, REPLICA_RETRY_MS_MAX, REPLICA_RETRY_MS_MIN,
};
use crate::partition::{split_batches, Partition};
use crate::shard::Shard;

/// Why a round trip failed (the session reconnects and retries).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("connecting to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("i/o with the leader: {0}")]
    Io(String),
    #[error("the leader sent an undecodable or unexpected answer: {0}")]
    Protocol(String),
    #[error("no answer within {0} ms")]
    TimedOut(u64),
}

impl Shard {
    /// Starts a fetch session for every leader address one of this shard's followers fetches
    /// from, unless one runs.
    pub(crate) fn start_fetchers(self: &Rc<Self>) {
        let mut addresses: Vec<String> = Vec::new();
        for partition in self.local_partitions() {
            if let Role::Follower(f) = partition.role() {
                if !addresses.contains(&f.leader_address) {
                    addresses.push(f.leader_address);
                }
            }
        }
        let mut sessions = self.fetch_sessions().borrow_mut();
        for address in addresses {
            if sessions.contains(&address) {
                continue;
            }
            sessions.insert(address.clone());
            glommio::spawn_local(session(self.clone(), address)).detach();
        }
    }

    /// This shard's partitions that follow the leader at `address`.
    fn followers_of(&self, address: &str) -> Vec<(Rc<Partition>, FollowerRole)> {
        self.local_partitions()
            .into_iter()
            .filter_map(|p| match p.role() {
                Role::Follower(f) if f.leader_address == address => Some((p, f)),
                _ => None,
            })
            .collect()
    }
}

/// One leader shard's fetch session, until nothing here follows it.
async fn session(shard: Rc<Shard>, address: String) {
    let mut connection: Option<TcpStream> = None;
    let mut correlation_id: u32 = 0;
    let mut retry_ms = REPLICA_RETRY_MS_MIN;
    tracing::debug!(shard = %shard.id(), leader = %address, "replica fetch session started");
    loop {
        let followers = shard.followers_of(&address);
        if followers.is_empty() || shard.is_stopping() {
            // No await between the check and the removal: the reconciler either sees this
            // session or starts a new one.
            shard.fetch_sessions().borrow_mut().remove(&address);
            tracing::debug!(shard = %shard.id(), leader = %address, "replica fetch session ended");
            return;
        }
        correlation_id = correlation_id.wrapping_add(1);
        let request = fetch_request(&shard, &followers);
        let exchanged = round_trip(&shard, &mut connection, &address, correlation_id, &request).await;
        let backoff = match exchanged {
            Ok(results) => apply(&shard, &followers, results).await,
            Err(e) => {
                tracing::debug!(shard = %shard.id(), leader = %address, error = %e, "replica fetch failed");
                connection = None;
                true
            }
        };
        if backoff {
            glommio::timer::sleep(Duration::from_millis(retry_ms)).await;
            retry_ms = (retry_ms * 2).min(REPLICA_RETRY_MS_MAX);
        } else {
            retry_ms = REPLICA_RETRY_MS_MIN;
        }
    }
}

fn fetch_request(shard: &Shard, followers: &[(Rc<Partition>, FollowerRole)]) -> Request {
    let partitions = followers
        .iter()
        .map(|(p, role)| {
            let log = p.log();
            let fetch_offset = log.log_end_offset();
            let last_fetched_epoch = (fetch_offset > log.log_start_offset())
                .then(|| log.leader_epochs().last().map(|e| e.epoch.get()))
                .flatten();
            WirePartition {
                topic: p.id().topic.clone(),
                partition: p.id().partition,
                leader_epoch: role.epoch.get(),
                fetch_offset: fetch_offset.get(),
                durable_offset: log.durable_end_offset().get(),
                last_fetched_epoch,
                bytes_max: REPLICA_FETCH_PARTITION_BYTES_MAX,
                log_start_offset: log.log_start_offset().get(),
            }
        })
        .collect();
    Request::ReplicaFetch {
        replica_node: shard.node().get(),
        wait_ms_max: REPLICA_FETCH_WAIT_MS,
        bytes_max: REPLICA_FETCH_BYTES_MAX,
        partitions,
    }
}

/// Applies the leader's answers. True when the session should back off before the next
/// fetch (the leader refused: its metadata or ours is about to change).
async fn apply(
    shard: &Rc<Shard>,
    followers: &[(Rc<Partition>, FollowerRole)],
    results: Vec<ReplicaFetchResult>,
) -> bool {
    let mut backoff = false;
    let mut syncs = Vec::new();
    for result in results {
        let Some((partition, role)) =
            followers.iter().find(|(p, _)| p.id().topic == result.topic && p.id().partition == result.partition)
        else {
            continue;
        };
        // The role may have changed while the fetch was out.
        if !matches!(partition.role(), Role::Follower(now) if now == *role) {
            continue;
        }
        match result.error {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange if partition.log().log_end_offset() < Offset::new(result.log_start_offset) => {
                // The next fetch (from the leader's log start) goes to the new replica.
                let _ = shard.restart_replica_at(partition.clone(), Offset::new(result.log_start_offset)).await;
                continue;
            }
            ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch | ErrorCode::UnknownLeaderEpoch => {
                backoff = true;
                continue;
            }
            other => {
                tracing::warn!(partition = %partition.id(), error = ?other, "the leader refused a replica fetch");
                backoff = true;
                continue;
            }
        }
        if let Some((epoch, end)) = result.diverging {
            let target = truncation_point(partition, LeaderEpoch::new(epoch), Offset::new(end));
            let before = (partition.log().log_end_offset(), partition.log().leader_epochs());
            match partition.truncate_to(target).await {
                Ok(end) if (end, partition.log().leader_epochs()) == before => {
                    // Nothing changed: asking again at once would get the same answer.
                    tracing::warn!(partition = %partition.id(), %end, leader_epoch = epoch, "divergence the log cannot resolve yet");
                    backoff = true;
                }
                Ok(end) => tracing::info!(partition = %partition.id(), %end, "truncated a divergent tail"),
                Err(e) => {
                    tracing::error!(partition = %partition.id(), error = %e, "truncation failed");
                    backoff = true;
                }
            }
            continue;
        }
        let batches = split_batches(&result.records);
        // A replica started at the leader's log start, which lies inside the leader's first
        // batch: start it over at that batch's base so it can hold the batch whole (Kafka does
        // the same); its logical start follows the leader's below.
        let mut partition = partition.clone();
        if let Some((base, last)) = batches.first().and_then(batch_span) {
            let log = partition.log();
            let end = log.log_end_offset();
            if log.log_start_offset() == end && base < end && last >= end {
                match shard.restart_replica_at(partition.clone(), base).await {
                    Some(reopened) => partition = reopened,
                    None => {
                        backoff = true;
                        continue;
                    }
                }
            }
        }
        if !batches.is_empty() {
            match partition.log().append_replica_queued(&batches).await {
                Ok(queued) => {
                    let durability = partition.durability();
                    syncs.push(async move { queued.durable(durability).await });
                }
                Err(e) => {
                    tracing::error!(partition = %partition.id(), error = %e, "appending replicated batches failed");
                    backoff = true;
                    continue;
                }
            }
        }
        partition.follower_high_watermark(Offset::new(result.high_watermark));
        // The leader's DeleteRecords: follow its log start (as Kafka followers do), within
        // what this replica holds.
        let leader_start = Offset::new(result.log_start_offset).min(partition.log().log_end_offset());
        if leader_start > partition.log().log_start_offset() {
            if let Err(e) = partition.log().delete_records_before(leader_start).await {
                tracing::warn!(partition = %partition.id(), error = %e, "following the leader's log start failed");
            }
        }
    }
    // Durable before the next fetch reports the durable end.
    for sync in syncs {
        if let Err(e) = sync.await {
            tracing::error!(error = %e, "syncing replicated batches failed");
            backoff = true;
        }
    }
    backoff
}

/// Where a follower cuts its log when the leader says its log ends epoch `epoch` at `end`:
/// at `end`, or earlier if this replica's own `epoch` (or the latest before it) ends earlier.
fn truncation_point(partition: &Partition, epoch: LeaderEpoch, end: Offset) -> Offset {
    match partition.log().end_offset_for_epoch(epoch) {
        Some((_, own_end)) => own_end.min(end),
        None => end,
    }
}

async fn round_trip(
    shard: &Shard,
    connection: &mut Option<TcpStream>,
    address: &str,
    correlation_id: u32,
    request: &Request,
) -> Result<Vec<ReplicaFetchResult>, FetchError> {
    if connection.is_none() {
        *connection = Some(connect(address, shard.source_ip()).await?);
    }
    let Some(stream) = connection.as_mut() else {
        unreachable!("connected above");
    };
    let timeout_ms = u64::from(REPLICA_FETCH_WAIT_MS) + REPLICA_FETCH_TIMEOUT_MS;
    let exchange = async {
        write_chunks(stream, &encode_request(correlation_id, request))
            .await
            .map_err(|e| FetchError::Io(e.to_string()))?;
        let frame = read_frame(stream, FRAME_BYTES_MAX)
            .await
            .map_err(|e| FetchError::Io(e.to_string()))?
            .ok_or_else(|| FetchError::Io("the leader closed the connection".into()))?;
        let (answered, response) = decode_response(frame).map_err(|e| FetchError::Protocol(e.to_string()))?;
        if answered != correlation_id {
            return Err(FetchError::Protocol(format!("answer to request {answered}, expected {correlation_id}")));
        }
        match response {
            Response::ReplicaFetch { partitions } => Ok(partitions),
            Response::Status { error, message } => Err(FetchError::Protocol(format!("{error:?}: {message}"))),
            other => Err(FetchError::Protocol(format!("unexpected answer {other:?}"))),
        }
    };
    let result = futures_lite::future::or(exchange, async {
        glommio::timer::sleep(Duration::from_millis(timeout_ms)).await;
        Err(FetchError::TimedOut(timeout_ms))
    })
    .await;
    if result.is_err() {
        if let Some(mut stream) = connection.take() {
            let _ = stream.close().await;
        }
    }
    result
}

/// Connects to `address`, from `source_ip` when given (on the blocking pool: socket2 binds the
/// source, which glommio's connect cannot).
async fn connect(address: &str, source_ip: Option<IpAddr>) -> Result<TcpStream, FetchError> {
    let error = |reason: String| FetchError::Connect { address: address.to_owned(), reason };
    let target: SocketAddr = address
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("no address".into()))?;
    let socket = glommio::executor()
        .spawn_blocking(move || -> std::io::Result<socket2::Socket> {
            let domain = socket2::Domain::for_address(target);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
            if let Some(ip) = source_ip {
                socket.bind(&SocketAddr::new(ip, 0).into())?;
            }
            socket.connect_timeout(&target.into(), Duration::from_millis(REPLICA_CONNECT_TIMEOUT_MS))?;
            socket.set_nodelay(true)?;
            Ok(socket)
        })
        .await
        .map_err(|e| error(e.to_string()))?;
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the fd is a connected socket we own and give up here; glommio takes ownership
    // and closes it. (glommio's `From<socket2::Socket>` is for an older socket2.)
    Ok(unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) })
}

/// A stored batch's (base offset, last offset), from its header (the append validates the
/// whole batch); `None` for a header that does not parse or negative offsets.
fn batch_span(batch: &Bytes) -> Option<(Offset, Offset)> {
    let header = BatchHeader::parse(batch).ok()?;
    let base = u64::try_from(header.base_offset).ok()?;
    let last = u64::try_from(header.last_offset()).ok()?;
    Some((Offset::new(base), Offset::new(last)))
}
