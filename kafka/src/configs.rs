//! DescribeConfigs (v1–4), AlterConfigs (v0–2), IncrementalAlterConfigs (v0–1), and the topic
//! configs CreateTopics takes and returns.
//!
//! Every Kafka 4 topic config is known here (`TOPIC_CONFIGS`). Those shardlog applies —
//! `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`, and `flush.messages` /
//! `flush.ms` as the topic's durability — are read from and written to the topic's `TopicConfig`, persisted in the
//! catalog, and take effect on the open logs at once. The others are accepted, stored with
//! the topic (`TopicConfig::unapplied`) and reported back as set, but change nothing; their
//! documentation field says so. A name that is no Kafka topic config is INVALID_CONFIG, as
//! in Kafka.
//!
//! Broker resources: DescribeConfigs reports the broker's settings (read-only, static);
//! AlterConfigs on a broker is accepted for the dynamic configs Kafka allows and applies
//! nothing (shardlog's broker settings are its flags).

use std::rc::Rc;

use broker::{admin, AdminError, Shard};
use engine::catalog::{TopicConfig, TopicInfo};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_topics_response::CreatableTopicConfigs;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use crate::{admin_code, codes, error_message, str_bytes, KafkaSettings};

/// Kafka's resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

use broker::topic_configs::{
    flush_of, limit_text, set_topic_config, topic_entries, ConfigEntry, SOURCE_DEFAULT, SOURCE_STATIC_BROKER,
    TYPE_BOOLEAN, TYPE_INT, TYPE_LIST, TYPE_LONG,
};

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// CreateTopics v5+: the new topic's configs.
pub fn created_topic_configs(config: &TopicConfig) -> Vec<CreatableTopicConfigs> {
    topic_entries(config, None)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(e.name))
                .with_value(Some(str_bytes(e.value)))
                .with_read_only(e.read_only)
                .with_config_source(e.source)
                .with_is_sensitive(false)
        })
        .collect()
}

/// The broker's settings as Kafka names them: (name, value, source).
fn broker_entries(settings: &KafkaSettings, broker_id: i32) -> Vec<ConfigEntry> {
    let defaults = TopicConfig::default();
    let (flush_messages, flush_ms) = flush_of(defaults.durability);
    let entry = |name: &str, value: String, source: i8, config_type: i8| ConfigEntry {
        name: name.to_owned(),
        value,
        source,
        read_only: true,
        config_type,
        documentation: None,
    };
    vec![
        entry("auto.create.topics.enable", settings.auto_create_topics.to_string(), SOURCE_STATIC_BROKER, TYPE_BOOLEAN),
        entry("broker.id", broker_id.to_string(), SOURCE_STATIC_BROKER, TYPE_INT),
        entry("default.replication.factor", "1".into(), SOURCE_DEFAULT, TYPE_INT),
        entry("log.cleanup.policy", "delete".into(), SOURCE_DEFAULT, TYPE_LIST),
        entry("log.flush.interval.messages", flush_messages, SOURCE_DEFAULT, TYPE_LONG),
        entry("log.flush.interval.ms", flush_ms, SOURCE_DEFAULT, TYPE_LONG),
        entry("log.retention.bytes", limit_text(defaults.retention_bytes), SOURCE_DEFAULT, TYPE_LONG),
        entry("log.retention.ms", limit_text(defaults.retention_ms), SOURCE_DEFAULT, TYPE_LONG),
        entry("log.segment.bytes", defaults.segment_bytes.to_string(), SOURCE_DEFAULT, TYPE_INT),
        entry("message.max.bytes", engine::limits::BATCH_SIZE_BYTES_MAX.to_string(), SOURCE_DEFAULT, TYPE_INT),
        entry("min.insync.replicas", "1".into(), SOURCE_DEFAULT, TYPE_INT),
        entry("num.partitions", settings.default_partitions.to_string(), SOURCE_STATIC_BROKER, TYPE_INT),
        entry("offsets.topic.replication.factor", "1".into(), SOURCE_DEFAULT, TYPE_INT),
    ]
}

