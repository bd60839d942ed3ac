//! Restarting the real `shardlog` binary on the same data directory: after a graceful stop
//! (SIGTERM) every record and every committed group offset is still there and every log was
//! closed cleanly; after SIGKILL every record acknowledged with `--acks durable` is there, and
//! a broker started again at once on the same ports (as a supervisor would) comes up. A shard
//! that panics takes the whole process down.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{temp_dir, Server, ServerOptions};

/// `k<i>,v<i>` lines, i in 0..n.
fn input(n: usize) -> String {
    (0..n).map(|i| format!("k{i},v{i}\n")).collect()
}

/// The `key\tvalue` lines of a consume run, as a set (asserting none repeats).
fn printed_set(out: &str) -> BTreeSet<String> {
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let set: BTreeSet<String> = lines.iter().cloned().collect();
    assert_eq!(set.len(), lines.len(), "a record was printed twice:\n{out}");
    set
}

fn expected_set(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("k{i}\tv{i}")).collect()
}

/// Sum of the partitions' end offsets from `topic describe`.
fn end_offset_sum(server: &Server, topic: &str) -> u64 {
    let described = server.cli(&["topic", "describe", topic]);
    described
        .success()
        .lines()
        .skip(1)
        .map(|line| {
            let field = line.split('\t').find_map(|f| f.strip_prefix("EndOffset: ")).unwrap();
            field.parse::<u64>().unwrap_or_else(|_| panic!("{described}"))
        })
        .sum()
}

fn partition_dirs(data_dir: &Path, topic: &str, partitions: u32) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = (0..partitions).map(|p| data_dir.join(format!("{topic}-{p}"))).collect();
    dirs.push(data_dir.join("__consumer_offsets"));
    for dir in &dirs {
        assert!(dir.is_dir(), "{} is missing", dir.display());
    }
    dirs
}

#[test]
fn graceful_restart_keeps_records_and_group_offsets() {
    const N: usize = 60;
    const K: usize = 25;
    let data = temp_dir("shardlog-itest-restart-");
    let mut server = Server::start(data.path());
    server.cli(&["topic", "create", "orders", "--partitions", "3"]).success();
    server.cli_stdin(&["produce", "orders", "--key-separator", ","], input(N).as_bytes()).success();

    // A group member reads K records and commits its position on exit.
    let first = server.cli(&[
        "consume",
        "orders",
        "--group",
        "g",
        "--from-beginning",
        "--print-key",
        "--max-messages",
        &K.to_string(),
    ]);
    let first_k = printed_set(first.success());
    assert_eq!(first_k.len(), K, "{first}");
    assert!(first_k.is_subset(&expected_set(N)), "{first}");

    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exit status {status:?}; stderr:\n{}", server.stderr());
    for dir in partition_dirs(data.path(), "orders", 3) {
        assert!(dir.join("clean_shutdown").is_file(), "no clean_shutdown marker in {}", dir.display());
    }

    let server = Server::start(data.path());
    // Every record is still there, exactly once.
    let all = server.cli(&["consume", "orders", "--from-beginning", "--print-key", "--max-messages", &N.to_string()]);
    assert_eq!(printed_set(all.success()), expected_set(N), "{all}");
    assert_eq!(end_offset_sum(&server, "orders"), N as u64);

    // The group resumes after what it committed: the other N − K records, none of the first K.
    let rest = server.cli(&[
        "consume",
        "orders",
        "--group",
        "g",
        "--from-beginning",
        "--print-key",
        "--max-messages",
        &(N - K).to_string(),
    ]);
    let rest_set = printed_set(rest.success());
    let overlap: Vec<_> = rest_set.intersection(&first_k).collect();
    assert!(overlap.is_empty(), "records read again after the committed offsets: {overlap:?}\n{rest}");
    let union: BTreeSet<String> = first_k.union(&rest_set).cloned().collect();
    assert_eq!(union, expected_set(N), "{rest}");
}

