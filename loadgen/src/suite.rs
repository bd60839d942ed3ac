//! `shardlog-loadgen suite DIR`: runs every scenario file in DIR in name order, against one
//! set of baselines measured first, printing each report and optionally writing one JSON per
//! scenario (`--out OUT/NAME.json`) for `report OUT --markdown` and `compare`. With
//! `--repeat N` each scenario runs N times in a row (`NAME-rK.json`) and the suite ends with
//! the spread of every figure across the runs (`report/spread.rs`).

use std::path::{Path, PathBuf};

use crate::baseline::BaselinePlan;
use crate::error::LoadgenResult;
use crate::report::{json, spread, table, RunReport};
use crate::run::{data_parent, measure_baselines, run_one, settle};
use crate::scenario;

pub struct SuiteOptions {
    pub out: Option<PathBuf>,
    /// Overrides every scenario's `dir`.
    pub data_dir: Option<PathBuf>,
    pub baseline: BaselinePlan,
    pub live: bool,
    /// Runs per scenario (at least 1).
    pub repeat: u32,
}

pub fn run(dir: &Path, options: &SuiteOptions) -> LoadgenResult<Vec<RunReport>> {
    let paths = scenario::list(dir)?;
    // Parse every file first: a typo in the last scenario should not cost the whole suite.
    let mut configs = Vec::new();
    for path in &paths {
        configs.push(scenario::load(path)?);
    }
    let parent = data_parent(options.data_dir.as_deref())?;
    let baselines = measure_baselines(&options.baseline, &parent)?;
    let mut reports = Vec::new();
    let repeat = options.repeat.max(1);
    for mut config in configs {
        if options.data_dir.is_some() {
            config.dir = options.data_dir.clone();
        }
        let label = config.label();
        for k in 1..=repeat {
            if repeat > 1 {
                config.name = Some(format!("{label}-r{k}"));
            }
            eprintln!("shardlog-loadgen: scenario {}", config.label());
            let outcome = run_one(&config, baselines.clone(), &options.baseline, options.live)?;
            print!("{}", table::render(&outcome.report));
            if let Some(out) = &options.out {
                let path = out.join(format!("{}.json", outcome.report.scenario));
                json::write(&path, &outcome.report)?;
                println!("json written to {}", path.display());
            }
            reports.push(outcome.report);
            settle();
        }
    }
    if repeat > 1 {
        println!("\nspread over {repeat} runs per scenario:\n{}", spread::render(&reports));
    }
    Ok(reports)
}
