//! The native protocol's operations requests (issue #13), for `shardlog group list /
//! describe / delete` and `shardlog topic config get / set`: the same broker calls as Kafka's
//! ListGroups, DescribeGroups, DeleteGroups, DescribeConfigs and IncrementalAlterConfigs.
//! A member's assignment is decoded here for the CLI: a Kafka consumer's from Kafka's
//! consumer protocol, a native one's from the broker's own encoding.

use std::rc::Rc;

use protocol::messages::{
    DescribedGroup, ErrorCode, GroupListing, GroupMember, ReassignmentEntry, Response, TopicConfigEntry,
    TopicPartition as WireTp,
};

use super::{admin_status, call_code};
use crate::admin;
use crate::groups::assignor::{decode_assignment, NATIVE_PROTOCOL_TYPE};
use crate::groups::{assignment_partitions, DeleteGroupError};
use crate::partition::TopicPartition;
use crate::reassign;
use crate::shard::Shard;
use crate::topic_configs::{set_topic_config, topic_entries, SOURCE_DEFAULT};

pub async fn list_groups(shard: &Rc<Shard>) -> Response {
    match shard.list_groups().await {
        Ok(listed) => Response::ListGroups {
            groups: listed
                .into_iter()
                .map(|g| GroupListing { group: g.group, protocol_type: g.protocol_type, state: g.state.to_owned() })
                .collect(),
        },
        Err(e) => Response::status(call_code(e), e.to_string()),
    }
}

pub async fn describe_group(shard: &Rc<Shard>, group: String) -> Response {
    let d = match shard.describe_group(group).await {
        Ok(d) => d,
        Err(e) => return Response::status(call_code(e), e.to_string()),
    };
    let native = d.protocol_type == NATIVE_PROTOCOL_TYPE;
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let assignment = if native {
                decode_assignment(&m.assignment)
                    .into_iter()
                    .map(|tp| WireTp { topic: tp.topic, partition: tp.partition })
                    .collect()
            } else {
                assignment_partitions(&m.assignment)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|(topic, partitions)| {
                        partitions.into_iter().filter_map(move |p| {
                            u32::try_from(p).ok().map(|partition| WireTp { topic: topic.clone(), partition })
                        })
                    })
                    .collect()
            };
            GroupMember {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id.unwrap_or_default(),
                client_id: m.client_id,
                client_host: m.client_host,
                assignment,
            }
        })
        .collect();
    Response::DescribeGroup(Box::new(DescribedGroup {
        error: ErrorCode::None,
        group: d.group,
        state: d.state.to_owned(),
        protocol_type: d.protocol_type,
        protocol: d.protocol,
        generation_id: d.generation,
        members,
    }))
}

pub async fn delete_group(shard: &Rc<Shard>, group: String) -> Response {
    match shard.delete_group(group.clone()).await {
        Ok(()) => Response::ok(),
        Err(e) => {
            let code = match e {
                DeleteGroupError::NotEmpty => ErrorCode::GroupNotEmpty,
                DeleteGroupError::NotFound => ErrorCode::GroupNotFound,
                DeleteGroupError::InvalidGroupId => ErrorCode::InvalidGroupId,
                DeleteGroupError::CoordinatorUnavailable(call) => call_code(call),
                _ => ErrorCode::StorageError,
            };
            Response::status(code, format!("{group}: {e}"))
        }
    }
}

pub fn describe_topic_config(shard: &Rc<Shard>, name: &str) -> Response {
    let table = shard.topics();
    let Some(info) = table.topics.get(name) else {
        return Response::TopicConfig {
            error: ErrorCode::UnknownTopicOrPartition,
            message: name.to_owned(),
            configs: Vec::new(),
        };
    };
    let configs = topic_entries(&info.config, None)
        .into_iter()
        .map(|e| TopicConfigEntry {
            name: e.name,
            value: e.value,
            is_default: e.source == SOURCE_DEFAULT,
            applied: e.documentation.is_none(),
        })
        .collect();
    Response::TopicConfig { error: ErrorCode::None, message: String::new(), configs }
}

pub async fn alter_topic_config(
    shard: &Rc<Shard>,
    name: String,
    set: Vec<(String, String)>,
    reset: Vec<String>,
) -> Response {
    let Some(info) = shard.topics().topics.get(&name).cloned() else {
        return Response::status(ErrorCode::UnknownTopicOrPartition, name);
    };
    let mut config = info.config.clone();
    let changes =
        set.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).chain(reset.iter().map(|k| (k.as_str(), None)));
    for (key, value) in changes {
        if let Err(message) = set_topic_config(&mut config, key, value) {
            return Response::status(ErrorCode::InvalidConfig, message);
        }
    }
    if config == info.config {
        return Response::ok();
    }
    admin_status(admin::alter_topic_config(shard, name, config).await)
}

// ---- moving partitions (a cluster), for `shardlog cluster …` ---------------------------------

fn entries(list: Vec<reassign::Reassignment>) -> Vec<ReassignmentEntry> {
    list.into_iter()
        .map(|r| ReassignmentEntry {
            topic: r.partition.topic,
            partition: r.partition.partition,
            replicas: r.replicas.iter().map(|r| r.node).collect(),
            adding: r.adding.iter().map(|r| r.node).collect(),
            removing: r.removing.iter().map(|r| r.node).collect(),
        })
        .collect()
}

pub async fn reassign_partition(
    shard: &Rc<Shard>,
    topic: String,
    partition: u32,
    replicas: Option<Vec<u32>>,
) -> Response {
    admin_status(reassign::reassign(shard, TopicPartition::new(topic, partition), replicas).await)
}

pub fn list_reassignments(shard: &Rc<Shard>) -> Response {
    match reassign::reassignments(shard, None) {
        Ok(list) => {
            Response::Reassignments { error: ErrorCode::None, message: String::new(), reassignments: entries(list) }
        }
        Err(e) => admin_status(Err(e)),
    }
}

pub async fn elect_leader(shard: &Rc<Shard>, topic: String, partition: u32) -> Response {
    admin_status(reassign::elect_preferred(shard, TopicPartition::new(topic, partition)).await)
}

/// Drains `node` (or clears its mark); answers with the moves it started.
pub async fn drain(shard: &Rc<Shard>, node: u32, draining: bool) -> Response {
    match reassign::drain(shard, node, draining).await {
        Ok(moved) => {
            let started = reassign::reassignments(shard, Some(&moved)).unwrap_or_default();
            Response::Reassignments { error: ErrorCode::None, message: String::new(), reassignments: entries(started) }
        }
        Err(e) => admin_status(Err(e)),
    }
}
