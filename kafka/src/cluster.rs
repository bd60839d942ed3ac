//! DescribeCluster (v0–1): the brokers Metadata advertises, the cluster id, the controller
//! (the coordinator shard); DescribeLogDirs (v1–4): the one data directory, with each
//! partition's size on disk. Both read the topic table and the partitions' bounds; nothing
//! here changes state.

use std::rc::Rc;

use broker::shard::join_all;
use broker::{Shard, TopicPartition};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    TopicName,
};

use crate::metadata::{cluster_brokers, cluster_controller, CLUSTER_ID};
use crate::{codes, str_bytes, KafkaSettings};

/// Kafka's authorized-operations bitfield for the cluster when asked (no ACLs: all of
/// CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE).
const CLUSTER_AUTHORIZED_OPERATIONS: i32 =
    (1 << 4) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// DescribeCluster's endpoint type for the brokers' client listeners.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn describe_cluster(
    shard: &Shard,
    settings: &KafkaSettings,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let table = shard.topics();
    let (brokers, controller): (Vec<DescribeClusterBroker>, i32) = match &table.cluster {
        // A cluster: every unfenced (node, shard), as Metadata lists them; the controller is the
        // metadata leader's coordinator shard.
        Some(view) => {
            let brokers = cluster_brokers(view)
                .into_iter()
                .map(|(id, host, port)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(str_bytes(host))
                        .with_port(i32::from(port))
                        .with_rack(None)
                })
                .collect();
            (brokers, cluster_controller(view))
        }
        None => {
            let brokers = settings
                .brokers
                .iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node_id))
                        .with_host(str_bytes(b.host.clone()))
                        .with_port(i32::from(b.port))
                        .with_rack(None)
                })
                .collect();
            (brokers, settings.coordinator().node_id)
        }
    };
    let operations =
        if request.include_cluster_authorized_operations { CLUSTER_AUTHORIZED_OPERATIONS } else { i32::MIN };
    DescribeClusterResponse::default()
        .with_error_code(codes::NONE)
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_cluster_id(str_bytes(CLUSTER_ID))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(operations)
}

pub async fn describe_log_dirs(
    shard: &Rc<Shard>,
    settings: &KafkaSettings,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let table = shard.topics();
    // Each Kafka broker reports the replicas it holds: with a broker per shard, the partitions
    // this shard owns (tools add the brokers' answers up); with one broker, all of them.
    let here = |topic: &str, partition: u32| {
        settings.advertise == crate::KafkaAdvertise::Single || table.owner(topic, partition) == Some(shard.id().index())
    };
    // null = every partition of every topic.
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => {
            let mut all: Vec<(String, Vec<i32>)> = table
                .topics
                .values()
                .map(|t| (t.name.clone(), t.partitions.iter().map(|p| p.partition as i32).collect()))
                .collect();
            all.sort();
            all
        }
    };
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, indexes) in wanted {
        let calls =
            indexes.into_iter().filter_map(|index| u32::try_from(index).ok()).filter(|&index| here(&name, index)).map(
                |index| {
                    let (shard, name) = (shard.clone(), name.clone());
                    async move { (index, shard.bounds(TopicPartition::new(name, index)).await) }
                },
            );
        let partitions: Vec<DescribeLogDirsPartition> = join_all(calls)
            .await
            .into_iter()
            .filter_map(|(index, bounds)| bounds.ok().map(|b| (index, b)))
            .map(|(index, bounds)| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(index as i32)
                    .with_partition_size(i64::try_from(bounds.size_bytes).unwrap_or(i64::MAX))
                    .with_offset_lag(0)
                    .with_is_future_key(false)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default().with_name(TopicName(str_bytes(name))).with_partitions(partitions),
            );
        }
    }
    let dir = shard.data_dir();
    let usable = engine::free_bytes(dir).ok().and_then(|b| i64::try_from(b).ok()).unwrap_or(-1);
    let result = DescribeLogDirsResult::default()
        .with_error_code(codes::NONE)
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_error_code(codes::NONE).with_results(vec![result])
}
