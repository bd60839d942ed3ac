//! Metadata (brokers, topics, partition leaders; auto-creates topics like Kafka's
//! auto.create.topics.enable) and FindCoordinator.
//!
//! With `--kafka-advertise shards` (default) each shard is broker `shard id` and leads the
//! partitions it owns, so a client's produce and fetch for a partition go straight to the
//! core that stores it. There is one replica, so replicas = ISR = [leader].

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse, TopicName,
};

use super::{codes, kafka_code, str_bytes, KafkaSettings, KafkaShard};
use crate::shard::Shard;
use protocol::messages::{ErrorCode, Request, Response, TopicSettings};

/// Kafka's cluster id is a base64 UUID; clients only compare it.
const CLUSTER_ID: &str = "shardlog";

/// Leader epoch reported for every partition: there is no leader election.
const LEADER_EPOCH: i32 = 0;

pub async fn handle(shard: &Rc<Shard>, kafka: &KafkaShard, version: i16, request: MetadataRequest) -> MetadataResponse {
    let requested: Option<Vec<String>> = match request.topics {
        // v0: an empty list means every topic; v1+: null means every topic.
        Some(topics) if !(version == 0 && topics.is_empty()) => {
            Some(topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect())
        }
        _ => None,
    };
    let auto_create = kafka.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut create_errors: Vec<(String, i16)> = Vec::new();
    if let (Some(names), true) = (&requested, auto_create) {
        for name in names {
            if shard.topics.load().topics.contains_key(name) {
                continue;
            }
            if let Some(code) = auto_create_topic(shard, kafka, name).await {
                create_errors.push((name.clone(), code));
            }
        }
    }
    let table = shard.topics.load_full();
    let names: Vec<String> = requested.unwrap_or_else(|| {
        let mut all: Vec<String> = table.topics.keys().cloned().collect();
        all.sort();
        all
    });
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let mut topic = MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name.clone()))));
        let Some(info) = table.topics.get(&name) else {
            let error =
                create_errors.iter().find(|(n, _)| *n == name).map_or(codes::UNKNOWN_TOPIC_OR_PARTITION, |e| e.1);
            topics.push(topic.with_error_code(error));
            continue;
        };
        topic.partitions = info
            .partitions
            .iter()
            .map(|p| {
                let owner = (p.shard % table.shard_count.max(1)) as usize;
                let leader = BrokerId(kafka.settings.leader_for(owner));
                MetadataResponsePartition::default()
                    .with_error_code(codes::NONE)
                    .with_partition_index(p.partition as i32)
                    .with_leader_id(leader)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![leader])
                    .with_isr_nodes(vec![leader])
            })
            .collect();
        topics.push(topic.with_error_code(codes::NONE));
    }
    let brokers = kafka
        .settings
        .brokers
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
        .with_controller_id(BrokerId(kafka.settings.coordinator().node_id))
        .with_topics(topics)
}

/// Creates `name` with the default partition count. `None` when it exists afterwards,
/// otherwise the Kafka error for the topic.
async fn auto_create_topic(shard: &Rc<Shard>, kafka: &KafkaShard, name: &str) -> Option<i16> {
    let request = Request::CreateTopic {
        name: name.to_owned(),
        partitions: kafka.settings.default_partitions,
        settings: TopicSettings::default(),
    };
    match shard.coordinator_call(request).await {
        Response::Status { error: ErrorCode::None | ErrorCode::TopicAlreadyExists, .. } => {
            tracing::info!(topic = name, "topic auto-created for a Kafka client");
            None
        }
        Response::Status { error, message } => {
            tracing::debug!(topic = name, %message, "auto-creating a topic failed");
            Some(kafka_code(error))
        }
        other => {
            tracing::warn!(topic = name, reply = ?other, "unexpected reply to CreateTopic");
            Some(codes::UNKNOWN_SERVER_ERROR)
        }
    }
}

/// Groups are coordinated by the coordinator shard; transactions are not supported.
pub fn find_coordinator(
    settings: &KafkaSettings,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    /// key_type 1 = transaction coordinator.
    const KEY_TYPE_TRANSACTION: i8 = 1;
    let endpoint = settings.coordinator();
    let error = if request.key_type == KEY_TYPE_TRANSACTION { codes::COORDINATOR_NOT_AVAILABLE } else { codes::NONE };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(endpoint.node_id))
                    .with_host(str_bytes(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(BrokerId(endpoint.node_id))
        .with_host(str_bytes(endpoint.host.clone()))
        .with_port(i32::from(endpoint.port))
}
