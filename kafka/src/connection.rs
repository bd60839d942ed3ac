//! One Kafka request: decoding (request header v0–v2, flexible versions included, then the
//! body of a served API version, by `kafka-protocol`) and dispatch to the API's file. The
//! connection itself — budgeted framing, concurrent requests, answers in request order,
//! append turns — is the broker's pipeline (`broker::net`), shared with the native protocol.
//!
//! As Kafka does: an ApiVersions request of a version we do not support gets an
//! UNSUPPORTED_VERSION answer in v0 format (so the client can pick a version); any other
//! request of an unsupported API or version, or one that does not decode, closes the
//! connection.

use std::rc::Rc;
use std::sync::Arc;

use broker::net::{Answer, Decoded as Framed, Protocol};
use broker::order::{AppendOrder, Turn};
use broker::Shard;
use bytes::Bytes;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeLogDirsRequest, DescribeProducersRequest, ElectLeadersRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader,
    SyncGroupRequest,
};
use kafka_protocol::protocol::Decodable;

pub use crate::codec::{encode, Close};
use crate::groups::{GroupCall, JoinContext};
use crate::{
    admin, api_versions, cluster, configs, consumer_groups, fetch, group_admin, groups, leader_epoch, list_offsets,
    metadata, produce, producers, reassign, records, KafkaSettings,
};

/// The Kafka protocol on one connection of a shard.
pub struct Kafka {
    settings: Arc<KafkaSettings>,
    /// The client's address as Kafka reports it in DescribeGroups ("/<ip>"; "" if unknown).
    client_host: String,
}

impl Kafka {
    pub fn new(settings: Arc<KafkaSettings>) -> Kafka {
        Kafka { settings, client_host: String::new() }
    }

    pub fn with_client_host(settings: Arc<KafkaSettings>, client_host: String) -> Kafka {
        Kafka { settings, client_host }
    }
}

impl Protocol for Kafka {
    type Request = Decoded;

    fn decode(&self, _shard: &Shard, frame: Bytes) -> Framed<Decoded> {
        match decode(frame) {
            Ok(decoded) => Framed::Request(decoded),
            Err(reason) => Framed::Close(reason),
        }
    }

    fn turns(&self, request: &Decoded, order: &AppendOrder) -> Vec<Turn> {
        match &request.request {
            Body::Produce(produce) => produce::take_turns(order, produce),
            _ => Vec::new(),
        }
    }

    async fn serve(self: Rc<Self>, shard: Rc<Shard>, request: Decoded, turns: Vec<Turn>) -> Answer {
        serve_request(&shard, &self.settings, &self.client_host, request, turns)
            .await
            .map(|answer| answer.map(|bytes| vec![bytes]))
    }
}

/// A request decoded by the connection's reader (so a frame that must close the connection
/// stops the reader at once), waiting to be served.
#[derive(Debug)]
pub struct Decoded {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub request: Body,
    /// The request header's client id ("" when absent): group member ids start with it.
    pub client_id: String,
}

