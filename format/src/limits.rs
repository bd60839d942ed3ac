//! The bounds of the RecordBatch v2 format as shardlog accepts it, as named constants with
//! their units. The engine re-exports them from `engine::limits`, beside its own bounds.

/// Size of the Kafka RecordBatch v2 header: every field up to and including `recordsCount`.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Largest RecordBatch accepted on append (Kafka's `message.max.bytes` is ~1 MiB; we allow 8 MiB
/// so that one large producer batch still fits, while a hostile length cannot make us allocate
/// more than this per batch).
pub const BATCH_SIZE_BYTES_MAX: u32 = 8 << 20;

/// Most records one batch may claim. A batch of 1-byte records with minimal framing takes at
/// least 7 bytes a record, so this is above anything a valid 8 MiB batch can hold.
pub const BATCH_RECORDS_MAX: u32 = BATCH_SIZE_BYTES_MAX / 7;

/// Most header entries one record may carry (Kafka has no hard limit; this bounds iteration).
pub const RECORD_HEADERS_MAX: u32 = 1 << 16;

const _: () = assert!(BATCH_RECORDS_MAX < i32::MAX as u32);
const _: () = assert!(BATCH_SIZE_BYTES_MAX < i32::MAX as u32);
const _: () = assert!((BATCH_HEADER_BYTES as u32) < BATCH_SIZE_BYTES_MAX);
