//! The Kafka listener served in-process, spoken to with raw Kafka frames (encoded by the
//! `kafka-protocol` crate): ApiVersions (and error 35 for an unsupported version), Metadata
//! advertising one broker per shard, byte-identical batches across the Kafka and native
//! protocols both ways (compressed too), idempotent-producer sequence checks, admin errors,
//! hostile frames (huge array counts, names at the string limit); the operations APIs:
//! DeleteRecords then reads below the start, ListOffsets -3, OffsetForLeaderEpoch, topic ids
//! (Metadata 12, Fetch 13+, DeleteTopics 6, a new id for a re-created topic), incremental fetch
//! sessions, the MEMBER_ID_REQUIRED round trip, committed leader epochs, DescribeProducers.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use engine::batch::{split_batches, write_crc, BatchBuilder};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition as KFetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use protocol::codec::{decode_response, encode_request};
use protocol::messages::*;
use shardlog::config::{KafkaArgs, ServeArgs, ServeConfig};
use shardlog::Node as Broker;

fn start(shards: usize) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::Builder::new().prefix("shardlog-kafka-").tempdir_in(std::env::temp_dir()).unwrap();
    (start_on(&dir, shards), dir)
}

fn start_on(dir: &tempfile::TempDir, shards: usize) -> Broker {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let args = ServeArgs {
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        kafka: KafkaArgs { kafka_listen: Some("127.0.0.1:0".into()), ..KafkaArgs::default() },
        ..ServeArgs::default()
    };
    Broker::start(ServeConfig::resolve(&args).unwrap()).unwrap()
}

/// A blocking Kafka client: one request at a time.
struct Kafka {
    stream: TcpStream,
    next_id: i32,
}

impl Kafka {
    fn connect(addr: SocketAddr) -> Kafka {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Kafka { stream, next_id: 1 }
    }

    /// Sends a request of `version` and returns the response body (after its header).
    fn send_raw(&mut self, api_key: ApiKey, version: i16, body: &[u8]) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("kafka-raw-test")));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, api_key.request_header_version(version)).unwrap();
        frame.put_slice(body);
        self.stream.write_all(&(frame.len() as u32).to_be_bytes()).unwrap();
        self.stream.write_all(&frame).unwrap();
        id
    }

    /// The next response frame; `None` if the broker closed the connection.
    fn recv_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        if self.stream.read_exact(&mut prefix).is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut body).unwrap();
        Some(Bytes::from(body))
    }

    fn call<Req: Encodable, Resp: Decodable>(&mut self, api_key: ApiKey, version: i16, request: &Req) -> Resp {
        let mut body = BytesMut::new();
        request.encode(&mut body, version).unwrap();
        let id = self.send_raw(api_key, version, &body);
        let mut frame = self.recv_frame().expect("a response");
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id);
        Resp::decode(&mut frame, version).unwrap()
    }
}

/// A blocking native-protocol client.
struct Native {
    stream: TcpStream,
}

impl Native {
    fn connect(addr: SocketAddr) -> Native {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Native { stream }
    }

    fn call(&mut self, request: &Request) -> Response {
        for chunk in encode_request(7, request) {
            self.stream.write_all(&chunk).unwrap();
        }
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        self.stream.read_exact(&mut body).unwrap();
        decode_response(Bytes::from(body)).unwrap().1
    }

    fn fetch(&mut self, topic: &str, partition: u32, offset: u64) -> Vec<Bytes> {
        let request = Request::Fetch {
            wait_ms_max: 0,
            bytes_min: 0,
            bytes_max: 1 << 20,
            partitions: vec![FetchPartition { topic: topic.into(), partition, offset, bytes_max: 1 << 20 }],
        };
        match self.call(&request) {
            Response::Fetch { partitions } => {
                assert_eq!(partitions[0].error, ErrorCode::None, "{partitions:?}");
                let all: Vec<u8> = partitions[0].records.iter().flat_map(|c| c.iter().copied()).collect();
                split_batches(Bytes::from(all)).map(|b| b.unwrap().into_bytes()).collect()
            }
            other => panic!("{other:?}"),
        }
    }
}

