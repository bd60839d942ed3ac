//! The framing of the Raft log file: each record is a header — u32 big-endian payload length,
//! u32 big-endian CRC-32C of the length bytes and the payload — then the payload. The CRC
//! covers the length too, so a zero-filled tail (length 0, CRC 0) never passes as a record.
//!
//! `scan` reads a file back and tells a torn tail from damage in the middle. A crash can leave
//! the last write incomplete: a partial header, a record running past the end of the file, a
//! last record whose CRC fails, or a tail of zeros (blocks allocated but never written). Those
//! bytes were never acknowledged (the append's fdatasync had not returned), so they are cut.
//! A bad record with anything but zeros after it is damage to acknowledged data: an error, so
//! that committed entries are never dropped silently.

use crate::limits::LOG_RECORD_BYTES_MAX;

/// Bytes of a record's header.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Where the file stops being readable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub reason: String,
}

/// One good record of a scanned file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned<'a> {
    pub offset: u64,
    pub payload: &'a [u8],
}

/// A scanned file: its good records, and how many bytes of it they take (the rest, if any, is
/// a torn tail to cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<'a> {
    pub records: Vec<Scanned<'a>>,
    pub valid_bytes: u64,
    /// Why the tail was cut; `None` when the whole file was good.
    pub torn: Option<Damage>,
}

fn checksum(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_be_bytes()), payload)
}

/// Appends one record holding `payload` to `out`; `None` if the payload passes
/// `LOG_RECORD_BYTES_MAX` (nothing is appended then).
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let len = u32::try_from(payload.len()).ok().filter(|n| *n <= LOG_RECORD_BYTES_MAX)?;
    out.reserve(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&checksum(len, payload).to_be_bytes());
    out.extend_from_slice(payload);
    Some(())
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

/// The record at the start of `rest`, or why it is not one.
fn record_at(rest: &[u8]) -> Result<&[u8], String> {
    if rest.len() < RECORD_HEADER_BYTES {
        return Err(format!("partial header of {} bytes", rest.len()));
    }
    let len = be_u32(rest);
    if len > LOG_RECORD_BYTES_MAX {
        return Err(format!("length {len} passes the record limit {LOG_RECORD_BYTES_MAX}"));
    }
    let end = RECORD_HEADER_BYTES + len as usize;
    if end > rest.len() {
        return Err(format!("record of {len} bytes runs past the end of the file"));
    }
    let payload = &rest[RECORD_HEADER_BYTES..end];
    if be_u32(&rest[4..]) != checksum(len, payload) {
        return Err("checksum mismatch".to_string());
    }
    Ok(payload)
}

/// Reads the records of `bytes` (a whole log file), cutting a torn tail; damage anywhere else
/// is an error.
pub fn scan(bytes: &[u8]) -> Result<Scan<'_>, Damage> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        match record_at(rest) {
            Ok(payload) => {
                records.push(Scanned { offset: pos as u64, payload });
                pos += RECORD_HEADER_BYTES + payload.len();
            }
            Err(reason) => {
                let damage = Damage { offset: pos as u64, reason };
                if is_torn_tail(rest) {
                    return Ok(Scan { records, valid_bytes: pos as u64, torn: Some(damage) });
                }
                return Err(damage);
            }
        }
    }
    assert!(pos == bytes.len(), "records end exactly at the end of the file");
    Ok(Scan { records, valid_bytes: pos as u64, torn: None })
}

/// A bad record is the torn tail when it is the last thing in the file (incomplete, or ending
/// exactly at the end) or when only zeros follow its start.
fn is_torn_tail(rest: &[u8]) -> bool {
    if rest.len() < RECORD_HEADER_BYTES || rest.iter().all(|b| *b == 0) {
        return true;
    }
    let len = be_u32(rest);
    // A length past the limit was never written by us: damage, unless only zeros follow
    // (handled above).
    len <= LOG_RECORD_BYTES_MAX && RECORD_HEADER_BYTES as u64 + u64::from(len) >= rest.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(p, &mut out).unwrap();
        }
        out
    }

    fn payloads<'a>(scan: &Scan<'a>) -> Vec<&'a [u8]> {
        scan.records.iter().map(|r| r.payload).collect()
    }

    #[test]
    fn records_round_trip() {
        let bytes = file(&[b"a", b"", b"ccc"]);
        let scan = scan(&bytes).unwrap();
        assert_eq!(payloads(&scan), vec![&b"a"[..], b"", b"ccc"]);
        assert_eq!(scan.valid_bytes, bytes.len() as u64);
        assert_eq!(scan.torn, None);
        assert_eq!(scan.records[1].offset, (RECORD_HEADER_BYTES + 1) as u64);
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let whole = file(&[b"first", b"second record"]);
        let first_len = (RECORD_HEADER_BYTES + 5) as u64;
        for cut in first_len as usize + 1..whole.len() {
            let scan = scan(&whole[..cut]).unwrap();
            assert_eq!(payloads(&scan), vec![&b"first"[..]], "cut at {cut}");
            assert_eq!(scan.valid_bytes, first_len);
            assert!(scan.torn.is_some());
        }
    }

    #[test]
    fn a_zero_tail_is_torn_and_a_flipped_bit_in_the_middle_is_damage() {
        let mut bytes = file(&[b"first", b"second"]);
        bytes.extend_from_slice(&[0u8; 100]);
        let scan = scan(&bytes).unwrap();
        assert_eq!(payloads(&scan), vec![&b"first"[..], b"second"]);

        let mut bytes = file(&[b"first", b"second", b"third"]);
        bytes[RECORD_HEADER_BYTES + 2] ^= 1;
        assert_eq!(super::scan(&bytes).unwrap_err().offset, 0);

        // The last record damaged in place (same length): cut, it may be a torn write.
        let mut bytes = file(&[b"first", b"second"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(payloads(&super::scan(&bytes).unwrap()), vec![&b"first"[..]]);

        // A huge length in the middle is damage, not a tail.
        let mut bytes = file(&[b"first", b"second"]);
        bytes[0] = 0xff;
        assert!(super::scan(&bytes).is_err());
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let mut out = Vec::new();
        assert!(encode_into(&vec![0u8; LOG_RECORD_BYTES_MAX as usize + 1], &mut out).is_none());
        assert!(out.is_empty());
    }
}
