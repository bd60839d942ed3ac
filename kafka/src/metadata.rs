//! Metadata (brokers, topics, partition leaders; auto-creates topics like Kafka's
//! auto.create.topics.enable), FindCoordinator and InitProducerId.
//!
//! With `--kafka-advertise shards` (default) each shard is a broker and leads the partitions
//! it owns, so a client's produce and fetch for a partition go straight to the core that
//! stores it. There is one replica, so replicas = ISR = [leader]; each partition's leader
//! epoch is the catalog's, the one its log stamps on every batch.

use std::rc::Rc;

use broker::cluster::Replica;
use broker::ids::{shard_at, COORDINATOR_SHARD};
use broker::topics::{ClusterView, TopicTable};
use broker::{admin, AdminError, NodeId, Shard, ShardId};
use engine::catalog::TopicConfig;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, MetadataResponse, ProducerId, TopicName,
};

use crate::{admin_code, codes, kafka_broker_id, str_bytes, Endpoint, KafkaSettings};

/// Kafka's authorized-operations bitfield for a topic (AclOperation codes; no ACLs here, so
/// all of them): READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11.
const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Kafka's cluster id is a base64 UUID; clients only compare it.
pub(crate) const CLUSTER_ID: &str = "shardlog";

pub async fn handle(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let requested: Option<Vec<String>> = match request.topics {
        // v0: an empty list means every topic; v1+: null means every topic.
        Some(topics) if !(version == 0 && topics.is_empty()) => {
            // v10+ may name a topic by id only.
            let table = shard.topics();
            let name = |t: kafka_protocol::messages::metadata_request::MetadataRequestTopic| match t.name {
                Some(n) => Some(n.0.to_string()),
                None => crate::topic_ids::name_of(&table, &t.topic_id).map(str::to_owned),
            };
            Some(topics.into_iter().filter_map(name).collect())
        }
        _ => None,
    };
    let auto_create = settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut create_errors: Vec<(String, i16)> = Vec::new();
    if let (Some(names), true) = (&requested, auto_create) {
        for name in names {
            if shard.topics().topics.contains_key(name) {
                continue;
            }
            if let Some(code) = auto_create_topic(shard, settings, name).await {
                create_errors.push((name.clone(), code));
            }
        }
    }
    let table = shard.topics();
    if let Some(view) = &table.cluster {
        return cluster_metadata(&table, view, requested, &create_errors);
    }
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
                let owner = ShardId::new(p.shard % table.shard_count.max(1));
                let leader = BrokerId(settings.leader_for(owner));
                MetadataResponsePartition::default()
                    .with_error_code(codes::NONE)
                    .with_partition_index(p.partition as i32)
                    .with_leader_id(leader)
                    .with_leader_epoch(i32::try_from(p.leader_epoch).unwrap_or(i32::MAX))
                    .with_replica_nodes(vec![leader])
                    .with_isr_nodes(vec![leader])
            })
            .collect();
        // v10+: the topic id; v8+: what the client may do, when asked (no ACLs: everything).
        topic = topic.with_topic_id(crate::topic_ids::uuid_of(&table, info));
        if request.include_topic_authorized_operations {
            topic = topic.with_topic_authorized_operations(TOPIC_AUTHORIZED_OPERATIONS);
        }
        topics.push(topic.with_error_code(codes::NONE));
    }
    let brokers = settings
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
        .with_controller_id(BrokerId(settings.coordinator().node_id))
        .with_topics(topics)
}

/// A cluster's Metadata: every live broker (node, shard) with its Kafka address, each
/// partition's leader, replicas, ISR, offline replicas and leader epoch; the controller.
fn cluster_metadata(
    table: &TopicTable,
    view: &ClusterView,
    requested: Option<Vec<String>>,
    create_errors: &[(String, i16)],
) -> MetadataResponse {
    let metadata = &view.metadata;
    let id = |r: Replica| BrokerId(kafka_broker_id(NodeId::new(r.node), ShardId::new(r.shard)));
    let fenced = |node: u32| metadata.brokers.get(&node).is_none_or(|b| b.fenced);
    let names: Vec<String> = requested.unwrap_or_else(|| metadata.topics.keys().cloned().collect());
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let mut topic = MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name.clone()))));
        let Some(meta) = metadata.topics.get(&name) else {
            let error =
                create_errors.iter().find(|(n, _)| *n == name).map_or(codes::UNKNOWN_TOPIC_OR_PARTITION, |e| e.1);
            topics.push(topic.with_error_code(error));
            continue;
        };
        // Topic ids (v10+), as on one node: KIP-848 assignments name topics only by id, so a
        // consumer-protocol client cannot use its partitions without them.
        if let Some(info) = table.topics.get(&name) {
            topic.topic_id = crate::topic_ids::uuid_of(table, info);
        }
        topic.partitions = meta
            .partitions
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let leader = p.leader.and_then(|l| p.replica_on(l));
                let isr = p.isr.iter().filter_map(|&n| p.replica_on(n)).map(id).collect();
                let offline = p.replicas.iter().filter(|r| fenced(r.node)).copied().map(id).collect();
                MetadataResponsePartition::default()
                    .with_error_code(if leader.is_some() { codes::NONE } else { codes::LEADER_NOT_AVAILABLE })
                    .with_partition_index(index as i32)
                    .with_leader_id(leader.map_or(BrokerId(-1), id))
                    .with_leader_epoch(i32::try_from(p.leader_epoch).unwrap_or(i32::MAX))
                    .with_replica_nodes(p.replicas.iter().copied().map(id).collect())
                    .with_isr_nodes(isr)
                    .with_offline_replicas(offline)
            })
            .collect();
        topics.push(topic.with_error_code(codes::NONE));
    }
    let brokers = cluster_brokers(view)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(i32::from(port))
        })
        .collect();
    let controller = cluster_controller(view);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