fn batch(values: &[&str], producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut builder = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        builder.push(Some(format!("k{i}").as_bytes()), Some(v.as_bytes()), 1_700_000_000_000 + i as i64, &[]);
    }
    let mut bytes = builder.build().unwrap().to_vec();
    if let Some((id, epoch, sequence)) = producer {
        bytes[43..51].copy_from_slice(&id.to_be_bytes());
        bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
        bytes[53..57].copy_from_slice(&sequence.to_be_bytes());
        write_crc(&mut bytes);
    }
    Bytes::from(bytes)
}

/// The same batch marked compressed with `codec` (records opaque to the broker).
fn as_compressed(batch: &Bytes, codec: i16) -> Bytes {
    let mut bytes = batch.to_vec();
    bytes[21..23].copy_from_slice(&codec.to_be_bytes());
    write_crc(&mut bytes);
    Bytes::from(bytes)
}

/// `batch` as the broker stores it: baseOffset assigned, partitionLeaderEpoch 0 (as Kafka's
/// leader sets it); both lie outside the CRC, everything else is as sent.
fn as_stored(batch: &Bytes, offset: i64) -> Bytes {
    let mut bytes = batch.to_vec();
    bytes[..8].copy_from_slice(&offset.to_be_bytes());
    bytes[12..16].copy_from_slice(&0i32.to_be_bytes());
    Bytes::from(bytes)
}

fn produce(kafka: &mut Kafka, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let request =
        ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default(
        )
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])]);
    let response: ProduceResponse = kafka.call(ApiKey::Produce, 9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn kafka_fetch(kafka: &mut Kafka, topic: &str, partition: i32, offset: i64) -> (i16, Bytes) {
    let request =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![
                KFetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ]);
    let response: FetchResponse = kafka.call(ApiKey::Fetch, 12, &request);
    let p = &response.responses[0].partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

fn create_topic(kafka: &mut Kafka, topic: &str, partitions: i32) -> i16 {
    let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let response: CreateTopicsResponse = kafka.call(ApiKey::CreateTopics, 5, &request);
    response.topics[0].error_code
}

#[test]
fn api_versions_and_unsupported_version_error_35() {
    let (mut broker, _dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    let ok: ApiVersionsResponse = kafka.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(ok.error_code, 0);
    let produce = ok.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
    // Advertised from v0 as Kafka 4 does for librdkafka's compression check (served from v3).
    assert_eq!((produce.min_version, produce.max_version), (0, 9));

    // ApiVersions v9 does not exist: error 35 in a v0 response (v0 header, no tagged fields).
    let id = kafka.send_raw(ApiKey::ApiVersions, 9, &[]);
    let mut frame = kafka.recv_frame().unwrap();
    assert_eq!(frame.get_i32(), id);
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(response.error_code, 35);
    assert!(response.api_keys.iter().any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 3));
    assert!(!frame.has_remaining());

    // The connection still works; then Fetch v17 (unsupported) closes it, as Kafka does.
    let again: ApiVersionsResponse = kafka.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(again.error_code, 0);
    kafka.send_raw(ApiKey::Fetch, 17, &[0u8; 32]);
    assert!(kafka.recv_frame().is_none(), "an unsupported Fetch version must close the connection");
    broker.shutdown();
}

#[test]
fn metadata_advertises_every_shard_as_the_leader_of_its_partitions() {
    let (mut broker, _dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(create_topic(&mut kafka, "spread", 4), 0);
    assert_eq!(create_topic(&mut kafka, "spread", 4), 36, "TOPIC_ALREADY_EXISTS");
    let request = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
    let md: MetadataResponse = kafka.call(ApiKey::Metadata, 9, &request);
    let ports: Vec<(i32, i32)> = md.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
    let expected: Vec<(i32, i32)> =
        broker.kafka_shard_addresses.iter().enumerate().map(|(i, a)| (i as i32, i32::from(a.port()))).collect();
    assert_eq!(ports, expected);
    let topic = md.topics.iter().find(|t| t.name.as_ref().unwrap().0.as_str() == "spread").unwrap();
    let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader_id.0).collect();
    assert_eq!(leaders.len(), 4);
    assert!(leaders.contains(&0) && leaders.contains(&1), "{leaders:?}");

    // Each partition's leader port accepts a produce for it (no forwarding needed), and the
    // native Metadata agrees on the owner.
    let mut native = Native::connect(broker.listen);
    let owners = match native.call(&Request::Metadata { topics: Some(vec!["spread".into()]), with_offsets: false }) {
        Response::Metadata { topics, .. } => topics[0].partitions.iter().map(|p| p.shard as i32).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(owners, leaders);
    for p in topic.partitions.iter() {
        let mut direct = Kafka::connect(broker.kafka_shard_addresses[p.leader_id.0 as usize]);
        assert_eq!(produce(&mut direct, "spread", p.partition_index, batch(&["x"], None)), (0, 0));
    }

    // Auto-creation off for this request: unknown topic.
    let request = MetadataRequest::default()
        .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("nope"))))]))
        .with_allow_auto_topic_creation(false);
    let md: MetadataResponse = kafka.call(ApiKey::Metadata, 9, &request);
    assert_eq!(md.topics[0].error_code, 3);
    broker.shutdown();
}

