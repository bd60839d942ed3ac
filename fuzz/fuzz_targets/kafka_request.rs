//! The Kafka listener's request path on arbitrary bytes: the input is read as a connection's
//! byte stream, frame after frame (a big-endian u32 size checked against `FRAME_BYTES_MAX`
//! before anything is allocated: the rule `connection::read_frame_budgeted` applies, here
//! through `protocol::frame::read_frame`), and every frame — and the whole input as one frame —
//! goes through `kafka::decode`, the function a Kafka connection runs on each frame:
//! request header (v0–v2, flexible versions included), API key and version dispatch, and the
//! body of every API the listener serves.
//!
//! What decodes is then answered by the broker code that needs no shard, exactly as a
//! connection answers it, and the response must encode at the version the request was
//! accepted in (a response that does not encode closes the client's connection): ApiVersions,
//! FindCoordinator (`kafka::answer_without_shard`), the coordinator-unavailable reply of every
//! group request (it echoes OffsetCommit's topics), and the group coordinator's Join / Sync /
//! Heartbeat / Leave answers mapped to Kafka responses (`broker::groups::GroupCoordinator`,
//! fresh per input, through `kafka::groups`'s mappings, so a JoinGroup, SyncGroup, Heartbeat
//! sequence in one input runs a whole rebalance). Metadata, Produce, Fetch, ListOffsets,
//! InitProducerId, the admin APIs and stored offsets need a shard and are only decoded here.
#![no_main]

use broker::groups::{GroupCoordinator, Waiting};
use broker::NodeId;
use bytes::Bytes;
use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use kafka::groups::{
    encode_reply, heartbeat_request, heartbeat_response, join_request, join_response, leave_request, leave_response,
    sync_request, sync_response, GroupCall, GroupReply,
};
use kafka::{answer_without_shard, decode, Body, Close, Decoded, KafkaAdvertise, KafkaOptions, KafkaSettings, WithoutShard};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use protocol::frame::{read_frame, FRAME_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    let settings = settings();
    let groups = GroupCoordinator::default();
    let mut stream = Cursor::new(data);
    // Each frame consumes at least its 4-byte prefix, so this ends within the input.
    while let Ok(Some(frame)) = block_on(read_frame(&mut stream, FRAME_BYTES_MAX)) {
        serve(&settings, &groups, frame);
    }
    serve(&settings, &groups, Bytes::copy_from_slice(data));
});

/// What a two-shard node's Kafka listener advertises.
fn settings() -> KafkaSettings {
    let listen = "127.0.0.1:9092".parse().expect("a socket address");
    let options = KafkaOptions {
        advertise: KafkaAdvertise::Shards,
        advertised_host: None,
        auto_create_topics: true,
        default_partitions: 1,
        cluster: false,
    };
    let shards = ["127.0.0.1:9093".parse().expect("a socket address"), "127.0.0.1:9094".parse().expect("an address")];
    KafkaSettings::new(&options, NodeId::default(), listen, &shards)
}

fn serve(settings: &KafkaSettings, groups: &GroupCoordinator, frame: Bytes) {
    let Ok(decoded) = decode(frame) else {
        return;
    };
    let (api_key, version, correlation_id) = (decoded.api_key, decoded.version, decoded.correlation_id);
    let Decoded { request: Body::Group(call), .. } = decoded else {
        if let WithoutShard::Answered(answer) = answer_without_shard(settings, decoded) {
            check(api_key, version, correlation_id, answer.map(Some));
        }
        return;
    };
    let unavailable = call.unavailable();
    check(api_key, version, correlation_id, encode_reply(api_key, version, correlation_id, &unavailable).map(Some));
    let reply = match call {
        GroupCall::Join(request) => {
            let member = request.member_id.to_string();
            match groups.join(join_request(request)) {
                Waiting::Now(result) => Some(GroupReply::Join(join_response(result, &member))),
                // Answered at once when this member completes the barrier (a lone member does).
                Waiting::Later(mut rx) => {
                    rx.try_recv().ok().flatten().map(|result| GroupReply::Join(join_response(result, &member)))
                }
            }
        }
        GroupCall::Sync(request) => match groups.sync(sync_request(request)) {
            Waiting::Now(result) => Some(GroupReply::Sync(sync_response(result))),
            Waiting::Later(mut rx) => rx.try_recv().ok().flatten().map(|result| GroupReply::Sync(sync_response(result))),
        },
        GroupCall::Heartbeat(request) => {
            Some(GroupReply::Heartbeat(heartbeat_response(groups.heartbeat(&heartbeat_request(&request)))))
        }
        GroupCall::Leave(request, version) => {
            Some(GroupReply::Leave(leave_response(groups.leave(leave_request(&request)), version)))
        }
        GroupCall::Commit(request, _) => {
            let _ = groups.check_commit(
                request.group_id.0.as_str(),
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
            );
            None
        }
        GroupCall::Fetch(_, _) => None,
    };
    if let Some(reply) = reply {
        check(api_key, version, correlation_id, encode_reply(api_key, version, correlation_id, &reply).map(Some));
    }
}

/// A request that decoded must get a response that encodes, in a frame of the right size,
/// with its correlation id (ApiVersions' UNSUPPORTED_VERSION answer is v0).
fn check(api_key: ApiKey, version: i16, correlation_id: i32, answer: Result<Option<Bytes>, Close>) {
    let bytes = match answer {
        Ok(Some(bytes)) => bytes,
        Ok(None) => panic!("{api_key:?} v{version}: no response"),
        Err(reason) => panic!("{api_key:?} v{version}: {reason}"),
    };
    assert!(bytes.len() >= 8, "{api_key:?} v{version}: response frame of {} bytes", bytes.len());
    let size_bytes = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(size_bytes, bytes.len() - 4);
    let header_version = if api_key == ApiKey::ApiVersions { 0 } else { api_key.response_header_version(version) };
    let header = ResponseHeader::decode(&mut bytes.slice(4..), header_version).expect("the response header decodes");
    assert_eq!(header.correlation_id, correlation_id);
}
