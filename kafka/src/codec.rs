//! Encoding a Kafka response frame: the size prefix, the response header of the version the
//! API uses, then the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// Why a request ends the connection.
pub type Close = &'static str;

/// Size prefix, response header of the version this API uses, then the body.
pub fn encode<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, response: &R) -> Result<Bytes, Close> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_u32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, api_key.response_header_version(version))
        .and_then(|()| response.encode(&mut buf, version));
    if let Err(e) = encoded {
        tracing::error!(?api_key, version, error = %e, "cannot encode a Kafka response");
        return Err("response does not encode");
    }
    let size_bytes = u32::try_from(buf.len() - 4).map_err(|_| "response too large")?;
    buf[..4].copy_from_slice(&size_bytes.to_be_bytes());
    Ok(buf.freeze())
}
