//! One Kafka client connection: 4-byte big-endian size, request header (v0–v2, flexible
//! versions included, decoded by `kafka-protocol`), body. The same bounds as the native
//! connection (`crate::connection`): a frame over `FRAME_BYTES_MAX` closes the connection; a
//! frame's bytes are charged to the shard's request-memory budget as they arrive; at most
//! `REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX` requests run at once, answered in request order
//! (Kafka clients pipeline and match responses by order); idle connections close.
//!
//! As Kafka does: an ApiVersions request of a version we do not support gets an
//! UNSUPPORTED_VERSION answer in v0 format (so the client can pick a version); any other
//! request of an unsupported API or version, or one that does not decode, closes the
//! connection.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::Task;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestHeader,
    ResponseHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::groups::GroupCall;
use super::{admin, api_versions, fetch, groups, list_offsets, metadata, produce, KafkaShard};
use crate::connection::read_frame_budgeted;
use crate::limits::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX;
use crate::shard::Shard;

/// Why a request ends the connection.
type Close = &'static str;

/// A response being produced: `None` for Produce with acks=0 (no answer).
type Answer = Result<Option<Bytes>, Close>;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let Some(kafka) = super::state(&shard).cloned() else {
        tracing::error!(shard = shard.id, "Kafka connection on a shard without Kafka state");
        return;
    };
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    shard.metrics.connection_opened();
    let span = tracing::debug_span!("kafka_connection", shard = shard.id, %peer);
    let _enter = span.enter();
    let (mut reader, writer) = futures_lite::io::split(stream);
    let (tx, rx) = local_channel::new_bounded::<Task<Answer>>(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX);
    let writer_task = glommio::spawn_local(write_responses(writer, rx));
    let reason = loop {
        if shard.shutting_down.get() {
            break "shutting down";
        }
        let (frame, permit) = match read_frame_budgeted(&shard, &mut reader).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break "closed by peer",
            Err(reason) => break reason,
        };
        let decoded = match decode(frame) {
            Ok(decoded) => decoded,
            Err(reason) => {
                shard.metrics.malformed_frames.set(shard.metrics.malformed_frames.get() + 1);
                break reason;
            }
        };
        let (shard, kafka) = (shard.clone(), kafka.clone());
        let task = glommio::spawn_local(async move {
            let answer = serve_request(&shard, &kafka, decoded).await;
            drop(permit);
            answer
        });
        if tx.send(task).await.is_err() {
            break "writer gone";
        }
    };
    tracing::debug!(reason, "Kafka connection reader done");
    drop(tx);
    writer_task.await;
    shard.metrics.connection_closed();
}

async fn write_responses(
    mut writer: futures_lite::io::WriteHalf<TcpStream>,
    rx: local_channel::LocalReceiver<Task<Answer>>,
) {
    while let Some(task) = rx.recv().await {
        let bytes = match task.await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(reason) => {
                tracing::debug!(reason, "closing Kafka connection");
                break;
            }
        };
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
    }
    // Tell the peer at once; requests still queued finish (their tasks run to completion)
    // answering nobody, until the reader stops.
    let _ = writer.close().await;
    while let Some(task) = rx.recv().await {
        let _ = task.await;
    }
}

/// A request decoded by the connection's reader (so a frame that must close the connection
/// stops the reader at once), waiting to be served.
struct Decoded {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: Body,
}

