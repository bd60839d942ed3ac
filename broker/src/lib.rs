//! The shardlog broker core: thread-per-core shards owning partitions, typed cross-shard
//! calls, the catalog service, one consumer-group coordinator, the networking every protocol
//! shares, and the native protocol's adapter. The Kafka adapter (`kafka` crate) and the
//! `shardlog` binary (`cli` crate) build on the public API here.
//!
//! Modules, each depending only on those above it in this list (no import cycles):
//! - `ids`, `limits`, `error`, `order`, `topics`, `topic_configs`, `metrics`, `producers`, `isr`,
//!   `cluster`: leaves (`cluster`: the agreed cluster metadata and the seams the `cluster` crate
//!   plugs into; `isr`: replication's roles and rules, without I/O);
//! - `partition`: one partition replica (log, role, high watermark, epoch, producers, waiters);
//! - `groups`: the coordinator state machine, assignors, the committed-offset store;
//! - `catalog`: the catalog file's one writer (coordinator shard);
//! - `calls`: every cross-shard operation with its typed reply; `router`: sends them;
//! - `shard`: a shard's state and the typed API adapters call (routes to the owner);
//! - `shard_ops`, `shard_groups`: the operations APIs on partitions and groups (more
//!   `impl Shard`);
//! - `replica`: replication tasks — a follower's fetches, a leader's answers, applying
//!   committed cluster metadata to a shard's replicas;
//! - `admin`: catalog changes in their safe order; `reassign`: moving partitions, draining
//!   brokers, preferred leaders (a cluster); `peer`: serves calls from other shards;
//! - `net`: listeners, budgeted framing, the connection pipeline;
//! - `broker`: starting, stopping, panics; `native`: the native protocol adapter.

pub mod admin;
pub mod broker;
pub mod calls;
pub mod catalog;
pub mod cluster;
pub mod error;
pub mod groups;
pub mod ids;
pub mod isr;
pub mod limits;
pub mod metrics;
pub mod native;
pub mod net;
pub mod order;
pub mod partition;
mod peer;
pub mod producers;
pub mod reassign;
pub mod replica;
mod router;
pub mod shard;
mod shard_groups;
mod shard_ops;
pub mod topic_configs;
pub mod topics;

pub use broker::{Broker, BrokerConfig, BrokerError, Listeners, Service};
pub use error::{AdminError, CallError, PartitionError, ProducerError};
pub use ids::{NodeId, ShardId};
pub use partition::{Acks, Appended, ListedOffset, OffsetQuery, PartitionBounds, Read, TopicPartition};
pub use shard::{FetchPartition, Shard};
