//! The RecordBatch v2 parser (format/src/batch/mod.rs) on arbitrary bytes: `peek_batch_size`,
//! `BatchHeader::parse`, `Batch::validate` / `validate_crc_only`, `records()` and
//! `split_batches`. No input may panic or allocate beyond itself; a batch that validates must
//! keep the invariants `Batch` documents.
//!
//! The first input byte is a mode: bit 0 sets batchLength to the input's length and bit 1
//! reseals the CRC, so the fuzzer reaches the record parser instead of stopping at the CRC.
#![no_main]

use bytes::Bytes;
use engine::batch::{peek_batch_size, split_batches, write_crc, Batch, BatchHeader};
use engine::limits::BATCH_HEADER_BYTES;
use libfuzzer_sys::fuzz_target;

/// batchLength's field: bytes 8..12 (see the layout in format/src/batch/mod.rs).
const BATCH_LENGTH: std::ops::Range<usize> = 8..12;
const BATCH_LENGTH_PREFIX_BYTES: usize = 12;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut buf = rest.to_vec();
    if buf.len() >= BATCH_HEADER_BYTES {
        if mode & 1 != 0 {
            let batch_length = (buf.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
            buf[BATCH_LENGTH].copy_from_slice(&batch_length.to_be_bytes());
        }
        if mode & 2 != 0 {
            write_crc(&mut buf);
        }
    }
    let bytes = Bytes::from(buf);
    let size = peek_batch_size(&bytes);
    let header = BatchHeader::parse(&bytes);

    if let Ok(batch) = Batch::validate(bytes.clone()) {
        assert_eq!(batch.size_bytes(), bytes.len());
        assert_eq!(size, Ok(Some(bytes.len())));
        assert_eq!(header.as_ref().ok(), Some(batch.header()));
        assert!(batch.record_count() >= 1);
        assert!(batch.last_offset() >= batch.base_offset());
        if !batch.header().is_compressed() {
            let mut count = 0u32;
            for record in batch.records() {
                let record = record.expect("a validated batch's records decode");
                assert_eq!(record.offset, batch.base_offset() + i64::from(count));
                count += 1;
            }
            assert_eq!(count, batch.record_count());
        }
    }
    if let Ok(batch) = Batch::validate_crc_only(bytes.clone()) {
        // Records not walked yet: iterating may fail, but must stop.
        for record in batch.records().take(bytes.len()) {
            if record.is_err() {
                break;
            }
        }
    }
    // Every batch split_batches yields covers at least a header: bounded by the input.
    for batch in split_batches(bytes) {
        let Ok(batch) = batch else { break };
        assert!(batch.size_bytes() >= BATCH_HEADER_BYTES);
    }
});