enum Body {
    /// ApiVersions of a version we do not support: error 35 in v0 format.
    UnsupportedApiVersions,
    ApiVersions,
    Metadata(MetadataRequest),
    FindCoordinator(FindCoordinatorRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    InitProducerId(InitProducerIdRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    CreatePartitions(CreatePartitionsRequest),
    Group(GroupCall),
}

/// Decodes one request frame: header, then the body of a supported API version.
fn decode(mut frame: Bytes) -> Result<Decoded, Close> {
    if frame.len() < 8 {
        return Err("request shorter than its header");
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(api_key_raw) else {
        tracing::debug!(api_key = api_key_raw, "unknown Kafka API key");
        return Err("unknown API key");
    };
    let decoded = |request| Ok(Decoded { api_key, version, correlation_id, request });
    if !api_versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return decoded(Body::UnsupportedApiVersions);
        }
        tracing::debug!(?api_key, version, "unsupported Kafka API version");
        return Err("unsupported API version");
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|_| "undecodable request header")?;
    debug_assert_eq!(header.correlation_id, correlation_id);
    macro_rules! body {
        ($ty:ty) => {
            <$ty>::decode(&mut frame, version).map_err(|e| {
                tracing::debug!(error = %e, ?api_key, version, "undecodable Kafka request");
                "undecodable request"
            })?
        };
    }
    let request = match api_key {
        ApiKey::ApiVersions => {
            let _ = body!(ApiVersionsRequest);
            Body::ApiVersions
        }
        ApiKey::Metadata => Body::Metadata(body!(MetadataRequest)),
        ApiKey::FindCoordinator => Body::FindCoordinator(body!(FindCoordinatorRequest)),
        ApiKey::Produce => Body::Produce(body!(ProduceRequest)),
        ApiKey::Fetch => Body::Fetch(body!(FetchRequest)),
        ApiKey::ListOffsets => Body::ListOffsets(body!(ListOffsetsRequest)),
        ApiKey::InitProducerId => Body::InitProducerId(body!(InitProducerIdRequest)),
        ApiKey::CreateTopics => Body::CreateTopics(body!(CreateTopicsRequest)),
        ApiKey::DeleteTopics => Body::DeleteTopics(body!(DeleteTopicsRequest)),
        ApiKey::CreatePartitions => Body::CreatePartitions(body!(CreatePartitionsRequest)),
        ApiKey::JoinGroup => Body::Group(GroupCall::Join(body!(JoinGroupRequest))),
        ApiKey::SyncGroup => Body::Group(GroupCall::Sync(body!(SyncGroupRequest))),
        ApiKey::Heartbeat => Body::Group(GroupCall::Heartbeat(body!(HeartbeatRequest))),
        ApiKey::LeaveGroup => Body::Group(GroupCall::Leave(body!(LeaveGroupRequest), version)),
        ApiKey::OffsetCommit => Body::Group(GroupCall::Commit(body!(OffsetCommitRequest), version)),
        ApiKey::OffsetFetch => Body::Group(GroupCall::Fetch(body!(OffsetFetchRequest), version)),
        other => {
            // `is_supported` admits only the keys above.
            tracing::warn!(api_key = ?other, "supported API without a decoder");
            return Err("unhandled API");
        }
    };
    decoded(request)
}

/// Serves a decoded request and encodes its response.
async fn serve_request(shard: &Rc<Shard>, kafka: &Rc<KafkaShard>, decoded: Decoded) -> Answer {
    let Decoded { api_key, version, correlation_id, request } = decoded;
    let span = tracing::debug_span!("kafka_request", ?api_key, version, correlation_id);
    let _enter = span.enter();
    macro_rules! reply {
        ($response:expr) => {
            encode(api_key, version, correlation_id, &$response).map(Some)
        };
    }
    match request {
        Body::UnsupportedApiVersions => {
            encode(api_key, 0, correlation_id, &api_versions::unsupported_version_response()).map(Some)
        }
        Body::ApiVersions => reply!(api_versions::response()),
        Body::Metadata(r) => reply!(metadata::handle(shard, kafka, version, r).await),
        Body::FindCoordinator(r) => reply!(metadata::find_coordinator(kafka, version, r)),
        Body::Produce(r) => match produce::handle(shard, r).await {
            Some(response) => reply!(response),
            None => Ok(None),
        },
        Body::Fetch(r) => reply!(fetch::handle(shard, r).await),
        Body::ListOffsets(r) => reply!(list_offsets::handle(shard, version, r).await),
        Body::InitProducerId(r) => reply!(kafka.producers.init_producer_id(r)),
        Body::CreateTopics(r) => reply!(admin::create_topics(shard, kafka, r).await),
        Body::DeleteTopics(r) => reply!(admin::delete_topics(shard, version, r).await),
        Body::CreatePartitions(r) => reply!(admin::create_partitions(shard, r).await),
        Body::Group(call) => group(shard, api_key, version, correlation_id, call).await,
    }
}

/// Serves a group request on the coordinator shard and encodes its reply.
async fn group(shard: &Rc<Shard>, api_key: ApiKey, version: i16, correlation_id: i32, call: GroupCall) -> Answer {
    use super::groups::GroupReply;
    match groups::call(shard, call).await {
        GroupReply::Join(r) => encode(api_key, version, correlation_id, &r).map(Some),
        GroupReply::Sync(r) => encode(api_key, version, correlation_id, &r).map(Some),
        GroupReply::Heartbeat(r) => encode(api_key, version, correlation_id, &r).map(Some),
        GroupReply::Leave(r) => encode(api_key, version, correlation_id, &r).map(Some),
        GroupReply::Commit(r) => encode(api_key, version, correlation_id, &r).map(Some),
        GroupReply::Fetch(r) => encode(api_key, version, correlation_id, &r).map(Some),
    }
}

/// Size prefix, response header of the version this API uses, then the body.
pub fn encode<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, response: &R) -> Result<Bytes, Close> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_u32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, api_key.response_header_version(version))
        .and_then(|()| response.encode(&mut buf, version));
    if let Err(e) = encoded {
        tracing::error!(?api_key, version, error = %e, "cannot encode a Kafka response");
        return Err("response does not encode");
    }
    let size_bytes = u32::try_from(buf.len() - 4).map_err(|_| "response too large")?;
    buf[..4].copy_from_slice(&size_bytes.to_be_bytes());
    Ok(buf.freeze())
}
