//! Blocking probes of a node from the test thread (no executor): a Kafka Metadata request, to
//! see which brokers a node advertises — what a test waits for before its workload starts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Metadata v1: brokers with host and port, and no topic unless asked.
const METADATA_VERSION: i16 = 1;
/// Largest Metadata answer accepted.
const RESPONSE_BYTES_MAX: usize = 16 << 20;

/// A broker in a Kafka Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KafkaBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// The brokers `addr` lists in a Kafka Metadata answer (no topics asked), waiting at most
/// `timeout` for it.
pub fn kafka_brokers(addr: SocketAddr, timeout: Duration) -> Result<Vec<KafkaBroker>, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let version = METADATA_VERSION;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("cluster-harness")));
    let mut frame = BytesMut::new();
    header.encode(&mut frame, ApiKey::Metadata.request_header_version(version)).map_err(|e| e.to_string())?;
    MetadataRequest::default().with_topics(Some(Vec::new())).encode(&mut frame, version).map_err(|e| e.to_string())?;
    let mut request = BytesMut::with_capacity(frame.len() + 4);
    request.put_u32(frame.len() as u32);
    request.put_slice(&frame);
    stream.write_all(&request).map_err(|e| format!("send to {addr}: {e}"))?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(|e| format!("read from {addr}: {e}"))?;
    let size = u32::from_be_bytes(prefix) as usize;
    if size > RESPONSE_BYTES_MAX {
        return Err(format!("{addr} answered a {size}-byte frame"));
    }
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).map_err(|e| format!("read from {addr}: {e}"))?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, ApiKey::Metadata.response_header_version(version))
        .map_err(|e| format!("{addr}: bad response header: {e}"))?;
    if header.correlation_id != 1 {
        return Err(format!("{addr}: correlation id {} for 1", header.correlation_id));
    }
    let answer = MetadataResponse::decode(&mut body, version).map_err(|e| format!("{addr}: bad Metadata: {e}"))?;
    let mut brokers: Vec<KafkaBroker> = answer
        .brokers
        .iter()
        .map(|b| KafkaBroker { id: b.node_id.0, host: b.host.to_string(), port: b.port })
        .collect();
    brokers.sort();
    Ok(brokers)
}