/// A cluster's Kafka brokers — every (node, shard) of the unfenced nodes — as (broker id,
/// host, port); Metadata and DescribeCluster list the same.
pub(crate) fn cluster_brokers(view: &ClusterView) -> Vec<(i32, String, u16)> {
    let mut brokers = Vec::new();
    for broker in view.metadata.brokers.values().filter(|b| !b.fenced) {
        for (shard, address) in broker.kafka_addresses.iter().enumerate() {
            let Some((host, port)) = split_address(address) else { continue };
            brokers.push((kafka_broker_id(NodeId::new(broker.node), shard_at(shard)), host, port));
        }
    }
    brokers
}

/// The controller's Kafka broker id (the metadata leader's coordinator shard); -1 while none.
pub(crate) fn cluster_controller(view: &ClusterView) -> i32 {
    view.controller.map_or(-1, |node| kafka_broker_id(node, COORDINATOR_SHARD))
}

/// "host:port" → (host, port).
fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse().ok()?))
}

/// The group coordinator's Kafka endpoint: in a cluster the controller node's coordinator
/// shard; `None` while no controller is known.
fn coordinator_endpoint(shard: Option<&Shard>, settings: &KafkaSettings) -> Option<Endpoint> {
    let Some(shard) = shard else {
        return Some(settings.coordinator().clone());
    };
    let table = shard.topics();
    let Some(view) = &table.cluster else {
        return Some(settings.coordinator().clone());
    };
    let controller = view.controller?;
    let address = view.broker(controller)?.kafka_addresses.first()?;
    let (host, port) = split_address(address)?;
    Some(Endpoint { node_id: kafka_broker_id(controller, COORDINATOR_SHARD), host, port })
}

/// Creates `name` with the default partition count. `None` when it exists afterwards,
/// otherwise the Kafka error for the topic.
async fn auto_create_topic(shard: &Rc<Shard>, settings: &KafkaSettings, name: &str) -> Option<i16> {
    match admin::create_topic(shard, name.to_owned(), settings.default_partitions, TopicConfig::default()).await {
        Ok(()) | Err(AdminError::TopicExists { .. }) => {
            tracing::info!(topic = name, "topic auto-created for a Kafka client");
            None
        }
        Err(e) => {
            tracing::debug!(topic = name, error = %e, "auto-creating a topic failed");
            Some(admin_code(&e))
        }
    }
}

/// InitProducerId: a new producer id (epoch 0), or the same id with the next epoch when the
/// client asks to bump its own (KIP-360). Transactions are not supported.
pub fn init_producer_id(shard: &Shard, request: InitProducerIdRequest) -> InitProducerIdResponse {
    init_producer_id_with(request, || shard.next_producer_id())
}

/// `init_producer_id`, with the id allocator given (`next_id` is called only for a new id).
fn init_producer_id_with(request: InitProducerIdRequest, next_id: impl FnOnce() -> i64) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.as_ref().is_some_and(|t| !t.0.is_empty()) {
        return response
            .with_error_code(codes::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 && request.producer_epoch < i16::MAX {
        return response.with_producer_id(request.producer_id).with_producer_epoch(request.producer_epoch + 1);
    }
    response.with_producer_id(ProducerId(next_id())).with_producer_epoch(0)
}

/// Groups are coordinated by the coordinator shard (in a cluster, the controller node's);
/// transactions are not supported.
pub fn find_coordinator(
    shard: Option<&Shard>,
    settings: &KafkaSettings,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    /// key_type 1 = transaction coordinator.
    const KEY_TYPE_TRANSACTION: i8 = 1;
    let found = coordinator_endpoint(shard, settings);
    let unknown = Endpoint { node_id: -1, host: String::new(), port: 0 };
    let error = if request.key_type == KEY_TYPE_TRANSACTION || found.is_none() {
        codes::COORDINATOR_NOT_AVAILABLE
    } else {
        codes::NONE
    };
    let endpoint = &found.unwrap_or(unknown);
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::TransactionalId;

    use super::*;

    #[test]
    fn producer_ids_are_new_and_epochs_bump() {
        let fresh = init_producer_id_with(InitProducerIdRequest::default().with_producer_id(ProducerId(-1)), || 42);
        assert_eq!((fresh.error_code, fresh.producer_id, fresh.producer_epoch), (codes::NONE, ProducerId(42), 0));
        let bump = InitProducerIdRequest::default().with_producer_id(ProducerId(42)).with_producer_epoch(0);
        let bumped = init_producer_id_with(bump, || panic!("a bump keeps the id"));
        assert_eq!((bumped.producer_id, bumped.producer_epoch), (ProducerId(42), 1));
        let transactional = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(str_bytes("tx"))))
            .with_producer_id(ProducerId(-1));
        assert_eq!(init_producer_id_with(transactional, || 1).error_code, codes::INVALID_REQUEST);
    }
}
