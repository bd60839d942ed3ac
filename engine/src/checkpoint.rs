//! The small per-partition checkpoint files beside the segments, and their one codec.
//!
//! Every checkpoint file is `magic [u8; 4] | version u16 | flags u16 | body | crc32c u32`, all
//! big-endian, the CRC over everything before it. Each is written whole with
//! `fs::write_file_atomic` (temp file, fdatasync, rename, fsync of the directory), so after a
//! crash the file holds either its old or its new content, never a mix; a file that fails its
//! checksum is treated as missing, and each caller says what "missing" means.
//!
//! | file | magic | body | written by |
//! |---|---|---|---|
//! | `leader-epoch-checkpoint` | `SLEP` | `count u32`, then `epoch u32, start_offset u64` each | `epochs.rs` |
//! | `high-watermark-checkpoint` | `SLHW` | `high_watermark u64` | `Log::checkpoint_high_watermark` |
//! | `truncate-intent` | `SLTI` | `end_offset u64` | `Log::truncate_to`, removed once done |
//! | `log-start-checkpoint` | `SLLS` | `log_start_offset u64` | `Log::delete_records_before` |

use crate::ids::Offset;

pub(crate) const EPOCHS_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark-checkpoint";
pub(crate) const TRUNCATE_INTENT_FILE: &str = "truncate-intent";
pub(crate) const LOG_START_FILE: &str = "log-start-checkpoint";

pub(crate) const EPOCHS_MAGIC: &[u8; 4] = b"SLEP";
const HIGH_WATERMARK_MAGIC: &[u8; 4] = b"SLHW";
const TRUNCATE_INTENT_MAGIC: &[u8; 4] = b"SLTI";
const LOG_START_MAGIC: &[u8; 4] = b"SLLS";

const VERSION: u16 = 1;
const PREFIX_BYTES: usize = 8;
const CRC_BYTES: usize = 4;

/// `magic | version | flags 0 | body | crc32c`.
pub(crate) fn encode(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_BYTES + body.len() + CRC_BYTES);
    out.extend_from_slice(magic);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(out.len(), PREFIX_BYTES + body.len() + CRC_BYTES);
    out
}

/// The body of a checkpoint file with this `magic`, or why it cannot be trusted.
pub(crate) fn decode<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<&'a [u8], &'static str> {
    if bytes.len() < PREFIX_BYTES + CRC_BYTES {
        return Err("shorter than its header");
    }
    let (covered, crc_bytes) = bytes.split_at(bytes.len() - CRC_BYTES);
    if crc32c::crc32c(covered).to_be_bytes() != crc_bytes {
        return Err("checksum mismatch");
    }
    if &covered[0..4] != magic {
        return Err("bad magic");
    }
    if covered[4..6] != VERSION.to_be_bytes() {
        return Err("unknown version");
    }
    if covered[6..8] != 0u16.to_be_bytes() {
        return Err("unknown flags");
    }
    Ok(&covered[PREFIX_BYTES..])
}

/// A checkpoint holding one offset (the high watermark, or a truncation's end).
fn encode_offset(magic: &[u8; 4], offset: Offset) -> Vec<u8> {
    encode(magic, &offset.get().to_be_bytes())
}

fn decode_offset(magic: &[u8; 4], bytes: &[u8]) -> Result<Offset, &'static str> {
    let body = decode(magic, bytes)?;
    let array: [u8; 8] = body.try_into().map_err(|_| "body is not one offset")?;
    Offset::from_wire(i64::from_be_bytes(array)).ok_or("offset beyond i64::MAX")
}

pub(crate) fn encode_high_watermark(offset: Offset) -> Vec<u8> {
    encode_offset(HIGH_WATERMARK_MAGIC, offset)
}

pub(crate) fn decode_high_watermark(bytes: &[u8]) -> Result<Offset, &'static str> {
    decode_offset(HIGH_WATERMARK_MAGIC, bytes)
}

pub(crate) fn encode_truncate_intent(end_offset: Offset) -> Vec<u8> {
    encode_offset(TRUNCATE_INTENT_MAGIC, end_offset)
}

pub(crate) fn decode_truncate_intent(bytes: &[u8]) -> Result<Offset, &'static str> {
    decode_offset(TRUNCATE_INTENT_MAGIC, bytes)
}

pub(crate) fn encode_log_start(offset: Offset) -> Vec<u8> {
    encode_offset(LOG_START_MAGIC, offset)
}

pub(crate) fn decode_log_start(bytes: &[u8]) -> Result<Offset, &'static str> {
    decode_offset(LOG_START_MAGIC, bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_every_flip_or_cut_is_caught() {
        let bytes = encode_high_watermark(Offset::new(123_456));
        assert_eq!(bytes.len(), 20);
        assert_eq!(decode_high_watermark(&bytes), Ok(Offset::new(123_456)));
        // The magic keeps one file from being read as another.
        assert!(decode_truncate_intent(&bytes).is_err());
        assert_eq!(decode_truncate_intent(&encode_truncate_intent(Offset::new(7))), Ok(Offset::new(7)));
        assert_eq!(decode_log_start(&encode_log_start(Offset::new(9))), Ok(Offset::new(9)));
        assert!(decode_log_start(&bytes).is_err());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_high_watermark(&bad).is_err(), "flip of bit {bit} at {i} accepted");
            }
        }
        for len in 0..bytes.len() {
            assert!(decode_high_watermark(&bytes[..len]).is_err(), "prefix of {len} bytes accepted");
        }
        // A negative offset with a valid checksum is still refused.
        let negative = encode(HIGH_WATERMARK_MAGIC, &(-1i64).to_be_bytes());
        assert!(decode_high_watermark(&negative).is_err());
    }
}
