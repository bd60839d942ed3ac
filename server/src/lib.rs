//! shardlog broker: one glommio executor per core ("shard"), each owning a set of partition
//! logs; the native protocol; the Rust client.
//!
//! Start at `broker.rs` (startup, listeners, shutdown), then `connection.rs` (one client
//! connection), `shard.rs` (serving requests, forwarding to other shards through `router.rs`)
//! and `coordinator.rs` (shard 0: catalog and consumer groups).

pub mod broker;
pub use client;
pub mod config;
mod connection;
mod coordinator;
mod groups;
pub mod kafka;
pub mod limits;
pub mod metrics;
mod order;
pub use protocol;
mod router;
mod shard;
mod topics;

pub use engine;
