//! What a run against a cluster waits for before it measures anything, over the native
//! protocol (the Rust client):
//!
//! - `wait_ready`: the cluster has a metadata leader and at least N brokers registered. The
//!   native Metadata lists no brokers, so the proof is a probe topic with N replicas: its
//!   creation is committed only by a metadata leader, and placed only when N unfenced brokers
//!   are registered. The probe is deleted at once.
//! - `wait_in_sync`: every partition of the run's topics has a leader and its ISR is all its
//!   replicas, as the node the client asks sees the committed metadata, and each leader
//!   answers for its partition.
//!
//! Every wait is bounded and fails saying what it waited for.

use std::time::{Duration, Instant};

use client::{Client, ErrorCode, ListOffsetsPartition, OffsetSpec, TopicMetadata, TopicSettings};

use crate::error::{LoadgenError, LoadgenResult};

/// How long an embedded cluster may take to elect a metadata leader and register its brokers
/// (three elections' worth of timeouts on a loaded 2-vCPU machine, with room).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long new topics may take to get leaders with every replica in sync.
pub const IN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Waits until a topic with `brokers` replicas can be created (see the module comment).
/// `probe_topic` must be a name no one else uses.
pub async fn wait_ready(client: &Client, brokers: u32, probe_topic: &str, timeout: Duration) -> LoadgenResult<()> {
    assert!(brokers > 0);
    let deadline = Instant::now() + timeout;
    let settings = TopicSettings {
        replication_factor: Some(brokers),
        durability: Some("none".to_owned()),
        ..TopicSettings::default()
    };
    loop {
        let last = match client.create_topic(probe_topic, 1, settings.clone()).await {
            Ok(()) => break,
            // An earlier attempt was committed after its answer timed out.
            Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => break,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(LoadgenError::Broker(format!(
                "the cluster did not have a metadata leader and {brokers} registered brokers within {:.0} s \
                 (last answer: {last})",
                timeout.as_secs_f64()
            )));
        }
        glommio::timer::sleep(POLL_INTERVAL).await;
    }
    // Leaving the probe behind would only cost its (empty) replicas.
    if let Err(e) = client.delete_topic(probe_topic).await {
        eprintln!("shardlog-loadgen: could not delete the probe topic {probe_topic}: {e}");
    }
    Ok(())
}

/// Why a topic is not ready yet, or `None` when every partition has a leader with its whole
/// replica set in sync (`factor`: the replica count it must have, when asked for). A single
/// node's partitions name no replicas and are ready as they are.
pub fn not_in_sync(topic: &TopicMetadata, factor: Option<u32>) -> Option<String> {
    if topic.error != ErrorCode::None {
        return Some(format!("{}: {:?}", topic.name, topic.error));
    }
    if topic.partitions.is_empty() {
        return Some(format!("{}: no partitions yet", topic.name));
    }
    for p in &topic.partitions {
        let what = |s: &str| Some(format!("{}-{}: {s}", topic.name, p.partition));
        if p.replica_nodes.is_empty() {
            continue;
        }
        if p.leader_node < 0 || p.leader_address.is_none() {
            return what("no leader");
        }
        if factor.is_some_and(|f| p.replica_nodes.len() != f as usize) {
            return what(&format!("replicas {:?}, expected {} of them", p.replica_nodes, factor.unwrap_or(0)));
        }
        let (mut replicas, mut isr) = (p.replica_nodes.clone(), p.isr_nodes.clone());
        replicas.sort_unstable();
        isr.sort_unstable();
        if replicas != isr {
            return what(&format!("ISR {isr:?} of replicas {replicas:?}"));
        }
    }
    None
}

/// Waits until every partition of `topics` has a leader and an ISR of all its replicas, and
/// each leader answers for its partition (a ListOffsets: metadata can name a leader before
/// that node has taken the role, and the consumer surfaces NotLeaderOrFollower as an error).
pub async fn wait_in_sync(
    client: &Client,
    topics: &[String],
    factor: Option<u32>,
    timeout: Duration,
) -> LoadgenResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let waiting = match client.metadata(Some(topics.to_vec()), false).await {
            Ok(metadata) => match metadata.topics.iter().find_map(|t| not_in_sync(t, factor)) {
                Some(waiting) => Some(waiting),
                None => leaders_not_answering(client, &metadata.topics).await,
            },
            Err(e) => Some(format!("metadata: {e}")),
        };
        let Some(waiting) = waiting else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(LoadgenError::Broker(format!(
                "topics not in sync within {:.0} s: {waiting}",
                timeout.as_secs_f64()
            )));
        }
        glommio::timer::sleep(POLL_INTERVAL).await;
    }
}

/// The first partition whose leader does not answer a ListOffsets, or `None`.
async fn leaders_not_answering(client: &Client, topics: &[TopicMetadata]) -> Option<String> {
    let partitions: Vec<ListOffsetsPartition> = topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ListOffsetsPartition {
                topic: t.name.clone(),
                partition: p.partition,
                spec: OffsetSpec::Latest,
            })
        })
        .collect();
    match client.list_offsets(partitions).await {
        Ok(results) => results
            .iter()
            .find(|r| r.error != ErrorCode::None)
            .map(|r| format!("{}-{}: its leader answered {:?}", r.topic, r.partition, r.error)),
        Err(e) => Some(format!("ListOffsets: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::PartitionMetadata;

    fn topic(partitions: Vec<PartitionMetadata>) -> TopicMetadata {
        TopicMetadata {
            name: "t".into(),
            error: ErrorCode::None,
            id: 1,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 1 << 30,
            durability: "sync".into(),
            partitions,
        }
    }

    fn replicated(partition: u32, leader: i32, replicas: &[u32], isr: &[u32]) -> PartitionMetadata {
        PartitionMetadata {
            leader_address: (leader >= 0).then(|| "127.0.0.1:1".to_owned()),
            leader_node: leader,
            replica_nodes: replicas.to_vec(),
            isr_nodes: isr.to_vec(),
            ..PartitionMetadata::single(partition)
        }
    }

    #[test]
    fn in_sync_needs_a_leader_and_every_replica_in_the_isr() {
        assert_eq!(not_in_sync(&topic(vec![PartitionMetadata::single(0)]), None), None, "a single node");
        assert!(not_in_sync(&topic(Vec::new()), None).is_some());
        let ready = topic(vec![replicated(0, 2, &[2, 3, 1], &[1, 2, 3]), replicated(1, 3, &[3, 1, 2], &[3, 1, 2])]);
        assert_eq!(not_in_sync(&ready, Some(3)), None);
        assert!(not_in_sync(&ready, Some(1)).is_some(), "three replicas where one was asked for");
        let shrunk = topic(vec![replicated(0, 2, &[2, 3, 1], &[2, 3])]);
        assert!(not_in_sync(&shrunk, None).unwrap().contains("ISR"));
        let leaderless = topic(vec![replicated(0, -1, &[1], &[1])]);
        assert!(not_in_sync(&leaderless, None).unwrap().contains("no leader"));
        let unknown = TopicMetadata { error: ErrorCode::UnknownTopicOrPartition, ..topic(Vec::new()) };
        assert!(not_in_sync(&unknown, None).is_some());
    }
}
