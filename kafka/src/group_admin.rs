//! ListGroups (v0–5), DescribeGroups (v0–5), DeleteGroups (v0–2), OffsetDelete (v0): the
//! broker's one group coordinator and offset store seen from Kafka's admin clients. A group
//! whose members all left still exists while it has committed offsets (state Empty), as in
//! Kafka, so `kafka-consumer-groups --list` and lag exporters see it.

use std::rc::Rc;

use broker::groups::{DeleteGroupError, OffsetDeleteError};
use broker::{Shard, TopicPartition};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};

use crate::{codes, str_bytes, KafkaSettings};

/// Kafka's authorized-operations bitfield for a group when the client asks (no ACLs here:
/// everything is allowed): READ, DELETE, DESCRIBE (bits 3, 6, 8).
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// What "no authorized operations asked for" is on the wire.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn delete_code(e: DeleteGroupError) -> i16 {
    match e {
        DeleteGroupError::NotEmpty => codes::NON_EMPTY_GROUP,
        DeleteGroupError::NotFound => codes::GROUP_ID_NOT_FOUND,
        DeleteGroupError::InvalidGroupId => codes::INVALID_GROUP_ID,
        DeleteGroupError::CoordinatorUnavailable(_) => codes::COORDINATOR_NOT_AVAILABLE,
        _ => codes::UNKNOWN_SERVER_ERROR,
    }
}

pub async fn list_groups(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    // Kafka's brokers each list the groups they coordinate, and clients ask every broker and
    // merge: only the coordinator shard's broker lists groups, or each would appear once per
    // shard. With one advertised broker (`single`), whichever shard answers lists them all.
    if !settings.is_coordinator_broker(shard.id()) {
        return ListGroupsResponse::default().with_error_code(codes::NONE);
    }
    let Ok(listed) = shard.list_groups().await else {
        return ListGroupsResponse::default().with_error_code(codes::COORDINATOR_NOT_AVAILABLE);
    };
    // v4+ states filter, v5+ types filter; empty = all. Kafka compares states ignoring case.
    let state_wanted = |state: &str| {
        request.states_filter.is_empty() || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
    };
    // "classic" (JoinGroup/SyncGroup) or "consumer" (KIP-848).
    let type_wanted = |group_type: &str| {
        request.types_filter.is_empty() || request.types_filter.iter().any(|t| t.eq_ignore_ascii_case(group_type))
    };
    let groups = listed
        .into_iter()
        .filter(|g| type_wanted(g.group_type) && state_wanted(g.state))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(str_bytes(g.state))
                .with_group_type(str_bytes(g.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_error_code(codes::NONE).with_groups(groups)
}

pub async fn describe_groups(shard: &Rc<Shard>, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let operations =
        if request.include_authorized_operations { GROUP_AUTHORIZED_OPERATIONS } else { AUTHORIZED_OPERATIONS_OMITTED };
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let described =
            DescribedGroup::default().with_group_id(group_id.clone()).with_authorized_operations(operations);
        let name = group_id.0.to_string();
        if name.is_empty() {
            groups.push(described.with_error_code(codes::INVALID_GROUP_ID).with_group_state(str_bytes("Dead")));
            continue;
        }
        let Ok(d) = shard.describe_group(name).await else {
            groups.push(described.with_error_code(codes::COORDINATOR_NOT_AVAILABLE));
            continue;
        };
        let members = d
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(m.member_id))
                    .with_group_instance_id(m.group_instance_id.map(str_bytes))
                    .with_client_id(str_bytes(m.client_id))
                    .with_client_host(str_bytes(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        groups.push(
            described
                .with_error_code(codes::NONE)
                .with_group_state(str_bytes(d.state))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(d.protocol))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(shard: &Rc<Shard>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let code = match shard.delete_group(group_id.0.to_string()).await {
            Ok(()) => codes::NONE,
            Err(e) => delete_code(e),
        };
        results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(shard: &Rc<Shard>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut partitions = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            if let Ok(index) = u32::try_from(p.partition_index) {
                partitions.push(TopicPartition::new(t.name.0.as_str(), index));
            }
        }
    }
    let results = match shard.delete_offsets(request.group_id.0.to_string(), partitions).await {
        Ok(results) => results,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(delete_code(e)),
    };
    let mut results = results.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = if p.partition_index < 0 {
                        codes::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        match results.next() {
                            Some(Ok(())) => codes::NONE,
                            Some(Err(OffsetDeleteError::SubscribedToTopic)) => codes::GROUP_SUBSCRIBED_TO_TOPIC,
                            Some(Err(_)) | None => codes::UNKNOWN_TOPIC_OR_PARTITION,
                        }
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_error_code(codes::NONE).with_topics(topics)
}
