//! The Kafka listener's request path on arbitrary bytes: the input is read as a connection's
//! byte stream, frame after frame (a big-endian u32 size checked against `FRAME_BYTES_MAX`
//! before anything is allocated: the rule `connection::read_frame_budgeted` applies, here
//! through `protocol::frame::read_frame`), and every frame — and the whole input as one frame —
//! goes through `server::kafka::decode`, the function a Kafka connection runs on each frame:
//! request header (v0–v2, flexible versions included), API key and version dispatch, and the
//! body of every API the listener serves.
//!
//! What decodes is then answered by the broker code that needs no shard, exactly as a
//! connection answers it, and the response must encode at the version the request was
//! accepted in (a response that does not encode closes the client's connection): ApiVersions,
//! FindCoordinator and InitProducerId (`kafka::answer_without_shard`), the coordinator-
//! unavailable reply of every group request (it echoes OffsetCommit's topics), and the group
//! state machine's Join / Sync / Heartbeat / Leave replies (`KafkaGroups`, fresh per input, so
//! a JoinGroup, SyncGroup, Heartbeat sequence in one input runs a whole rebalance).
//! Metadata, Produce, Fetch, ListOffsets, the admin APIs and stored offsets need a shard and
//! are only decoded here.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;
use server::config::{KafkaAdvertise, KafkaConfig};
use server::kafka::{
    answer_without_shard, decode, encode_group_reply, Body, Close, Decoded, GroupCall, GroupReply, KafkaSettings,
    KafkaShard, Waiting, WithoutShard,
};
use server::protocol::frame::{read_frame, FRAME_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    let kafka = broker();
    let mut stream = Cursor::new(data);
    // Each frame consumes at least its 4-byte prefix, so this ends within the input.
    while let Ok(Some(frame)) = block_on(read_frame(&mut stream, FRAME_BYTES_MAX)) {
        serve(&kafka, frame);
    }
    serve(&kafka, Bytes::copy_from_slice(data));
});

/// One shard's Kafka state, with no producers and no groups yet.
fn broker() -> KafkaShard {
    let listen = "127.0.0.1:9092".parse().expect("a socket address");
    let config = KafkaConfig {
        listen,
        shard_base_port: None,
        advertise: KafkaAdvertise::Shards,
        advertised_host: None,
        auto_create_topics: true,
        default_partitions: 1,
    };
    let shards = ["127.0.0.1:9093".parse().expect("a socket address"), "127.0.0.1:9094".parse().expect("an address")];
    KafkaShard::new(Arc::new(KafkaSettings::new(&config, listen, &shards)), 0)
}

fn serve(kafka: &KafkaShard, frame: Bytes) {
    let Ok(decoded) = decode(frame) else {
        return;
    };
    let (api_key, version, correlation_id) = (decoded.api_key, decoded.version, decoded.correlation_id);
    let Decoded { request: Body::Group(call), .. } = decoded else {
        if let WithoutShard::Answered(answer) = answer_without_shard(kafka, decoded) {
            check(api_key, version, correlation_id, answer);
        }
        return;
    };
    let unavailable = call.unavailable();
    check(
        api_key,
        version,
        correlation_id,
        encode_group_reply(api_key, version, correlation_id, &unavailable).map(Some),
    );
    let groups = &kafka.groups;
    let reply = match call {
        GroupCall::Join(request) => match groups.join(request) {
            Waiting::Now(response) => Some(GroupReply::Join(response)),
            // Answered at once when this member completes the barrier (a lone member does).
            Waiting::Later(mut rx) => rx.try_recv().ok().flatten().map(GroupReply::Join),
        },
        GroupCall::Sync(request) => match groups.sync(request) {
            Waiting::Now(response) => Some(GroupReply::Sync(response)),
            Waiting::Later(mut rx) => rx.try_recv().ok().flatten().map(GroupReply::Sync),
        },
        GroupCall::Heartbeat(request) => Some(GroupReply::Heartbeat(groups.heartbeat(&request))),
        GroupCall::Leave(request, version) => Some(GroupReply::Leave(groups.leave(request, version))),
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
        check(api_key, version, correlation_id, encode_group_reply(api_key, version, correlation_id, &reply).map(Some));
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
