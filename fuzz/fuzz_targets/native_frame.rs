//! The native protocol decoder on arbitrary bytes: the input is read as a connection's byte
//! stream, frame after frame (protocol/src/frame.rs), and every frame body — and the
//! whole input as one body — is decoded as a request and as a response
//! (protocol/src/codec.rs). Decoding must never panic, hang or allocate beyond the
//! frame; whatever decodes must re-encode to a frame that decodes to the same message.
#![no_main]

use bytes::Bytes;
use futures_lite::future::block_on;
use futures_lite::io::Cursor;
use libfuzzer_sys::fuzz_target;
use protocol::codec::{decode_request, decode_response, encode_request, encode_response, peek_correlation_id};
use protocol::frame::{read_frame, FRAME_BYTES_MAX, FRAME_PREFIX_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut stream = Cursor::new(data);
    // Each frame consumes at least its 4-byte prefix, so this ends within the input.
    while let Ok(Some(body)) = block_on(read_frame(&mut stream, FRAME_BYTES_MAX)) {
        decode_body(body);
    }
    decode_body(Bytes::copy_from_slice(data));
});

fn decode_body(body: Bytes) {
    let _ = peek_correlation_id(&body);
    match decode_request(body.clone()) {
        Ok((id, request)) => {
            let frame = encode_request(id, &request).concat();
            let again = decode_request(Bytes::copy_from_slice(&frame[FRAME_PREFIX_BYTES..]));
            assert_eq!(again.expect("a re-encoded request decodes"), (id, request));
        }
        Err(error) => {
            let _ = (error.correlation_id(), error.error_code(), error.to_string());
        }
    }
    if let Ok((id, response)) = decode_response(body) {
        let frame = encode_response(id, &response).concat();
        let again = decode_response(Bytes::copy_from_slice(&frame[FRAME_PREFIX_BYTES..]));
        assert_eq!(again.expect("a re-encoded response decodes"), (id, response));
    }
}
