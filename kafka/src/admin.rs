//! CreateTopics, DeleteTopics, CreatePartitions: topic changes through `broker::admin`, the
//! same path as the native admin requests. A single node keeps one replica per partition (a
//! replication factor other than 1 or -1, "broker default", is refused); a cluster takes the
//! replication factor, manual replica assignments (Kafka broker ids, whose node is id / 1000),
//! and the configs min.insync.replicas and unclean.leader.election.enable. Topic configs understood: retention.ms,
//! retention.bytes, segment.bytes, segment.ms (-1 = unlimited retention), and Kafka's flush
//! settings mapped onto the topic's durability: flush.messages=1 (fsync every message) →
//! sync; else flush.ms=MS → interval:MS (0 → sync; Long.MAX, Kafka's "never" → none); else
//! flush.messages > 1 → none. Without them the broker's default (sync) stays. Other keys are
//! ignored.

use std::rc::Rc;

use broker::{admin, AdminError, Shard};
use engine::catalog::{Durability, TopicConfig};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};

use crate::{admin_code, codes, error_message, KafkaSettings};

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
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let partitions =
            if topic.num_partitions == -1 { settings.default_partitions as i32 } else { topic.num_partitions };
        let (error, message, factor) = match topic_config(&topic, partitions) {
            Err((error, message)) => (error, message, -1),
            Ok((_, replication)) if request.validate_only => {
                (codes::NONE, None, replication.factor.map_or(-1, |f| f as i16))
            }
            Ok((config, replication)) => {
                let factor = replication.factor.unwrap_or(shard.default_replication_factor());
                let created =
                    admin::create_topic_with(shard, name.0.to_string(), partitions as u32, config, replication);
                let (error, message) = status(created.await);
                (error, message, i16::try_from(factor).unwrap_or(-1))
            }
        };
        results.push(
            CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(error)
                .with_error_message(message.map(error_message))
                .with_num_partitions(if error == codes::NONE { partitions } else { -1 })
                .with_replication_factor(if error == codes::NONE { factor } else { -1 }),
        );
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
    let (mut flush_messages, mut flush_ms) = (None, None);
    for entry in &topic.configs {
        let Some(value) = entry.value.as_ref().map(|v| v.to_string()) else {
            continue;
        };
        let bad = || (codes::INVALID_CONFIG, Some(format!("{} = {value:?}", entry.name.as_str())));
        // -1 means unlimited in Kafka.
        let limit = |v: &str| -> Result<Option<u64>, (i16, Option<String>)> {
            match v.parse::<i64>() {
                Ok(-1) => Ok(None),
                Ok(n) if n >= 0 => Ok(Some(n as u64)),
                _ => Err(bad()),
            }
        };
        match entry.name.as_str() {
            "retention.ms" => config.retention_ms = limit(&value)?,
            "retention.bytes" => config.retention_bytes = limit(&value)?,
            "segment.bytes" => config.segment_bytes = limit(&value)?.ok_or_else(bad)?,
            "segment.ms" => config.segment_ms = limit(&value)?,
            "flush.messages" => flush_messages = Some(value.parse::<i64>().ok().filter(|&n| n >= 1).ok_or_else(bad)?),
            "flush.ms" => flush_ms = Some(value.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(bad)?),
            "min.insync.replicas" => {
                replication.min_insync = Some(value.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(bad)?)
            }
            "unclean.leader.election.enable" => {
                replication.unclean_leader_election = Some(value.parse::<bool>().map_err(|_| bad())?)
            }
            _ => {}
        }
    }
    if let Some(durability) = durability_from_flush(flush_messages, flush_ms) {
        config.durability = durability.ok_or_else(|| {
            (
                codes::INVALID_CONFIG,
                Some(format!("flush.ms = {} is longer than shardlog's longest interval", flush_ms.unwrap_or(0))),
            )
        })?;
    }
    config.validate().map_err(|e| (codes::INVALID_CONFIG, Some(e.to_string())))?;
    Ok((config, replication))
}

/// Kafka's flush settings as a shardlog durability: `None` when not set (the broker's
/// default stays), `Some(None)` for a `flush.ms` that does not fit an interval.
fn durability_from_flush(flush_messages: Option<i64>, flush_ms: Option<i64>) -> Option<Option<Durability>> {
    match (flush_messages, flush_ms) {
        (Some(1), _) | (_, Some(0)) => Some(Some(Durability::Sync)),
        (_, Some(i64::MAX)) => Some(Some(Durability::None)),
        (_, Some(ms)) => Some(u32::try_from(ms).ok().map(|ms| Durability::Interval { ms })),
        (Some(_), None) => Some(Some(Durability::None)),
        (None, None) => None,
    }
}

pub async fn delete_topics(shard: &Rc<Shard>, version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v0–5 name topics in topic_names; v6+ (not advertised) in topics.
    let names: Vec<TopicName> =
        if version >= 6 { request.topics.into_iter().filter_map(|t| t.name).collect() } else { request.topic_names };
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let (error, message) = status(admin::delete_topic(shard, name.0.to_string()).await);
        responses.push(
            DeletableTopicResult::default()
                .with_name(Some(name))
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

#[cfg(test)]
mod tests {
    use super::durability_from_flush;

    #[test]
    fn kafka_flush_settings_map_onto_durability() {
        let text = |flush_messages, flush_ms| {
            durability_from_flush(flush_messages, flush_ms).map(|d| d.map_or("too long".to_owned(), |d| d.to_string()))
        };
        assert_eq!(text(None, None), None);
        assert_eq!(text(Some(1), None).as_deref(), Some("sync"));
        assert_eq!(text(Some(1), Some(i64::MAX)).as_deref(), Some("sync"));
        assert_eq!(text(None, Some(0)).as_deref(), Some("sync"));
        assert_eq!(text(Some(i64::MAX), Some(i64::MAX)).as_deref(), Some("none"));
        assert_eq!(text(Some(1000), None).as_deref(), Some("none"));
        assert_eq!(text(Some(i64::MAX), Some(50)).as_deref(), Some("interval:50"));
        assert_eq!(text(None, Some(1 << 40)).as_deref(), Some("too long"));
    }
}
