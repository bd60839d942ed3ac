//! Kafka RecordBatch v2 codec: the unit the log stores, replicates and serves.
//!
//! A batch is validated once, on the way in, and then kept as the exact bytes the producer
//! sent (only `baseOffset` is rewritten, and the CRC does not cover it). Every length read
//! from the wire is checked against the bytes actually present before it is used, so a
//! malformed or hostile batch yields a [`BatchError`], never a panic or a large allocation.
//!
//! Layout (all integers big-endian):
//!
//! | field                                  | type | byte offset |
//! |----------------------------------------|------|-------------|
//! | baseOffset                             | i64  | 0           |
//! | batchLength (bytes after this field)   | i32  | 8           |
//! | partitionLeaderEpoch                   | i32  | 12          |
//! | magic (= 2)                            | i8   | 16          |
//! | crc (CRC-32C of bytes 21..end)         | u32  | 17          |
//! | attributes                             | i16  | 21          |
//! | lastOffsetDelta                        | i32  | 23          |
//! | baseTimestamp                          | i64  | 27          |
//! | maxTimestamp                           | i64  | 35          |
//! | producerId                             | i64  | 43          |
//! | producerEpoch                          | i16  | 51          |
//! | baseSequence                           | i32  | 53          |
//! | recordsCount                           | i32  | 57          |
//! | records                                | …    | 61          |
//!
//! attributes: bits 0–2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), bit 3
//! timestamp type, bit 4 transactional, bit 5 control.
//!
//! Record (only readable when uncompressed), varints zigzag-encoded as in protobuf:
//! `length varint` (bytes after itself), `attributes i8`, `timestampDelta varlong`,
//! `offsetDelta varint`, `keyLength varint` + key, `valueLength varint` + value,
//! `headerCount varint`, then per header `keyLength varint` + key, `valueLength varint` +
//! value. A length of −1 means null.

use std::iter::FusedIterator;
use std::ops::Range;

use bytes::{BufMut, Bytes};

use crate::limits::{BATCH_HEADER_BYTES, BATCH_RECORDS_MAX, BATCH_SIZE_BYTES_MAX, RECORD_HEADERS_MAX};

mod builder;
pub use builder::BatchBuilder;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
/// The CRC covers everything from here to the end, so that brokers may rewrite baseOffset
/// and partitionLeaderEpoch without recomputing it.
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORDS_COUNT: usize = 57;
const OFFSET_RECORDS: usize = 61;

/// baseOffset + batchLength: the bytes that batchLength does not count.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// Smallest batchLength that still holds the whole fixed header.
const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32;

const MAGIC_V2: i8 = 2;
const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
/// zstd; 5–7 are unassigned, and consumers could not decode such a batch.
const COMPRESSION_MAX: u8 = 4;
const ATTRIBUTE_TRANSACTIONAL: i16 = 1 << 4;
const ATTRIBUTE_CONTROL: i16 = 1 << 5;

/// A zigzag varint encodes 32 bits in at most 5 groups of 7, a varlong 64 bits in 10.
const VARINT_BYTES_MAX: usize = 5;
const VARLONG_BYTES_MAX: usize = 10;
/// One byte each for the header's key length and value length (an empty key, a null value).
const RECORD_HEADER_BYTES_MIN: usize = 2;

