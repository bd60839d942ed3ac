//! A real cluster — three `shardlog serve` processes behind fault-injecting proxies
//! (`tests/cluster/`) — under kill -9, pauses and network cuts, checked Jepsen-style:
//! producers with acks=all (the native client, durable acks; the Kafka client, acks=-1),
//! readers, and group offset commits run while a seeded nemesis strikes; then the cluster is
//! healed, every replica catches up, the final logs are read from the leaders and every
//! replica's files are read back, and the checker verifies that no acknowledged record was lost,
//! reads were stable (never saw what was later truncated), committed offsets never went back,
//! and every replica holds byte-identical batches below the high watermark.
//!
//! The negative control shows the checker catching a real loss: acks=all with
//! min.insync.replicas=1 and unclean leader election loses acknowledged records when the only
//! in-sync replica dies and an out-of-sync one takes over — and the same steps without unclean
//! election lose nothing (the partition waits offline for its in-sync replica).
//!
//! `SHARDLOG_TEST_SEED` replays a run; `SHARDLOG_CLUSTER_FAULTS` sets the number of faults of
//! the nemesis run (a long run: hundreds, see docs/reliability.md).
#![allow(clippy::unwrap_used)]

mod cluster;

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client::{Client, ClientOptions, TopicSettings};
use cluster::checker::{check_all, Check, FinalLog, ReplicaBatches};
use cluster::clients::{
    kafka_cluster, native_client, KafkaProducerAdapter, KafkaReader, NativeOffsets, NativeProducer, NativeReader,
};
use cluster::history::History;
use cluster::nemesis::{FaultKind, Nemesis, NemesisOptions};
use cluster::workload::{
    commit_loop, produce_loop, read_final_log, read_loop, value_of, CommitLoop, ProduceLoop, ReadLoop,
};
use cluster::{on_executor, seed_from_env, Cluster, ClusterOptions, NodeId, WAIT};
use engine::batch::{peek_batch_size, BatchHeader};
use engine::catalog::TopicConfig;

/// How long the cluster may take to elect, re-replicate and settle after the faults.
const SETTLE: Duration = Duration::from_secs(60);

fn client_options() -> ClientOptions {
    ClientOptions { request_timeout_ms: 5_000, metadata_max_age_ms: 1_000, ..ClientOptions::default() }
}

fn stop_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

fn start(nodes: u32, seed: u64) -> Cluster {
    let cluster = Cluster::start(ClusterOptions {
        nodes,
        seed,
        extra_args: vec!["--batch-cache-bytes".into(), (64u64 << 20).to_string()],
        ..ClusterOptions::default()
    });
    cluster.wait_kafka_brokers();
    cluster
}

/// Creates `topic` through the native protocol (retrying while the metadata log elects).
fn create_topic(cluster: &Cluster, topic: &'static str, partitions: u32, settings: TopicSettings) {
    let bootstrap = cluster.bootstrap_native();
    on_executor(move || async move {
        let deadline = Instant::now() + WAIT;
        loop {
            let client = native_client(&bootstrap, client_options(), WAIT).await.unwrap();
            match client.create_topic(topic, partitions, settings.clone()).await {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("create {topic}: {e}; retrying");
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("create {topic}: {e}"),
            }
        }
    });
}

/// Per partition: (leader node, replica nodes), once every partition has a leader and all its
/// replicas in sync (as the native Metadata of some node says).
fn wait_in_sync(cluster: &Cluster, topic: &'static str, timeout: Duration) -> Vec<(u32, Vec<u32>)> {
    let bootstrap = cluster.bootstrap_native();
    let found = on_executor(move || async move {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(client) = native_client(&bootstrap, client_options(), Duration::from_secs(2)).await {
                if let Ok(metadata) = client.metadata(Some(vec![topic.to_owned()]), false).await {
                    let partitions = &metadata.topics[0].partitions;
                    last = format!("{partitions:?}");
                    let settled = !partitions.is_empty()
                        && partitions.iter().all(|p| {
                            let mut isr = p.isr_nodes.clone();
                            let mut replicas = p.replica_nodes.clone();
                            isr.sort_unstable();
                            replicas.sort_unstable();
                            p.leader_node >= 0 && isr == replicas
                        });
                    if settled {
                        return Ok(partitions
                            .iter()
                            .map(|p| (p.leader_node as u32, p.replica_nodes.clone()))
                            .collect::<Vec<_>>());
                    }
                }
            }
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
        Err(last)
    });
    found.unwrap_or_else(|last| cluster.fail(&format!("{topic}: replicas not all in sync in {timeout:?}: {last}")))
}

