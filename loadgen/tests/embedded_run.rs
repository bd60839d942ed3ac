//! One short embedded run end to end: broker in process, producers and a consumer group,
//! report assembled. Asserts what must hold whatever the machine's speed: messages were
//! acknowledged and consumed, no errors, the histograms saw them. No timing assertions.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

mod common;

use loadgen::baseline::{BaselineKind, BaselinePlan};
use loadgen::config::Protocol;
use loadgen::report::json;

#[test]
fn short_embedded_run_acks_and_consumes_without_errors() {
    let config = common::short_run_config("test-embedded", Protocol::Native, 1);
    let outcome = loadgen::run::run_one(&config, None, &BaselinePlan::new(BaselineKind::None), false).unwrap();
    let r = &outcome.report.results;
    common::assert_clean_run(r);
    assert!(outcome.report.baselines.is_none());
    // And the report is valid JSON of the current schema.
    let text = json::to_string(&outcome.report);
    assert_eq!(json::parse(std::path::Path::new("run.json"), &text).unwrap(), outcome.report);
}
