//! Property and edge-case tests for the RecordBatch v2 codec (`format::batch`), through its
//! public API only.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use format::batch::{
    peek_batch_size, split_batches, write_base_offset, write_crc, Batch, BatchBuilder, BatchError, BatchHeader, Header,
};
use format::limits::{BATCH_HEADER_BYTES, BATCH_SIZE_BYTES_MAX, RECORD_HEADERS_MAX};
use proptest::prelude::*;

// Field offsets from the layout table in format/src/batch/mod.rs.
const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_MAGIC: usize = 16;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_RECORDS_COUNT: usize = 57;
const OFFSET_RECORDS: usize = 61;

fn put<const N: usize>(buf: &mut [u8], offset: usize, value: [u8; N]) {
    buf[offset..offset + N].copy_from_slice(&value);
}

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

type Bytes64 = Option<Vec<u8>>;

#[derive(Clone, Debug)]
struct TestRecord {
    key: Bytes64,
    value: Bytes64,
    timestamp_ms: i64,
    headers: Vec<(Vec<u8>, Bytes64)>,
}

fn bytes_64() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..64)
}

fn test_record() -> impl Strategy<Value = TestRecord> {
    let header = (bytes_64(), prop::option::of(bytes_64()));
    let timestamp_ms = prop_oneof![0..(1i64 << 45), any::<i64>()];
    (prop::option::of(bytes_64()), prop::option::of(bytes_64()), timestamp_ms, prop::collection::vec(header, 0..=3))
        .prop_map(|(key, value, timestamp_ms, headers)| TestRecord { key, value, timestamp_ms, headers })
}

fn test_records() -> impl Strategy<Value = Vec<TestRecord>> {
    prop::collection::vec(test_record(), 1..12)
}

fn build_records(records: &[TestRecord], base_offset: i64) -> Bytes {
    let mut builder = BatchBuilder::new().producer(9, 1, 0).base_offset(base_offset);
    for record in records {
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            record.headers.iter().map(|(key, value)| (&key[..], value.as_deref())).collect();
        let (key, value) = (record.key.as_deref(), record.value.as_deref());
        builder.push(key, value, record.timestamp_ms, &headers);
    }
    assert_eq!(builder.record_count() as usize, records.len());
    let size_bytes = builder.size_bytes();
    let bytes = builder.build().unwrap();
    assert_eq!(bytes.len(), size_bytes);
    bytes
}

/// Every validating entry point, on arbitrary input: results are ignored, panics are not.
fn poke_everything(bytes: Bytes) {
    let _ = BatchHeader::parse(&bytes);
    let _ = peek_batch_size(&bytes);
    let _ = split_batches(bytes.clone()).map(|batch| check_records(&batch?)).count();
    if let Ok(batch) = Batch::validate_crc_only(bytes.clone()) {
        // Records were not walked: iterating may error, but must stop and never panic.
        assert!(batch.records().count() <= batch.record_count() as usize + 1);
    }
    if let Ok(batch) = Batch::validate(bytes) {
        check_records(&batch).unwrap();
    }
}

/// A fully validated batch's records iterate without error (or, compressed, with one error).
fn check_records(batch: &Batch) -> Result<(), BatchError> {
    let records: Vec<_> = batch.records().collect();
    if batch.header().is_compressed() {
        assert_eq!(records, [Err(BatchError::Compressed)]);
    } else {
        assert_eq!(records.len(), batch.record_count() as usize);
        assert!(records.iter().all(Result::is_ok));
    }
    Ok(())
}