#[test]
fn batches_are_byte_identical_across_kafka_and_native_protocols() {
    let (mut broker, _dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    let mut native = Native::connect(broker.listen);
    assert_eq!(create_topic(&mut kafka, "both", 2), 0);
    for partition in 0..2u32 {
        // Kafka in, native out: plain and each compression codec.
        let sent: Vec<Bytes> = std::iter::once(batch(&["a", "b", "c"], None))
            .chain((1..=4).map(|codec| as_compressed(&batch(&["z"], None), codec)))
            .collect();
        let mut offset = 0i64;
        for b in &sent {
            assert_eq!(produce(&mut kafka, "both", partition as i32, b.clone()), (0, offset));
            offset += i64::from(u32::from_be_bytes(b[57..61].try_into().unwrap()));
        }
        let stored = native.fetch("both", partition, 0);
        assert_eq!(stored.len(), sent.len());
        let mut base = 0i64;
        for (s, b) in stored.iter().zip(&sent) {
            assert_eq!(*s, as_stored(b, base), "the broker changes only baseOffset and the leader epoch");
            base += i64::from(u32::from_be_bytes(b[57..61].try_into().unwrap()));
        }

        // Native in, Kafka out.
        let native_batch = batch(&["from-native"], None);
        let request = Request::Produce {
            acks: Acks::Durable,
            timeout_ms: 5000,
            partitions: vec![ProducePartition { topic: "both".into(), partition, batches: vec![native_batch.clone()] }],
        };
        match native.call(&request) {
            Response::Produce { partitions } => assert_eq!(partitions[0].base_offsets, vec![base as u64]),
            other => panic!("{other:?}"),
        }
        let (error, records) = kafka_fetch(&mut kafka, "both", partition as i32, base);
        assert_eq!(error, 0);
        assert_eq!(records, as_stored(&native_batch, base));
        // Fetch from 0 over Kafka returns exactly what the native fetch returns.
        let (_, all) = kafka_fetch(&mut kafka, "both", partition as i32, 0);
        let native_all: Vec<u8> = native.fetch("both", partition, 0).iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(all.to_vec(), native_all);
    }
    // Out of range and unknown partition.
    assert_eq!(kafka_fetch(&mut kafka, "both", 0, 1_000).0, 1);
    assert_eq!(kafka_fetch(&mut kafka, "both", 9, 0).0, 3);
    assert_eq!(produce(&mut kafka, "both", 9, batch(&["x"], None)).0, 3);
    // A batch with a bad CRC is refused and not stored.
    let mut bad = batch(&["x"], None).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(produce(&mut kafka, "both", 0, Bytes::from(bad)).0, 2, "CORRUPT_MESSAGE");
    broker.shutdown();
}

#[test]
fn idempotent_producer_duplicates_and_sequence_gaps() {
    let (mut broker, _dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(create_topic(&mut kafka, "idem", 2), 0);
    let init: InitProducerIdResponse =
        kafka.call(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default().with_producer_id(ProducerId(-1)));
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    for partition in 0..2 {
        let first = batch(&["a", "b"], Some((pid, epoch, 0)));
        assert_eq!(produce(&mut kafka, "idem", partition, first.clone()), (0, 0));
        // A retry of the same batch: acknowledged at its original offset, not appended.
        assert_eq!(produce(&mut kafka, "idem", partition, first), (0, 0));
        let second = batch(&["c"], Some((pid, epoch, 2)));
        assert_eq!(produce(&mut kafka, "idem", partition, second), (0, 2));
        // A gap in the sequence.
        assert_eq!(produce(&mut kafka, "idem", partition, batch(&["d"], Some((pid, epoch, 9)))).0, 45);
        // An older epoch is fenced.
        if epoch > 0 {
            assert_eq!(produce(&mut kafka, "idem", partition, batch(&["e"], Some((pid, epoch - 1, 3)))).0, 47);
        }
        let (_, records) = kafka_fetch(&mut kafka, "idem", partition, 0);
        let count: usize = split_batches(records).map(|b| b.unwrap().record_count() as usize).sum();
        assert_eq!(count, 3, "the duplicate must not be stored");
    }
    broker.shutdown();
}

#[test]
fn producer_state_is_rebuilt_from_the_log_after_a_restart() {
    let (mut broker, dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(create_topic(&mut kafka, "again", 1), 0);
    let pid = 4242;
    let first = batch(&["a", "b"], Some((pid, 0, 0)));
    let second = batch(&["c"], Some((pid, 0, 2)));
    assert_eq!(produce(&mut kafka, "again", 0, first.clone()), (0, 0));
    assert_eq!(produce(&mut kafka, "again", 0, second.clone()), (0, 2));
    drop(kafka);
    broker.shutdown();

    let mut broker = start_on(&dir, 2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    // Retries from before the restart are recognised from the batch headers in the log.
    assert_eq!(produce(&mut kafka, "again", 0, second), (0, 2));
    assert_eq!(produce(&mut kafka, "again", 0, first), (0, 0));
    assert_eq!(produce(&mut kafka, "again", 0, batch(&["x"], Some((pid, 0, 7)))).0, 45);
    assert_eq!(produce(&mut kafka, "again", 0, batch(&["d"], Some((pid, 0, 3)))), (0, 3));
    let (_, records) = kafka_fetch(&mut kafka, "again", 0, 0);
    assert_eq!(split_batches(records).count(), 3);
    broker.shutdown();
}

/// A frame naming 2^31 - 1 Metadata topics closes the connection (it used to make the codec
/// allocate ~170 GB, which aborts the broker; third_party/kafka-protocol/PATCHES.md), and
/// error messages quoting a 32 767-byte topic name are cut so that the response still
/// encodes in a non-flexible version (they used to close the connection instead).
#[test]
fn hostile_counts_and_long_names_get_an_error_not_a_crash() {
    let (mut broker, _dir) = start(1);
    let addr = broker.kafka_listen.unwrap();
    let mut kafka = Kafka::connect(addr);
    let mut body = BytesMut::new();
    body.put_i32(i32::MAX); // topics
    body.put_u8(1); // allow_auto_topic_creation
    kafka.send_raw(ApiKey::Metadata, 4, &body);
    assert!(kafka.recv_frame().is_none(), "an undecodable request closes the connection");

    let mut kafka = Kafka::connect(addr);
    let ok: ApiVersionsResponse = kafka.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(ok.error_code, 0, "the broker is still up");

    let long = "n".repeat(i16::MAX as usize); // the longest a v0–4 string can be
    let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(long.clone())))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let created: CreateTopicsResponse = kafka.call(ApiKey::CreateTopics, 2, &request);
    assert_eq!(created.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let message = created.topics[0].error_message.as_ref().unwrap();
    assert!(message.starts_with("invalid topic name") && message.len() <= 1024, "{} bytes", message.len());

    let request =
        CreatePartitionsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(long)))
            .with_count(2)]);
    let grown: CreatePartitionsResponse = kafka.call(ApiKey::CreatePartitions, 0, &request);
    assert_ne!(grown.results[0].error_code, 0);
    assert!(grown.results[0].error_message.as_ref().unwrap().len() <= 1024);
    broker.shutdown();
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.into()))
}

