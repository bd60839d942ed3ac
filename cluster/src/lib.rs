//! shardlog's cluster: the metadata log agreed through openraft (brokers, topics, replica
//! assignments, leaders, epochs, ISR, committed group offsets — `broker::cluster::metadata`),
//! the controller that fences silent brokers and balances leadership, and the node-to-node
//! RPC they use. It plugs into the broker through `broker::cluster::ClusterService`.
//!
//! Modules, each depending only on those above it:
//! - `limits`, `error`: every bound and default; the typed errors;
//! - `runtime`, `types`: openraft on glommio; the Raft type configuration;
//! - `durable`, `record`: atomically replaced files; the log file's record framing;
//! - `log_store`, `state_machine`: the durable Raft log; the metadata state machine and its
//!   snapshots;
//! - `shutdown`, `rpc`, `network`, `server`: a stop signal; the wire messages and framing; the
//!   client side (connection pools, openraft's `RaftNetwork`); the server side;
//! - `controller`: broker liveness (fencing) and preferred-leader balancing, on the leader;
//! - `config`, `node`: a node's settings; starting and running a node (`ClusterNodeService`).

pub mod config;
pub mod controller;
pub mod durable;
pub mod error;
pub mod limits;
pub mod log_store;
pub mod network;
pub mod node;
pub mod record;
pub mod rpc;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod state_machine;
pub mod types;

pub use config::{parse_peers, ClusterConfig};
pub use node::{ClusterNode, ClusterNodeService};

#[cfg(test)]
mod test_util;