proptest! {
    #[test]
    fn build_validate_iterate_round_trips(records in test_records(), base_offset in 0..(1i64 << 50)) {
        let batch = Batch::validate(build_records(&records, base_offset)).unwrap();
        let last_offset = base_offset + records.len() as i64 - 1;
        prop_assert_eq!(batch.record_count() as usize, records.len());
        prop_assert_eq!((batch.base_offset(), batch.last_offset()), (base_offset, last_offset));
        prop_assert_eq!(batch.header().base_timestamp, records[0].timestamp_ms);
        let max_timestamp = records.iter().map(|r| r.timestamp_ms).max().unwrap();
        prop_assert_eq!(batch.max_timestamp(), max_timestamp);

        let decoded: Vec<_> = batch.records().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (index, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, base_offset + index as i64);
            prop_assert_eq!(got.timestamp, want.timestamp_ms);
            prop_assert_eq!(got.attributes, 0);
            prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
            let headers: Vec<Header> = want
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: Bytes::copy_from_slice(key),
                    value: value.as_deref().map(Bytes::copy_from_slice),
                })
                .collect();
            prop_assert_eq!(&got.headers, &headers);
        }
    }

    #[test]
    fn any_single_byte_change_is_detected(
        records in test_records(),
        index in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let mut buf = build_records(&records, 0).to_vec();
        // Bytes 0..8 (baseOffset) and 12..16 (partitionLeaderEpoch) are outside the CRC and
        // not validated; everything else is framing, magic, the CRC itself, or CRC-covered.
        let checked: Vec<usize> = (8..12).chain(16..buf.len()).collect();
        let position = checked[index.index(checked.len())];
        buf[position] ^= flip;
        prop_assert!(Batch::validate(Bytes::from(buf)).is_err(), "byte {} changed", position);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        poke_everything(Bytes::from(bytes));
    }

    #[test]
    fn arbitrary_records_behind_a_valid_header_never_panic(
        records in prop::collection::vec(any::<u8>(), 0..200),
        records_count in 1..5i32,
        compression in prop_oneof![Just(0i16), 1..=4i16],
    ) {
        // A sealed header (good length, CRC and counts) so that fuzzing reaches the records.
        let mut buf = build(&[(None, None, 0)])[..OFFSET_RECORDS].to_vec();
        buf.extend_from_slice(&records);
        let batch_length = (buf.len() - 12) as i32;
        put(&mut buf, OFFSET_BATCH_LENGTH, batch_length.to_be_bytes());
        put(&mut buf, OFFSET_ATTRIBUTES, compression.to_be_bytes());
        put(&mut buf, OFFSET_LAST_OFFSET_DELTA, (records_count - 1).to_be_bytes());
        put(&mut buf, OFFSET_RECORDS_COUNT, records_count.to_be_bytes());
        write_crc(&mut buf);
        poke_everything(Bytes::from(buf));
    }

    #[test]
    fn split_returns_whole_batches(
        batches in prop::collection::vec(test_records(), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let built: Vec<Bytes> = batches
            .iter()
            .enumerate()
            .map(|(index, records)| build_records(records, 1_000 * index as i64))
            .collect();
        let joined: Vec<u8> = built.concat();
        let split: Vec<Batch> = split_batches(Bytes::from(joined.clone()))
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<Batch> = built.iter().map(|b| Batch::validate(b.clone()).unwrap()).collect();
        prop_assert_eq!(&split, &expected);

        // Cut the last batch short anywhere: the whole ones before it come back, no error.
        let last_bytes = built.last().unwrap().len();
        let truncated = joined.len() - 1 - cut.index(last_bytes - 1);
        let split: Vec<Batch> = split_batches(Bytes::copy_from_slice(&joined[..truncated]))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(&split[..], &expected[..expected.len() - 1]);
    }

    #[test]
    fn base_offset_rewrite_keeps_batch_valid(records in test_records(), base_offset in 0..(1i64 << 62)) {
        let mut buf = build_records(&records, 0).to_vec();
        write_base_offset(&mut buf, base_offset);
        let batch = Batch::validate(Bytes::from(buf)).unwrap();
        prop_assert_eq!(batch.base_offset(), base_offset);
        prop_assert_eq!(batch.records().next().unwrap().unwrap().offset, base_offset);
    }

    /// `validate_produced` accepts a batch exactly when `validate` does and its
    /// lastOffsetDelta is recordsCount − 1, compressed or not.
    #[test]
    fn produced_batches_claim_exactly_their_records(
        records in test_records(),
        compression in 0..=4i16,
        last_offset_delta in prop_oneof![Just(None), (-2..i32::MAX).prop_map(Some)],
    ) {
        let built = build_records(&records, 0);
        let count = records.len() as i32;
        let delta = last_offset_delta.unwrap_or(count - 1);
        let edited = reseal(&built, |buf| {
            put(buf, OFFSET_ATTRIBUTES, compression.to_be_bytes());
            put(buf, OFFSET_LAST_OFFSET_DELTA, delta.to_be_bytes());
        });
        let mut buf = built.to_vec();
        put(&mut buf, OFFSET_ATTRIBUTES, compression.to_be_bytes());
        put(&mut buf, OFFSET_LAST_OFFSET_DELTA, delta.to_be_bytes());
        write_crc(&mut buf);
        let produced = Batch::validate_produced(Bytes::from(buf));
        let expected_ok = edited.is_ok() && delta == count - 1;
        prop_assert_eq!(produced.is_ok(), expected_ok, "delta {} count {} codec {}: {:?}", delta, count, compression, produced);
        if let Ok(batch) = produced {
            prop_assert_eq!(batch.last_offset() - batch.base_offset() + 1, i64::from(count));
        }
    }
}

