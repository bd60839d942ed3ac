//! The load generator's error type. Exit codes follow from it in `main.rs`: every error is 2
//! (bad input or a failed run); 1 is reserved for a regression found by `compare`.

use std::path::PathBuf;

use crate::baseline::BaselineError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadgenError {
    /// A knob or scenario value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Something asked for that a later issue builds.
    #[error("{0} is not built yet")]
    NotBuilt(&'static str),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a load-generator report: {reason}")]
    Report { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Scenario { path: PathBuf, reason: String },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("broker: {0}")]
    Broker(String),
    #[error("client: {0}")]
    Client(String),
    #[error("executor: {0}")]
    Executor(String),
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("plot: {0}")]
    Plot(String),
}

impl LoadgenError {
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoadgenError {
        let path = path.into();
        move |source| LoadgenError::File { path, source }
    }
}

pub type LoadgenResult<T> = Result<T, LoadgenError>;
