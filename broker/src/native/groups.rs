//! Native consumer groups, on the one group coordinator: a native JoinGroup is a join to a
//! broker-assigned group (protocol type `NATIVE_PROTOCOL_TYPE`, the assignor as protocol,
//! the subscribed topics as metadata); the coordinator computes every member's share on the
//! broker's side and answers with the member's partitions at once, as the native protocol
//! promises (`groups/coordinator.rs`, `join_assigned`).

use std::rc::Rc;

use protocol::messages::{Assignor as WireAssignor, ErrorCode, Response};

use crate::groups::assignor::{decode_assignment, encode_topics, Assignor, NATIVE_PROTOCOL_TYPE};
use crate::groups::{GroupError, HeartbeatRequest, JoinRequest, LeaveRequest};
use crate::limits::{SESSION_TIMEOUT_MS_MAX, SESSION_TIMEOUT_MS_MIN};
use crate::shard::Shard;

pub async fn join(
    shard: &Rc<Shard>,
    group: String,
    member_id: String,
    topics: Vec<String>,
    session_timeout_ms: u32,
    assignor: WireAssignor,
) -> Response {
    let assignor = match assignor {
        WireAssignor::Range => Assignor::Range,
        WireAssignor::RoundRobin => Assignor::RoundRobin,
    };
    let request = JoinRequest {
        group,
        member_id,
        group_instance_id: None,
        protocol_type: NATIVE_PROTOCOL_TYPE.to_owned(),
        protocols: vec![(assignor.name().to_owned(), encode_topics(&topics))],
        // The native protocol never refused a session timeout: it clamps it.
        session_timeout_ms: session_timeout_ms.clamp(SESSION_TIMEOUT_MS_MIN, SESSION_TIMEOUT_MS_MAX),
        rebalance_timeout_ms: None,
        ..JoinRequest::default()
    };
    match shard.join_group_assigned(request).await {
        Ok(joined) => Response::JoinGroup {
            error: ErrorCode::None,
            generation_id: joined.generation,
            member_id: joined.member_id,
            assignment: decode_assignment(&joined.assignment)
                .into_iter()
                .map(|tp| protocol::messages::TopicPartition { topic: tp.topic, partition: tp.partition })
                .collect(),
        },
        Err(e) => Response::JoinGroup {
            error: group_code(e),
            generation_id: -1,
            member_id: String::new(),
            assignment: Vec::new(),
        },
    }
}

/// Native heartbeats report any change of generation as a rebalance (the member rejoins).
pub async fn heartbeat(shard: &Rc<Shard>, group: String, generation: i32, member_id: String) -> Response {
    match shard.heartbeat(HeartbeatRequest { group, member_id, generation }).await {
        Ok(()) => Response::ok(),
        Err(GroupError::IllegalGeneration) => {
            Response::status(ErrorCode::RebalanceInProgress, "the group's generation changed; join again")
        }
        Err(e) => Response::status(group_code(e), e.to_string()),
    }
}

pub async fn leave(shard: &Rc<Shard>, group: String, member_id: String) -> Response {
    match shard.leave_group(LeaveRequest { group, members: vec![member_id] }).await {
        Ok(left) => match left.into_iter().next().map(|m| m.result) {
            Some(Err(e)) => Response::status(group_code(e), e.to_string()),
            _ => Response::ok(),
        },
        Err(e) => Response::status(group_code(e), e.to_string()),
    }
}

/// The native error code for a group error.
pub fn group_code(e: GroupError) -> ErrorCode {
    match e {
        GroupError::UnknownMemberId => ErrorCode::UnknownMemberId,
        GroupError::IllegalGeneration => ErrorCode::IllegalGeneration,
        GroupError::RebalanceInProgress => ErrorCode::RebalanceInProgress,
        GroupError::InvalidGroupId | GroupError::TooManyGroups | GroupError::GroupFull => ErrorCode::InvalidGroupId,
        GroupError::InconsistentGroupProtocol | GroupError::InvalidSessionTimeout | GroupError::MetadataTooLarge => {
            ErrorCode::MalformedRequest
        }
        GroupError::CoordinatorUnavailable(_) => ErrorCode::ShuttingDown,
        // Kafka-only: native joins never ask for a known member id or send an instance id.
        GroupError::MemberIdRequired | GroupError::FencedInstanceId => ErrorCode::UnknownMemberId,
        GroupError::NotCoordinator => ErrorCode::NotCoordinator,
        // A native commit to a KIP-848 group: its epoch is never the member's.
        GroupError::FencedMemberEpoch | GroupError::StaleMemberEpoch => ErrorCode::IllegalGeneration,
        GroupError::UnsupportedAssignor
        | GroupError::InvalidRequest(_)
        | GroupError::GroupIdNotFound
        | GroupError::UnreleasedInstanceId => ErrorCode::MalformedRequest,
    }
}
