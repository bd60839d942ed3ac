//! Recovery of a segment file from arbitrary bytes (engine/src/recovery.rs,
//! `scan_segment_bytes`: the same per-batch rules `Log::open` applies to a file's tail).
//! It must never panic; what it keeps must be a run of whole batches, each passing the CRC
//! check, with offsets continuing from the segment's base; and scanning what it keeps again
//! must keep all of it.
//!
//! The first input byte is a mode: bits 0–1 pick the base offset; bit 2 "repairs" the input
//! first (fixes each batch's base offset, leader epoch and CRC in turn while they fit), so the
//! fuzzer explores runs of valid batches followed by torn or stale tails.
#![no_main]

use bytes::Bytes;
use engine::batch::{peek_batch_size, write_base_offset, write_crc, Batch};
use engine::limits::BATCH_HEADER_BYTES;
use engine::ids::Offset;
use engine::{scan_segment_bytes, ScanStop};
use libfuzzer_sys::fuzz_target;

/// partitionLeaderEpoch's field. Without an epoch checkpoint (as here) recovery requires known
/// (non-negative), never-decreasing epochs; the repair writes 0, which a brand-new log stores.
const LEADER_EPOCH: std::ops::Range<usize> = 12..16;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let base_offset = [0u64, 1, 1_000, u64::from(u32::MAX)][usize::from(mode & 3)];
    let mut bytes = rest.to_vec();
    if mode & 4 != 0 {
        repair(&mut bytes, base_offset);
    }
    let scan = scan_segment_bytes(&bytes, Offset::new(base_offset));
    let valid = usize::try_from(scan.valid_bytes).unwrap();
    assert!(valid <= bytes.len());
    assert_eq!(scan.stop == ScanStop::EndOfFile, valid == bytes.len(), "{scan:?}");

    // What is kept is whole batches with intact CRCs and continuing offsets.
    let mut position = 0usize;
    let mut next_offset = base_offset;
    let mut batches = 0u64;
    while position < valid {
        let size = peek_batch_size(&bytes[position..valid]).unwrap().unwrap();
        let batch = Batch::validate_crc_only(Bytes::copy_from_slice(&bytes[position..position + size])).unwrap();
        assert_eq!(batch.base_offset() as u64, next_offset);
        next_offset = batch.last_offset() as u64 + 1;
        position += size;
        batches += 1;
    }
    assert_eq!(position, valid);
    assert_eq!((next_offset, batches), (scan.next_offset.get(), scan.batches));

    let again = scan_segment_bytes(&bytes[..valid], Offset::new(base_offset));
    assert_eq!(
        (again.valid_bytes, again.next_offset, again.stop),
        (scan.valid_bytes, scan.next_offset, ScanStop::EndOfFile)
    );
});

/// Makes each batch that fits valid in turn (offset, epoch, CRC); stops at the first that does
/// not fit.
fn repair(bytes: &mut [u8], base_offset: u64) {
    let mut position = 0usize;
    let mut next_offset = base_offset;
    while bytes.len() - position >= BATCH_HEADER_BYTES {
        let Ok(Some(size)) = peek_batch_size(&bytes[position..]) else { return };
        if bytes.len() - position < size {
            return;
        }
        let batch = &mut bytes[position..position + size];
        write_base_offset(batch, next_offset as i64);
        batch[LEADER_EPOCH].copy_from_slice(&0i32.to_be_bytes());
        write_crc(batch);
        // lastOffsetDelta (bytes 23..27) may be anything; the scan decides whether it is sane.
        let delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
        if delta < 0 {
            return;
        }
        next_offset = next_offset.saturating_add(delta as u64 + 1);
        position += size;
    }
}