fn describe_result(
    resource_type: i8,
    name: kafka_protocol::protocol::StrBytes,
    entries: Vec<ConfigEntry>,
    include_documentation: bool,
) -> DescribeConfigsResult {
    let configs = entries
        .into_iter()
        .map(|e| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(e.name))
                .with_value(Some(str_bytes(e.value)))
                .with_read_only(e.read_only)
                .with_config_source(e.source)
                .with_is_sensitive(false)
                .with_config_type(e.config_type)
                .with_documentation(if include_documentation { e.documentation.map(str_bytes) } else { None })
        })
        .collect();
    DescribeConfigsResult::default()
        .with_error_code(codes::NONE)
        .with_resource_type(resource_type)
        .with_resource_name(name)
        .with_configs(configs)
}

pub fn describe_configs(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    _version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let table = shard.topics();
    let results = request
        .resources
        .into_iter()
        .map(|r| {
            let keys: Option<Vec<String>> =
                r.configuration_keys.as_ref().map(|keys| keys.iter().map(|k| k.to_string()).collect());
            let failed = |code: i16, message: String| {
                DescribeConfigsResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(error_message(message)))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
            };
            match r.resource_type {
                RESOURCE_TOPIC => match table.topics.get(r.resource_name.as_str()) {
                    Some(info) => {
                        // A cluster applies the replication configs: report the agreed ones.
                        let mut config = info.config.clone();
                        if let Some(meta) = table.cluster.as_ref().and_then(|v| v.topic(&info.name)) {
                            let r = &meta.replication;
                            if r.min_insync_replicas != 1 {
                                let value = r.min_insync_replicas.to_string();
                                config.unapplied.insert("min.insync.replicas".into(), value);
                            }
                            if r.unclean_leader_election {
                                config.unapplied.insert("unclean.leader.election.enable".into(), "true".into());
                            }
                        }
                        let entries = topic_entries(&config, keys.as_deref());
                        describe_result(
                            r.resource_type,
                            r.resource_name.clone(),
                            entries,
                            request.include_documentation,
                        )
                    }
                    None => failed(
                        codes::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("unknown topic {:?}", r.resource_name.as_str()),
                    ),
                },
                RESOURCE_BROKER => match broker_id(settings, r.resource_name.as_str()) {
                    Some(id) => {
                        let mut entries = broker_entries(settings, id);
                        if let Some(keys) = &keys {
                            entries.retain(|e| keys.contains(&e.name));
                        }
                        describe_result(
                            r.resource_type,
                            r.resource_name.clone(),
                            entries,
                            request.include_documentation,
                        )
                    }
                    None => failed(codes::INVALID_REQUEST, format!("no broker {:?} here", r.resource_name.as_str())),
                },
                RESOURCE_BROKER_LOGGER => {
                    describe_result(r.resource_type, r.resource_name.clone(), Vec::new(), request.include_documentation)
                }
                other => failed(codes::INVALID_REQUEST, format!("resource type {other} has no configs here")),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The broker a broker resource names: one of ours ("" is the cluster default).
fn broker_id(settings: &KafkaSettings, name: &str) -> Option<i32> {
    if name.is_empty() {
        return Some(settings.coordinator().node_id);
    }
    let id = name.parse::<i32>().ok()?;
    settings.brokers.iter().any(|b| b.node_id == id).then_some(id)
}

/// One resource's changes: (name, operation, value).
type Changes = Vec<(String, i8, Option<String>)>;

/// Applies `changes` to topic `name` (`replace`: AlterConfigs, every config not named goes
/// back to its default), unless `validate_only`.
async fn alter_topic(
    shard: &Rc<Shard>,
    name: &str,
    changes: Changes,
    replace: bool,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let Some(info): Option<TopicInfo> = shard.topics().topics.get(name).cloned() else {
        return Err((codes::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic {name:?}")));
    };
    let mut config = if replace { TopicConfig::default() } else { info.config.clone() };
    for (key, op, value) in changes {
        let invalid = |m: String| (codes::INVALID_CONFIG, m);
        match op {
            OP_SET => set_topic_config(&mut config, &key, value.as_deref()).map_err(invalid)?,
            OP_DELETE => set_topic_config(&mut config, &key, None).map_err(invalid)?,
            OP_APPEND | OP_SUBTRACT if key == "cleanup.policy" => {
                // A list config: the policies after the change, kept as Kafka would show them.
                let current =
                    topic_entries(&config, Some(std::slice::from_ref(&key))).pop().map(|e| e.value).unwrap_or_default();
                let mut policies: Vec<String> =
                    current.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
                for p in value.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if op == OP_APPEND && !policies.iter().any(|q| q == p) {
                        policies.push(p.to_owned());
                    } else if op == OP_SUBTRACT {
                        policies.retain(|q| q != p);
                    }
                }
                let joined = if policies.is_empty() { None } else { Some(policies.join(",")) };
                set_topic_config(&mut config, &key, joined.as_deref()).map_err(invalid)?;
            }
            OP_APPEND | OP_SUBTRACT => {
                return Err(invalid(format!("{key} is not a list config")));
            }
            other => return Err((codes::INVALID_REQUEST, format!("unknown config operation {other}"))),
        }
    }
    config.validate().map_err(|e| (codes::INVALID_CONFIG, e.to_string()))?;
    if validate_only || config == info.config {
        return Ok(());
    }
    admin::alter_topic_config(shard, name.to_owned(), config)
        .await
        .map_err(|e: AdminError| (admin_code(&e), e.to_string()))
}

/// A broker resource: accepted (Kafka's dynamic broker configs) and not applied.
fn alter_broker(settings: &KafkaSettings, name: &str) -> Result<(), (i16, String)> {
    match broker_id(settings, name) {
        Some(_) => {
            tracing::info!(
                broker = name,
                "broker configs are shardlog's flags; a dynamic change is accepted and not applied"
            );
            Ok(())
        }
        None => Err((codes::INVALID_REQUEST, format!("no broker {name:?} here"))),
    }
}

fn alter_result(
    resource_type: i8,
    name: kafka_protocol::protocol::StrBytes,
    result: Result<(), (i16, String)>,
) -> AlterConfigsResourceResponse {
    let (code, message) = match result {
        Ok(()) => (codes::NONE, None),
        Err((code, message)) => (code, Some(error_message(message))),
    };
    AlterConfigsResourceResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_resource_type(resource_type)
        .with_resource_name(name)
}

pub async fn alter_configs(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let changes: Changes =
            r.configs.iter().map(|c| (c.name.to_string(), OP_SET, c.value.as_ref().map(|v| v.to_string()))).collect();
        let result = match r.resource_type {
            RESOURCE_TOPIC => alter_topic(shard, r.resource_name.as_str(), changes, true, request.validate_only).await,
            RESOURCE_BROKER => alter_broker(settings, r.resource_name.as_str()),
            other => Err((codes::INVALID_REQUEST, format!("resource type {other} cannot be altered here"))),
        };
        responses.push(alter_result(r.resource_type, r.resource_name, result));
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let changes: Changes = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let result = match r.resource_type {
            RESOURCE_TOPIC => alter_topic(shard, r.resource_name.as_str(), changes, false, request.validate_only).await,
            RESOURCE_BROKER => alter_broker(settings, r.resource_name.as_str()),
            other => Err((codes::INVALID_REQUEST, format!("resource type {other} cannot be altered here"))),
        };
        let response = alter_result(r.resource_type, r.resource_name, result);
        responses.push(
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(response.error_code)
                .with_error_message(response.error_message)
                .with_resource_type(response.resource_type)
                .with_resource_name(response.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
