//! Moving partitions and their leaders (a cluster): AlterPartitionReassignments (v0–1),
//! ListPartitionReassignments (v0) and ElectLeaders (v0–2), over `broker::reassign`, whose
//! changes are metadata proposals. Kafka broker ids name (node, shard) pairs
//! (`kafka_broker_id`); a reassignment targets nodes (`id / KAFKA_BROKER_IDS_PER_NODE`) and each
//! new replica goes to the least loaded shard of its node (a node that keeps the partition
//! keeps its shard). On a single node nothing can move: a reassignment is refused with
//! INVALID_REPLICA_ASSIGNMENT, none is ever listed, and every election is ELECTION_NOT_NEEDED,
//! as on a one-broker Kafka cluster.

use std::rc::Rc;

use broker::cluster::Replica;
use broker::reassign;
use broker::{AdminError, NodeId, Shard, ShardId, TopicPartition};
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use crate::{admin_code, codes, error_message, kafka_broker_id, str_bytes, KAFKA_BROKER_IDS_PER_NODE};

/// ElectLeaders' election types.
const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

fn broker_id(replica: &Replica) -> BrokerId {
    BrokerId(kafka_broker_id(NodeId::new(replica.node), ShardId::new(replica.shard)))
}

pub async fn alter(
    shard: &Rc<Shard>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let id = TopicPartition::new(topic.name.0.to_string(), p.partition_index.max(0) as u32);
            let target: Option<Vec<u32>> =
                p.replicas.map(|ids| ids.iter().map(|b| (b.0.max(0) / KAFKA_BROKER_IDS_PER_NODE) as u32).collect());
            let result = if p.partition_index < 0 {
                Err(AdminError::UnknownTopic { name: topic.name.0.to_string() })
            } else if shard.topics().cluster.is_none() {
                // One broker: a reassignment onto it is a no-op, anything else names a broker
                // that does not exist; there is never one to cancel.
                match &target {
                    None => {
                        Err(AdminError::NoReassignmentInProgress { topic: id.topic.clone(), partition: id.partition })
                    }
                    Some(_) => Err(AdminError::InvalidReplicaAssignment {
                        reason: "a single node has one replica per partition; start a cluster to move partitions"
                            .into(),
                    }),
                }
            } else {
                reassign::reassign(shard, id, target).await
            };
            let (error, message) = match result {
                Ok(()) => (codes::NONE, None),
                Err(e) => (admin_code(&e), Some(error_message(e.to_string()))),
            };
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error)
                    .with_error_message(message),
            );
        }
        responses.push(ReassignableTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(codes::NONE)
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}

pub fn list(shard: &Shard, request: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let wanted: Option<Vec<TopicPartition>> = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes.iter().map(|&p| TopicPartition::new(t.name.0.to_string(), p.max(0) as u32))
            })
            .collect()
    });
    // A single node never has one under way.
    let moving = reassign::reassignments(shard, wanted.as_deref()).unwrap_or_default();
    // In topic order, then partition order (as the metadata lists them): one entry per topic.
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for r in moving {
        let partition = OngoingPartitionReassignment::default()
            .with_partition_index(r.partition.partition as i32)
            .with_replicas(r.replicas.iter().map(broker_id).collect())
            .with_adding_replicas(r.adding.iter().map(broker_id).collect())
            .with_removing_replicas(r.removing.iter().map(broker_id).collect());
        match topics.last_mut().filter(|t| t.name.0.as_str() == r.partition.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(r.partition.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default().with_error_code(codes::NONE).with_topics(topics)
}

pub async fn elect(shard: &Rc<Shard>, version: i16, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let table = shard.topics();
    // v0 has no election type: preferred.
    let election_type = if version >= 1 { request.election_type } else { ELECTION_PREFERRED };
    // Null topic_partitions: every partition.
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(list) => list.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => {
            let mut all: Vec<(String, Vec<i32>)> =
                table.topics.values().map(|t| (t.name.clone(), (0..t.partition_count() as i32).collect())).collect();
            all.sort();
            all
        }
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_result = Vec::with_capacity(partitions.len());
        for index in partitions {
            let exists = index >= 0 && table.exists(&topic, index as u32);
            let outcome: Result<(), (i16, String)> = if !exists {
                Err((codes::UNKNOWN_TOPIC_OR_PARTITION, format!("no partition {topic}-{index}")))
            } else if election_type == ELECTION_UNCLEAN {
                // Unclean elections are the topic's setting (unclean.leader.election.enable),
                // applied by the controller; an operator-forced one is not offered.
                Err((codes::INVALID_REQUEST, "unclean elections are a topic config here".into()))
            } else if election_type != ELECTION_PREFERRED {
                Err((codes::INVALID_REQUEST, format!("election type {election_type}")))
            } else if table.cluster.is_none() {
                Err((codes::ELECTION_NOT_NEEDED, "a single node leads every partition".into()))
            } else {
                let id = TopicPartition::new(topic.clone(), index as u32);
                reassign::elect_preferred(shard, id).await.map_err(|e| (admin_code(&e), e.to_string()))
            };
            let (error, message) = match outcome {
                Ok(()) => (codes::NONE, None),
                Err((error, message)) => (error, Some(error_message(message))),
            };
            partition_result.push(
                PartitionResult::default().with_partition_id(index).with_error_code(error).with_error_message(message),
            );
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(partition_result),
        );
    }
    ElectLeadersResponse::default().with_error_code(codes::NONE).with_replica_election_results(results)
}