fn topic_id(kafka: &mut Kafka, topic: &str) -> uuid::Uuid {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true);
    let md: MetadataResponse = kafka.call(ApiKey::Metadata, 12, &request);
    assert_eq!(md.topics[0].error_code, 0);
    assert_ne!(md.topics[0].topic_authorized_operations, i32::MIN, "authorized operations when asked");
    md.topics[0].topic_id
}

#[test]
fn delete_records_max_timestamp_and_leader_epoch_offsets() {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    use kafka_protocol::messages::{
        DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
        OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    };
    let (mut broker, dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(create_topic(&mut kafka, "ops", 1), 0);
    for _ in 0..5 {
        assert_eq!(produce(&mut kafka, "ops", 0, batch(&["a", "b"], None)).0, 0);
    }
    let delete = |kafka: &mut Kafka, offset: i64| -> (i16, i64) {
        let request =
            DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name("ops"))
                .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])]);
        let response: DeleteRecordsResponse = kafka.call(ApiKey::DeleteRecords, 2, &request);
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    };
    assert_eq!(delete(&mut kafka, 11).0, 1, "past the high watermark: OFFSET_OUT_OF_RANGE");
    assert_eq!(delete(&mut kafka, 3), (0, 3));
    assert_eq!(kafka_fetch(&mut kafka, "ops", 0, 2).0, 1, "below the log start: OFFSET_OUT_OF_RANGE");
    assert_eq!(kafka_fetch(&mut kafka, "ops", 0, 3).0, 0);
    let list = |kafka: &mut Kafka, timestamp: i64| -> (i16, i64, i64) {
        let request = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default().with_name(name("ops")).with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp),
            ])]);
        let response: ListOffsetsResponse = kafka.call(ApiKey::ListOffsets, 7, &request);
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(list(&mut kafka, -2).1, 3, "earliest is the new log start");
    // Every batch's second record has the largest timestamp; the first such is offset 3.
    assert_eq!(list(&mut kafka, -3), (0, 3, 1_700_000_000_001));
    let epochs = |kafka: &mut Kafka, epoch: i32| -> (i16, i32, i64) {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default().with_topic(name("ops")).with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(epoch),
            ])]);
        let response: OffsetForLeaderEpochResponse = kafka.call(ApiKey::OffsetForLeaderEpoch, 4, &request);
        let p = &response.topics[0].partitions[0];
        (p.error_code, p.leader_epoch, p.end_offset)
    };
    assert_eq!(epochs(&mut kafka, 0), (0, 0, 10), "the latest epoch ends at the log end");
    assert_eq!(epochs(&mut kafka, 5), (0, -1, -1), "an epoch past the latest: undefined");
    broker.shutdown();
    // The deleted records stay deleted after a restart.
    let mut broker = start_on(&dir, 2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(kafka_fetch(&mut kafka, "ops", 0, 2).0, 1);
    assert_eq!(list(&mut kafka, -2).1, 3);
    broker.shutdown();
}

