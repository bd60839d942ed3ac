//! shardlog broker. The broker issue fills this crate (shard-per-core server, native protocol,
//! Rust client and the `shardlog` CLI); until then it only re-exports the engine.

pub use engine;