const _: () = assert!(OFFSET_RECORDS == BATCH_HEADER_BYTES);
const _: () = assert!(OFFSET_BATCH_LENGTH + 4 == BATCH_LENGTH_PREFIX_BYTES);
const _: () = assert!(OFFSET_RECORDS_COUNT + 4 == OFFSET_RECORDS);
const _: () = assert!(BATCH_RECORDS_MAX < i32::MAX as u32);
const _: () = assert!(BATCH_SIZE_BYTES_MAX < i32::MAX as u32);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    #[error("batch truncated: needs {needed_bytes} bytes, have {have_bytes}")]
    Truncated { needed_bytes: usize, have_bytes: usize },
    #[error("batch of {size_bytes} bytes exceeds the limit of {max} bytes", max = BATCH_SIZE_BYTES_MAX)]
    TooLarge { size_bytes: u64 },
    #[error("bad batchLength {batch_length}: must be at least {min}", min = BATCH_LENGTH_MIN)]
    BadLength { batch_length: i32 },
    #[error("bad magic {magic}: only RecordBatch v2 (magic 2) is supported")]
    BadMagic { magic: i8 },
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("bad recordsCount {records_count} with lastOffsetDelta {last_offset_delta}")]
    BadRecordCount { records_count: i32, last_offset_delta: i32 },
    #[error("batch claims {records_count} records but holds only {records_found}")]
    RecordCountMismatch { records_count: i32, records_found: u32 },
    #[error("malformed record {index}: {reason}")]
    BadRecord { index: u32, reason: &'static str },
    #[error("{extra_bytes} bytes after the end of the batch")]
    TrailingBytes { extra_bytes: usize },
    #[error("baseOffset {base_offset} + lastOffsetDelta {last_offset_delta} overflows i64")]
    OffsetOverflow { base_offset: i64, last_offset_delta: i32 },
    #[error("unknown compression codec {compression} (known: 0 to 4)")]
    BadCompression { compression: u8 },
    #[error("records of a compressed batch cannot be iterated")]
    Compressed,
    /// A stored batch whose partitionLeaderEpoch (outside the CRC) is not the epoch its log
    /// holds for its offset.
    #[error(
        "stored partitionLeaderEpoch {epoch} is not the leader epoch of its offset (the field is outside the CRC)"
    )]
    BadLeaderEpoch { epoch: i32 },
    /// A batch offered for append whose lastOffsetDelta does not match its record count: a
    /// compressed batch could otherwise claim up to 2^31 offsets with one record.
    #[error(
        "lastOffsetDelta {last_offset_delta} does not match recordsCount {records_count} \
         (a produced batch must have lastOffsetDelta = recordsCount - 1)"
    )]
    OffsetDeltaMismatch { records_count: i32, last_offset_delta: i32 },
}

