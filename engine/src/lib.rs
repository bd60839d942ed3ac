//! shardlog storage engine.
//!
//! One partition is one `Log`: an append-only sequence of Kafka RecordBatch v2 batches,
//! stored in segment files written with O_DIRECT through io_uring (glommio `DmaFile`). A `Log`
//! is owned by one glommio executor and is `!Send`; the broker pins each partition to a shard.
//!
//! Start at `log.rs` (append / read / roll / retention), then `segment/appender.rs` (the write
//! path and its durability contract) and `recovery.rs` (what happens on open). The follower
//! half — replica appends, truncation, the high-watermark checkpoint — is `log/follower.rs`;
//! leader epochs are `epochs.rs`; the shard-wide batch cache is `cache.rs`.

/// The RecordBatch v2 codec lives in the `format` crate; `engine::batch::…` paths keep working.
pub use format::batch;
/// Typed offsets, epochs, positions and node / shard ids (`format::ids`).
pub use format::ids;

pub mod cache;
pub mod catalog;
mod checkpoint;
mod deadlines;
mod disk_space;
mod epochs;
pub mod error;
mod fs;
pub mod group_offsets;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod io;
#[cfg(not(feature = "fault-injection"))]
mod io;
pub mod latency;
pub mod limits;
mod log;
mod recovery;
mod segment;
pub mod shard_sync;

pub use catalog::{Catalog, Durability, TopicConfig};
pub use disk_space::free_bytes;
pub use epochs::EpochEntry;
pub use error::{AppendError, EpochError, IoError, MaintenanceError, OpenError, ReadError, TruncateError};
pub use log::{
    has_clean_shutdown_marker, AppendInfo, Log, LogConfig, LogStats, MaxTimestamp, Queued, ReadBatches,
    RetentionOutcome,
};
pub use recovery::{scan_segment_bytes, ScanStop, SegmentScan};
pub use segment::appender::AppenderStats;
