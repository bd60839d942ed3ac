//! Reading and writing the JSON report. Reading checks the tool and the schema version, so a
//! stray file is refused with a clear message instead of being compared.

use std::path::Path;

use super::{RunReport, SCHEMA_VERSION, TOOL};
use crate::error::{LoadgenError, LoadgenResult};

pub fn to_string(report: &RunReport) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_default()
}

pub fn write(path: &Path, report: &RunReport) -> LoadgenResult<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LoadgenError::file(parent))?;
    }
    std::fs::write(path, to_string(report) + "\n").map_err(LoadgenError::file(path))
}

pub fn parse(path: &Path, text: &str) -> LoadgenResult<RunReport> {
    let bad = |reason: String| LoadgenError::Report { path: path.to_path_buf(), reason };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let version = value.get("schema_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(SCHEMA_VERSION)) {
        return Err(bad(format!("schema_version is {version:?}, this build reads {SCHEMA_VERSION}")));
    }
    let report: RunReport = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if report.tool != TOOL {
        return Err(bad(format!("written by `{}`, not {TOOL}", report.tool)));
    }
    Ok(report)
}

pub fn read(path: &Path) -> LoadgenResult<RunReport> {
    let text = std::fs::read_to_string(path).map_err(LoadgenError::file(path))?;
    parse(path, &text)
}