/// Every batch of a partition log in `dir` (the broker stopped), as (base offset, bytes).
async fn log_batches(dir: &Path) -> Vec<(u64, Bytes)> {
    let config = engine::LogConfig::from_topic(&TopicConfig::default());
    let log = engine::Log::open(dir, config).await.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 4 << 20).await.unwrap();
        let mut rest = read.to_bytes();
        while !rest.is_empty() {
            let size = peek_batch_size(&rest).unwrap().unwrap();
            let batch = rest.split_to(size);
            let base = BatchHeader::parse(&batch).unwrap().base_offset;
            out.push((u64::try_from(base).unwrap(), batch));
        }
        assert!(read.next_offset > offset, "{}: no progress at {offset}", dir.display());
        offset = read.next_offset;
    }
    log.close().await.unwrap();
    out
}

/// Each replica's batches of `topic`'s partitions, read from the stopped nodes' data dirs.
fn replica_batches(
    cluster: &Cluster,
    topic: &'static str,
    layout: &[(u32, Vec<u32>)],
    logs: &[FinalLog],
) -> Vec<ReplicaBatches> {
    let mut out = Vec::new();
    for (partition, ((leader, nodes), log)) in layout.iter().zip(logs).enumerate() {
        let dirs: Vec<(NodeId, std::path::PathBuf)> =
            nodes.iter().map(|&n| (n, cluster.node_data_dir(n).join(format!("{topic}-{partition}")))).collect();
        let replicas: BTreeMap<NodeId, Vec<(u64, Bytes)>> = on_executor(move || async move {
            let mut replicas = BTreeMap::new();
            for (node, dir) in dirs {
                replicas.insert(node, log_batches(&dir).await);
            }
            replicas
        });
        out.push(ReplicaBatches {
            topic: topic.to_owned(),
            partition: partition as u32,
            high_watermark: log.high_watermark,
            leader: *leader,
            replicas,
        });
    }
    out
}

/// The final log of each partition, read from its leader.
fn final_logs(cluster: &Cluster, topic: &'static str, partitions: u32) -> Vec<FinalLog> {
    let bootstrap = cluster.bootstrap_native();
    on_executor(move || async move {
        let client = native_client(&bootstrap, client_options(), WAIT).await.unwrap();
        let reader = NativeReader::new(client);
        let mut logs = Vec::new();
        for partition in 0..partitions {
            logs.push(read_final_log(&reader, topic, partition, SETTLE).await.unwrap());
        }
        logs
    })
}

