//! CreateTopics, DeleteTopics, CreatePartitions: served by the coordinator shard's catalog
//! (`Coordinator`), the same path as the native admin requests. There is one replica per
//! partition: a replication factor other than 1 (or -1, "broker default") is refused, and
//! manual replica assignments are refused. Topic configs understood: retention.ms,
//! retention.bytes, segment.bytes, segment.ms (-1 = unlimited retention), and Kafka's flush
//! settings mapped onto the topic's durability: flush.messages=1 (fsync every message) →
//! sync; else flush.ms=MS → interval:MS (0 → sync; Long.MAX, Kafka's "never" → none); else
//! flush.messages > 1 → none. Without them the broker's default (sync) stays. Other keys are
//! ignored.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicName,
};

use super::{codes, error_message, kafka_code, KafkaShard};
use crate::shard::Shard;
use protocol::messages::{ErrorCode, Request, Response, TopicSettings};

/// (Kafka error code, message) from a native status reply.
fn status(response: Response) -> (i16, Option<String>) {
    match response {
        Response::Status { error: ErrorCode::None, .. } => (codes::NONE, None),
        Response::Status { error, message } => (kafka_code(error), Some(message)),
        other => (codes::UNKNOWN_SERVER_ERROR, Some(format!("unexpected reply {other:?}"))),
    }
}

pub async fn create_topics(
    shard: &Rc<Shard>,
    kafka: &KafkaShard,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.clone();
        let partitions =
            if topic.num_partitions == -1 { kafka.settings.default_partitions as i32 } else { topic.num_partitions };
        let (error, message) = match check_topic(&topic, partitions) {
            Err(refusal) => refusal,
            Ok(settings) if request.validate_only => {
                let _ = settings;
                (codes::NONE, None)
            }
            Ok(settings) => {
                let create = Request::CreateTopic { name: name.0.to_string(), partitions: partitions as u32, settings };
                status(shard.coordinator_call(create).await)
            }
        };
        results.push(
            CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(error)
                .with_error_message(message.map(error_message))
                .with_num_partitions(if error == codes::NONE { partitions } else { -1 })
                .with_replication_factor(if error == codes::NONE { 1 } else { -1 }),
        );
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The native settings for a CreatableTopic, or the Kafka error that refuses it.
fn check_topic(topic: &CreatableTopic, partitions: i32) -> Result<TopicSettings, (i16, Option<String>)> {
    if partitions <= 0 {
        return Err((codes::INVALID_PARTITIONS, Some(format!("{partitions} partitions"))));
    }
    if topic.replication_factor != -1 && topic.replication_factor != 1 {
        let message = format!("replication factor {} (shardlog keeps one replica)", topic.replication_factor);
        return Err((codes::INVALID_REPLICATION_FACTOR, Some(message)));
    }
    if !topic.assignments.is_empty() {
        return Err((codes::INVALID_REQUEST, Some("manual replica assignment is not supported".into())));
    }
    let mut settings = TopicSettings::default();
    let (mut flush_messages, mut flush_ms) = (None, None);
    for config in &topic.configs {
        let Some(value) = config.value.as_ref().map(|v| v.to_string()) else {
            continue;
        };
        let bad = || (codes::INVALID_CONFIG, Some(format!("{} = {value:?}", config.name.as_str())));
        // -1 means unlimited in Kafka.
        let limit = |v: &str| -> Result<Option<u64>, (i16, Option<String>)> {
            match v.parse::<i64>() {
                Ok(-1) => Ok(None),
                Ok(n) if n >= 0 => Ok(Some(n as u64)),
                _ => Err(bad()),
            }
        };
        match config.name.as_str() {
            "retention.ms" => settings.retention_ms = limit(&value)?,
            "retention.bytes" => settings.retention_bytes = limit(&value)?,
            "segment.bytes" => settings.segment_bytes = Some(limit(&value)?.ok_or_else(bad)?),
            "segment.ms" => settings.segment_ms = limit(&value)?,
            "flush.messages" => flush_messages = Some(value.parse::<i64>().ok().filter(|&n| n >= 1).ok_or_else(bad)?),
            "flush.ms" => flush_ms = Some(value.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(bad)?),
            _ => {}
        }
    }
    settings.durability = durability_from_flush(flush_messages, flush_ms);
    Ok(settings)
}

/// Kafka's flush settings as a shardlog durability (`None`: not set, the broker's default).
/// A `flush.ms` beyond the longest interval is refused by the catalog as INVALID_CONFIG.
fn durability_from_flush(flush_messages: Option<i64>, flush_ms: Option<i64>) -> Option<String> {
    match (flush_messages, flush_ms) {
        (Some(1), _) | (_, Some(0)) => Some("sync".to_owned()),
        (_, Some(i64::MAX)) => Some("none".to_owned()),
        (_, Some(ms)) => Some(format!("interval:{ms}")),
        (Some(_), None) => Some("none".to_owned()),
        (None, None) => None,
    }
}

pub async fn delete_topics(shard: &Rc<Shard>, version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v0–5 name topics in topic_names; v6+ (not advertised) in topics.
    let names: Vec<TopicName> =
        if version >= 6 { request.topics.into_iter().filter_map(|t| t.name).collect() } else { request.topic_names };
    let mut responses = Vec::with_capacity(names.len());
    for name in names {
        let (error, message) = status(shard.coordinator_call(Request::DeleteTopic { name: name.0.to_string() }).await);
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
            let grow = Request::CreatePartitions { name: topic.name.0.to_string(), total: topic.count as u32 };
            status(shard.coordinator_call(grow).await)
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
        assert_eq!(durability_from_flush(None, None), None);
        assert_eq!(durability_from_flush(Some(1), None).as_deref(), Some("sync"));
        assert_eq!(durability_from_flush(Some(1), Some(i64::MAX)).as_deref(), Some("sync"));
        assert_eq!(durability_from_flush(None, Some(0)).as_deref(), Some("sync"));
        assert_eq!(durability_from_flush(Some(i64::MAX), Some(i64::MAX)).as_deref(), Some("none"));
        assert_eq!(durability_from_flush(Some(1000), None).as_deref(), Some("none"));
        assert_eq!(durability_from_flush(Some(i64::MAX), Some(50)).as_deref(), Some("interval:50"));
    }
}
