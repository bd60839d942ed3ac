//! Every bound the engine enforces, as a named constant with its unit, and the compile-time
//! checks that tie them together. A limit lives here so that a reader can see, in one place,
//! how much memory, disk and time one partition may take.

/// The RecordBatch v2 bounds live with the format (`format::limits`); re-exported here so that
/// every bound the engine enforces can still be read from one module.
pub use format::limits::{BATCH_HEADER_BYTES, BATCH_RECORDS_MAX, BATCH_SIZE_BYTES_MAX, RECORD_HEADERS_MAX};

/// O_DIRECT alignment we plan for: the device here reports 512, but 4 KiB covers every
/// Advanced-Format disk and NVMe namespace we expect.
pub const IO_ALIGN_BYTES: u64 = 4096;

/// Smallest and largest segment a topic may configure. Segment positions are stored as u32 in
/// the index, so a segment must stay below 4 GiB.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 64 << 10;
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 1 << 30;
/// Default roll size (Redpanda's default; Kafka's is 1 GiB).
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 128 << 20;

/// Preallocation step for the active segment: fallocate this much ahead of the write position,
/// so ENOSPC surfaces before bytes are accepted and writes do not allocate extents.
pub const PREALLOCATE_STEP_BYTES: u64 = 32 << 20;

/// The first preallocation of a segment. Steps then double with what the segment already
/// holds, up to the configured step: a busy partition reaches 32 MiB steps after a few MiB,
/// while 1000 quiet partitions reserve ~1 GiB instead of 32 GiB.
pub const PREALLOCATE_FIRST_STEP_BYTES: u64 = 1 << 20;

/// One DMA write buffer (a "chunk"). fio here needs ≥ 1 MiB requests with several in flight to
/// approach the disk's bandwidth (docs/benchmarks.md).
pub const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Chunk writes in flight per partition at once.
pub const WRITES_IN_FLIGHT_MAX: usize = 8;

/// Free chunk buffers kept per shard for reuse (avoids malloc/free and page faults): enough
/// for one partition's whole unwritten window plus its writes in flight.
pub const CHUNK_POOL_BUFFERS_MAX: usize = (UNWRITTEN_BYTES_MAX as usize / WRITE_CHUNK_BYTES) + WRITES_IN_FLIGHT_MAX;

/// Free one-page buffers kept per shard for reuse (4 MiB): open chunks between writes and
/// small partial writes cycle through them.
pub const PAGE_POOL_BUFFERS_MAX: usize = 1024;

/// The smallest open chunk after a one-page one (`appender::buffer_for`): room for a few small
/// batches. Open chunks grow by doubling up to `WRITE_CHUNK_BYTES`.
pub const SMALL_CHUNK_BYTES_MIN: usize = 16 << 10;

/// A partial write whose padded size is at most this goes out from a copy (at most 64 KiB of
/// memcpy), so that its 1 MiB chunk buffer can be reused; larger ones are written in place.
pub const PARTIAL_WRITE_COPY_BYTES_MAX: usize = 64 << 10;

/// How long the open chunk's partial tail may wait before it is written, when nothing asks for
/// it sooner (a sync waiter, a seal, shard memory pressure). Light load otherwise costs one
/// O_DIRECT write per produce: on this VM each is an io_uring worker wake-up, a virtio kick
/// and an unwritten-extent conversion on a kworker, 40–50 % of the broker's CPU at 1 000
/// msg/s (docs/benchmarks.md). Only bytes no ack is waiting on wait here (`none` and
/// `interval` topics: "at risk until synced", docs/operations.md), so this bounds what a
/// process crash can take beyond an unsynced write, not any acknowledged durability. Reads
/// are served from the shard's cache, which never drops unwritten batches.
pub const PARTIAL_WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// fdatasyncs of single segment files a shard runs at once (per file system) before further
/// syncs share one `syncfs` per round instead (`shard_sync.rs`). One: a lone sync keeps the
/// file-scoped fdatasync (a `syncfs` would also write back other processes' dirty pages on the
/// same file system); with two or more partitions syncing at once, one journal commit and one
/// device cache flush cover them all, where each fdatasync paid its own (on this VM 200
/// fdatasyncs of 200 files took 9–14 ms, one `syncfs` after the same writes 0.8–0.9 ms).
pub const SYNCS_ALONE_MAX: usize = 1;

