//! Kafka's quick start, run against the real `shardlog` binary through its CLI: create a
//! topic, produce keyed lines, consume them back, list and describe; and the CLI's errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use client::partitioner::partition_for_key;
use common::{closed_port, run_cli, temp_dir, Server, WAIT};

const INPUT: &str = "1,mitch\n2,jane\n3,bob\n4,sammy\n";
const RECORDS: [(&str, &str); 4] = [("1", "mitch"), ("2", "jane"), ("3", "bob"), ("4", "sammy")];

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Kafka's default partitioner's choice for a key of the quick start, among 4 partitions.
fn partition_of(key: &str) -> u32 {
    partition_for_key(key.as_bytes(), 4)
}

/// Input position (0-based line number) of a key.
fn input_index(key: &str) -> usize {
    RECORDS.iter().position(|(k, _)| *k == key).unwrap()
}

/// One `consume` output line, split at tabs: `CreateTime:<ms>`, optional `Partition:<n>` and
/// `Offset:<n>`, then key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Printed {
    timestamp: i64,
    partition: Option<u32>,
    offset: Option<u64>,
    key: String,
    value: String,
}

fn parse_line(line: &str) -> Printed {
    let fields: Vec<&str> = line.split('\t').collect();
    let mut printed =
        Printed { timestamp: -1, partition: None, offset: None, key: String::new(), value: String::new() };
    let mut rest = &fields[..];
    let ts = rest[0].strip_prefix("CreateTime:").unwrap_or_else(|| panic!("no CreateTime in {line:?}"));
    printed.timestamp = ts.parse().unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    rest = &rest[1..];
    if let Some(p) = rest[0].strip_prefix("Partition:") {
        printed.partition = Some(p.parse().unwrap());
        rest = &rest[1..];
    }
    if let Some(o) = rest[0].strip_prefix("Offset:") {
        printed.offset = Some(o.parse().unwrap());
        rest = &rest[1..];
    }
    assert_eq!(rest.len(), 2, "expected key and value in {line:?}");
    printed.key = rest[0].to_owned();
    printed.value = rest[1].to_owned();
    printed
}

/// The records as printed, checked against the quick-start input: exactly those 4 pairs, each
/// with a timestamp taken while `produce` ran, and each partition's records in input order.
fn check_consumed(out: &str, produce_window: (i64, i64)) -> Vec<Printed> {
    let printed: Vec<Printed> = out.lines().map(parse_line).collect();
    let pairs: BTreeSet<(&str, &str)> = printed.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    assert_eq!(pairs, RECORDS.iter().copied().collect(), "{out}");
    assert_eq!(printed.len(), 4, "{out}");
    for p in &printed {
        // CreateTime is set by the producer: between the start and the end of the produce run
        // (a second of slack either side for clock granularity).
        assert!(
            p.timestamp >= produce_window.0 - 1_000 && p.timestamp <= produce_window.1 + 1_000,
            "timestamp {} of {p:?} outside the produce run {produce_window:?}",
            p.timestamp
        );
    }
    // Records of one partition come out in offset order, which is their input order.
    let mut per_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for p in &printed {
        per_partition.entry(partition_of(&p.key)).or_default().push(input_index(&p.key));
    }
    for (partition, order) in per_partition {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "partition {partition} out of order: {out}");
    }
    printed
}

#[test]
fn quick_start_through_the_cli() {
    let data = temp_dir("shardlog-itest-quickstart-");
    let server = Server::start(data.path());

    let created = server.cli(&["topic", "create", "users", "--partitions", "4"]);
    assert_eq!(created.success().trim(), "Created topic users.");

    let before = now_ms();
    let produced = server.cli_stdin(&["produce", "users", "--key-separator", ","], INPUT.as_bytes());
    let after = now_ms();
    produced.success();

    let consumed = server.cli(&[
        "consume",
        "users",
        "--from-beginning",
        "--print-key",
        "--print-timestamp",
        "--max-messages",
        "4",
    ]);
    let printed = check_consumed(consumed.success(), (before, after));
    assert!(printed.iter().all(|p| p.partition.is_none() && p.offset.is_none()));
    assert!(consumed.stderr.contains("Processed a total of 4 messages"), "{consumed}");

    // With partitions and offsets: each key on the partition Kafka's default partitioner
    // picks, offsets dense from 0 in input order. The same through the forwarding path.
    for routing in ["shard-aware", "forward"] {
        let consumed = server.cli(&[
            "consume",
            "users",
            "--from-beginning",
            "--print-key",
            "--print-timestamp",
            "--print-partition",
            "--print-offset",
            "--max-messages",
            "4",
            "--routing",
            routing,
        ]);
        let printed = check_consumed(consumed.success(), (before, after));
        let mut offsets: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
        for p in &printed {
            let partition = p.partition.unwrap();
            assert_eq!(partition, partition_of(&p.key), "key {} on the wrong partition: {consumed}", p.key);
            offsets.entry(partition).or_default().push((p.offset.unwrap(), input_index(&p.key)));
        }
        for (partition, seen) in offsets {
            let got: Vec<u64> = seen.iter().map(|s| s.0).collect();
            let expected: Vec<u64> = (0..seen.len() as u64).collect();
            assert_eq!(got, expected, "offsets of partition {partition} ({routing}): {consumed}");
            assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "partition {partition} order: {consumed}");
        }
    }

    let listed = server.cli(&["topic", "list"]);
    assert_eq!(listed.success().lines().collect::<Vec<_>>(), vec!["users"], "{listed}");

    let described = server.cli(&["topic", "describe", "users"]);
    let lines = described.success().lines().collect::<Vec<_>>();
    assert_eq!(lines.len(), 5, "{described}");
    assert!(lines[0].starts_with("Topic: users\t"), "{described}");
    assert!(lines[0].contains("\tPartitionCount: 4\t"), "{described}");
    let mut shards = BTreeSet::new();
    let mut end_offsets = BTreeMap::new();
    for line in &lines[1..] {
        let fields: BTreeMap<&str, &str> =
            line.trim().split('\t').map(|f| f.split_once(": ").unwrap_or_else(|| panic!("{line:?}"))).collect();
        assert_eq!(fields["Topic"], "users");
        let partition: u32 = fields["Partition"].parse().unwrap();
        shards.insert(fields["Shard"].parse::<u32>().unwrap());
        assert_eq!(fields["StartOffset"], "0", "{line}");
        end_offsets.insert(partition, fields["EndOffset"].parse::<u64>().unwrap());
    }
    assert_eq!(shards, BTreeSet::from([0, 1]), "partitions spread over both shards: {described}");
    assert_eq!(end_offsets.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3], "{described}");
    assert_eq!(end_offsets.values().sum::<u64>(), 4, "{described}");
    for p in 0..4 {
        let keyed_here = RECORDS.iter().filter(|(k, _)| partition_of(k) == p).count() as u64;
        assert_eq!(end_offsets[&p], keyed_here, "partition {p} holds the keys murmur2 maps to it: {described}");
    }
}

