//! Replication tasks on a shard, on top of `partition` and `shard` (the rules they follow are
//! `isr.rs`'s): a follower's fetch sessions (`fetcher`), a leader's answers to them (`serve`),
//! and turning committed cluster metadata into each replica's role (`reconcile`).

pub mod fetcher;
pub mod reconcile;
pub mod serve;
