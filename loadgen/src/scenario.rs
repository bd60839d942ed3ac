//! Scenario files: TOML with the command line's knobs (snake_case), e.g.
//!
//! ```toml
//! description = "OMB-like: 1 topic × 100 partitions, 1 KiB, max rate, durable"
//! partitions = 100
//! message_size = "1KiB"
//! rate = "max"
//! durability = "sync"
//! targets = ["publish_to_disk_write>=0.9"]
//! ```
//!
//! Anything left out takes the command line's default; an unknown key is an error. The name is
//! the file's stem unless `name` is given.

use std::path::{Path, PathBuf};

use crate::config::WorkloadConfig;
use crate::error::{LoadgenError, LoadgenResult};

pub fn parse(path: &Path, text: &str) -> LoadgenResult<WorkloadConfig> {
    let mut config: WorkloadConfig =
        toml::from_str(text).map_err(|e| LoadgenError::Scenario { path: path.to_path_buf(), reason: e.to_string() })?;
    if config.name.is_none() {
        config.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    config.validate().map_err(|e| LoadgenError::Scenario { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(config)
}

pub fn load(path: &Path) -> LoadgenResult<WorkloadConfig> {
    let text = std::fs::read_to_string(path).map_err(LoadgenError::file(path))?;
    parse(path, &text)
}

/// The `*.toml` files of `dir`, sorted by name (a run's order is its files' order).
pub fn list(dir: &Path) -> LoadgenResult<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(LoadgenError::file(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(LoadgenError::Config(format!("{}: no *.toml scenario files", dir.display())));
    }
    Ok(paths)
}
