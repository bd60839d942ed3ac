//! Kafka clients we did not write against a 3-node cluster while a partition leader's node is
//! killed (kill -9) and later restarted: confluent-kafka's idempotent acks=all producer and
//! group consumer carry on (NOT_LEADER_OR_FOLLOWER, metadata refresh, a new coordinator if the
//! controller was the one killed), every acknowledged value is consumed, none is stored twice,
//! the group's committed offsets hold; then kcat reads every acknowledged value back from the
//! healed cluster and produces more.
//!
//! With CI=true a missing client fails the test (`.ci/run` installs them); elsewhere the test
//! says it skipped.
#![allow(clippy::unwrap_used)]

mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client::ClientOptions;
use cluster::clients::native_client;
use cluster::{on_executor, seed_from_env, Cluster, ClusterOptions, NodeId};

/// The whole client run (it produces for `PRODUCE_SECONDS`, then drains and checks).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(240);
const PRODUCE_SECONDS: u32 = 12;
/// The killed node stays down this long (longer than the 3 s broker session: a failover).
const DOWN: Duration = Duration::from_secs(6);

fn available(program: &str, args: &[&str]) -> bool {
    let found = Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{program} is not installed, and CI=true requires it (.ci/run installs it)");
    }
    let _ = std::io::stderr().write_all(format!("\n!!!!! SKIPPED: {program} is not installed !!!!!\n").as_bytes());
    false
}

fn python_has_confluent_kafka() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || available("confluent-kafka (python3 module)", &[])
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_clients").join(name).display().to_string()
}

/// The node leading `topic`'s partition `partition`, from the native Metadata.
fn leader_of(cluster: &Cluster, topic: &'static str, partition: u32) -> NodeId {
    let bootstrap = cluster.bootstrap_native();
    let leader = on_executor(move || async move {
        let client = native_client(&bootstrap, ClientOptions::default(), Duration::from_secs(20)).await.unwrap();
        let metadata = client.metadata(Some(vec![topic.to_owned()]), false).await.unwrap();
        metadata.topics[0].partitions[partition as usize].leader_node
    });
    u32::try_from(leader).unwrap_or_else(|_| cluster.fail(&format!("{topic}-{partition} has no leader")))
}

/// Runs `program SCRIPT BOOTSTRAP TOPIC PRODUCE_SECONDS` (a client through a failover: it prints
/// READY once records flow, then a JSON summary) against `cluster`, kills the leader of
/// `topic`-0's node at READY, restarts it after `DOWN`: the script's output lines and the node
/// killed.
fn run_through_leader_kill(cluster: &Cluster, program: &str, name: &str, topic: &'static str) -> (Vec<String>, NodeId) {
    let bootstrap = cluster.bootstrap_kafka();
    let mut child = Command::new(program)
        .arg(script(name))
        .args([bootstrap.as_str(), topic, &PRODUCE_SECONDS.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut out = Vec::new();
    let mut killed = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) if line == "READY" => {
                let leader = leader_of(cluster, topic, 0);
                cluster.kill9(leader);
                killed = Some((leader, Instant::now()));
            }
            Ok(line) => out.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some((node, at)) = killed {
            if at.elapsed() >= DOWN && !cluster.is_running(node) {
                cluster.restart(node);
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            cluster.fail(&format!("the client did not finish in {CLIENT_TIMEOUT:?}: {out:?}"));
        }
    }
    let status = child.wait().unwrap();
    let stderr = stderr_reader.join().unwrap();
    if !status.success() {
        cluster.fail(&format!("{name} failed ({status}):\n{stderr}\nstdout: {out:?}"));
    }
    let (killed_node, _) = killed.unwrap_or_else(|| cluster.fail("the client never said READY"));
    if !cluster.is_running(killed_node) {
        cluster.restart(killed_node);
    }
    let (killed_node, _) = killed.unwrap_or_else(|| cluster.fail(&format!("{name} never said READY")));
    if !cluster.is_running(killed_node) {
        cluster.restart(killed_node);
    }
    (out, killed_node)
}

/// The "acked" count of a script's JSON summary line.
fn acked_of(cluster: &Cluster, out: &[String]) -> u64 {
    let summary = out.last().cloned().unwrap_or_default();
    summary
        .split("\"acked\": ")
        .nth(1)
        .or_else(|| summary.split("\"acked\":").nth(1))
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| cluster.fail(&format!("no summary: {out:?}")))
}

