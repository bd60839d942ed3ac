//! KIP-848's consumer group APIs: ConsumerGroupHeartbeat (v0–1) and ConsumerGroupDescribe
//! (v0–1), on the broker's group coordinator (`broker::groups::consumer_group`). The wire
//! names topics by id; the coordinator by name: ids are mapped here, with the topic table of
//! the moment (an id the table does not know is a partition the member cannot hold anyway).

use std::rc::Rc;

use broker::groups::{ConsumerHeartbeat, ConsumerHeartbeatReply, GroupError};
use broker::topics::TopicTable;
use broker::{Shard, TopicPartition};
use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as heartbeat};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};

use crate::group_admin::GROUP_AUTHORIZED_OPERATIONS;
use crate::{codes, group_code, str_bytes, topic_ids};

/// ConsumerGroupHeartbeat v1 (KIP-1082): the client makes its member id; v0 lets the
/// coordinator make one for a joining member that sends none.
const CLIENT_MEMBER_ID_VERSION_MIN: i16 = 1;

/// ConsumerGroupDescribe's member type (v1): the member speaks the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// The connection's view of the client, for describing members.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
}

fn heartbeat_error(e: GroupError) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(group_code(e))
        .with_error_message(Some(str_bytes(e.to_string())))
        .with_member_epoch(-1)
}

/// The request in the coordinator's terms, or why it is refused before reaching it.
pub fn heartbeat_request(
    table: &TopicTable,
    request: ConsumerGroupHeartbeatRequest,
    context: &ClientContext,
) -> Result<ConsumerHeartbeat, GroupError> {
    if request.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(GroupError::InvalidRequest("SubscribedTopicRegex is not supported; subscribe by topic name"));
    }
    let mut member_id = request.member_id.to_string();
    if member_id.is_empty() && request.member_epoch == 0 && context.version < CLIENT_MEMBER_ID_VERSION_MIN {
        member_id = crate::uuid_string(&crate::random_uuid());
    }
    let owned = request.topic_partitions.map(|topics| {
        topics
            .iter()
            .filter_map(|t| Some((topic_ids::name_of(table, &t.topic_id)?, &t.partitions)))
            .flat_map(|(name, partitions)| {
                partitions.iter().filter_map(move |&p| Some(TopicPartition::new(name, u32::try_from(p).ok()?)))
            })
            .collect()
    });
    Ok(ConsumerHeartbeat {
        group: request.group_id.0.to_string(),
        member_id,
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|i| i.to_string()),
        rack_id: request.rack_id.map(|r| r.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topics: request.subscribed_topic_names.map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        server_assignor: request.server_assignor.map(|a| a.to_string()),
        owned,
        client_id: context.client_id.clone(),
        client_host: context.client_host.clone(),
    })
}

/// Partitions grouped by topic, named by id (partitions of topics gone from `table` left out).
fn by_topic_id(table: &TopicTable, partitions: &[TopicPartition]) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    let mut out: Vec<(uuid::Uuid, String, Vec<i32>)> = Vec::new();
    for tp in partitions {
        let Some(info) = table.topics.get(&tp.topic) else {
            continue;
        };
        let Ok(p) = i32::try_from(tp.partition) else {
            continue;
        };
        match out.iter_mut().find(|(_, name, _)| *name == tp.topic) {
            Some((_, _, list)) => list.push(p),
            None => out.push((topic_ids::uuid_of(table, info), tp.topic.clone(), vec![p])),
        }
    }
    out
}

pub fn heartbeat_response(
    table: &TopicTable,
    result: Result<ConsumerHeartbeatReply, GroupError>,
) -> ConsumerGroupHeartbeatResponse {
    let reply = match result {
        Ok(reply) => reply,
        Err(e) => return heartbeat_error(e),
    };
    let assignment = reply.assignment.map(|partitions| {
        let topics = by_topic_id(table, &partitions)
            .into_iter()
            .map(|(id, _, list)| heartbeat::TopicPartitions::default().with_topic_id(id).with_partitions(list))
            .collect();
        heartbeat::Assignment::default().with_topic_partitions(topics)
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(codes::NONE)
        .with_member_id(Some(str_bytes(reply.member_id)))
        .with_member_epoch(reply.member_epoch)
        .with_heartbeat_interval_ms(i32::try_from(reply.heartbeat_interval_ms).unwrap_or(i32::MAX))
        .with_assignment(assignment)
}

pub async fn heartbeat(
    shard: &Rc<Shard>,
    request: ConsumerGroupHeartbeatRequest,
    context: &ClientContext,
) -> ConsumerGroupHeartbeatResponse {
    let table = shard.topics();
    let request = match heartbeat_request(&table, request, context) {
        Ok(request) => request,
        Err(e) => return heartbeat_error(e),
    };
    let result = shard.consumer_group_heartbeat(request).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, "consumer group heartbeat refused");
    }
    // The table may have changed while the coordinator answered: map with the newest.
    heartbeat_response(&shard.topics(), result)
}

fn described_assignment(table: &TopicTable, partitions: &[TopicPartition]) -> describe::Assignment {
    let topics = by_topic_id(table, partitions)
        .into_iter()
        .map(|(id, name, list)| {
            describe::TopicPartitions::default()
                .with_topic_id(id)
                .with_topic_name(TopicName(str_bytes(name)))
                .with_partitions(list)
        })
        .collect();
    describe::Assignment::default().with_topic_partitions(topics)
}

pub async fn describe(shard: &Rc<Shard>, request: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let operations = if request.include_authorized_operations { GROUP_AUTHORIZED_OPERATIONS } else { i32::MIN };
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let described =
            DescribedGroup::default().with_group_id(group_id.clone()).with_authorized_operations(operations);
        let name = group_id.0.to_string();
        if name.is_empty() {
            groups.push(described.with_error_code(codes::INVALID_GROUP_ID).with_group_state(str_bytes("Dead")));
            continue;
        }
        if !shard.coordinates_groups() {
            groups.push(described.with_error_code(codes::NOT_COORDINATOR));
            continue;
        }
        let group = match shard.describe_consumer_group(name.clone()).await {
            Ok(Some(group)) => group,
            // Kafka: an unknown group, or a classic one, is not found as a consumer group.
            Ok(None) => {
                let message = format!("group {name} is not a consumer group");
                groups.push(
                    described
                        .with_error_code(codes::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(str_bytes(message)))
                        .with_group_state(str_bytes("Dead")),
                );
                continue;
            }
            Err(_) => {
                groups.push(described.with_error_code(codes::COORDINATOR_NOT_AVAILABLE));
                continue;
            }
        };
        let table = shard.topics();
        let members = group
            .members
            .into_iter()
            .map(|m| {
                describe::Member::default()
                    .with_member_id(str_bytes(m.member_id))
                    .with_instance_id(m.instance_id.map(str_bytes))
                    .with_rack_id(m.rack_id.map(str_bytes))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(str_bytes(m.client_id))
                    .with_client_host(str_bytes(m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed_topics.into_iter().map(|t| TopicName(str_bytes(t))).collect(),
                    )
                    .with_assignment(described_assignment(&table, &m.assignment))
                    .with_target_assignment(described_assignment(&table, &m.target_assignment))
                    .with_member_type(MEMBER_TYPE_CONSUMER)
            })
            .collect();
        groups.push(
            described
                .with_error_code(codes::NONE)
                .with_group_state(str_bytes(group.state))
                .with_group_epoch(group.group_epoch)
                .with_assignment_epoch(group.assignment_epoch)
                .with_assignor_name(str_bytes(group.assignor))
                .with_members(members),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