#[test]
fn topic_ids_fetch_sessions_and_a_recreated_topic() {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    let (mut broker, _dir) = start(2);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(create_topic(&mut kafka, "ids", 1), 0);
    let id = topic_id(&mut kafka, "ids");
    assert!(!id.is_nil());
    assert_eq!(produce(&mut kafka, "ids", 0, batch(&["one"], None)).0, 0);
    let fetch = |kafka: &mut Kafka, id: uuid::Uuid, offset: i64, session: (i32, i32)| -> FetchResponse {
        let partition =
            KFetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_id(session.0)
            .with_session_epoch(session.1)
            .with_topics(vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![partition])]);
        kafka.call(ApiKey::Fetch, 13, &request)
    };
    // A full fetch by topic id that starts a session.
    let full = fetch(&mut kafka, id, 0, (0, 0));
    assert_eq!(full.error_code, 0);
    assert_ne!(full.session_id, 0, "a session was created");
    assert_eq!(full.responses[0].topic_id, id);
    assert_eq!(full.responses[0].partitions[0].error_code, 0);
    assert!(!full.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
    let session = full.session_id;
    // Incremental, position moved to the end: nothing new, so no partition in the answer.
    let quiet = fetch(&mut kafka, id, 1, (session, 1));
    assert_eq!((quiet.error_code, quiet.session_id), (0, session));
    assert!(quiet.responses.is_empty(), "{quiet:?}");
    // New data: the partition is back, from the session alone (the request names nothing).
    assert_eq!(produce(&mut kafka, "ids", 0, batch(&["two"], None)).0, 0);
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session)
        .with_session_epoch(2);
    let news: FetchResponse = kafka.call(ApiKey::Fetch, 13, &request);
    assert_eq!(news.responses.len(), 1, "{news:?}");
    assert_eq!(news.responses[0].partitions[0].high_watermark, 2);
    // A wrong epoch, an unknown session.
    assert_eq!(fetch(&mut kafka, id, 1, (session, 9)).error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    assert_eq!(fetch(&mut kafka, id, 1, (session + 1000, 1)).error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    // Forgetting the partition empties the session's answers.
    let forget = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_session_id(session)
        .with_session_epoch(3)
        .with_forgotten_topics_data(vec![ForgottenTopic::default().with_topic_id(id).with_partitions(vec![0])]);
    let forgotten: FetchResponse = kafka.call(ApiKey::Fetch, 13, &forget);
    assert!(forgotten.responses.is_empty(), "{forgotten:?}");

    // DeleteTopics by id; the re-created topic has another id, and the old one is unknown.
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteTopicState::default().with_name(None).with_topic_id(id)]);
    let deleted: DeleteTopicsResponse = kafka.call(ApiKey::DeleteTopics, 6, &request);
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(deleted.responses[0].name.as_ref().unwrap().0.as_str(), "ids");
    assert_eq!(create_topic(&mut kafka, "ids", 1), 0);
    let new_id = topic_id(&mut kafka, "ids");
    assert_ne!(new_id, id, "a re-created topic gets a new id");
    let stale = fetch(&mut kafka, id, 0, (0, -1));
    assert_eq!(stale.responses[0].partitions[0].error_code, 100, "UNKNOWN_TOPIC_ID");
    assert_eq!(stale.responses[0].topic_id, id);
    broker.shutdown();
}

