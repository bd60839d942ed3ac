//! The real binary's exit codes: compare (0 no regression, 1 regression, 2 bad input) and a
//! clear refusal of what is not built.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use loadgen::report::json;

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardlog-loadgen")).args(args).output().unwrap()
}

fn write(dir: &Path, name: &str, publish_mb_per_s: f64, p50_us: u64) -> String {
    let path = dir.join(name);
    json::write(&path, &common::sample_report(publish_mb_per_s, p50_us)).unwrap();
    path.to_string_lossy().into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn compare_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.json", 100.0, 1000);
    let same = loadgen(&["compare", &base, &base]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(text(&same).contains("ratio to raw disk write"), "{}", text(&same));

    // 5 % slower: within the default 10 %.
    let slightly = write(dir.path(), "slightly.json", 95.0, 1000);
    assert_eq!(loadgen(&["compare", &base, &slightly]).status.code(), Some(0));

    let slower = write(dir.path(), "slower.json", 50.0, 1000);
    let out = loadgen(&["compare", &base, &slower]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("REGRESSION"));
    // ... unless the threshold allows it.
    let out = loadgen(&["compare", &base, &slower, "--max-throughput-drop", "60%"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let laggier = write(dir.path(), "laggier.json", 100.0, 2000);
    let out = loadgen(&["compare", &base, &laggier, "--max-latency-rise", "20%"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn compare_bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.json", 100.0, 1000);
    let missing = dir.path().join("missing.json").to_string_lossy().into_owned();
    let out = loadgen(&["compare", &base, &missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("missing.json"), "{}", text(&out));

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    let out = loadgen(&["compare", &base, &garbage.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not a load-generator report"), "{}", text(&out));

    let out = loadgen(&["compare", &base, &base, "--max-latency-rise", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not a percentage"), "{}", text(&out));
}

#[test]
fn kafka_protocol_runs_against_the_embedded_kafka_listener() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("kafka.json");
    let out = loadgen(&[
        "--protocol",
        "kafka",
        "--baseline",
        "none",
        "--duration-s",
        "0.5",
        "--warmup-s",
        "0",
        "--rate",
        "500",
        "--partitions",
        "2",
        "--producers",
        "1",
        "--shards",
        "1",
        "--loadgen-cores",
        "1",
        "--quiet",
        "--json",
        &json_path.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json::read(&json_path).unwrap();
    assert_eq!(report.config.protocol, loadgen::config::Protocol::Kafka);
    assert!(report.results.totals.acked > 0, "{:?}", report.results);
    assert_eq!(report.results.errors.total(), 0, "{:?}", report.results.errors);
}

#[test]
fn kafka_protocol_against_a_dead_broker_fails_clearly() {
    let out = loadgen(&["--protocol", "kafka", "--broker", "127.0.0.1:1", "--baseline", "none", "--duration-s", "0.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("Kafka broker 127.0.0.1:1"), "{}", text(&out));
}

#[test]
fn report_prints_markdown_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", 100.0, 1000);
    let out = loadgen(&["report", &dir.path().to_string_lossy(), "--markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("| sample |"), "{}", text(&out));
}
