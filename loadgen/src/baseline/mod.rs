//! Same-run baselines: what this machine gives with no broker in between, measured in the
//! run that measures the broker, on the same data directory and the same loopback interface.
//! Every load-generator figure is also reported as a ratio to one of these, because on a
//! shared VM the disk and the network move by tens of percent between runs.
//!
//! - `disk.rs`: raw O_DIRECT sequential write and read bandwidth, 4 KiB write + fdatasync
//!   latency (the shapes the engine uses);
//! - `loopback.rs`: TCP bandwidth and 128-byte ping-pong between two glommio executors;
//! - `env.rs`: what the machine is (CPUs, kernel, file system, memlock, block-device counters);
//! - `measure.rs`: runs the chosen set and summarises it for reports.
//!
//! The engine benchmark (`benches/`, `shardlog-bench`) uses the same code.

pub mod disk;
pub mod env;
pub mod loopback;
pub mod measure;

pub use measure::{measure, BaselineKind, BaselinePlan, Baselines};

/// Why a baseline could not be measured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    #[error("baseline I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("baseline histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("baseline path contains a NUL byte")]
    NulInPath(#[from] std::ffi::NulError),
    #[error("baseline executor: {0}")]
    Executor(String),
    #[error("baseline failed: {0}")]
    Failed(String),
}

impl From<String> for BaselineError {
    fn from(reason: String) -> Self {
        BaselineError::Failed(reason)
    }
}

impl From<&str> for BaselineError {
    fn from(reason: &str) -> Self {
        BaselineError::Failed(reason.to_owned())
    }
}

impl<T> From<std::sync::mpsc::SendError<T>> for BaselineError {
    fn from(_: std::sync::mpsc::SendError<T>) -> Self {
        BaselineError::Executor("the main thread stopped listening".to_owned())
    }
}

pub type BaselineResult<T> = Result<T, BaselineError>;
