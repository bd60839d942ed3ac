//! DescribeProducers (v0): the idempotent producers each partition remembers — id, epoch,
//! last sequence — as Kafka's `kafka-transactions describe-producers` shows them. There are
//! no transactions, so no producer has a transaction open (coordinator epoch and transaction
//! start are -1); the last timestamp is not kept (-1).

use std::rc::Rc;

use broker::shard::join_all;
use broker::{Shard, TopicPartition};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::{codes, error_message, partition_code};

pub async fn handle(shard: &Rc<Shard>, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let calls = topic.partition_indexes.into_iter().map(|index| {
            let (shard, name) = (shard.clone(), name.clone());
            async move {
                let answer = PartitionResponse::default().with_partition_index(index);
                let Ok(partition) = u32::try_from(index) else {
                    return answer.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                };
                match shard.describe_producers(TopicPartition::new(name, partition)).await {
                    Ok(producers) => {
                        let active = producers
                            .into_iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(p.producer_id))
                                    .with_producer_epoch(i32::from(p.epoch))
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(-1)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(-1)
                            })
                            .collect();
                        answer.with_error_code(codes::NONE).with_active_producers(active)
                    }
                    Err(e) => answer
                        .with_error_code(partition_code(&e))
                        .with_error_message(Some(error_message(e.to_string()))),
                }
            }
        });
        let partitions = join_all(calls).await;
        topics.push(TopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    DescribeProducersResponse::default().with_topics(topics)
}
