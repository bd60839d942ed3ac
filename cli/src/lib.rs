//! The `shardlog` binary's library: the `serve` settings (`config`: flags and TOML) and
//! `Node`, one running broker process — the broker core (`broker` crate) with its native
//! listener and, when asked, its Kafka listener (`kafka` crate). The load generator and the
//! tests start embedded brokers through `Node` too.

mod cluster;
pub mod config;
mod node;

pub use node::Node;