/// The faults of the nemesis run: `SHARDLOG_CLUSTER_FAULTS`, or `default`.
fn faults(default: usize) -> usize {
    std::env::var("SHARDLOG_CLUSTER_FAULTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// acks=all producers (native and Kafka), readers and group offset committers under a seeded
/// nemesis of kill -9, SIGSTOP, node-to-node partitions and isolation; then the checker.
#[test]
fn acknowledged_records_survive_kills_pauses_and_partitions() {
    const TOPIC: &str = "jepsen";
    const PARTITIONS: u32 = 2;
    let seed = seed_from_env(0x5eed_0012);
    let cluster = start(3, seed);
    let settings =
        TopicSettings { replication_factor: Some(3), min_insync_replicas: Some(2), ..TopicSettings::default() };
    create_topic(&cluster, TOPIC, PARTITIONS, settings);
    wait_in_sync(&cluster, TOPIC, WAIT);
    let history = Arc::new(History::with_epoch(cluster.epoch()));
    let nemesis = Nemesis::new(
        NemesisOptions {
            seed,
            kinds: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Isolate],
            steps: faults(6),
            // Some faults outlast the 3 s broker session (failover), others do not.
            hold_ms: 500..=5_000,
            calm_ms: 500..=2_000,
        },
        &cluster.node_ids(),
    );
    let faults_done = stop_flag();
    let started = stop_flag();
    std::thread::scope(|s| {
        s.spawn(|| {
            cluster.wait_until(WAIT, || started.load(Ordering::SeqCst).then_some(()), || "workload start".into());
            nemesis.run(&cluster, &AtomicBool::new(false), Some(&history));
            faults_done.store(true, Ordering::SeqCst);
        });
        let (history, done, started) = (history.clone(), faults_done.clone(), started.clone());
        let (native, kafka) = (cluster.bootstrap_native(), cluster.bootstrap_kafka());
        on_executor(move || async move {
            let client = native_client(&native, client_options(), WAIT).await.unwrap();
            let kafka = kafka_cluster(&kafka, WAIT).await.unwrap();
            let reading = stop_flag();
            started.store(true, Ordering::SeqCst);
            let partitions: Vec<u32> = (0..PARTITIONS).collect();
            let op_timeout = Duration::from_secs(20);
            let produce = |client| ProduceLoop {
                client,
                topic: TOPIC.into(),
                partitions: partitions.clone(),
                values_max: u64::MAX,
                op_timeout,
            };
            let read = |client| ReadLoop {
                client,
                topic: TOPIC.into(),
                partitions: partitions.clone(),
                op_timeout,
                idle_pause: Duration::from_millis(20),
            };
            let commits = |client, commit| CommitLoop {
                client,
                group: "g".into(),
                topic: TOPIC.into(),
                partitions: partitions.clone(),
                op_timeout,
                pause: Duration::from_millis(50),
                commit,
            };
            let side = {
                let (h1, h2, h3, h4) = (history.clone(), history.clone(), history.clone(), history.clone());
                let (r1, r2, r3, r4) = (reading.clone(), reading.clone(), reading.clone(), reading.clone());
                let (native_reader, kafka_reader) =
                    (NativeReader::new(client.clone()), KafkaReader::new(kafka.clone()));
                let (offsets, fetch_only) = (NativeOffsets::new(client.clone()), NativeOffsets::new(client.clone()));
                let (plan1, plan2, plan3, plan4) = (read(3), read(4), commits(5, true), commits(6, false));
                (
                    glommio::spawn_local(async move { read_loop(&native_reader, &h1, &plan1, &r1).await }),
                    glommio::spawn_local(async move { read_loop(&kafka_reader, &h2, &plan2, &r2).await }),
                    glommio::spawn_local(async move { commit_loop(&offsets, &h3, &plan3, &r3).await }),
                    glommio::spawn_local(async move { commit_loop(&fetch_only, &h4, &plan4, &r4).await }),
                )
            };
            let native_producer = NativeProducer::new(client.clone());
            let kafka_producer = KafkaProducerAdapter::new(kafka.clone());
            let (p1, p2) = (produce(1), produce(2));
            let stats = futures_lite::future::zip(
                produce_loop(&native_producer, &history, &p1, &done),
                produce_loop(&kafka_producer, &history, &p2, &done),
            )
            .await;
            reading.store(true, Ordering::SeqCst);
            let (a, b, c, d) = side;
            eprintln!(
                "producers {stats:?}; readers {:?} {:?}; committers {:?} {:?}",
                a.await,
                b.await,
                c.await,
                d.await
            );
        });
    });
    cluster.recover();
    let layout = wait_in_sync(&cluster, TOPIC, SETTLE);
    let logs = final_logs(&cluster, TOPIC, PARTITIONS);
    let context = format!("seed {seed:#x}\n{}{}", nemesis.report(), cluster.diagnostics());
    cluster.stop_all_cleanly();
    let replicas = replica_batches(&cluster, TOPIC, &layout, &logs);
    let verdict = check_all(&history, &logs, &replicas);
    eprintln!("{verdict}");
    for check in [Check::NoLostAcks, Check::ReadsStable, Check::ReplicasIdentical, Check::CommitsMonotonic] {
        assert!(verdict.report(check).unwrap().checked > 0, "{check} checked nothing\n{verdict}{context}");
    }
    verdict.assert_valid(&context);
}

/// The steps that lose acknowledged records with unclean leader election: a topic of two
/// replicas, min.insync.replicas 1. The follower dies (and leaves the ISR); records are
/// acknowledged with acks=all by the leader alone; the leader dies; the follower comes back.
/// With unclean election it becomes leader without those records (and the old leader, back,
/// truncates them): the checker must report them lost. Without it, the partition waits
/// offline for the old leader, and nothing is lost.
fn lone_leader_dies(unclean: bool) -> (cluster::checker::Verdict, String) {
    const TOPIC: &str = "lone";
    let seed = seed_from_env(0x5eed_0013);
    let cluster = start(3, seed);
    let settings = TopicSettings {
        replication_factor: Some(2),
        min_insync_replicas: Some(1),
        unclean_leader_election: Some(unclean),
        ..TopicSettings::default()
    };
    create_topic(&cluster, TOPIC, 1, settings);
    let layout = wait_in_sync(&cluster, TOPIC, WAIT);
    let (leader, replicas) = layout[0].clone();
    let follower = *replicas.iter().find(|&&n| n != leader).unwrap();
    let history = Arc::new(History::with_epoch(cluster.epoch()));
    let produce = |client: u64, values: u64| {
        let (history, bootstrap) = (history.clone(), cluster.bootstrap_native());
        on_executor(move || async move {
            let client_handle: Rc<Client> = native_client(&bootstrap, client_options(), WAIT).await.unwrap();
            let producer = NativeProducer::new(client_handle);
            let plan = ProduceLoop {
                client,
                topic: TOPIC.into(),
                partitions: vec![0],
                values_max: values,
                op_timeout: Duration::from_secs(20),
            };
            produce_loop(&producer, &history, &plan, &AtomicBool::new(false)).await
        })
    };
    // Replicated to both.
    produce(1, 20);
    // The follower dies; once the controller fences it, the ISR is the leader alone.
    cluster.kill9(follower);
    history.nemesis(&format!("kill -9 {follower} (follower)"), vec![follower]);
    let shrunk = on_isr(&cluster, TOPIC, move |isr| isr == [leader]);
    assert!(shrunk, "the ISR never shrank to the leader\n{}", cluster.diagnostics());
    // Acknowledged by the leader alone (min.insync.replicas 1).
    produce(2, 20);
    cluster.kill9(leader);
    history.nemesis(&format!("kill -9 {leader} (leader)"), vec![leader]);
    cluster.restart(follower);
    history.nemesis(&format!("restart {follower}"), vec![follower]);
    if unclean {
        // The out-of-sync follower takes over; the old leader comes back after it.
        let took_over = on_isr(&cluster, TOPIC, move |isr| isr == [follower]);
        assert!(took_over, "no unclean election\n{}", cluster.diagnostics());
    }
    cluster.restart(leader);
    history.nemesis(&format!("restart {leader}"), vec![leader]);
    let layout = wait_in_sync(&cluster, TOPIC, SETTLE);
    let logs = final_logs(&cluster, TOPIC, 1);
    let context = format!("seed {seed:#x}\n{}", cluster.diagnostics());
    cluster.stop_all_cleanly();
    let replicas = replica_batches(&cluster, TOPIC, &layout, &logs);
    (check_all(&history, &logs, &replicas), context)
}

/// Polls the native Metadata until `lone-0`'s ISR satisfies `want` (false after `SETTLE`).
fn on_isr(cluster: &Cluster, topic: &'static str, want: impl Fn(&[u32]) -> bool + Send + 'static) -> bool {
    let bootstrap = cluster.bootstrap_native();
    on_executor(move || async move {
        let deadline = Instant::now() + SETTLE;
        while Instant::now() < deadline {
            if let Ok(client) = native_client(&bootstrap, client_options(), Duration::from_secs(2)).await {
                if let Ok(metadata) = client.metadata(Some(vec![topic.to_owned()]), false).await {
                    if let Some(p) = metadata.topics[0].partitions.first() {
                        if want(&p.isr_nodes) && p.leader_node >= 0 {
                            return true;
                        }
                    }
                }
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        false
    })
}

/// Negative control: the checker catches the records unclean leader election loses.
#[test]
fn unclean_leader_election_loses_acknowledged_records_and_the_checker_says_so() {
    let (verdict, context) = lone_leader_dies(true);
    let lost = verdict.report(Check::NoLostAcks).unwrap();
    assert!(
        !lost.is_valid(),
        "the checker missed the loss of records acknowledged by the lone leader\n{verdict}{context}"
    );
    // Exactly the second batch of values (client 2's) is gone.
    let report = format!("{verdict}");
    assert!(report.contains(&value_of(2, 0)), "{report}");
}

/// The same steps without unclean election: the partition waits for its in-sync replica and
/// nothing acknowledged is lost.
#[test]
fn without_unclean_election_the_partition_waits_for_its_in_sync_replica() {
    let (verdict, context) = lone_leader_dies(false);
    verdict.assert_valid(&context);
}