/// Granularity of the shard's one timer for appender deadlines (`deadlines.rs`): a deadline is
/// rounded up to it, so a shard wakes at most once per tick however many partitions wait on
/// a delayed write or an interval sync, and each waits at most a tick longer than asked. Small
/// beside `PARTIAL_WRITE_DELAY` (5 ms) and the shortest interval durability (1 ms steps).
pub const DEADLINE_TICK: std::time::Duration = std::time::Duration::from_micros(500);

/// Bytes accepted but not yet written to disk before `append` waits (backpressure): bounds the
/// memory one partition can pin when producers outrun the disk. 16 MiB is twice the writes in
/// flight: enough to keep the disk busy, small enough that buffers stay hot in the pool (the
/// benchmark measured 0.6× raw with a 64 MiB window and ~0.85× in a model with 8 MiB).
pub const UNWRITTEN_BYTES_MAX: u64 = 16 << 20;

/// One sparse index entry per this many bytes of log (Kafka: `index.interval.bytes` = 4096;
/// Redpanda: 32 KiB). Reads scan at most this far past an entry.
pub const INDEX_INTERVAL_BYTES: u32 = 32 << 10;

/// Most entries one segment's index may hold; a segment is at most
/// `SEGMENT_SIZE_BYTES_MAX / INDEX_INTERVAL_BYTES` entries plus one per batch that crosses an
/// interval, so twice that bound is ample.
pub const INDEX_ENTRIES_MAX: usize = 2 * (SEGMENT_SIZE_BYTES_MAX / INDEX_INTERVAL_BYTES as u64) as usize;

/// Bytes of recent batches kept in memory per shard (`cache.rs`), for all of the shard's
/// partitions together, so that tail reads need no disk I/O. One budget per shard, not per
/// partition: 2 000 partitions at the old 16 MiB each could pin 32 GiB. 256 MiB is what this
/// machine's disk writes in ~160 ms at full speed (~1.6 GB/s, docs/benchmarks.md): consumers
/// that keep up read from memory, and a shard's memory is bounded whatever its partition
/// count. Settable per shard with `engine::cache::set_shard_budget_bytes`.
pub const SHARD_CACHE_BYTES_DEFAULT: u64 = 256 << 20;

/// Appends of a shard wait (backpressure) once the bytes accepted by all its logs but not yet
/// written pass 1/this of the cache budget: unwritten batches cannot be evicted from the cache
/// (the disk does not have them), so without this bound many logs' windows
/// (`UNWRITTEN_BYTES_MAX` each) could together pass the budget by far.
pub const SHARD_UNWRITTEN_BUDGET_DIVISOR: u64 = 2;

/// The shard-wide unwritten bound for a cache budget: half the budget, but never below one
/// log's own window, so that a single busy log is never held back by the shard bound alone
/// (a tiny or zero budget still lets appends proceed).
pub const fn shard_unwritten_bytes_max(budget_bytes: u64) -> u64 {
    let share = budget_bytes / SHARD_UNWRITTEN_BUDGET_DIVISOR;
    if share > UNWRITTEN_BYTES_MAX {
        share
    } else {
        UNWRITTEN_BYTES_MAX
    }
}

/// Largest read buffer one `read` call allocates; bigger `bytes_max` values are clamped.
pub const READ_BYTES_MAX: u32 = 16 << 20;

/// Scan buffer used by recovery (reads this much of a segment per DMA read).
pub const RECOVERY_READ_BYTES: usize = 4 << 20;

/// The free-space floor re-reads `statvfs` at most this often per log (`disk_space.rs`): after
/// retention frees space, producers are accepted again within this long.
pub const DISK_FREE_CHECK_INTERVAL_MS: u64 = 100;

