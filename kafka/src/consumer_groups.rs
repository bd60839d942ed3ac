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
    let operations = if request.include_authorized_operations {
        GROUP_AUTHORIZED_OPERATIONS
    } else {
        crate::group_admin::AUTHORIZED_OPERATIONS_OMITTED
    };
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use engine::catalog::{PartitionInfo, TopicConfig, TopicInfo};
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
    use kafka_protocol::messages::GroupId;

    use super::*;

    fn table() -> TopicTable {
        let info = TopicInfo {
            name: "users".into(),
            id: 7,
            config: TopicConfig::default(),
            partitions: (0..3).map(|p| PartitionInfo { partition: p, shard: 0, leader_epoch: 0 }).collect(),
        };
        let mut table = TopicTable { shard_count: 1, incarnation: 42, ..TopicTable::default() };
        table.names_by_id.insert(7, "users".into());
        table.topics = HashMap::from([("users".to_owned(), info)]);
        table
    }

    fn users_id(table: &TopicTable) -> uuid::Uuid {
        topic_ids::uuid_of(table, &table.topics["users"])
    }

    fn request(member: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_member_id(str_bytes(member))
            .with_member_epoch(epoch)
    }

    #[test]
    fn owned_partitions_are_named_by_topic_id_and_unknown_ids_are_dropped() {
        let table = table();
        let owned = vec![
            OwnedTopic::default().with_topic_id(users_id(&table)).with_partitions(vec![0, 2, -1]),
            OwnedTopic::default().with_topic_id(uuid::Uuid::from_u128(5)).with_partitions(vec![0]),
        ];
        let mapped =
            heartbeat_request(&table, request("m", 3).with_topic_partitions(Some(owned)), &ClientContext::default())
                .unwrap();
        assert_eq!(mapped.owned, Some(vec![TopicPartition::new("users", 0), TopicPartition::new("users", 2)]));
        assert_eq!(mapped.subscribed_topics, None, "null: unchanged");

        let reply = ConsumerHeartbeatReply {
            member_id: "m".into(),
            member_epoch: 4,
            heartbeat_interval_ms: 5_000,
            assignment: Some(vec![TopicPartition::new("users", 1), TopicPartition::new("gone", 0)]),
        };
        let response = heartbeat_response(&table, Ok(reply));
        let assignment = response.assignment.unwrap();
        assert_eq!(assignment.topic_partitions.len(), 1, "a topic gone from the table is left out");
        assert_eq!(assignment.topic_partitions[0].topic_id, users_id(&table));
        assert_eq!(assignment.topic_partitions[0].partitions, vec![1]);
        assert_eq!((response.member_epoch, response.heartbeat_interval_ms), (4, 5_000));
    }

    #[test]
    fn v0_joiners_get_a_member_id_v1_ones_must_bring_theirs_and_regexes_are_refused() {
        let table = table();
        let v0 = ClientContext { version: 0, ..ClientContext::default() };
        let v1 = ClientContext { version: 1, ..ClientContext::default() };
        let made = heartbeat_request(&table, request("", 0), &v0).unwrap();
        assert_eq!(made.member_id.len(), 36, "a UUID: {}", made.member_id);
        assert_eq!(heartbeat_request(&table, request("", 0), &v1).unwrap().member_id, "", "the coordinator refuses it");
        let regex = request("m", 0).with_subscribed_topic_regex(Some(str_bytes("us.*")));
        assert!(matches!(heartbeat_request(&table, regex, &v1), Err(GroupError::InvalidRequest(_))));
        let refused = heartbeat_response(&table, Err(GroupError::UnsupportedAssignor));
        assert_eq!((refused.error_code, refused.member_epoch), (codes::UNSUPPORTED_ASSIGNOR, -1));
        assert!(refused.error_message.is_some());
    }
}