#[test]
fn header_errors() {
    let mut buf = build(&[(None, None, 0)]).to_vec();
    buf[OFFSET_MAGIC] = 1;
    assert_eq!(BatchHeader::parse(&buf), Err(BatchError::BadMagic { magic: 1 }));
    put(&mut buf, OFFSET_BATCH_LENGTH, 48i32.to_be_bytes());
    assert_eq!(peek_batch_size(&buf), Err(BatchError::BadLength { batch_length: 48 }));
    put(&mut buf, OFFSET_BATCH_LENGTH, (-1i32).to_be_bytes());
    assert_eq!(BatchHeader::parse(&buf), Err(BatchError::BadLength { batch_length: -1 }));
    put(&mut buf, OFFSET_BATCH_LENGTH, i32::MAX.to_be_bytes());
    let size_bytes = i32::MAX as u64 + 12;
    assert_eq!(BatchHeader::parse(&buf), Err(BatchError::TooLarge { size_bytes }));
    let message = BatchError::TooLarge { size_bytes }.to_string();
    assert!(message.contains("2147483659") && message.contains("8388608"), "{message}");
}

#[test]
fn count_errors() {
    let bytes = build(&[(Some(b"k"), None, 0)]);
    let count = |n: i32| move |buf: &mut Vec<u8>| put(buf, OFFSET_RECORDS_COUNT, n.to_be_bytes());
    let delta = |n: i32| move |buf: &mut Vec<u8>| put(buf, OFFSET_LAST_OFFSET_DELTA, n.to_be_bytes());
    for n in [0, -1, i32::MAX] {
        let error = BatchError::BadRecordCount { records_count: n, last_offset_delta: 0 };
        assert_eq!(reseal(&bytes, count(n)), Err(error));
    }
    assert!(matches!(reseal(&bytes, delta(1)), Err(BatchError::BadRecordCount { .. })));
    let two = |buf: &mut Vec<u8>| {
        count(2)(buf);
        delta(1)(buf);
    };
    let error = BatchError::RecordCountMismatch { records_count: 2, records_found: 1 };
    assert_eq!(reseal(&bytes, two), Err(error));
    let overflow = |buf: &mut Vec<u8>| {
        two(buf);
        put(buf, OFFSET_BASE_OFFSET, i64::MAX.to_be_bytes());
    };
    assert!(matches!(reseal(&bytes, overflow), Err(BatchError::OffsetOverflow { .. })));
    let empty = BatchError::BadRecordCount { records_count: 0, last_offset_delta: -1 };
    assert_eq!(BatchBuilder::new().build(), Err(empty));
}

