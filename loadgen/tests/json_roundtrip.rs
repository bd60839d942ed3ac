//! The JSON report survives serialize → parse unchanged, and stray files are refused.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

mod common;

use std::path::Path;

use loadgen::report::{json, markdown, table};

#[test]
fn report_round_trips_through_json() {
    let report = common::sample_report(123.456_789, 850);
    let text = json::to_string(&report);
    let parsed = json::parse(Path::new("mem.json"), &text).unwrap();
    assert_eq!(parsed, report);
    assert!(text.contains("\"schema_version\": 1"));
    // The renderers accept what was parsed.
    assert!(table::render(&parsed).contains("publish_to_disk_write"));
    assert!(markdown::render(&[parsed]).contains("| sample |"));
}

#[test]
fn other_schema_versions_and_garbage_are_refused() {
    let report = common::sample_report(100.0, 850);
    let text = json::to_string(&report).replace("\"schema_version\": 1", "\"schema_version\": 99");
    let err = json::parse(Path::new("old.json"), &text).unwrap_err().to_string();
    assert!(err.contains("schema_version"), "{err}");
    let err = json::parse(Path::new("x.json"), "{not json").unwrap_err().to_string();
    assert!(err.contains("invalid JSON"), "{err}");
}
