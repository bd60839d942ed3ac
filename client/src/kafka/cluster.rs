//! What the driver knows about a Kafka cluster, on one executor: the API versions both sides
//! speak (ApiVersions), the brokers and each partition's leader (Metadata), and one
//! connection per broker, opened on first use and reopened after it breaks.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, ListOffsetsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rustc_hash::FxHashMap;

use super::connection::Connection;
use super::error::{codes, KafkaError};

/// Kafka's `request.timeout.ms` default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `create_topics` waits for the new topics' leaders to appear in Metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC_READY_POLL: Duration = Duration::from_millis(20);
/// ListOffsets timestamps: the earliest and the latest offset.
pub const OFFSET_EARLIEST: i64 = -2;
pub const OFFSET_LATEST: i64 = -1;

/// The versions this client is written against, per API: (API, lowest, highest). Each is
/// the newest version before topic ids (Produce 10+, Fetch 13+, Metadata 10+), or the
/// oldest Kafka 4 still serves.
const SPOKEN: [(ApiKey, i16, i16); 6] = [
    (ApiKey::Metadata, 1, 9),
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
];

/// The version used for each API with this cluster.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    pub metadata: i16,
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub create_topics: i16,
    pub delete_topics: i16,
}

pub struct Cluster {
    /// The connection Metadata and CreateTopics go to: the bootstrap address's, replaced by
    /// one to any known broker once it breaks (the node may be gone for good).
    bootstrap: RefCell<Rc<Connection>>,
    bootstrap_addr: String,
    pub versions: Versions,
    /// Node id → "host:port".
    brokers: RefCell<HashMap<i32, String>>,
    connections: RefCell<HashMap<i32, Rc<Connection>>>,
    /// Topic → the leader's node id per partition.
    leaders: RefCell<FxHashMap<String, Rc<Vec<i32>>>>,
}

impl Cluster {
    pub async fn connect(bootstrap: &str) -> Result<Cluster, KafkaError> {
        let connection = Connection::connect(bootstrap, REQUEST_TIMEOUT).await?;
        // v0: every broker answers it, whatever else it supports.
        let answer = connection.call(&ApiVersionsRequest::default(), 0).await?;
        if answer.error_code != codes::NONE {
            return Err(KafkaError::broker(answer.error_code, "ApiVersions"));
        }
        let pick = |key: ApiKey| -> Result<i16, KafkaError> {
            let Some(&(_, ours_min, ours_max)) = SPOKEN.iter().find(|(k, _, _)| *k == key) else {
                return Err(KafkaError::Metadata(format!("no spoken range for {key:?}")));
            };
            let theirs = answer.api_keys.iter().find(|a| a.api_key == key as i16);
            let (broker_min, broker_max) = theirs.map_or((-1, -1), |a| (a.min_version, a.max_version));
            let version = ours_max.min(broker_max);
            if version < ours_min.max(broker_min) {
                return Err(KafkaError::UnsupportedVersion {
                    api_key: key as i16,
                    broker_min,
                    broker_max,
                    ours_min,
                    ours_max,
                });
            }
            Ok(version)
        };
        let versions = Versions {
            metadata: pick(ApiKey::Metadata)?,
            produce: pick(ApiKey::Produce)?,
            fetch: pick(ApiKey::Fetch)?,
            list_offsets: pick(ApiKey::ListOffsets)?,
            create_topics: pick(ApiKey::CreateTopics)?,
            delete_topics: pick(ApiKey::DeleteTopics)?,
        };
        Ok(Cluster {
            bootstrap: RefCell::new(Rc::new(connection)),
            bootstrap_addr: bootstrap.to_owned(),
            versions,
            brokers: RefCell::new(HashMap::new()),
            connections: RefCell::new(HashMap::new()),
            leaders: RefCell::new(FxHashMap::default()),
        })
    }

