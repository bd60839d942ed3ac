//! Helpers for the crate's unit tests.
#![allow(clippy::unwrap_used)]

use std::future::Future;

use broker::cluster::MetaCommand;
use openraft::{CommittedLeaderId, EntryPayload};

use crate::types::{Entry, LogId};

/// Runs `f` on a fresh glommio executor and returns its result.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default().spawn(f).expect("spawn executor").join().expect("executor panicked")
}

/// A temporary directory under the system temp dir.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("shardlog-cluster-").tempdir_in(std::env::temp_dir()).unwrap()
}

pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// A normal entry whose command names `index` (a fenced broker of that number).
pub fn entry(term: u64, index: u64) -> Entry {
    let command = MetaCommand::FenceBroker { node: index as u32 };
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(command) }
}
