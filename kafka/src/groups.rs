//! Kafka's group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch) on the broker's one group coordinator (`broker::groups`): each Kafka request
//! maps onto a protocol-neutral call, and each answer back onto the Kafka response. The
//! mappings are pure functions, so the fuzz target drives them with the coordinator directly.

use std::rc::Rc;

use broker::groups::{
    GroupError, HeartbeatRequest as Heartbeat, JoinRequest, Joined, LeaveRequest, MemberLeft, SyncRequest, Synced,
};
use broker::Shard;
use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    ApiKey, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse,
};

use crate::codec::{encode, Close};
use crate::{codes, group_code, offsets, str_bytes};

/// A decoded group request.
#[derive(Debug)]
pub enum GroupCall {
    Join(JoinGroupRequest),
    Sync(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveGroupRequest, i16),
    Commit(OffsetCommitRequest, i16),
    Fetch(OffsetFetchRequest, i16),
}

#[derive(Debug)]
pub enum GroupReply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    Leave(LeaveGroupResponse),
    Commit(OffsetCommitResponse),
    Fetch(OffsetFetchResponse),
}

impl GroupCall {
    /// The reply that says the coordinator could not be reached.
    pub fn unavailable(&self) -> GroupReply {
        let code = codes::COORDINATOR_NOT_AVAILABLE;
        match self {
            GroupCall::Join(r) => GroupReply::Join(join_error(code, r.member_id.as_str())),
            GroupCall::Sync(_) => GroupReply::Sync(SyncGroupResponse::default().with_error_code(code)),
            GroupCall::Heartbeat(_) => GroupReply::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
            GroupCall::Leave(_, _) => GroupReply::Leave(LeaveGroupResponse::default().with_error_code(code)),
            GroupCall::Commit(request, _) => GroupReply::Commit(offsets::commit_error(request, code)),
            GroupCall::Fetch(request, _) => GroupReply::Fetch(offsets::fetch_error(request, code)),
        }
    }
}

/// What a JoinGroup needs beyond its body: the request's version and client id, and the
/// connection's client host.
#[derive(Debug, Clone, Default)]
pub struct JoinContext {
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
}

/// JoinGroup v4+ asks a new member to join again with the member id it is given.
const JOIN_MEMBER_ID_REQUIRED_VERSION_MIN: i16 = 4;

/// Serves a group call on the broker's coordinator (with no client id or host known).
pub async fn serve(shard: &Rc<Shard>, call: GroupCall) -> GroupReply {
    serve_with(shard, call, &JoinContext::default()).await
}

/// Serves a group call on the broker's coordinator.
pub async fn serve_with(shard: &Rc<Shard>, call: GroupCall, context: &JoinContext) -> GroupReply {
    match call {
        GroupCall::Join(request) => {
            let member_id = request.member_id.to_string();
            // Kafka's member ids: `<client.id>-<uuid>`.
            let new_member_id = format!("{}-{}", context.client_id, crate::uuid_string(&crate::random_uuid()));
            let join = JoinRequest {
                client_id: context.client_id.clone(),
                client_host: context.client_host.clone(),
                new_member_id: Some(new_member_id.clone()),
                require_known_member_id: context.version >= JOIN_MEMBER_ID_REQUIRED_VERSION_MIN,
                ..join_request(request)
            };
            let result = shard.join_group(join).await;
            if result == Err(GroupError::MemberIdRequired) {
                // The member id to join again with goes back in the answer.
                return GroupReply::Join(join_error(codes::MEMBER_ID_REQUIRED, &new_member_id));
            }
            GroupReply::Join(join_response(result, &member_id))
        }
        GroupCall::Sync(request) => GroupReply::Sync(sync_response(shard.sync_group(sync_request(request)).await)),
        GroupCall::Heartbeat(request) => {
            GroupReply::Heartbeat(heartbeat_response(shard.heartbeat(heartbeat_request(&request)).await))
        }
        GroupCall::Leave(request, version) => {
            GroupReply::Leave(leave_response(shard.leave_group(leave_request(&request)).await, version))
        }
        GroupCall::Commit(request, _version) => GroupReply::Commit(offsets::commit(shard, request).await),
        GroupCall::Fetch(request, version) => GroupReply::Fetch(offsets::fetch(shard, request, version).await),
    }
}