/// ... or once a log appended this much since its last reading, so that one fast producer
/// cannot run far past the floor on a stale reading.
pub const DISK_FREE_CHECK_BYTES: u64 = 4 << 20;

/// Most leader-epoch entries one partition keeps (`epochs.rs`): one per leader change whose
/// batches are still in the log (entries below the log start are trimmed on the next checkpoint
/// write). Kafka has no bound; 2^16 entries is a 768 KiB checkpoint file, and a partition would
/// need a leader change every minute for 45 days of retained data to reach it.
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 1 << 16;

/// Truncations a log remembers (`Log::truncate_to`), so that a `Queued` append can tell whether
/// one cut its batches away while it waited. One that waited through more truncations than this
/// reports `AppendError::Truncated` without checking: a follower truncates once per leader
/// change, so 64 in the life of one append means something else is wrong.
pub const TRUNCATIONS_TRACKED_MAX: usize = 64;

/// A disk read that a truncation overtook is retried (the bytes it read may be gone); after this
/// many in a row it fails with `ReadError::ConcurrentTruncation` rather than loop.
pub const READ_TRUNCATION_RETRIES_MAX: u32 = 8;

/// Topic names follow Kafka: `[A-Za-z0-9._-]{1,249}`, never `.` or `..`.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Partitions per topic (Kafka has no hard limit; this bounds catalog size and memory).
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 10_000;

/// Topics per catalog.
pub const TOPICS_MAX: usize = 10_000;

/// Consumer-group names are bounded like topic names, but may use any printable ASCII.
pub const GROUP_NAME_BYTES_MAX: usize = 255;

/// Committed-offset metadata string bound (Kafka: `offset.metadata.max.bytes` = 4096).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// Rewrite (compact) the group-offsets log once it holds this many bytes.
pub const GROUP_OFFSETS_COMPACT_BYTES: u64 = 64 << 20;

const _: () = assert!(SEGMENT_SIZE_BYTES_MAX < u32::MAX as u64);
const _: () = assert!(SEGMENT_SIZE_BYTES_MIN.is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!((WRITE_CHUNK_BYTES as u64).is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!(PREALLOCATE_STEP_BYTES.is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!(PREALLOCATE_FIRST_STEP_BYTES.is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!(PREALLOCATE_FIRST_STEP_BYTES <= PREALLOCATE_STEP_BYTES);
const _: () = assert!(WRITE_CHUNK_BYTES as u64 > IO_ALIGN_BYTES);
const _: () = assert!((SMALL_CHUNK_BYTES_MIN as u64).is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!(SMALL_CHUNK_BYTES_MIN < WRITE_CHUNK_BYTES && SMALL_CHUNK_BYTES_MIN.is_power_of_two());
const _: () = assert!(UNWRITTEN_BYTES_MAX >= 2 * BATCH_SIZE_BYTES_MAX as u64);
const _: () = assert!(SHARD_UNWRITTEN_BUDGET_DIVISOR >= 1);
const _: () = assert!(shard_unwritten_bytes_max(SHARD_CACHE_BYTES_DEFAULT) >= UNWRITTEN_BYTES_MAX);
const _: () = assert!(shard_unwritten_bytes_max(0) == UNWRITTEN_BYTES_MAX);
const _: () = assert!(READ_BYTES_MAX >= BATCH_SIZE_BYTES_MAX);
const _: () = assert!(RECOVERY_READ_BYTES >= BATCH_SIZE_BYTES_MAX as usize / 2);

/// Kafka topic configs a topic keeps without applying them (`TopicConfig::unapplied`): Kafka
/// has about 40 topic configs, so this bounds the catalog without refusing a real one.
pub const UNAPPLIED_CONFIGS_MAX: usize = 64;

/// Longest config name (Kafka's are under 60 bytes) and value a topic keeps.
pub const CONFIG_NAME_BYTES_MAX: usize = 255;
pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