#[test]
fn member_id_required_round_trip_and_committed_leader_epochs() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        GroupId, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
        OffsetFetchResponse,
    };
    let (mut broker, _dir) = start(1);
    let mut kafka = Kafka::connect(broker.kafka_listen.unwrap());
    assert_eq!(create_topic(&mut kafka, "epochs", 1), 0);
    let join = |kafka: &mut Kafka, member: &str| -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.into()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0\0\0"))]);
        kafka.call(ApiKey::JoinGroup, 7, &request)
    };
    let first = join(&mut kafka, "");
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    assert!(member.starts_with("kafka-raw-test-") && member.len() == "kafka-raw-test-".len() + 36, "{member}");
    // The Kafka broker's initial rebalance delay (3 s by default) passes first.
    let joined = join(&mut kafka, &member);
    assert_eq!((joined.error_code, joined.member_id.as_str(), joined.generation_id), (0, member.as_str(), 1));

    // A standalone commit (no generation) with a leader epoch; read back with it.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("standalone")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(name("epochs")).with_partitions(vec![
            OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)
                .with_committed_leader_epoch(2)
                .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
        ])]);
    let committed: OffsetCommitResponse = kafka.call(ApiKey::OffsetCommit, 8, &commit);
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let fetch =
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("standalone"))).with_topics(
            Some(vec![OffsetFetchRequestTopic::default().with_name(name("epochs")).with_partition_indexes(vec![0])]),
        );
    let fetched: OffsetFetchResponse = kafka.call(ApiKey::OffsetFetch, 7, &fetch);
    let p = &fetched.topics[0].partitions[0];
    assert_eq!((p.committed_offset, p.committed_leader_epoch), (0, 2), "the committed leader epoch is kept");
    broker.shutdown();
}