pub fn join_request(request: JoinGroupRequest) -> JoinRequest {
    JoinRequest {
        group: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        protocol_type: request.protocol_type.to_string(),
        // The coordinator copies the metadata out of the frame.
        protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        session_timeout_ms: u32::try_from(request.session_timeout_ms).unwrap_or(0),
        rebalance_timeout_ms: u32::try_from(request.rebalance_timeout_ms).ok().filter(|&ms| ms > 0),
        ..JoinRequest::default()
    }
}

fn join_error(error: i16, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(-1)
        .with_member_id(str_bytes(member_id))
        .with_protocol_name(Some(str_bytes("")))
}

/// The Kafka answer to a join; `member_id` is the one the request carried (echoed on errors).
pub fn join_response(result: Result<Joined, GroupError>, member_id: &str) -> JoinGroupResponse {
    match result {
        Err(e) => join_error(group_code(e), member_id),
        Ok(joined) => {
            let members: Vec<JoinGroupResponseMember> = joined
                .members
                .into_iter()
                .map(|(id, metadata)| {
                    JoinGroupResponseMember::default().with_member_id(str_bytes(id)).with_metadata(metadata)
                })
                .collect();
            JoinGroupResponse::default()
                .with_error_code(codes::NONE)
                .with_generation_id(joined.generation)
                .with_protocol_type(joined.protocol_type.map(str_bytes))
                .with_protocol_name(Some(str_bytes(joined.protocol_name)))
                .with_leader(str_bytes(joined.leader))
                .with_member_id(str_bytes(joined.member_id))
                .with_members(members)
        }
    }
}

pub fn sync_request(request: SyncGroupRequest) -> SyncRequest {
    SyncRequest {
        group: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        assignments: request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    }
}

pub fn sync_response(result: Result<Synced, GroupError>) -> SyncGroupResponse {
    match result {
        Err(e) => SyncGroupResponse::default().with_error_code(group_code(e)),
        Ok(synced) => SyncGroupResponse::default()
            .with_error_code(codes::NONE)
            .with_protocol_type(synced.protocol_type.map(str_bytes))
            .with_protocol_name(synced.protocol_name.map(str_bytes))
            .with_assignment(synced.assignment),
    }
}

pub fn heartbeat_request(request: &HeartbeatRequest) -> Heartbeat {
    Heartbeat {
        group: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
    }
}

pub fn heartbeat_response(result: Result<(), GroupError>) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(result.map_or_else(group_code, |()| codes::NONE))
}

/// v0–2 name one member; v3+ a list.
pub fn leave_request(request: &LeaveGroupRequest) -> LeaveRequest {
    let members = if request.members.is_empty() {
        vec![request.member_id.to_string()]
    } else {
        request.members.iter().map(|m| m.member_id.to_string()).collect()
    };
    LeaveRequest { group: request.group_id.0.to_string(), members }
}

pub fn leave_response(result: Result<Vec<MemberLeft>, GroupError>, version: i16) -> LeaveGroupResponse {
    let left = match result {
        Ok(left) => left,
        Err(e) => return LeaveGroupResponse::default().with_error_code(group_code(e)),
    };
    if version < 3 {
        // v0–2 have no member list: one member, its error at the top.
        let code = left.first().map_or(codes::NONE, |m| m.result.map_or_else(group_code, |()| codes::NONE));
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members = left
        .into_iter()
        .map(|m| {
            MemberResponse::default()
                .with_member_id(str_bytes(m.member_id))
                .with_error_code(m.result.map_or_else(group_code, |()| codes::NONE))
        })
        .collect();
    LeaveGroupResponse::default().with_error_code(codes::NONE).with_members(members)
}

/// Encodes a group reply (as `connection::encode`).
pub fn encode_reply(api_key: ApiKey, version: i16, correlation_id: i32, reply: &GroupReply) -> Result<Bytes, Close> {
    match reply {
        GroupReply::Join(r) => encode(api_key, version, correlation_id, r),
        GroupReply::Sync(r) => encode(api_key, version, correlation_id, r),
        GroupReply::Heartbeat(r) => encode(api_key, version, correlation_id, r),
        GroupReply::Leave(r) => encode(api_key, version, correlation_id, r),
        GroupReply::Commit(r) => encode(api_key, version, correlation_id, r),
        GroupReply::Fetch(r) => encode(api_key, version, correlation_id, r),
    }
}