    /// Creates the topics (replication factor: the broker's default) with the durability
    /// mapped onto Kafka's flush settings, then waits until every partition has a leader.
    pub async fn create_topics(&self, topics: &[String], partitions: u32, durability: &str) -> Result<(), KafkaError> {
        let partitions = i32::try_from(partitions).map_err(|_| KafkaError::Metadata("too many partitions".into()))?;
        let v = self.versions.create_topics;
        let configs: Vec<CreatableTopicConfig> = durability_configs(durability)
            .into_iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_value(Some(StrBytes::from_string(value)))
            })
            .collect();
        let request = CreateTopicsRequest::default().with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32).with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(topic_name(t))
                        .with_num_partitions(partitions)
                        // -1 (the broker's default) exists from v4.
                        .with_replication_factor(if v >= 4 { -1 } else { 1 })
                        .with_configs(configs.clone())
                })
                .collect(),
        );
        let answer = self.metadata_connection().await?.call(&request, v).await?;
        for result in answer.topics {
            if result.error_code != codes::NONE && result.error_code != codes::TOPIC_ALREADY_EXISTS {
                let message = result.error_message.map(|m| m.to_string()).unwrap_or_default();
                return Err(KafkaError::broker(
                    result.error_code,
                    format!("creating topic {}: {message}", result.name.0),
                ));
            }
        }
        let deadline = std::time::Instant::now() + TOPIC_READY_TIMEOUT;
        for topic in topics {
            loop {
                match self.refresh(topic).await {
                    Ok(leaders) if leaders.len() == partitions as usize => break,
                    Ok(_) | Err(KafkaError::Broker { .. }) if std::time::Instant::now() < deadline => {
                        glommio::timer::sleep(TOPIC_READY_POLL).await;
                    }
                    Ok(leaders) => {
                        return Err(KafkaError::Metadata(format!(
                            "topic {topic} has {} partitions with leaders, expected {partitions}",
                            leaders.len()
                        )))
                    }
                    Err(e) => return Err(e),
                }
            }
            self.wait_leaders_serve(topic, deadline).await?;
        }
        Ok(())
    }

    /// Waits until each partition's leader answers ListOffsets for it: Kafka names a leader
    /// in Metadata before that broker has loaded the partition (it answers produce with
    /// NOT_LEADER_OR_FOLLOWER meanwhile), and a client without produce retries would lose
    /// those first batches.
    async fn wait_leaders_serve(&self, topic: &str, deadline: std::time::Instant) -> Result<(), KafkaError> {
        loop {
            let leaders = self.refresh(topic).await?;
            let mut by_leader: HashMap<i32, Vec<u32>> = HashMap::new();
            for (partition, &leader) in leaders.iter().enumerate() {
                by_leader.entry(leader).or_default().push(partition as u32);
            }
            let mut serving = true;
            for (leader, partitions) in &by_leader {
                match self.list_offsets(*leader, topic, partitions, OFFSET_LATEST).await {
                    Ok(_) => {}
                    Err(e) if e.is_stale_metadata() && std::time::Instant::now() < deadline => serving = false,
                    Err(e) => return Err(e),
                }
            }
            if serving {
                return Ok(());
            }
            glommio::timer::sleep(TOPIC_READY_POLL).await;
        }
    }

    /// Deletes the topics (a topic already gone is not an error), so that runs against one
    /// broker do not fill its disk.
    pub async fn delete_topics(&self, topics: &[String]) -> Result<(), KafkaError> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32)
            .with_topic_names(topics.iter().map(|t| topic_name(t)).collect());
        let answer = self.metadata_connection().await?.call(&request, self.versions.delete_topics).await?;
        for result in answer.responses {
            if result.error_code != codes::NONE && result.error_code != codes::UNKNOWN_TOPIC_OR_PARTITION {
                let name = result.name.map(|n| n.0.to_string()).unwrap_or_default();
                return Err(KafkaError::broker(result.error_code, format!("deleting topic {name}")));
            }
        }
        for topic in topics {
            self.invalidate(topic);
        }
        Ok(())
    }

    /// The leader of each partition of `topic`, from the cache or Metadata.
    pub async fn leaders(&self, topic: &str) -> Result<Rc<Vec<i32>>, KafkaError> {
        if let Some(leaders) = self.leaders.borrow().get(topic) {
            return Ok(leaders.clone());
        }
        self.refresh(topic).await
    }

    /// Forgets `topic`'s leaders (a broker said they moved); the next use asks Metadata.
    pub fn invalidate(&self, topic: &str) {
        self.leaders.borrow_mut().remove(topic);
    }

    /// Asks Metadata for `topic` and caches its brokers and partition leaders.
    async fn refresh(&self, topic: &str) -> Result<Rc<Vec<i32>>, KafkaError> {
        let v = self.versions.metadata;
        let mut request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]));
        if v >= 4 {
            request = request.with_allow_auto_topic_creation(false);
        }
        let answer = self.metadata_connection().await?.call(&request, v).await?;
        {
            let mut brokers = self.brokers.borrow_mut();
            for b in &answer.brokers {
                brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
            }
        }
        let Some(found) = answer.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)) else {
            return Err(KafkaError::Metadata(format!("Metadata did not mention topic {topic}")));
        };
        if found.error_code != codes::NONE {
            return Err(KafkaError::broker(found.error_code, format!("metadata of {topic}")));
        }
        let mut leaders = vec![-1; found.partitions.len()];
        for p in &found.partitions {
            let slot = usize::try_from(p.partition_index).ok().and_then(|i| leaders.get_mut(i));
            match slot {
                Some(slot) if p.error_code == codes::NONE && p.leader_id.0 >= 0 => *slot = p.leader_id.0,
                Some(_) => {
                    return Err(KafkaError::broker(
                        codes::LEADER_NOT_AVAILABLE,
                        format!("{topic}-{}", p.partition_index),
                    ))
                }
                None => {
                    return Err(KafkaError::Metadata(format!(
                        "{topic}: partition index {} out of range",
                        p.partition_index
                    )))
                }
            }
        }
        let leaders = Rc::new(leaders);
        self.leaders.borrow_mut().insert(topic.to_owned(), leaders.clone());
        Ok(leaders)
    }

    /// The connection for cluster-wide requests: the current one while it works, else the first
    /// of the bootstrap address and the known brokers that accepts a connection.
    async fn metadata_connection(&self) -> Result<Rc<Connection>, KafkaError> {
        let current = self.bootstrap.borrow().clone();
        if !current.is_broken() {
            return Ok(current);
        }
        let mut candidates = vec![self.bootstrap_addr.clone()];
        candidates.extend(self.brokers.borrow().values().filter(|a| **a != self.bootstrap_addr).cloned());
        let mut last = None;
        for addr in candidates {
            match Connection::connect(&addr, REQUEST_TIMEOUT).await {
                Ok(opened) => {
                    let opened = Rc::new(opened);
                    *self.bootstrap.borrow_mut() = opened.clone();
                    return Ok(opened);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| KafkaError::Metadata("no broker to ask".into())))
    }

    /// The connection to broker `node`, opened if there is none or it broke.
    pub async fn connection(&self, node: i32) -> Result<Rc<Connection>, KafkaError> {
        if let Some(c) = self.connections.borrow().get(&node).filter(|c| !c.is_broken()) {
            return Ok(c.clone());
        }
        let Some(addr) = self.brokers.borrow().get(&node).cloned() else {
            return Err(KafkaError::Metadata(format!("no address for broker {node}")));
        };
        let opened = Rc::new(Connection::connect(&addr, REQUEST_TIMEOUT).await?);
        // Another task may have connected meanwhile: keep one connection per broker.
        let mut connections = self.connections.borrow_mut();
        match connections.get(&node).filter(|c| !c.is_broken()) {
            Some(c) => Ok(c.clone()),
            None => {
                connections.insert(node, opened.clone());
                Ok(opened)
            }
        }
    }

    /// One offset (`OFFSET_EARLIEST`, `OFFSET_LATEST`) per partition of `topic`, asked of
    /// its leader `node`.
    pub async fn list_offsets(
        &self,
        node: i32,
        topic: &str,
        partitions: &[u32],
        at: i64,
    ) -> Result<Vec<(u32, i64)>, KafkaError> {
        let request =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| ListOffsetsPartition::default().with_partition_index(p as i32).with_timestamp(at))
                        .collect(),
                )]);
        let answer = self.connection(node).await?.call(&request, self.versions.list_offsets).await?;
        let mut offsets = Vec::with_capacity(partitions.len());
        for t in answer.topics {
            for p in t.partitions {
                if p.error_code != codes::NONE {
                    return Err(KafkaError::broker(p.error_code, format!("ListOffsets {topic}-{}", p.partition_index)));
                }
                let partition = u32::try_from(p.partition_index).map_err(|_| {
                    KafkaError::Metadata(format!("ListOffsets answered partition {}", p.partition_index))
                })?;
                offsets.push((partition, p.offset));
            }
        }
        if offsets.len() != partitions.len() {
            return Err(KafkaError::Metadata(format!(
                "ListOffsets answered {} of {} partitions",
                offsets.len(),
                partitions.len()
            )));
        }
        Ok(offsets)
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// The loadgen's `--durability` as Kafka topic configs: `sync` → fsync after every message
/// (`flush.messages=1`), `interval:MS` → `flush.ms=MS`, `none` → Kafka's own default
/// (never forced: `flush.messages` = Long.MAX), stated so that brokers whose default
/// differs (shardlog's is sync) honour it.
pub fn durability_configs(durability: &str) -> Vec<(&'static str, String)> {
    const NEVER: i64 = i64::MAX;
    match durability {
        "sync" => vec![("flush.messages", "1".to_owned())],
        "none" => vec![("flush.messages", NEVER.to_string()), ("flush.ms", NEVER.to_string())],
        other => match other.strip_prefix("interval:") {
            Some(ms) => vec![("flush.messages", NEVER.to_string()), ("flush.ms", ms.to_owned())],
            None => Vec::new(),
        },
    }
}
