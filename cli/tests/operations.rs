//! `shardlog group list / describe / delete` and `shardlog topic config get / set` against the
//! real binary: a Kafka consumer (kcat) and a native one leave committed offsets; describe
//! shows each partition's committed offset, log end and lag; a group with members is not
//! deleted; topic configs round-trip, the applied ones marked so, unknown names refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{temp_dir, Server, ServerOptions};

/// The row of `group describe` for (topic, partition): its whitespace-separated cells.
fn row<'a>(describe: &'a str, topic: &str, partition: u32) -> Vec<&'a str> {
    describe
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<&str>>())
        .find(|cells| cells.len() == 9 && cells[1] == topic && cells[2] == partition.to_string())
        .unwrap_or_else(|| panic!("no row for {topic}-{partition} in:\n{describe}"))
}

#[test]
fn groups_are_listed_described_with_lag_and_deleted() {
    let data = temp_dir("shardlog-operations-");
    let options = ServerOptions { kafka: true, ..ServerOptions::default() };
    let server = Server::start_with(data.path(), options);
    server.cli(&["topic", "create", "lagging", "--partitions", "2"]).success();
    let input: String = (0..10).map(|i| format!("k{i},v{i}\n")).collect();
    server.cli_stdin(&["produce", "lagging", "--key-separator", ","], input.as_bytes()).success();
    // A native group reads 4 records of partition-spread data and commits them.
    let consumed = server.cli(&[
        "consume",
        "lagging",
        "--group",
        "native-g",
        "--from-beginning",
        "--max-messages",
        "4",
        "--timeout-ms",
        "5000",
    ]);
    assert_eq!(consumed.success().lines().count(), 4);

    let listed = server.cli(&["group", "list"]);
    assert!(listed.success().lines().any(|l| l == "native-g"), "{listed}");
    let describe = server.cli(&["group", "describe", "native-g"]);
    let text = describe.success();
    assert!(text.contains("State: Empty"), "{describe}");
    let mut committed = 0;
    let mut lag = 0;
    for partition in 0..2 {
        let cells = row(text, "lagging", partition);
        let current: i64 = cells[3].parse().unwrap_or(0);
        let end: i64 = cells[4].parse().unwrap();
        assert_eq!(cells[5], if cells[3] == "-" { "-".to_owned() } else { (end - current).to_string() });
        committed += current;
        lag += end - current;
        assert_eq!(cells[6], "-", "no member now");
    }
    assert_eq!((committed, lag), (4, 6), "{describe}");

    // A Kafka consumer still in the group: describe names it, delete is refused.
    let kcat_available = Command::new("kcat").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if kcat_available {
        let kafka = server.kafka_addr.clone().unwrap();
        let mut member = Command::new("kcat")
            .args(["-b", &kafka, "-G", "kafka-g", "lagging", "-q", "-X", "auto.offset.reset=earliest"])
            .args(["-X", "client.id=ops-test"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let describe = common::eventually(
            Duration::from_secs(30),
            || {
                let out = server.cli(&["group", "describe", "kafka-g"]);
                out.stdout.contains("State: Stable").then_some(out)
            },
            || "the kcat group never became stable".into(),
        );
        let text = describe.success();
        for partition in 0..2 {
            let cells = row(text, "lagging", partition);
            assert!(cells[6].starts_with("ops-test-"), "Kafka member ids are <client.id>-<uuid>: {describe}");
            assert_eq!(cells[8], "ops-test");
        }
        let refused = server.cli(&["group", "delete", "kafka-g"]);
        assert!(refused.one_line_error(1).contains("members"), "{refused}");
        let _ = member.kill();
        let _ = member.wait();
    }

    server.cli(&["group", "delete", "native-g"]).success();
    assert!(!server.cli(&["group", "list"]).success().lines().any(|l| l == "native-g"));
    let gone = server.cli(&["group", "describe", "native-g"]);
    assert!(gone.one_line_error(1).contains("does not exist"), "{gone}");
    let missing = server.cli(&["group", "delete", "native-g"]);
    assert!(missing.one_line_error(1).contains("no such group"), "{missing}");
}

#[test]
fn topic_configs_are_read_and_changed() {
    let data = temp_dir("shardlog-operations-");
    let server = Server::start(data.path());
    server.cli(&["topic", "create", "conf"]).success();
    let get = |server: &Server| server.cli(&["topic", "config", "get", "conf"]).success().to_owned();
    let before = get(&server);
    assert!(before.contains("retention.ms=604800000\t(default)"), "{before}");
    assert!(before.contains("compression.type=producer\t(default, not applied by shardlog)"), "{before}");
    server
        .cli(&["topic", "config", "set", "conf", "retention.ms=3600000", "flush.ms=100", "min.insync.replicas=1"])
        .success();
    let after = get(&server);
    assert!(after.contains("retention.ms=3600000\t(set)"), "{after}");
    assert!(after.contains("flush.ms=100\t(set)"), "{after}");
    // The native metadata shows the applied values.
    let describe = server.cli(&["topic", "describe", "conf"]);
    assert!(
        describe.success().contains("Durability: interval:100") && describe.stdout.contains("RetentionMs: 3600000"),
        "{describe}"
    );
    server.cli(&["topic", "config", "set", "conf", "--reset", "retention.ms", "--reset", "flush.ms"]).success();
    assert_eq!(get(&server), before);
    let unknown = server.cli(&["topic", "config", "set", "conf", "no.such.config=1"]);
    assert!(unknown.one_line_error(1).contains("unknown topic config"), "{unknown}");
    let shred = server.cli(&["topic", "config", "set", "conf", "cleanup.policy=shred"]);
    assert!(shred.one_line_error(1).contains("delete and compact"), "{shred}");
    let no_topic = server.cli(&["topic", "config", "get", "absent"]);
    assert!(no_topic.one_line_error(1).contains("absent"), "{no_topic}");
}
