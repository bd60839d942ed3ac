//! Serving the calls other shards send: one task per call (a slow call must not hold up the
//! channel), and the produces from each peer appended in the order they arrived — the order
//! the peer's connections read them (`order.rs`).

use std::rc::Rc;

use glommio::channels::shared_channel::ConnectedReceiver;

use crate::admin;
use crate::calls::ShardCall;
use crate::order::{AppendOrder, Turn};
use crate::shard::Shard;

/// Receives calls from one peer shard, forever.
pub async fn serve_peer(shard: Rc<Shard>, receiver: ConnectedReceiver<ShardCall>) {
    let order = AppendOrder::default();
    while let Some(call) = receiver.recv().await {
        let turn = match call.produce_partition() {
            Some(partition) => order.take(&partition.topic, partition.partition),
            None => Turn::unordered(),
        };
        let shard = shard.clone();
        glommio::spawn_local(serve_call(shard, call, turn)).detach();
    }
}

/// Serves one call here and sends its reply (ignored if the caller gave up).
async fn serve_call(shard: Rc<Shard>, call: ShardCall, turn: Turn) {
    let metrics = shard.metrics();
    metrics.forwards_in.set(metrics.forwards_in.get() + 1);
    match call {
        ShardCall::Produce { partition, batches, acks, reply } => {
            let _ = reply.send(shard.produce_here(partition, batches, acks, turn).await);
        }
        ShardCall::Read { partition, offset, bytes_max, reply } => {
            let _ = reply.send(shard.read_here(&partition, offset, bytes_max).await);
        }
        ShardCall::Wait { partition, offset, wait_ms, reply } => {
            shard.wait_here(&partition, offset, wait_ms).await;
            let _ = reply.send(());
        }
        ShardCall::ListOffset { partition, query, reply } => {
            let _ = reply.send(shard.list_offset(partition, query).await);
        }
        ShardCall::Bounds { partition, reply } => {
            let _ = reply.send(shard.bounds(partition).await);
        }
        ShardCall::OpenPartitions { topic, partitions, config, reply } => {
            let _ = reply.send(shard.open_partitions(&topic, &partitions, &config).await);
        }
        ShardCall::DropPartitions { topic, partitions, reply } => {
            let _ = reply.send(shard.drop_partitions(&topic, &partitions).await);
        }
        ShardCall::CreateTopic { name, partitions, config, reply } => {
            let _ = reply.send(admin::create_topic(&shard, name, partitions, config).await);
        }
        ShardCall::DeleteTopic { name, reply } => {
            let _ = reply.send(admin::delete_topic(&shard, name).await);
        }
        ShardCall::CreatePartitions { name, total, reply } => {
            let _ = reply.send(admin::create_partitions(&shard, name, total).await);
        }
        ShardCall::JoinGroup { request, reply } => {
            let _ = reply.send(shard.join_group(request).await);
        }
        ShardCall::JoinAssignedGroup { request, reply } => {
            let _ = reply.send(shard.join_group_assigned(request).await);
        }
        ShardCall::SyncGroup { request, reply } => {
            let _ = reply.send(shard.sync_group(request).await);
        }
        ShardCall::Heartbeat { request, reply } => {
            let _ = reply.send(shard.heartbeat(request).await);
        }
        ShardCall::LeaveGroup { request, reply } => {
            let _ = reply.send(shard.leave_group(request).await);
        }
        ShardCall::ConsumerHeartbeat { request, reply } => {
            let _ = reply.send(shard.consumer_group_heartbeat(request).await);
        }
        ShardCall::DescribeConsumerGroup { group, reply } => {
            if let Ok(description) = shard.describe_consumer_group(group).await {
                let _ = reply.send(description);
            }
        }
        ShardCall::CheckOffsetFetch { group, member_id, member_epoch, reply } => {
            let _ = reply.send(shard.check_offset_fetch(group, member_id, member_epoch).await);
        }
        ShardCall::CommitOffsets { commit, reply } => {
            let _ = reply.send(shard.commit_offsets(commit).await);
        }
        ShardCall::FetchOffsets { group, partitions, reply } => {
            if let Ok(offsets) = shard.fetch_offsets(group, partitions).await {
                let _ = reply.send(offsets);
            }
        }
        ShardCall::Metrics { reply } => {
            let _ = reply.send(shard.metrics_snapshot());
        }
        // ---- operations APIs (issue #13) ----
        ShardCall::ListGroups { reply } => {
            let _ = reply.send(shard.list_groups().await.unwrap_or_default());
        }
        ShardCall::DescribeGroup { group, reply } => {
            if let Ok(description) = shard.describe_group(group).await {
                let _ = reply.send(description);
            }
        }
        ShardCall::DeleteGroup { group, reply } => {
            let _ = reply.send(shard.delete_group(group).await);
        }
        ShardCall::DeleteOffsets { group, partitions, reply } => {
            let _ = reply.send(shard.delete_offsets(group, partitions).await);
        }
        ShardCall::DeleteRecords { partition, offset, reply } => {
            let _ = reply.send(shard.delete_records(partition, offset).await);
        }
        ShardCall::MaxTimestamp { partition, reply } => {
            let _ = reply.send(shard.max_timestamp(partition).await);
        }
        ShardCall::EndOffsetForEpoch { partition, epoch, reply } => {
            let _ = reply.send(shard.end_offset_for_epoch(partition, epoch).await);
        }
        ShardCall::DescribeProducers { partition, reply } => {
            let _ = reply.send(shard.describe_producers(partition).await);
        }
        ShardCall::AlterTopicConfig { name, config, reply } => {
            let _ = reply.send(admin::alter_topic_config(&shard, name, config).await);
        }
        ShardCall::ReconfigurePartitions { topic, config, reply } => {
            shard.reconfigure_partitions(&topic, &config);
            let _ = reply.send(());
        }
        ShardCall::Propose { command, reply } => {
            let _ = reply.send(shard.propose(command).await);
        }
    }
}