#[derive(Debug)]
pub enum Body {
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
    // KIP-848 consumer groups (the heartbeat boxed: it is the largest request by far, and
    // every `Body` would otherwise be as large).
    ConsumerGroupHeartbeat(Box<ConsumerGroupHeartbeatRequest>),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    // The operations APIs (issue #13).
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeConfigs(DescribeConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeCluster(DescribeClusterRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    DescribeProducers(DescribeProducersRequest),
    // Moving partitions and leaders (a cluster).
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    ElectLeaders(ElectLeadersRequest),
}

/// Decodes one request frame (the bytes after the size prefix): header, then the body of a
/// supported API version. Pure, so the fuzz target (`fuzz/fuzz_targets/kafka_request.rs`)
/// drives exactly what a connection runs on every frame.
pub fn decode(mut frame: Bytes) -> Result<Decoded, Close> {
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
    let decoded = |request, client_id| Ok(Decoded { api_key, version, correlation_id, request, client_id });
    if !api_versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return decoded(Body::UnsupportedApiVersions, String::new());
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
        ApiKey::ConsumerGroupHeartbeat => Body::ConsumerGroupHeartbeat(Box::new(body!(ConsumerGroupHeartbeatRequest))),
        ApiKey::ConsumerGroupDescribe => Body::ConsumerGroupDescribe(body!(ConsumerGroupDescribeRequest)),
        ApiKey::ListGroups => Body::ListGroups(body!(ListGroupsRequest)),
        ApiKey::DescribeGroups => Body::DescribeGroups(body!(DescribeGroupsRequest)),
        ApiKey::DeleteGroups => Body::DeleteGroups(body!(DeleteGroupsRequest)),
        ApiKey::OffsetDelete => Body::OffsetDelete(body!(OffsetDeleteRequest)),
        ApiKey::DescribeConfigs => Body::DescribeConfigs(body!(DescribeConfigsRequest)),
        ApiKey::AlterConfigs => Body::AlterConfigs(body!(AlterConfigsRequest)),
        ApiKey::IncrementalAlterConfigs => Body::IncrementalAlterConfigs(body!(IncrementalAlterConfigsRequest)),
        ApiKey::DeleteRecords => Body::DeleteRecords(body!(DeleteRecordsRequest)),
        ApiKey::DescribeCluster => Body::DescribeCluster(body!(DescribeClusterRequest)),
        ApiKey::DescribeLogDirs => Body::DescribeLogDirs(body!(DescribeLogDirsRequest)),
        ApiKey::OffsetForLeaderEpoch => Body::OffsetForLeaderEpoch(body!(OffsetForLeaderEpochRequest)),
        ApiKey::DescribeProducers => Body::DescribeProducers(body!(DescribeProducersRequest)),
        ApiKey::AlterPartitionReassignments => {
            Body::AlterPartitionReassignments(body!(AlterPartitionReassignmentsRequest))
        }
        ApiKey::ListPartitionReassignments => {
            Body::ListPartitionReassignments(body!(ListPartitionReassignmentsRequest))
        }
        ApiKey::ElectLeaders => Body::ElectLeaders(body!(ElectLeadersRequest)),
        other => {
            // `is_supported` admits only the keys above.
            tracing::warn!(api_key = ?other, "supported API without a decoder");
            return Err("unhandled API");
        }
    };
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    decoded(request, client_id)
}

/// Serves a decoded request and encodes its response (`None`: Produce with acks=0).
async fn serve_request(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    client_host: &str,
    decoded: Decoded,
    turns: Vec<Turn>,
) -> Result<Option<Bytes>, Close> {
    let Decoded { api_key, version, correlation_id, request, client_id } = decoded;
    let span = tracing::debug_span!("kafka_request", ?api_key, version, correlation_id);
    let _enter = span.enter();
    let without = Decoded { api_key, version, correlation_id, request, client_id: client_id.clone() };
    let request = match answer_without_shard(settings, without) {
        WithoutShard::Answered(answer) => return answer.map(Some),
        WithoutShard::NeedsShard(request) => request,
    };
    macro_rules! reply {
        ($response:expr) => {
            encode(api_key, version, correlation_id, &$response).map(Some)
        };
    }
    match request {
        Body::UnsupportedApiVersions | Body::ApiVersions => {
            tracing::error!(?api_key, "request answered without a shard reached the shard path");
            Err("unhandled API")
        }
        Body::FindCoordinator(r) => reply!(metadata::find_coordinator(Some(shard), settings, version, r)),
        Body::Metadata(r) => reply!(metadata::handle(shard, settings, version, r).await),
        Body::InitProducerId(r) => reply!(metadata::init_producer_id(shard, r)),
        Body::Produce(r) => match produce::handle(shard, r, turns).await {
            Some(response) => reply!(response),
            None => Ok(None),
        },
        Body::Fetch(r) => reply!(fetch::handle(shard, version, r).await),
        Body::ListOffsets(r) => reply!(list_offsets::handle(shard, version, r).await),
        Body::CreateTopics(r) => reply!(admin::create_topics(shard, settings, version, r).await),
        Body::DeleteTopics(r) => reply!(admin::delete_topics(shard, version, r).await),
        Body::CreatePartitions(r) => reply!(admin::create_partitions(shard, r).await),
        Body::Group(call) => {
            let context = JoinContext { version, client_id, client_host: client_host.to_owned() };
            let reply = groups::serve_with(shard, call, &context).await;
            groups::encode_reply(api_key, version, correlation_id, &reply).map(Some)
        }
        Body::ConsumerGroupHeartbeat(r) => {
            let context = consumer_groups::ClientContext { version, client_id, client_host: client_host.to_owned() };
            reply!(consumer_groups::heartbeat(shard, *r, &context).await)
        }
        Body::ConsumerGroupDescribe(r) => reply!(consumer_groups::describe(shard, r).await),
        Body::ListGroups(r) => reply!(group_admin::list_groups(shard, settings, r).await),
        Body::DescribeGroups(r) => reply!(group_admin::describe_groups(shard, r).await),
        Body::DeleteGroups(r) => reply!(group_admin::delete_groups(shard, r).await),
        Body::OffsetDelete(r) => reply!(group_admin::offset_delete(shard, r).await),
        Body::DescribeConfigs(r) => reply!(configs::describe_configs(shard, settings, version, r)),
        Body::AlterConfigs(r) => reply!(configs::alter_configs(shard, settings, r).await),
        Body::IncrementalAlterConfigs(r) => reply!(configs::incremental_alter_configs(shard, settings, r).await),
        Body::DeleteRecords(r) => reply!(records::delete_records(shard, r).await),
        Body::DescribeCluster(r) => reply!(cluster::describe_cluster(shard, settings, r)),
        Body::DescribeLogDirs(r) => reply!(cluster::describe_log_dirs(shard, settings, r).await),
        Body::OffsetForLeaderEpoch(r) => reply!(leader_epoch::handle(shard, r).await),
        Body::DescribeProducers(r) => reply!(producers::handle(shard, r).await),
        Body::AlterPartitionReassignments(r) => reply!(reassign::alter(shard, r).await),
        Body::ListPartitionReassignments(r) => reply!(reassign::list(shard, r)),
        Body::ElectLeaders(r) => reply!(reassign::elect(shard, version, r).await),
    }
}

/// What `answer_without_shard` did with a request.
pub enum WithoutShard {
    Answered(Result<Bytes, Close>),
    /// The request's body, back: serving it needs the shard.
    NeedsShard(Body),
}

/// Answers the requests that need no shard (ApiVersions, and FindCoordinator on a single
/// node): the encoded
/// response, or the request's body back when it needs the shard. The connection serves them
/// through here, and so does the fuzz target.
pub fn answer_without_shard(settings: &KafkaSettings, decoded: Decoded) -> WithoutShard {
    let Decoded { api_key, version, correlation_id, request, .. } = decoded;
    let answer = match request {
        Body::UnsupportedApiVersions => {
            encode(api_key, 0, correlation_id, &api_versions::unsupported_version_response())
        }
        Body::ApiVersions => encode(api_key, version, correlation_id, &api_versions::response()),
        // A cluster's coordinator is wherever the controller is now: the shard knows.
        Body::FindCoordinator(r) if !settings.cluster => {
            encode(api_key, version, correlation_id, &metadata::find_coordinator(None, settings, version, r))
        }
        other => return WithoutShard::NeedsShard(other),
    };
    WithoutShard::Answered(answer)
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::Encodable;
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api_versions::SUPPORTED;

    fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut frame, api_key.request_header_version(version))
            .unwrap();
        frame
    }

    fn frame<R: Encodable>(api_key: ApiKey, version: i16, request: &R) -> Bytes {
        let mut frame = header(api_key, version, 7);
        request.encode(&mut frame, version).unwrap();
        frame.freeze()
    }

    #[test]
    fn decodes_every_served_api_at_every_served_version() {
        for (api_key, min, max) in SUPPORTED {
            for version in min..=max {
                // Each API's default request (the Metadata one asks for every topic).
                let body = match api_key {
                    ApiKey::Produce => frame(api_key, version, &ProduceRequest::default()),
                    ApiKey::Fetch => frame(api_key, version, &FetchRequest::default()),
                    ApiKey::ListOffsets => frame(api_key, version, &ListOffsetsRequest::default()),
                    ApiKey::Metadata => frame(api_key, version, &MetadataRequest::default()),
                    ApiKey::OffsetCommit => frame(api_key, version, &OffsetCommitRequest::default()),
                    ApiKey::OffsetFetch => frame(api_key, version, &OffsetFetchRequest::default()),
                    ApiKey::FindCoordinator => frame(api_key, version, &FindCoordinatorRequest::default()),
                    ApiKey::JoinGroup => frame(api_key, version, &JoinGroupRequest::default()),
                    ApiKey::Heartbeat => frame(api_key, version, &HeartbeatRequest::default()),
                    ApiKey::LeaveGroup => frame(api_key, version, &LeaveGroupRequest::default()),
                    ApiKey::SyncGroup => frame(api_key, version, &SyncGroupRequest::default()),
                    ApiKey::ApiVersions => frame(api_key, version, &ApiVersionsRequest::default()),
                    ApiKey::CreateTopics => frame(api_key, version, &CreateTopicsRequest::default()),
                    ApiKey::DeleteTopics => frame(api_key, version, &DeleteTopicsRequest::default()),
                    ApiKey::InitProducerId => frame(api_key, version, &InitProducerIdRequest::default()),
                    ApiKey::CreatePartitions => frame(api_key, version, &CreatePartitionsRequest::default()),
                    ApiKey::ListGroups => frame(api_key, version, &ListGroupsRequest::default()),
                    ApiKey::ConsumerGroupHeartbeat => {
                        frame(api_key, version, &ConsumerGroupHeartbeatRequest::default())
                    }
                    ApiKey::ConsumerGroupDescribe => frame(api_key, version, &ConsumerGroupDescribeRequest::default()),
                    ApiKey::DescribeGroups => frame(api_key, version, &DescribeGroupsRequest::default()),
                    ApiKey::DeleteGroups => frame(api_key, version, &DeleteGroupsRequest::default()),
                    ApiKey::OffsetDelete => frame(api_key, version, &OffsetDeleteRequest::default()),
                    ApiKey::DescribeConfigs => frame(api_key, version, &DescribeConfigsRequest::default()),
                    ApiKey::AlterConfigs => frame(api_key, version, &AlterConfigsRequest::default()),
                    ApiKey::IncrementalAlterConfigs => {
                        frame(api_key, version, &IncrementalAlterConfigsRequest::default())
                    }
                    ApiKey::DeleteRecords => frame(api_key, version, &DeleteRecordsRequest::default()),
                    ApiKey::DescribeCluster => frame(api_key, version, &DescribeClusterRequest::default()),
                    ApiKey::DescribeLogDirs => frame(api_key, version, &DescribeLogDirsRequest::default()),
                    ApiKey::OffsetForLeaderEpoch => frame(api_key, version, &OffsetForLeaderEpochRequest::default()),
                    ApiKey::DescribeProducers => frame(api_key, version, &DescribeProducersRequest::default()),
                    ApiKey::AlterPartitionReassignments => {
                        frame(api_key, version, &AlterPartitionReassignmentsRequest::default())
                    }
                    ApiKey::ListPartitionReassignments => {
                        frame(api_key, version, &ListPartitionReassignmentsRequest::default())
                    }
                    ApiKey::ElectLeaders => frame(api_key, version, &ElectLeadersRequest::default()),
                    other => panic!("{other:?} is served but not tested"),
                };
                let decoded = decode(body).unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
                assert_eq!((decoded.api_key, decoded.version, decoded.correlation_id), (api_key, version, 7));
                assert!(!matches!(decoded.request, Body::UnsupportedApiVersions));
            }
        }
    }

    #[test]
    fn refuses_short_unknown_unsupported_and_truncated_frames() {
        assert!(decode(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0])).is_err(), "shorter than a header");
        assert!(decode(Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff])).is_err(), "unknown key");
        for (api_key, version) in [(ApiKey::Fetch, 17), (ApiKey::Produce, 2), (ApiKey::ConsumerGroupHeartbeat, 2)] {
            let mut unserved = header(api_key, version, 3);
            unserved.put_slice(&[0; 64]);
            assert_eq!(decode(unserved.freeze()).unwrap_err(), "unsupported API version", "{api_key:?} v{version}");
        }
        // A newer ApiVersions is answered (in v0), whatever its body.
        let mut newer = header(ApiKey::ApiVersions, 9, 3);
        newer.put_slice(b"whatever");
        assert!(matches!(decode(newer.freeze()).unwrap().request, Body::UnsupportedApiVersions));
        // Every strict prefix of a valid request fails to decode: nothing reads past the end.
        let topic = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("users"))));
        let whole = frame(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(Some(vec![topic])));
        assert!(decode(whole.clone()).is_ok());
        for len in 8..whole.len() {
            assert!(decode(whole.slice(..len)).is_err(), "prefix of {len} bytes");
        }
    }

    /// Regression (found by the `kafka_request` fuzz target): an array count far beyond the
    /// frame made the codec allocate count × element size bytes before decoding an element
    /// (13 GB for Metadata topics; an allocation that fails aborts the broker). Now a decode
    /// error, with nothing allocated (third_party/kafka-protocol/PATCHES.md).
    #[test]
    fn an_array_count_beyond_the_frame_is_refused_before_allocating() {
        let mut v4 = header(ApiKey::Metadata, 4, 1);
        v4.put_i32(i32::MAX); // topics
        v4.put_u8(1); // allow_auto_topic_creation
        assert_eq!(decode(v4.freeze()).unwrap_err(), "undecodable request");
        let mut v9 = header(ApiKey::Metadata, 9, 1);
        v9.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact topics: u32::MAX - 1 entries
        v9.put_slice(&[1, 0, 0, 0]);
        assert_eq!(decode(v9.freeze()).unwrap_err(), "undecodable request");
        // A string longer than the frame, read into an owned buffer (ApiVersions v3's
        // client_software_name is a compact string).
        let mut name = header(ApiKey::ApiVersions, 3, 1);
        name.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0]);
        assert_eq!(decode(name.freeze()).unwrap_err(), "undecodable request");
    }
}
