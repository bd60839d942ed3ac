//! Rust client for shardlog's native protocol, built on glommio: every type here lives on one
//! executor (`!Send`); a program with several executors makes one [`Client`] per executor.
//!
//! - [`Connection`]: one TCP connection, pipelined; responses are routed to their callers by
//!   correlation id.
//! - [`Client`]: a metadata cache and a connection per shard. Shard-aware routing sends each
//!   partition's Produce / Fetch / ListOffsets straight to the shard that owns it; forward
//!   routing sends everything to the bootstrap address and lets the broker forward.
//! - [`Producer`]: batches records per partition (Kafka's `linger.ms` / `batch.size`), with
//!   bounded memory and at most one request in flight per partition, so a partition's records
//!   are stored in the order they were sent.
//! - [`Consumer`]: fetches from every assigned partition, one fetch in flight per shard;
//!   optionally a consumer-group member with background heartbeats and offset commits.
//! - [`accumulator`]: per-partition batch queues, linger, buffer memory and the sender loop,
//!   shared by [`Producer`] and the load generator's Kafka producer.
//! - [`partitioner`]: Kafka's murmur2 key partitioner and the sticky partitioner for null keys.
//! - [`kafka`]: a minimal Kafka-protocol client (cluster metadata, producer on the same
//!   accumulator, static-assignment consumer) for the load generator and tests.

pub mod accumulator;
mod cluster;
mod connection;
mod consumer;
mod delivery;
mod error;
pub mod kafka;
pub mod partitioner;
mod producer;

pub use cluster::{Client, ClientOptions, GroupDescription, JoinResult, Metadata, Routing};
pub use connection::{Connection, REQUEST_TIMEOUT_MS_DEFAULT};
pub use consumer::{Consumer, ConsumerOptions, ConsumerRecord};
pub use error::{error_code_text, ClientError};
pub use producer::{Delivery, Producer, ProducerOptions, RecordAck};

pub use format::batch::Header;
pub use protocol::messages::{
    Acks, Assignor, CommitOffset, ErrorCode, FetchPartition, FetchPartitionResult, FetchedOffset, GroupListing,
    GroupMember, ListOffsetsPartition, ListOffsetsResult, OffsetSpec, PartitionError, PartitionMetadata,
    ProducePartition, ProducePartitionResult, ReassignmentEntry, Request, Response, ShardInfo, TopicConfigEntry,
    TopicMetadata, TopicPartition, TopicSettings,
};

/// Polls futures concurrently on the current task and returns their outputs in input order.
/// (No tasks are spawned, so the futures may borrow.)
pub(crate) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_all_keeps_input_order() {
        let out = futures_lite::future::block_on(join_all(vec![
            Box::pin(async { 1 }) as std::pin::Pin<Box<dyn std::future::Future<Output = i32>>>,
            Box::pin(async {
                futures_lite::future::yield_now().await;
                2
            }),
            Box::pin(async { 3 }),
        ]));
        assert_eq!(out, vec![1, 2, 3]);
    }
}
