//! `BatchBuilder`: encodes records into an uncompressed RecordBatch v2 (clients, the load
//! generator and tests use it). The byte layout and the shared codec helpers live in
//! `batch/mod.rs`.

use super::*;

/// Builds an uncompressed batch, record by record.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    /// A zeroed header placeholder, then the encoded records.
    buf: Vec<u8>,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: u32,
    /// The first invalid push: `push` cannot fail, so `build` reports it.
    error: Option<BatchError>,
}

impl BatchBuilder {
    /// Defaults follow a non-idempotent Kafka producer: no producer id, epoch or sequence.
    pub fn new() -> Self {
        Self::with_capacity(BATCH_HEADER_BYTES)
    }

    pub fn with_capacity(bytes: usize) -> Self {
        // Clamped: nothing larger can be built, and a huge request is a caller bug.
        let capacity_bytes = bytes.clamp(BATCH_HEADER_BYTES, BATCH_SIZE_BYTES_MAX as usize);
        let mut buf = Vec::with_capacity(capacity_bytes);
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buf,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: 0,
            max_timestamp: 0,
            record_count: 0,
            error: None,
        }
    }

    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Producers send 0; the broker assigns the real offset with [`write_base_offset`].
    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    /// Appends a record. The first record's timestamp becomes the batch's base timestamp.
    /// An oversized record or too many headers is reported by [`BatchBuilder::build`].
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: i64,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        if self.error.is_some() {
            return;
        }
        let index = self.record_count;
        if headers.len() > RECORD_HEADERS_MAX as usize {
            self.error = Some(BatchError::BadRecord { index, reason: "too many headers" });
            return;
        }
        if index == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        // Past BATCH_RECORDS_MAX, build fails anyway; saturate rather than wrap meanwhile.
        let offset_delta = i32::try_from(index).unwrap_or(i32::MAX);
        let headers_count = headers.len() as i32; // ≤ RECORD_HEADERS_MAX, checked above.

        let headers_bytes = headers
            .iter()
            .map(|(key, value)| field_bytes(Some(key)).saturating_add(field_bytes(*value)))
            .fold(0usize, usize::saturating_add);
        let body_bytes = [
            1, // attributes
            varlong_bytes(timestamp_delta),
            varlong_bytes(i64::from(offset_delta)),
            field_bytes(key),
            field_bytes(value),
            varlong_bytes(i64::from(headers_count)),
            headers_bytes,
        ]
        .into_iter()
        .fold(0usize, usize::saturating_add);
        if body_bytes > BATCH_SIZE_BYTES_MAX as usize {
            // Not encoded: its lengths might not even fit the i32 wire fields.
            let size_bytes = (self.buf.len() as u64).saturating_add(body_bytes as u64);
            self.error = Some(BatchError::TooLarge { size_bytes });
            return;
        }

        put_varint(&mut self.buf, body_bytes as i32);
        let body_start = self.buf.len();
        self.buf.push(0); // Record attributes: unused in v2.
        put_varlong(&mut self.buf, timestamp_delta);
        put_varint(&mut self.buf, offset_delta);
        put_field(&mut self.buf, key);
        put_field(&mut self.buf, value);
        put_varint(&mut self.buf, headers_count);
        for (header_key, header_value) in headers {
            put_field(&mut self.buf, Some(header_key));
            put_field(&mut self.buf, *header_value);
        }
        debug_assert_eq!(self.buf.len() - body_start, body_bytes);
        self.record_count = self.record_count.saturating_add(1);
    }

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Size of the batch if built now.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Writes the header and CRC and returns the encoded batch.
    pub fn build(mut self) -> Result<Bytes, BatchError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let size_bytes = self.buf.len();
        if size_bytes > BATCH_SIZE_BYTES_MAX as usize {
            return Err(BatchError::TooLarge { size_bytes: size_bytes as u64 });
        }
        let records_count = i32::try_from(self.record_count).unwrap_or(i32::MAX);
        let mut header = BatchHeader {
            base_offset: self.base_offset,
            batch_length: (size_bytes - BATCH_LENGTH_PREFIX_BYTES) as i32,
            partition_leader_epoch: self.partition_leader_epoch,
            magic: MAGIC_V2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records_count.saturating_sub(1),
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count,
        };
        // An empty batch, too many records, or offsets overflowing: a caller bug, reported.
        check_counts(&header)?;
        header.write(&mut self.buf);
        write_crc(&mut self.buf);
        header.crc = u32::from_be_bytes(get(&self.buf, OFFSET_CRC));

        let bytes = Bytes::from(self.buf);
        debug_assert_eq!(BatchHeader::parse(&bytes), Ok(header));
        debug_assert!(Batch::validate(bytes.clone()).is_ok(), "built batch does not validate");
        Ok(bytes)
    }
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}