/// The fixed 61-byte header, decoded. Plain data: parsing checks only what framing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header from the start of `buf` without checking the CRC or the records,
    /// and without requiring the rest of the batch to be present.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed_bytes: BATCH_HEADER_BYTES, have_bytes: buf.len() });
        }
        // Length first: it is what framing depends on, and a torn write usually breaks it.
        let size_bytes = peek_batch_size(buf)?;
        debug_assert!(size_bytes.is_some());
        let magic = i8::from_be_bytes(get(buf, OFFSET_MAGIC));
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { magic });
        }
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(get(buf, OFFSET_BASE_OFFSET)),
            batch_length: i32::from_be_bytes(get(buf, OFFSET_BATCH_LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(get(buf, OFFSET_PARTITION_LEADER_EPOCH)),
            magic,
            crc: u32::from_be_bytes(get(buf, OFFSET_CRC)),
            attributes: i16::from_be_bytes(get(buf, OFFSET_ATTRIBUTES)),
            last_offset_delta: i32::from_be_bytes(get(buf, OFFSET_LAST_OFFSET_DELTA)),
            base_timestamp: i64::from_be_bytes(get(buf, OFFSET_BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(get(buf, OFFSET_MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(get(buf, OFFSET_PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(get(buf, OFFSET_PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(get(buf, OFFSET_BASE_SEQUENCE)),
            records_count: i32::from_be_bytes(get(buf, OFFSET_RECORDS_COUNT)),
        })
    }

    /// Writes every field (including `crc` as stored in `self`) to the first 61 bytes of `buf`,
    /// in layout order.
    fn write(&self, buf: &mut [u8]) {
        let mut out = &mut buf[..BATCH_HEADER_BYTES];
        out.put_i64(self.base_offset);
        out.put_i32(self.batch_length);
        out.put_i32(self.partition_leader_epoch);
        out.put_i8(self.magic);
        out.put_u32(self.crc);
        out.put_i16(self.attributes);
        out.put_i32(self.last_offset_delta);
        out.put_i64(self.base_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.records_count);
        assert!(out.is_empty());
    }

    /// Whole batch size: batchLength plus the 12 bytes before it.
    pub fn size_bytes(&self) -> usize {
        debug_assert!(self.batch_length >= BATCH_LENGTH_MIN);
        self.batch_length.max(0) as usize + BATCH_LENGTH_PREFIX_BYTES
    }

    pub fn compression(&self) -> u8 {
        (self.attributes & ATTRIBUTE_COMPRESSION_MASK) as u8
    }

    pub fn is_compressed(&self) -> bool {
        self.compression() != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// Offset of the batch's last record. Validation rejects batches where this overflows;
    /// for an unvalidated header it wraps rather than panics.
    pub fn last_offset(&self) -> i64 {
        let last_offset_delta = i64::from(self.last_offset_delta);
        self.base_offset.wrapping_add(last_offset_delta)
    }
}

/// Reads the batch size from a buffer prefix, so that recovery and readers can walk a
/// segment batch by batch. Returns `Ok(None)` while fewer than 12 bytes are present.
pub fn peek_batch_size(buf: &[u8]) -> Result<Option<usize>, BatchError> {
    if buf.len() < BATCH_LENGTH_PREFIX_BYTES {
        return Ok(None);
    }
    let batch_length = i32::from_be_bytes(get(buf, OFFSET_BATCH_LENGTH));
    if batch_length < BATCH_LENGTH_MIN {
        return Err(BatchError::BadLength { batch_length });
    }
    let size_bytes = batch_length as u64 + BATCH_LENGTH_PREFIX_BYTES as u64;
    if size_bytes > u64::from(BATCH_SIZE_BYTES_MAX) {
        return Err(BatchError::TooLarge { size_bytes });
    }
    Ok(Some(size_bytes as usize))
}

/// Overwrites baseOffset in place. The CRC does not cover it, so the batch stays valid.
pub fn write_base_offset(buf: &mut [u8], base_offset: i64) {
    assert!(buf.len() >= OFFSET_BATCH_LENGTH, "buffer of {} bytes has no baseOffset", buf.len());
    put(buf, OFFSET_BASE_OFFSET, base_offset.to_be_bytes());
}

/// Recomputes and stores the CRC of the single whole batch in `buf`, after a caller edited a
/// CRC-covered field (e.g. maxTimestamp for LogAppendTime, or tests crafting batches).
pub fn write_crc(buf: &mut [u8]) {
    assert!(buf.len() >= BATCH_HEADER_BYTES, "buffer of {} bytes has no batch header", buf.len());
    let crc = crc32c::crc32c(&buf[OFFSET_ATTRIBUTES..]);
    put(buf, OFFSET_CRC, crc.to_be_bytes());
}

/// A fully validated batch over shared bytes (no copy).
///
/// Invariants: `bytes.len() == header.size_bytes()`, magic 2, CRC matches, 1 ≤ recordsCount ≤
/// BATCH_RECORDS_MAX, lastOffsetDelta ≥ 0 and baseOffset + lastOffsetDelta does not overflow.
/// Uncompressed batches also have lastOffsetDelta == recordsCount − 1 and, unless built with
/// [`Batch::validate_crc_only`], exactly recordsCount well-framed records with offset deltas
/// 0, 1, 2, … filling the batch. Compressed records are opaque: stored and served as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    bytes: Bytes,
    header: BatchHeader,
}

impl Batch {
    /// Validates exactly one batch occupying all of `bytes`, walking every record.
    pub fn validate(bytes: Bytes) -> Result<Batch, BatchError> {
        let header = validate_frame(&bytes)?;
        if !header.is_compressed() {
            walk_records(&bytes, &header)?;
        }
        Ok(Batch { bytes, header })
    }

    /// What a batch offered for append must pass: everything `validate` checks, and
    /// lastOffsetDelta = recordsCount − 1 whether compressed or not, with 1 ≤ recordsCount ≤
    /// `BATCH_RECORDS_MAX`. Kafka's producers always write a batch so (offset deltas 0, 1, 2, …,
    /// before any compression), and Kafka's broker requires it too (`LogValidator`: "inner
    /// record count must match"). Without it the offsets of a compressed batch cannot be
    /// counted, so one such batch could claim 2^31 offsets. `validate` alone stays lenient for
    /// compressed batches read back from elsewhere: compaction leaves gaps in them.
    pub fn validate_produced(bytes: Bytes) -> Result<Batch, BatchError> {
        let batch = Batch::validate(bytes)?;
        check_produced_counts(&batch.header)?;
        Ok(batch)
    }

    /// Validates header, length, CRC and counts without walking records: for recovery and
    /// reads of bytes that were fully validated before they were written.
    pub fn validate_crc_only(bytes: Bytes) -> Result<Batch, BatchError> {
        let header = validate_frame(&bytes)?;
        Ok(Batch { bytes, header })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn size_bytes(&self) -> usize {
        debug_assert_eq!(self.bytes.len(), self.header.size_bytes());
        self.bytes.len()
    }

    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    pub fn record_count(&self) -> u32 {
        debug_assert!(self.header.records_count >= 1);
        self.header.records_count as u32
    }

    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    /// Iterates the records of an uncompressed batch; keys, values and headers are slices of
    /// the batch's bytes. A compressed batch yields a single `Err(BatchError::Compressed)`.
    pub fn records(&self) -> Records {
        Records { bytes: self.bytes.clone(), header: self.header, index: 0, position: OFFSET_RECORDS, done: false }
    }
}

/// CRC-32C over attributes..end of one whole batch, compared with the CRC in its header.
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    if computed != header.crc {
        return Err(BatchError::BadCrc { stored: header.crc, computed });
    }
    Ok(())
}

/// Checks everything but the records: header, exact size, CRC, counts. What
/// [`Batch::validate_crc_only`] checks, on a slice (recovery scans without copying).
pub fn validate_frame(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let size_bytes = header.size_bytes();
    if bytes.len() < size_bytes {
        return Err(BatchError::Truncated { needed_bytes: size_bytes, have_bytes: bytes.len() });
    }
    if bytes.len() > size_bytes {
        return Err(BatchError::TrailingBytes { extra_bytes: bytes.len() - size_bytes });
    }
    // CRC before counts: if the counts are corrupt, the CRC is the more accurate report.
    check_crc(bytes, &header)?;
    if header.compression() > COMPRESSION_MAX {
        let compression = header.compression();
        return Err(BatchError::BadCompression { compression });
    }
    check_counts(&header)?;
    Ok(header)
}

fn check_counts(header: &BatchHeader) -> Result<(), BatchError> {
    let records_count = header.records_count;
    let last_offset_delta = header.last_offset_delta;
    let bad_count = BatchError::BadRecordCount { records_count, last_offset_delta };
    if records_count <= 0 || records_count as u32 > BATCH_RECORDS_MAX || last_offset_delta < 0 {
        return Err(bad_count);
    }
    // Compressed batches may have gaps after compaction; uncompressed ones we walk, and
    // require offset deltas 0..count, so the last delta is fixed.
    if !header.is_compressed() && last_offset_delta != records_count - 1 {
        return Err(bad_count);
    }
    let base_offset = header.base_offset;
    if base_offset.checked_add(i64::from(last_offset_delta)).is_none() {
        return Err(BatchError::OffsetOverflow { base_offset, last_offset_delta });
    }
    Ok(())
}

/// The rule `Batch::validate_produced` adds, on a header: the offsets a batch claims are
/// exactly its records.
pub fn check_produced_counts(header: &BatchHeader) -> Result<(), BatchError> {
    let records_count = header.records_count;
    let last_offset_delta = header.last_offset_delta;
    if records_count < 1 || records_count as u32 > BATCH_RECORDS_MAX {
        return Err(BatchError::BadRecordCount { records_count, last_offset_delta });
    }
    if i64::from(last_offset_delta) != i64::from(records_count) - 1 {
        return Err(BatchError::OffsetDeltaMismatch { records_count, last_offset_delta });
    }
    Ok(())
}

/// Walks every record of an uncompressed batch without allocating.
fn walk_records(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    debug_assert!(!header.is_compressed());
    let mut index = 0;
    let mut position = OFFSET_RECORDS;
    // Terminates: each step consumes at least one byte or returns.
    while let Some(frame) = next_record_frame(batch, header, index, position)? {
        debug_assert!(frame.end > position);
        position = frame.end;
        index += 1;
    }
    debug_assert_eq!(index, header.records_count as u32);
    Ok(())
}

/// Where one record's fields lie in the batch (absolute byte ranges).
#[derive(Debug)]
struct RecordFrame {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers_count: u32,
    headers_start: usize,
    end: usize,
}

/// Decodes record `index` at `position`, or returns `Ok(None)` once all `recordsCount`
/// records were decoded and they end exactly at the end of the batch.
fn next_record_frame(
    batch: &[u8],
    header: &BatchHeader,
    index: u32,
    position: usize,
) -> Result<Option<RecordFrame>, BatchError> {
    debug_assert!(position >= OFFSET_RECORDS && position <= batch.len());
    let records_count = header.records_count.max(0) as u32;
    if index >= records_count {
        if position != batch.len() {
            return Err(BatchError::BadRecord { index, reason: "bytes left over after the last record" });
        }
        return Ok(None);
    }
    if position == batch.len() {
        return Err(BatchError::RecordCountMismatch { records_count: header.records_count, records_found: index });
    }
    decode_record(batch, position, index).map(Some)
}

fn decode_record(batch: &[u8], position: usize, index: u32) -> Result<RecordFrame, BatchError> {
    let mut cursor = Cursor { buf: batch, position, end: batch.len(), index };
    let length = cursor.varint()?;
    if length < 0 {
        return Err(cursor.error("negative record length"));
    }
    let length = length as usize;
    if length > cursor.remaining() {
        return Err(cursor.error("record extends past the end of the batch"));
    }
    // From here on the cursor cannot read past this record, whatever its fields claim.
    cursor.end = cursor.position + length;

    let attributes = cursor.u8()? as i8;
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    if i64::from(offset_delta) != i64::from(index) {
        return Err(cursor.error("offset delta is not the record's index"));
    }
    let key = cursor.length_prefixed()?;
    let value = cursor.length_prefixed()?;

    let headers_count = cursor.varint()?;
    if headers_count < 0 {
        return Err(cursor.error("negative header count"));
    }
    let headers_count = headers_count as u32;
    if headers_count > RECORD_HEADERS_MAX {
        return Err(cursor.error("too many headers"));
    }
    if headers_count as usize * RECORD_HEADER_BYTES_MIN > cursor.remaining() {
        return Err(cursor.error("header count exceeds the record's bytes"));
    }
    let headers_start = cursor.position;
    for _ in 0..headers_count {
        cursor.header()?;
    }
    if cursor.position != cursor.end {
        return Err(cursor.error("record length does not match its fields"));
    }
    Ok(RecordFrame {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers_count,
        headers_start,
        end: cursor.end,
    })
}

/// Bounded reader over `buf[position..end]`; every read checks the bound first.
struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
    end: usize,
    /// Record index, for error reports.
    index: u32,
}

impl Cursor<'_> {
    fn error(&self, reason: &'static str) -> BatchError {
        BatchError::BadRecord { index: self.index, reason }
    }

    fn remaining(&self) -> usize {
        debug_assert!(self.position <= self.end && self.end <= self.buf.len());
        self.end - self.position
    }

    fn u8(&mut self) -> Result<u8, BatchError> {
        if self.remaining() == 0 {
            return Err(self.error("record field extends past the record"));
        }
        let byte = self.buf[self.position];
        self.position += 1;
        Ok(byte)
    }

    /// Unsigned LEB128 of at most `bytes_max` bytes whose value fits in `bits`.
    fn uvarint(&mut self, bytes_max: usize, bits: u32) -> Result<u64, BatchError> {
        let mut value: u64 = 0;
        for i in 0..bytes_max {
            let byte = self.u8()?;
            let shift = 7 * i as u32;
            // The last group may only carry the bits that are left: reject rather than
            // silently drop high bits, so one encoding means one value.
            if i + 1 == bytes_max && u64::from(byte) >> (bits - shift) != 0 {
                return Err(self.error("varint overflows its type"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint too long"))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let value = self.uvarint(VARINT_BYTES_MAX, 32)?;
        debug_assert!(value <= u64::from(u32::MAX));
        Ok(zigzag_decode_32(value as u32))
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        Ok(zigzag_decode_64(self.uvarint(VARLONG_BYTES_MAX, 64)?))
    }

    /// A varint length then that many bytes; −1 is null.
    fn length_prefixed(&mut self) -> Result<Option<Range<usize>>, BatchError> {
        let length = self.varint()?;
        if length == -1 {
            return Ok(None);
        }
        if length < -1 {
            return Err(self.error("negative length"));
        }
        let length = length as usize;
        if length > self.remaining() {
            return Err(self.error("field length extends past the record"));
        }
        let range = self.position..self.position + length;
        self.position += length;
        Ok(Some(range))
    }

    /// One record header: a non-null key and a nullable value.
    fn header(&mut self) -> Result<(Range<usize>, Option<Range<usize>>), BatchError> {
        let Some(key) = self.length_prefixed()? else {
            return Err(self.error("null header key"));
        };
        let value = self.length_prefixed()?;
        Ok((key, value))
    }
}

fn zigzag_decode_32(value: u32) -> i32 {
    ((value >> 1) as i32) ^ -((value & 1) as i32)
}

fn zigzag_decode_64(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn zigzag_encode_64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Bytes of the zigzag varint/varlong encoding of `value` (varint of an i32 is the same
/// bytes as varlong of the sign-extended value).
fn varlong_bytes(value: i64) -> usize {
    let bits = 64 - zigzag_encode_64(value).leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    let mut rest = zigzag_encode_64(value);
    while rest >= 0x80 {
        buf.push((rest as u8) | 0x80);
        rest >>= 7;
    }
    buf.push(rest as u8);
}

fn put_varint(buf: &mut Vec<u8>, value: i32) {
    put_varlong(buf, i64::from(value));
}

/// Bytes of a length-prefixed field (−1 for null). Lengths are usize so that an oversized
/// input is measured, not truncated; callers reject it before encoding.
fn field_bytes(field: Option<&[u8]>) -> usize {
    match field {
        None => varlong_bytes(-1),
        Some(data) => varlong_bytes(i64::try_from(data.len()).unwrap_or(i64::MAX)).saturating_add(data.len()),
    }
}

fn put_field(buf: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(buf, -1),
        Some(data) => {
            // Callers bound every record to BATCH_SIZE_BYTES_MAX, far below i32::MAX.
            assert!(data.len() <= BATCH_SIZE_BYTES_MAX as usize);
            put_varint(buf, data.len() as i32);
            buf.extend_from_slice(data);
        }
    }
}

fn get<const N: usize>(buf: &[u8], offset: usize) -> [u8; N] {
    let mut array = [0; N];
    array.copy_from_slice(&buf[offset..offset + N]);
    array
}

fn put<const N: usize>(buf: &mut [u8], offset: usize, value: [u8; N]) {
    buf[offset..offset + N].copy_from_slice(&value);
}

/// One record, its byte fields sharing the batch's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Batch baseOffset + offsetDelta.
    pub offset: i64,
    /// Batch baseTimestamp + timestampDelta, in ms since the epoch.
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// A record header. Kafka header keys are strings; they are kept as bytes, not checked as UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Iterator over a batch's records; see [`Batch::records`]. Stops after the first error.
#[derive(Clone, Debug)]
pub struct Records {
    bytes: Bytes,
    header: BatchHeader,
    index: u32,
    position: usize,
    done: bool,
}

impl Records {
    fn record(&self, frame: &RecordFrame) -> Result<Record, BatchError> {
        let index = self.index;
        let header = &self.header;
        let offset_delta = i64::from(frame.offset_delta);
        let Some(offset) = header.base_offset.checked_add(offset_delta) else {
            return Err(BatchError::BadRecord { index, reason: "offset overflows i64" });
        };
        // Java's long arithmetic wraps; match it so that every encodable delta decodes.
        let timestamp = header.base_timestamp.wrapping_add(frame.timestamp_delta);
        let slice = |range: &Range<usize>| self.bytes.slice(range.clone());

        // The frame was walked, so headers_count × 2 bytes fit in the record: bounded.
        let mut headers = Vec::with_capacity(frame.headers_count as usize);
        let mut cursor = Cursor { buf: &self.bytes, position: frame.headers_start, end: frame.end, index };
        for _ in 0..frame.headers_count {
            let (key, value) = cursor.header()?;
            headers.push(Header { key: slice(&key), value: value.as_ref().map(slice) });
        }
        debug_assert_eq!(cursor.position, frame.end);
        Ok(Record {
            offset,
            timestamp,
            attributes: frame.attributes,
            key: frame.key.as_ref().map(slice),
            value: frame.value.as_ref().map(slice),
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.header.is_compressed() {
            self.done = true;
            return Some(Err(BatchError::Compressed));
        }
        let result = next_record_frame(&self.bytes, &self.header, self.index, self.position)
            .and_then(|frame| frame.map(|frame| self.record(&frame).map(|record| (record, frame.end))).transpose());
        match result {
            Ok(Some((record, end))) => {
                self.position = end;
                self.index += 1;
                Some(Ok(record))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl FusedIterator for Records {}

/// Splits a concatenation of whole batches (e.g. a fetch response) into validated batches.
/// A trailing partial batch ends the iteration without error, as Kafka fetch responses may
/// end mid-batch. Iteration stops after the first error: framing cannot be trusted past it.
pub fn split_batches(bytes: Bytes) -> SplitBatches {
    SplitBatches { rest: bytes, done: false }
}

/// Iterator returned by [`split_batches`].
#[derive(Clone, Debug)]
pub struct SplitBatches {
    rest: Bytes,
    done: bool,
}

impl Iterator for SplitBatches {
    type Item = Result<Batch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let size_bytes = match peek_batch_size(&self.rest) {
            Ok(Some(size_bytes)) if size_bytes <= self.rest.len() => size_bytes,
            Ok(_) => {
                self.done = true; // Empty, or a partial batch at the end.
                return None;
            }
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        let result = Batch::validate(self.rest.split_to(size_bytes));
        self.done = result.is_err();
        Some(result)
    }
}

impl FusedIterator for SplitBatches {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Key, value, timestamp.
    type Plain<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

    fn build(records: &[Plain]) -> Bytes {
        let mut builder = BatchBuilder::new();
        for (key, value, timestamp_ms) in records {
            builder.push(*key, *value, *timestamp_ms, &[]);
        }
        builder.build().unwrap()
    }

    /// Applies `edit` to a copy of `bytes`, reseals the CRC and validates.
    fn reseal(bytes: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Result<Batch, BatchError> {
        let mut buf = bytes.to_vec();
        edit(&mut buf);
        write_crc(&mut buf);
        Batch::validate(Bytes::from(buf))
    }

    #[test]
    fn round_trip() {
        let mut builder = BatchBuilder::new().producer(7, 3, 42).base_offset(100);
        builder.push(Some(b"k0"), Some(b"v0"), 1_000, &[]);
        builder.push(None, Some(b"v1"), 900, &[(b"h", Some(b"x")), (b"", None)]);
        builder.push(Some(b""), None, 1_500, &[]);
        assert_eq!(builder.record_count(), 3);
        let size_bytes = builder.size_bytes();
        let batch = Batch::validate(builder.build().unwrap()).unwrap();
        assert_eq!(batch.size_bytes(), size_bytes);
        assert_eq!((batch.base_offset(), batch.last_offset()), (100, 102));
        assert_eq!((batch.record_count(), batch.max_timestamp()), (3, 1_500));
        let header = *batch.header();
        let producer = (header.producer_id, header.producer_epoch, header.base_sequence);
        assert_eq!(producer, (7, 3, 42));
        assert_eq!((header.base_timestamp, header.partition_leader_epoch), (1_000, -1));
        assert!(!header.is_compressed() && !header.is_control() && !header.is_transactional());

        let bytes = |data: &'static [u8]| Bytes::from_static(data);
        let record = |offset, timestamp, key: Option<&'static [u8]>, value: Option<&'static [u8]>, headers| Record {
            offset,
            timestamp,
            attributes: 0,
            key: key.map(bytes),
            value: value.map(bytes),
            headers,
        };
        let headers =
            vec![Header { key: bytes(b"h"), value: Some(bytes(b"x")) }, Header { key: Bytes::new(), value: None }];
        let expected = [
            record(100, 1_000, Some(b"k0"), Some(b"v0"), vec![]),
            record(101, 900, None, Some(b"v1"), headers),
            record(102, 1_500, Some(b""), None, vec![]),
        ];
        let records: Vec<Record> = batch.records().map(Result::unwrap).collect();
        assert_eq!(records, expected);
    }

    #[test]
    fn known_answer() {
        // One record, key "k", value "v", timestamp 1000, encoded by hand from the layout:
        // length 8, attributes 0, timestampDelta 0, offsetDelta 0, key 1 "k", value 1 "v", 0 headers.
        let record = [0x10, 0x00, 0x00, 0x00, 0x02, b'k', 0x02, b'v', 0x00];
        let mut expected = vec![0u8; BATCH_HEADER_BYTES];
        put(&mut expected, 8, 58i32.to_be_bytes());
        put(&mut expected, 12, (-1i32).to_be_bytes());
        expected[16] = 2;
        put(&mut expected, 27, 1_000i64.to_be_bytes());
        put(&mut expected, 35, 1_000i64.to_be_bytes());
        put(&mut expected, 43, (-1i64).to_be_bytes());
        put(&mut expected, 51, (-1i16).to_be_bytes());
        put(&mut expected, 53, (-1i32).to_be_bytes());
        put(&mut expected, 57, 1i32.to_be_bytes());
        expected.extend_from_slice(&record);
        let crc = crc32c::crc32c(&expected[21..]);
        put(&mut expected, 17, crc.to_be_bytes());

        let built = build(&[(Some(b"k"), Some(b"v"), 1_000)]);
        assert_eq!((built.len(), built[16]), (70, 2));
        assert_eq!(built[8..12], 58i32.to_be_bytes());
        assert_eq!(built[17..21], crc32c::crc32c(&built[21..]).to_be_bytes());
        assert_eq!(&built[..], &expected[..]);
        assert_eq!(peek_batch_size(&built), Ok(Some(70)));
    }

    #[test]
    fn crc_mismatch_detected() {
        let bytes = build(&[(Some(b"key"), Some(b"value"), 5)]);
        for index in OFFSET_CRC..bytes.len() {
            let mut buf = bytes.to_vec();
            buf[index] ^= 0x01;
            let result = Batch::validate_crc_only(Bytes::from(buf));
            assert!(matches!(result, Err(BatchError::BadCrc { .. })), "byte {index}: {result:?}");
        }
    }

    #[test]
    fn base_offset_rewrite_keeps_crc() {
        let mut buf = build(&[(None, Some(b"v"), 0)]).to_vec();
        write_base_offset(&mut buf, 1 << 40);
        let batch = Batch::validate(Bytes::from(buf)).unwrap();
        assert_eq!(batch.base_offset(), 1 << 40);
        assert_eq!(batch.records().next().unwrap().unwrap().offset, 1 << 40);
    }

    #[test]
    fn truncated_prefixes_error() {
        let mut builder = BatchBuilder::new();
        builder.push(Some(b"a"), Some(b"b"), 1, &[(b"h", Some(b"v"))]);
        builder.push(None, None, 2, &[]);
        let bytes = builder.build().unwrap();
        for length in 0..bytes.len() {
            let prefix = bytes.slice(..length);
            assert!(Batch::validate(prefix.clone()).is_err(), "prefix {length} validated");
            assert!(Batch::validate_crc_only(prefix.clone()).is_err());
            assert_eq!(split_batches(prefix.clone()).count(), 0);
            assert_eq!(peek_batch_size(&prefix).unwrap().is_some(), length >= 12);
            if length < BATCH_HEADER_BYTES {
                let error = BatchError::Truncated { needed_bytes: 61, have_bytes: length };
                assert_eq!(BatchHeader::parse(&prefix), Err(error));
            }
        }
        let longer = Bytes::from([&bytes[..], &[0]].concat());
        assert_eq!(Batch::validate(longer), Err(BatchError::TrailingBytes { extra_bytes: 1 }));
    }

    #[test]
    fn compressed_batches_are_opaque() {
        let bytes = build(&[(Some(b"k"), Some(b"v"), 0), (None, Some(b"v"), 0)]);
        for compression in 1..=4i16 {
            let batch = reseal(&bytes, |buf| put(buf, OFFSET_ATTRIBUTES, compression.to_be_bytes()));
            let batch = batch.unwrap();
            assert_eq!(batch.header().compression(), compression as u8);
            assert!(batch.header().is_compressed());
            let mut records = batch.records();
            assert_eq!(records.next(), Some(Err(BatchError::Compressed)));
            assert_eq!(records.next(), None);
        }
        let codec_5 = reseal(&bytes, |buf| put(buf, OFFSET_ATTRIBUTES, 5i16.to_be_bytes()));
        assert_eq!(codec_5, Err(BatchError::BadCompression { compression: 5 }));
        // Opaque records: garbage and a gap in offsets are both accepted when compressed.
        let batch = reseal(&bytes, |buf| {
            put(buf, OFFSET_ATTRIBUTES, 1i16.to_be_bytes());
            put(buf, OFFSET_LAST_OFFSET_DELTA, 9i32.to_be_bytes());
            buf[OFFSET_RECORDS..].fill(0xff);
        });
        assert_eq!(batch.unwrap().last_offset(), 9);
    }

    #[test]
    fn produced_batches_claim_exactly_their_records() {
        let bytes = build(&[(Some(b"k"), Some(b"v"), 0), (None, Some(b"v"), 0)]);
        assert_eq!(Batch::validate_produced(bytes.clone()).unwrap().last_offset(), 1);
        for compression in 0..=4i16 {
            let with = |last_offset_delta: i32, records_count: i32| {
                let mut buf = bytes.to_vec();
                put(&mut buf, OFFSET_ATTRIBUTES, compression.to_be_bytes());
                put(&mut buf, OFFSET_LAST_OFFSET_DELTA, last_offset_delta.to_be_bytes());
                put(&mut buf, OFFSET_RECORDS_COUNT, records_count.to_be_bytes());
                write_crc(&mut buf);
                Batch::validate_produced(Bytes::from(buf))
            };
            // Compressed records are opaque, so the counts must agree on their own.
            if compression != 0 {
                assert_eq!(with(1, 2).unwrap().last_offset(), 1);
                assert_eq!(with(0, 1).unwrap().last_offset(), 0);
            }
            let huge = with(i32::MAX, 2).unwrap_err();
            assert!(
                matches!(huge, BatchError::OffsetDeltaMismatch { .. } | BatchError::BadRecordCount { .. }),
                "codec {compression}: {huge:?}"
            );
            assert!(with(9, 2).is_err(), "codec {compression}: a gap was accepted");
            assert!(with(0, 2).is_err(), "codec {compression}: fewer offsets than records were accepted");
            assert!(with(-1, 0).is_err(), "codec {compression}: an empty batch was accepted");
            let too_many = BATCH_RECORDS_MAX as i32 + 1;
            assert!(with(too_many - 1, too_many).is_err(), "codec {compression}: too many records");
        }
        // The header-level check gives the same answers.
        let mut header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(check_produced_counts(&header), Ok(()));
        header.last_offset_delta = 1 << 30;
        assert_eq!(
            check_produced_counts(&header),
            Err(BatchError::OffsetDeltaMismatch { records_count: 2, last_offset_delta: 1 << 30 })
        );
    }

    #[test]
    fn varint_extremes_round_trip() {
        let extremes = [0, 1, -1, 63, -64, 64, i32::MIN as i64, i32::MAX as i64, i64::MIN, i64::MAX];
        for value in extremes {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf.len(), varlong_bytes(value));
            let mut cursor = Cursor { buf: &buf, position: 0, end: buf.len(), index: 0 };
            assert_eq!((cursor.varlong(), cursor.remaining()), (Ok(value), 0));
            let mut cursor = Cursor { buf: &buf, position: 0, end: buf.len(), index: 0 };
            assert_eq!(cursor.varint().ok(), i32::try_from(value).ok());
        }
    }
}