#[test]
fn cli_errors_are_one_clear_line() {
    let data = temp_dir("shardlog-itest-quickstart-errors-");
    let server = Server::start(data.path());
    server.cli(&["topic", "create", "users", "--partitions", "4"]).success();

    let unknown = server.cli(&["consume", "nope", "--from-beginning", "--max-messages", "1"]);
    let line = unknown.one_line_error(1);
    assert_eq!(line, "error: unknown topic or partition: nope", "{unknown}");

    let unknown = server.cli_stdin(&["produce", "nope"], b"x\n");
    assert_eq!(unknown.one_line_error(1), "error: unknown topic or partition: nope", "{unknown}");

    let described = server.cli(&["topic", "describe", "nope"]);
    assert_eq!(described.one_line_error(1), "error: unknown topic or partition: nope", "{described}");

    let again = server.cli(&["topic", "create", "users", "--partitions", "4"]);
    assert_eq!(again.one_line_error(1), "error: topic already exists: users", "{again}");

    let no_separator = server.cli_stdin(&["produce", "users", "--key-separator", ","], b"1,mitch\njane\n");
    let line = no_separator.one_line_error(1);
    assert!(line.contains("line 2 has no key separator"), "{no_separator}");

    let bad_partition = server.cli_stdin(&["produce", "users", "--partition", "9"], b"x\n");
    let line = bad_partition.one_line_error(1);
    assert!(line.starts_with("error: unknown topic or partition: users-9"), "{bad_partition}");

    // Nothing listens on the port: refused at once, not after a timeout.
    let closed = format!("127.0.0.1:{}", closed_port());
    for args in [
        vec!["consume", "users", "--from-beginning", "--broker", &closed],
        vec!["topic", "list", "--broker", &closed],
        vec!["produce", "users", "--broker", &closed],
    ] {
        let out = run_cli(&args, b"x\n", WAIT);
        assert!(!out.timed_out, "{out}");
        assert_eq!(out.one_line_error(1), format!("error: cannot connect to {closed}: connection refused"), "{out}");
    }

    // Usage errors are clap's: exit status 2, a first line `error: …` (clap adds the usage).
    for (args, mentions) in [
        (vec!["consume", "users", "--bogus"], "--bogus"),
        (vec!["produce", "users", "--acks", "all"], "all"),
        (vec!["topic", "create", "t", "--partitions", "many"], "many"),
        (vec!["consume", "users", "--group", "g", "--partition", "1"], "--partition"),
        (vec!["consume"], "<TOPIC>"),
    ] {
        let out = run_cli(&args, b"", WAIT);
        assert_eq!(out.code(), Some(2), "{out}");
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: ") && out.stderr.contains(mentions), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
    }
}

/// Kills and reaps a child process on drop.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_on_a_port_another_broker_listens_on_fails_clearly() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let data = temp_dir("shardlog-itest-port-a-");
    let first = Server::start(data.path());
    first.cli(&["topic", "create", "only-on-the-first", "--partitions", "2"]).success();

    // A second broker, own data dir and shard ports, but the first one's --listen address: it
    // must refuse to start rather than silently share the port (and its clients) with the
    // first broker.
    let other = temp_dir("shardlog-itest-port-b-");
    let ports = common::PortBlock::reserve(3);
    let mut second = Guard(
        Command::new(common::binary())
            .args(["serve", "--listen", &first.addr, "--shards", "2", "--data-dir"])
            .arg(other.path())
            .args(["--shard-base-port", &ports.base.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = second.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first_line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first_line);
        let _ = tx.send(first_line);
    });
    let printed = rx.recv_timeout(WAIT).expect("the second broker neither started nor exited");
    if printed.starts_with("shardlog listening on") {
        // It started: show what its clients now see.
        let listed: Vec<String> = (0..6)
            .map(|_| run_cli(&["topic", "list", "--broker", &first.addr], b"", WAIT).stdout.trim().to_owned())
            .collect();
        panic!(
            "a second broker started on {} although another broker listens there ({printed:?}); new \
             connections to that address may now reach either broker (`topic list` through it: {listed:?})",
            first.addr
        );
    }
    let status = second.0.wait().unwrap();
    let mut stderr = String::new();
    second.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(&first.addr) || errors[0].to_lowercase().contains("in use"), "{stderr}");
}