#[test]
fn sigkill_keeps_every_durably_acknowledged_record() {
    const N: usize = 80;
    let data = temp_dir("shardlog-itest-sigkill-");
    let mut server = Server::start(data.path());
    // The topic itself never syncs: only `--acks durable` makes the appends durable.
    server.cli(&["topic", "create", "events", "--partitions", "4", "--durability", "none"]).success();
    let produced =
        server.cli_stdin(&["produce", "events", "--key-separator", ",", "--acks", "durable"], input(N).as_bytes());
    produced.success();

    server.kill();
    // The logs were open for writing: none is marked as cleanly shut down.
    for dir in partition_dirs(data.path(), "events", 4) {
        assert!(!dir.join("clean_shutdown").exists(), "{} claims a clean shutdown after SIGKILL", dir.display());
    }

    let server = Server::start(data.path());
    let all = server.cli(&["consume", "events", "--from-beginning", "--print-key", "--max-messages", &N.to_string()]);
    assert_eq!(printed_set(all.success()), expected_set(N), "{all}");
    assert_eq!(end_offset_sum(&server, "events"), N as u64);
    // Still writable after recovery.
    server.cli_stdin(&["produce", "events", "--key-separator", ","], b"after,restart\n").success();
    assert_eq!(end_offset_sum(&server, "events"), N as u64 + 1);
}

/// After SIGKILL the dead process's listening sockets linger while the kernel tears down its
/// io_uring rings (10–70 ms here; longer with many partitions' files to close), and a broker
/// started at once used to exit with "Address already in use". It must come up, with the data.
#[test]
fn a_broker_restarted_at_once_after_sigkill_comes_up() {
    const PARTITIONS: u32 = 2_000;
    let data = temp_dir("shardlog-restart-at-once-");
    let server = Server::start(data.path());
    server.cli(&["topic", "create", "many", "--partitions", &PARTITIONS.to_string()]).success();
    server.cli_stdin(&["produce", "many", "--key-separator", ",", "--acks", "durable"], input(50).as_bytes()).success();
    let server = server.kill_and_restart();
    let out = server.cli(&["consume", "many", "--from-beginning", "--max-messages", "50", "--print-key"]);
    assert_eq!(printed_set(out.success()), expected_set(50));
    let described = server.cli(&["topic", "describe", "many"]);
    assert_eq!(described.success().lines().count(), 1 + PARTITIONS as usize);
}

/// A client connected to the bootstrap port when the broker is killed leaves the dead
/// broker's side of the connection in TIME_WAIT once the client closes: without SO_REUSEADDR
/// the restarted broker could not listen there for about a minute (found by the cluster
/// harness). It must come up at once.
#[test]
fn a_broker_restarted_after_sigkill_with_clients_connected_comes_up() {
    let data = temp_dir("shardlog-restart-time-wait-");
    let server = Server::start(data.path());
    server.cli(&["topic", "create", "t", "--partitions", "1"]).success();
    let clients: Vec<std::net::TcpStream> =
        (0..4).map(|_| std::net::TcpStream::connect(&server.addr).unwrap()).collect();
    let restarted = server.kill_and_restart_after(move || drop(clients));
    restarted.cli_stdin(&["produce", "t", "--key-separator", ","], b"a,b\n").success();
}

#[test]
fn a_shard_that_panics_takes_the_process_down() {
    let data = temp_dir("shardlog-shard-panic-");
    let options = ServerOptions {
        env: vec![(broker::broker::TEST_PANIC_SHARD_ENV.to_owned(), "1".to_owned())],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(data.path(), options);
    let status = server.wait_exited();
    assert_eq!(status.code(), Some(broker::broker::SHARD_PANIC_EXIT_CODE), "{}", server.stderr());
    let stderr = server.stderr();
    assert!(stderr.contains("fatal: shard 1 panicked"), "{stderr}");
}
