//! CreateTopics (v2–7), DeleteTopics (v1–6), CreatePartitions: topic changes through
//! `broker::admin`, the same path as the native admin requests. A single node keeps one
//! replica per partition (a replication factor other than 1 or -1, "broker default", is
//! refused); a cluster takes the replication factor, manual replica assignments (Kafka broker
//! ids, whose node is id / 1000), and the configs min.insync.replicas and
//! unclean.leader.election.enable. Topic configs are `broker::topic_configs`'s: the ones
//! shardlog applies are validated and applied, the other Kafka topic configs are kept and
//! reported, an unknown one is INVALID_CONFIG. CreateTopics v5+ answers with the topic's
//! configs, v7+ with its topic id; DeleteTopics v6+ names topics by id.

use std::rc::Rc;

use broker::{admin, AdminError, Shard};
use engine::catalog::TopicConfig;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};

use crate::{admin_code, codes, configs, error_message, topic_ids, KafkaSettings};

/// (Kafka error code, message) of a catalog change.
fn status(result: Result<(), AdminError>) -> (i16, Option<String>) {
    match result {
        Ok(()) => (codes::NONE, None),
        Err(e) => (admin_code(&e), Some(e.to_string())),
    }
}

pub async fn create_topics(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let partitions =
            if topic.num_partitions == -1 { settings.default_partitions as i32 } else { topic.num_partitions };
        let config = topic_config(&topic, partitions);
        let (error, message, factor) = match &config {
            Err((error, message)) => (*error, message.clone(), -1),
            Ok((_, replication)) if request.validate_only => {
                (codes::NONE, None, replication.factor.map_or(-1, |f| f as i16))
            }
            Ok((config, replication)) => {
                let factor = replication.factor.unwrap_or(shard.default_replication_factor());
                let created = admin::create_topic_with(
                    shard,
                    name.0.to_string(),
                    partitions as u32,
                    config.clone(),
                    replication.clone(),
                );
                let (error, message) = status(created.await);
                (error, message, i16::try_from(factor).unwrap_or(-1))
            }
        };
        let mut result = CreatableTopicResult::default()
            .with_name(name.clone())
            .with_error_code(error)
            .with_error_message(message.map(error_message))
            .with_num_partitions(if error == codes::NONE { partitions } else { -1 })
            .with_replication_factor(if error == codes::NONE { factor } else { -1 });
        if let (Ok((config, _)), codes::NONE, 5..) = (&config, error, version) {
            result = result.with_configs(Some(configs::created_topic_configs(config)));
            let table = shard.topics();
            if let Some(info) = table.topics.get(name.0.as_str()) {
                result = result.with_topic_id(topic_ids::uuid_of(&table, info));
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The topic config and replication for a CreatableTopic (broker defaults overridden by what
/// it sets), or the Kafka error that refuses it.
fn topic_config(
    topic: &CreatableTopic,
    partitions: i32,
) -> Result<(TopicConfig, admin::Replication), (i16, Option<String>)> {
    if partitions <= 0 && topic.assignments.is_empty() {
        return Err((codes::INVALID_PARTITIONS, Some(format!("{partitions} partitions"))));
    }
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        let message = format!("replication factor {}", topic.replication_factor);
        return Err((codes::INVALID_REPLICATION_FACTOR, Some(message)));
    }
    let mut replication = admin::Replication {
        factor: (topic.replication_factor > 0).then_some(topic.replication_factor as u32),
        ..admin::Replication::default()
    };
    if !topic.assignments.is_empty() {
        let mut assignment: Vec<(i32, Vec<u32>)> = topic
            .assignments
            .iter()
            .map(|a| {
                let nodes = a.broker_ids.iter().map(|id| (id.0.max(0) / crate::KAFKA_BROKER_IDS_PER_NODE) as u32);
                (a.partition_index, nodes.collect())
            })
            .collect();
        assignment.sort_by_key(|(index, _)| *index);
        if assignment.iter().enumerate().any(|(i, (index, _))| *index != i as i32) {
            return Err((codes::INVALID_REQUEST, Some("replica assignments must number partitions 0..n".into())));
        }
        replication.assignment = Some(assignment.into_iter().map(|(_, nodes)| nodes).collect());
    }
    let mut config = TopicConfig::default();
    for entry in &topic.configs {
        let value = entry.value.as_ref().map(|v| v.to_string());
        // Replication settings a cluster applies; kept among the reported configs as well.
        if let Some(value) = &value {
            let bad = || (codes::INVALID_CONFIG, Some(format!("{} = {value:?}", entry.name.as_str())));
            match entry.name.as_str() {
                "min.insync.replicas" => {
                    replication.min_insync = Some(value.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(bad)?)
                }
                "unclean.leader.election.enable" => {
                    replication.unclean_leader_election = Some(value.parse::<bool>().map_err(|_| bad())?)
                }
                _ => {}
            }
        }
        broker::topic_configs::set_topic_config(&mut config, entry.name.as_str(), value.as_deref())
            .map_err(|message| (codes::INVALID_CONFIG, Some(message)))?;
    }
    config.validate().map_err(|e| (codes::INVALID_CONFIG, Some(e.to_string())))?;
    Ok((config, replication))
}

pub async fn delete_topics(shard: &Rc<Shard>, version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v0–5 name topics in topic_names; v6+ in topics, by name or by topic id.
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let table = shard.topics();
        let resolved = match &name {
            Some(name) => Some(name.0.to_string()),
            None => topic_ids::name_of(&table, &id).map(str::to_owned),
        };
        let id =
            resolved.as_deref().and_then(|n| table.topics.get(n)).map_or(id, |info| topic_ids::uuid_of(&table, info));
        let (error, message) = match &resolved {
            Some(topic) => status(admin::delete_topic(shard, topic.clone()).await),
            None => (codes::UNKNOWN_TOPIC_ID, Some("unknown topic id".to_owned())),
        };
        responses.push(
            DeletableTopicResult::default()
                .with_name(resolved.map(|n| TopicName(crate::str_bytes(n))))
                .with_topic_id(id)
                .with_error_code(error)
                .with_error_message(message.map(error_message)),
        );
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(shard: &Rc<Shard>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let (error, message) = if topic.count <= 0 {
            (codes::INVALID_PARTITIONS, Some(format!("{} partitions", topic.count)))
        } else if topic.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            (codes::INVALID_REQUEST, Some("manual replica assignment is not supported".into()))
        } else if request.validate_only {
            (codes::NONE, None)
        } else {
            status(admin::create_partitions(shard, topic.name.0.to_string(), topic.count as u32).await)
        };
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(topic.name)
                .with_error_code(error)
                .with_error_message(message.map(error_message)),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}