#[test]
fn bad_records_error() {
    let bytes = build(&[(Some(b"k"), Some(b"v"), 0)]);
    let validate = |record: &[u8]| {
        reseal(&[&bytes[..OFFSET_RECORDS], record].concat(), |buf| {
            let batch_length = (buf.len() - 12) as i32;
            put(buf, OFFSET_BATCH_LENGTH, batch_length.to_be_bytes());
        })
    };
    assert!(validate(&[0x10, 0, 0, 0, 2, b'k', 2, b'v', 0]).is_ok());
    let cases: [(&[u8], &str); 15] = [
        (&[0x10, 0, 0, 0, 2, b'k', 2, b'v', 0, 0], "bytes left over after the last record"),
        (&[0x12, 0, 0, 0, 2, b'k', 2, b'v', 0, 0], "record length does not match its fields"),
        (&[0x11, 0, 0, 0, 2, b'k', 2, b'v', 0], "negative record length"),
        (&[0x12, 0, 0, 0, 2, b'k', 2, b'v', 0], "record extends past the end of the batch"),
        (&[0x10, 0, 0, 2, 2, b'k', 2, b'v', 0], "offset delta is not the record's index"),
        (&[0x10, 0, 0, 0, 3, b'k', 2, b'v', 0], "negative length"),
        (&[0x10, 0, 0, 0, 0x10, b'k', 2, b'v', 0], "field length extends past the record"),
        (&[0x10, 0, 0, 0, 2, b'k', 2, b'v', 1], "negative header count"),
        (&[0x10, 0, 0, 0, 2, b'k', 2, b'v', 2], "header count exceeds the record's bytes"),
        (&[0x10, 0, 0, 0, 1, 1, 2, 1, 0], "null header key"),
        (&[0x10, 0, 0, 0, 1, 1, 0x82, 0x80, 0x08], "too many headers"),
        (&[0x10, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x1f], "varint overflows its type"),
        (&[0x10, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x8f], "varint overflows its type"),
        (&[0x0a, 0, 0, 0, 2, b'k'], "record field extends past the record"),
        (&[0x10, 0, 0, 0, 2, b'k'], "record extends past the end of the batch"),
    ];
    for (record, reason) in cases {
        // Trailing bytes are reported against the record after the last one.
        let index = u32::from(reason == "bytes left over after the last record");
        let expected = Err(BatchError::BadRecord { index, reason });
        assert_eq!(validate(record), expected, "{record:?}");
    }
    let long_timestamp = [&[0x18, 0][..], &[0xff; 9], &[0x02, 0, 1, 1, 0]].concat();
    let reason = "varint overflows its type";
    assert_eq!(validate(&long_timestamp), Err(BatchError::BadRecord { index: 0, reason }));
}

#[test]
fn builder_limits() {
    let mut builder = BatchBuilder::with_capacity(usize::MAX);
    assert!(builder.is_empty());
    assert_eq!(builder.size_bytes(), BATCH_HEADER_BYTES);
    builder.push(None, Some(&vec![0u8; BATCH_SIZE_BYTES_MAX as usize]), 0, &[]);
    assert!(matches!(builder.build(), Err(BatchError::TooLarge { .. })));

    let mut builder = BatchBuilder::new();
    builder.push(None, None, 0, &vec![(&b""[..], None); RECORD_HEADERS_MAX as usize + 1]);
    assert!(matches!(builder.build(), Err(BatchError::BadRecord { index: 0, .. })));

    // Extreme timestamps wrap like Java's longs and still round-trip.
    let batch = Batch::validate(build(&[(None, None, i64::MIN), (None, None, i64::MAX)]));
    let batch = batch.unwrap();
    let timestamps: Vec<i64> = batch.records().map(|r| r.unwrap().timestamp).collect();
    assert_eq!(timestamps, [i64::MIN, i64::MAX]);
    assert_eq!(batch.max_timestamp(), i64::MAX);
}

#[test]
fn split_stops_at_partial_and_errors() {
    let first = build(&[(Some(b"1"), None, 1)]);
    let second = build(&[(Some(b"2"), None, 2), (None, None, 3)]);
    let mut joined = [&first[..], &second[..]].concat();
    let batches: Vec<Batch> = split_batches(Bytes::from(joined.clone())).map(Result::unwrap).collect();
    assert_eq!((batches.len(), batches[1].bytes()), (2, &second));

    joined[first.len() + OFFSET_RECORDS] ^= 1;
    let results: Vec<_> = split_batches(Bytes::from(joined.clone())).collect();
    assert!(results[0].is_ok() && matches!(results[1], Err(BatchError::BadCrc { .. })));
    put(&mut joined, OFFSET_BATCH_LENGTH, 0i32.to_be_bytes());
    let results: Vec<_> = split_batches(Bytes::from(joined)).collect();
    assert_eq!(results, [Err(BatchError::BadLength { batch_length: 0 })]);
}

#[test]
fn crc_only_skips_record_walk() {
    let bytes = build(&[(Some(b"k"), Some(b"v"), 0)]);
    let mut buf = bytes.to_vec();
    buf[OFFSET_RECORDS + 3] = 4; // offsetDelta 2 in record 0.
    write_crc(&mut buf);
    let buf = Bytes::from(buf);
    assert!(Batch::validate(buf.clone()).is_err());
    let mut records = Batch::validate_crc_only(buf).unwrap().records();
    assert!(matches!(records.next(), Some(Err(BatchError::BadRecord { index: 0, .. }))));
    assert_eq!(records.next(), None);
}