#[test]
fn confluent_kafka_idempotent_producer_and_group_consumer_carry_on_through_a_leader_kill() {
    if !python_has_confluent_kafka() || !available("kcat", &["-V"]) {
        return;
    }
    const TOPIC: &str = "failover";
    let cluster = Cluster::start(ClusterOptions { seed: seed_from_env(0x5eed_0014), ..ClusterOptions::default() });
    cluster.wait_kafka_brokers();
    let bootstrap = cluster.bootstrap_kafka();
    let (out, killed_node) = run_through_leader_kill(&cluster, "python3", "confluent_failover.py", TOPIC);
    let summary = out.last().cloned().unwrap_or_default();
    eprintln!("confluent-kafka through the kill of node {killed_node}: {summary}");
    let acked = acked_of(&cluster, &out);

    // kcat reads every acknowledged value back (plus the one produced after the checks), and
    // produces on the healed cluster.
    let consumed =
        Command::new("kcat").args(["-b", &bootstrap, "-C", "-t", TOPIC, "-e", "-q", "-f", "%s\\n"]).output().unwrap();
    assert!(consumed.status.success(), "kcat -C: {}", String::from_utf8_lossy(&consumed.stderr));
    let values: Vec<String> = String::from_utf8_lossy(&consumed.stdout).lines().map(str::to_owned).collect();
    assert_eq!(values.len() as u64, acked + 1, "every acknowledged value once, and the last one");
    let mut produce = Command::new("kcat")
        .args(["-b", &bootstrap, "-P", "-t", TOPIC, "-X", "acks=all"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    produce.stdin.take().unwrap().write_all(b"kcat-1\nkcat-2\n").unwrap();
    assert!(produce.wait().unwrap().success());
    let consumed =
        Command::new("kcat").args(["-b", &bootstrap, "-C", "-t", TOPIC, "-e", "-q", "-f", "%s\\n"]).output().unwrap();
    let values = String::from_utf8_lossy(&consumed.stdout);
    assert!(values.contains("kcat-1") && values.contains("kcat-2"), "{values}");
    cluster.stop_all_cleanly();
}

/// KIP-848 consumers on a cluster: groups live on the controller node (others answer
/// NOT_COORDINATOR) and commits go through the metadata log; the same checks as on one node
/// (`confluent_consumer_protocol.py`: no overlap, every record once, a leaving member's
/// partitions taken over, an unknown assignor refused).
#[test]
fn confluent_kafka_consumer_protocol_group_on_a_cluster() {
    if !python_has_confluent_kafka() {
        return;
    }
    let cluster = Cluster::start(ClusterOptions { seed: seed_from_env(0x5eed_0848), ..ClusterOptions::default() });
    cluster.wait_kafka_brokers();
    let out = Command::new("python3")
        .args([&script("confluent_consumer_protocol.py"), &cluster.bootstrap_kafka(), "kip848", "uniform"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // librdkafka's log lines start with "%"; the script's own failure does not.
    let failures: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('%')).collect();
    if !out.status.success() {
        cluster.fail(&format!("consumer protocol on a cluster: {failures:?}"));
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"records\": 400"));
    cluster.stop_all_cleanly();
}

/// Where `.ci/run` installs kafkajs (`npm install --prefix target/js kafkajs@2`).
fn kafkajs_installed() -> bool {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/js/node_modules/kafkajs");
    let require = format!("require({:?})", path.display().to_string());
    let ok = Command::new("node")
        .args(["-e", &require])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || available("node with kafkajs (npm install --prefix target/js kafkajs@2)", &[])
}

#[test]
fn kafkajs_idempotent_producer_and_group_consumer_carry_on_through_a_leader_kill() {
    if !kafkajs_installed() {
        return;
    }
    const TOPIC: &str = "failover-js";
    let cluster = Cluster::start(ClusterOptions { seed: seed_from_env(0x5eed_0016), ..ClusterOptions::default() });
    cluster.wait_kafka_brokers();
    let (out, killed_node) = run_through_leader_kill(&cluster, "node", "kafkajs_failover.js", TOPIC);
    let acked = acked_of(&cluster, &out);
    assert!(acked > 50, "{out:?}");
    eprintln!("kafkajs through the kill of node {killed_node}: {}", out.last().unwrap());
    cluster.stop_all_cleanly();
}

fn python_has_kafka_python() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kafka"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || available("kafka-python (python3 module)", &[])
}

#[test]
fn kafka_python_producer_and_group_consumer_carry_on_through_a_leader_kill() {
    if !python_has_kafka_python() {
        return;
    }
    const TOPIC: &str = "failover-py";
    let cluster = Cluster::start(ClusterOptions { seed: seed_from_env(0x5eed_0017), ..ClusterOptions::default() });
    cluster.wait_kafka_brokers();
    let (out, killed_node) = run_through_leader_kill(&cluster, "python3", "kafka_python_failover.py", TOPIC);
    let acked = acked_of(&cluster, &out);
    assert!(acked > 50, "{out:?}");
    eprintln!("kafka-python through the kill of node {killed_node}: {}", out.last().unwrap());
    cluster.stop_all_cleanly();
}
