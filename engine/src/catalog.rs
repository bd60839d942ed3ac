//! The catalog: the broker's persistent metadata — topics, their partitions, per-topic config,
//! and the shard (CPU core index) that owns each partition.
//!
//! It is small and changes rarely (create / grow / delete a topic), so the whole catalog is one
//! file, rewritten in full on every change.
//!
//! # File format
//!
//! `dir/catalog.json` holds the body, a newline, and a checksum trailer line:
//!
//! ```text
//! {"version":1,"next_topic_id":3,"topics":[...]}\n
//! crc32c=1a2b3c4d\n
//! ```
//!
//! The body is JSON (serde, pretty-printed so that an operator can read it) with no trailing
//! newline of its own. The trailer is exactly `crc32c=` followed by 8 lowercase hex digits and a
//! newline; the CRC-32C covers the body bytes exactly as stored, so checking it needs no
//! re-serialization. A file that fails the checksum, lacks the trailer (e.g. truncated), does not
//! parse, has an unknown `version`, or breaks an invariant (duplicate or invalid names, bad
//! config, non-contiguous partitions, ids not below `next_topic_id`) is reported as
//! [`CatalogError::Corrupt`] — never read as empty. Only a missing file is an empty catalog.
//!
//! # Atomic persist
//!
//! A change is persisted by writing the new file to `catalog.json.tmp`, fsyncing it, renaming it
//! over `catalog.json`, and fsyncing the directory. Readers therefore see either the old or the
//! new file, never a torn one: rename(2) replaces the directory entry atomically, the file fsync
//! makes the new contents durable *before* they become reachable under the real name, and the
//! directory fsync makes the rename itself survive power loss (without it, the directory entry
//! may still point at the old inode after a crash). A `catalog.json.tmp` left by a crash is
//! garbage and is removed by [`Catalog::open`].
//!
//! Every mutation builds the new state aside, persists it, and only then swaps it into memory,
//! so a failed persist leaves memory as it was. One window remains: if the directory fsync
//! fails, the rename may or may not survive a crash; the error is returned, memory keeps the old
//! state, and the next successful persist rewrites the file from memory.
//!
//! Partition directories are named `{topic}-{partition}` ([`partition_dir_name`]); such a name
//! always ends in `-<digits>`, so it can never collide with the catalog's own files.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::limits::{
    CONFIG_NAME_BYTES_MAX, CONFIG_VALUE_BYTES_MAX, PARTITIONS_PER_TOPIC_MAX, SEGMENT_SIZE_BYTES_MAX,
    SEGMENT_SIZE_BYTES_MIN, TOPICS_MAX, TOPIC_NAME_BYTES_MAX, UNAPPLIED_CONFIGS_MAX,
};

/// Name of the catalog file inside the data directory.
pub const CATALOG_FILE_NAME: &str = "catalog.json";
/// Name of the scratch file a persist writes before renaming it over [`CATALOG_FILE_NAME`].
pub const CATALOG_TMP_FILE_NAME: &str = "catalog.json.tmp";
/// Version of the body layout; bump it on any incompatible change.
pub const CATALOG_FORMAT_VERSION: u32 = 1;
/// Most shards a catalog places partitions on (far above any core count we expect).
pub const SHARD_COUNT_MAX: u32 = 4096;
/// Longest `Durability::Interval` flush period: one hour.
pub const DURABILITY_INTERVAL_MS_MAX: u32 = 3_600_000;
/// Default retention and roll time (Kafka's `retention.ms` and `segment.ms`): 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;
pub const SEGMENT_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;
/// First topic id handed out; 0 is never a valid id.
const TOPIC_ID_FIRST: u64 = 1;

const TRAILER_PREFIX: &[u8] = b"crc32c=";
const TRAILER_HEX_DIGITS: usize = 8;

/// When an append is acknowledged relative to its fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Acknowledge only after the data is fdatasync'ed.
    Sync,
    /// Acknowledge once written; fdatasync at least every `ms` milliseconds.
    Interval { ms: u32 },
    /// Acknowledge once queued; durability is left to the OS.
    None,
}

impl Durability {
    fn validate(&self) -> Result<(), String> {
        match *self {
            Durability::Interval { ms } if !(1..=DURABILITY_INTERVAL_MS_MAX).contains(&ms) => {
                Err(format!("durability interval {ms} ms is outside 1..={DURABILITY_INTERVAL_MS_MAX}"))
            }
            _ => Ok(()),
        }
    }
}

impl FromStr for Durability {
    type Err = String;

    /// Parses `sync`, `none`, or `interval:MS` with MS in `1..=DURABILITY_INTERVAL_MS_MAX`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const USAGE: &str = "expected \"sync\", \"none\" or \"interval:MS\"";
        match s {
            "sync" => return Ok(Durability::Sync),
            "none" => return Ok(Durability::None),
            _ => {}
        }
        let Some(digits) = s.strip_prefix("interval:") else {
            return Err(format!("invalid durability {s:?}: {USAGE}"));
        };
        // u32::from_str accepts a leading '+'; only plain digits keep Display the inverse.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid durability {s:?}: interval must be a number of ms"));
        }
        let ms: u32 = digits.parse().map_err(|_| format!("invalid durability {s:?}: interval is too large"))?;
        let durability = Durability::Interval { ms };
        durability.validate().map_err(|reason| format!("invalid durability {s:?}: {reason}"))?;
        Ok(durability)
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Sync => f.write_str("sync"),
            Durability::Interval { ms } => write!(f, "interval:{ms}"),
            Durability::None => f.write_str("none"),
        }
    }
}

/// Per-topic configuration (the subset of Kafka's topic configs we implement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Delete segments older than this; `None` keeps them forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest segments while a partition is larger than this; `None` is unlimited.
    pub retention_bytes: Option<u64>,
    /// Roll the active segment once it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment after this long even if it is not full; `None` never.
    pub segment_ms: Option<u64>,
    /// Acknowledgement policy for appends.
    pub durability: Durability,
    /// Kafka topic configs this broker does not apply, as set by a client (AlterConfigs,
    /// CreateTopics): kept and reported back, so tools that set them see what they set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unapplied: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            segment_bytes: crate::limits::SEGMENT_SIZE_BYTES_DEFAULT,
            segment_ms: Some(SEGMENT_MS_DEFAULT),
            durability: Durability::Sync,
            unapplied: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    /// Checks every field's range. Zero is rejected for the optional limits: "unlimited" is
    /// spelled `None`, and a zero limit would delete or roll on every tick.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let invalid = |reason: String| Err(CatalogError::InvalidConfig { reason });
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&self.segment_bytes) {
            return invalid(format!(
                "segment_bytes {} is outside {SEGMENT_SIZE_BYTES_MIN}..={SEGMENT_SIZE_BYTES_MAX}",
                self.segment_bytes
            ));
        }
        let optional_limits = [
            ("retention_ms", self.retention_ms),
            ("retention_bytes", self.retention_bytes),
            ("segment_ms", self.segment_ms),
        ];
        for (field, value) in optional_limits {
            if value == Some(0) {
                return invalid(format!("{field} must be at least 1 (use null for unlimited)"));
            }
        }
        if self.unapplied.len() > UNAPPLIED_CONFIGS_MAX {
            return invalid(format!("{} unapplied configs, at most {UNAPPLIED_CONFIGS_MAX}", self.unapplied.len()));
        }
        for (name, value) in &self.unapplied {
            if name.is_empty() || name.len() > CONFIG_NAME_BYTES_MAX || value.len() > CONFIG_VALUE_BYTES_MAX {
                return invalid(format!("config {name:?} or its value is empty or too long"));
            }
        }
        self.durability.validate().or_else(invalid)
    }
}

/// One partition of a topic, the shard it was placed on, and its leader epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: u32,
    /// Shard recorded at placement time; may be ≥ the current shard count (see
    /// [`Catalog::effective_shard`]).
    pub shard: u32,
    /// The partition's leader epoch (Kafka's partitionLeaderEpoch): what Metadata reports and
    /// what the log stamps on every batch it appends as leader. A single node leads every
    /// partition from epoch 0 on; catalogs written before epochs existed read as 0.
    #[serde(default)]
    pub leader_epoch: u32,
}

/// Everything the catalog records about one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    /// Unique and never reused: a deleted and re-created topic gets a new id.
    pub id: u64,
    pub config: TopicConfig,
    /// `partitions[i].partition == i` for every i; never empty.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Number of partitions, as a u32 (bounded by `PARTITIONS_PER_TOPIC_MAX`).
    pub fn partition_count(&self) -> u32 {
        let count = u32::try_from(self.partitions.len()).unwrap_or(u32::MAX);
        assert!(count <= PARTITIONS_PER_TOPIC_MAX);
        count
    }

    fn assert_invariants(&self) {
        assert!(validate_topic_name(&self.name).is_ok());
        assert!(self.id >= TOPIC_ID_FIRST);
        assert!(!self.partitions.is_empty());
        assert!(self.partitions.len() <= PARTITIONS_PER_TOPIC_MAX as usize);
        for (index, p) in self.partitions.iter().enumerate() {
            assert_eq!(p.partition as usize, index, "partitions must be numbered 0..n");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("topic {name:?} already exists")]
    TopicExists { name: String },
    #[error("unknown topic {name:?}")]
    UnknownTopic { name: String },
    #[error(
        "invalid partition count {requested} (current {current}; must be above current and \
         at most {PARTITIONS_PER_TOPIC_MAX})"
    )]
    InvalidPartitionCount { requested: u32, current: u32 },
    #[error("too many topics (at most {max})")]
    TooManyTopics { max: usize },
    #[error("invalid topic config: {reason}")]
    InvalidConfig { reason: String },
    #[error("catalog {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("catalog I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Kafka's rule: `[A-Za-z0-9._-]{1,249}`, and not `.` or `..`. The name becomes part of a
/// directory name, so anything else (separators, NUL, spaces, non-ASCII) is rejected.
pub fn validate_topic_name(name: &str) -> Result<(), CatalogError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > TOPIC_NAME_BYTES_MAX {
        Some("longer than 249 bytes")
    } else if name == "." || name == ".." {
        Some("must not be \".\" or \"..\"")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        Some("may contain only ASCII letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CatalogError::InvalidTopicName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Directory name of one partition's log inside the data dir: `{topic}-{partition}` (Kafka's
/// convention). `topic` must already be validated.
pub fn partition_dir_name(topic: &str, partition: u32) -> String {
    assert!(validate_topic_name(topic).is_ok(), "unvalidated topic name {topic:?}");
    assert!(partition < PARTITIONS_PER_TOPIC_MAX);
    format!("{topic}-{partition}")
}

/// The body of the catalog file (see the module doc).
#[derive(Debug, Serialize, Deserialize)]
struct CatalogBody {
    version: u32,
    next_topic_id: u64,
    /// Random, fixed when the catalog is first written: the high half of every topic's UUID
    /// (Kafka's topic id), so ids differ between catalogs. 0 in catalogs written before topic
    /// ids existed; `Catalog::open` then draws one and rewrites the file.
    #[serde(default)]
    incarnation: u64,
    /// Sorted by name.
    topics: Vec<TopicInfo>,
}

/// The broker's topic metadata, mirrored in `dir/catalog.json`.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    topics: BTreeMap<String, TopicInfo>,
    /// Id for the next created topic; above every id ever handed out, including deleted ones.
    next_topic_id: u64,
    /// Shards that new partitions are placed on.
    shard_count: u32,
    /// See `CatalogBody::incarnation`; never 0.
    incarnation: u64,
}

impl Catalog {
    /// Loads `dir/catalog.json`, or starts empty if it does not exist (nothing is created until
    /// the first change). Removes a stale `catalog.json.tmp`. `shard_count` is used to place
    /// new partitions only: recorded assignments are kept even if the shard count changed.
    pub fn open(dir: &Path, shard_count: u32) -> Result<Catalog, CatalogError> {
        assert!((1..=SHARD_COUNT_MAX).contains(&shard_count), "shard_count {shard_count}");
        let tmp_path = dir.join(CATALOG_TMP_FILE_NAME);
        match fs::remove_file(&tmp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&tmp_path, e)),
            _ => {}
        }
        let path = dir.join(CATALOG_FILE_NAME);
        let (topics, next_topic_id, incarnation, existed) = match fs::read(&path) {
            Ok(bytes) => {
                let (topics, next, incarnation) =
                    decode(&bytes).map_err(|reason| CatalogError::Corrupt { path: path.clone(), reason })?;
                (topics, next, incarnation, true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (BTreeMap::new(), TOPIC_ID_FIRST, 0, false),
            Err(e) => return Err(io_error(&path, e)),
        };
        let drawn = incarnation == 0;
        let incarnation = if drawn { new_incarnation(dir)? } else { incarnation };
        let mut catalog = Catalog { dir: dir.to_owned(), topics, next_topic_id, shard_count, incarnation };
        if drawn && existed {
            // Topic ids must not change at the next restart: persist the one just drawn.
            let topics = catalog.topics.clone();
            catalog.commit(topics, next_topic_id)?;
        }
        catalog.assert_invariants();
        Ok(catalog)
    }

    /// The data directory holding the catalog file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicInfo> {
        self.topics.values()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The high half of every topic UUID of this catalog (see `topic_uuid`).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Replaces `name`'s config (Kafka's AlterConfigs); the caller reconfigures open logs.
    pub fn set_topic_config(&mut self, name: &str, config: TopicConfig) -> Result<TopicInfo, CatalogError> {
        let Some(current) = self.topics.get(name) else {
            return Err(CatalogError::UnknownTopic { name: name.to_owned() });
        };
        config.validate()?;
        let info = TopicInfo { config, ..current.clone() };
        let mut topics = self.topics.clone();
        topics.insert(name.to_owned(), info.clone());
        self.commit(topics, self.next_topic_id)?;
        Ok(info)
    }

    /// The shard that serves `p` now: its recorded shard, folded into the current shard count.
    pub fn effective_shard(&self, p: &PartitionInfo) -> u32 {
        p.shard % self.shard_count
    }

    /// Creates `name` with `partitions` partitions, each placed on the least-loaded shard.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<TopicInfo, CatalogError> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(CatalogError::TopicExists { name: name.to_owned() });
        }
        if self.topics.len() >= TOPICS_MAX {
            return Err(CatalogError::TooManyTopics { max: TOPICS_MAX });
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err(CatalogError::InvalidPartitionCount { requested: partitions, current: 0 });
        }
        config.validate()?;

        let mut info = TopicInfo {
            name: name.to_owned(),
            id: self.next_topic_id,
            config,
            partitions: Vec::with_capacity(partitions as usize),
        };
        self.place_partitions(&mut info.partitions, partitions);
        let mut topics = self.topics.clone();
        topics.insert(name.to_owned(), info.clone());
        let next_topic_id = self
            .next_topic_id
            .checked_add(1)
            .ok_or_else(|| CatalogError::InvalidConfig { reason: "topic ids exhausted".to_owned() })?;
        self.commit(topics, next_topic_id)?;
        Ok(info)
    }

    /// Grows `name` to `total` partitions; the new ones are placed like in `create_topic`.
    pub fn add_partitions(&mut self, name: &str, total: u32) -> Result<TopicInfo, CatalogError> {
        let Some(current) = self.topics.get(name) else {
            return Err(CatalogError::UnknownTopic { name: name.to_owned() });
        };
        let current_count = current.partition_count();
        if total <= current_count || total > PARTITIONS_PER_TOPIC_MAX {
            return Err(CatalogError::InvalidPartitionCount { requested: total, current: current_count });
        }
        let mut info = current.clone();
        self.place_partitions(&mut info.partitions, total);
        let mut topics = self.topics.clone();
        topics.insert(name.to_owned(), info.clone());
        self.commit(topics, self.next_topic_id)?;
        Ok(info)
    }

    /// Removes `name` and returns what it was; the caller deletes the partition directories.
    /// Its id is not reused.
    pub fn delete_topic(&mut self, name: &str) -> Result<TopicInfo, CatalogError> {
        let mut topics = self.topics.clone();
        let Some(info) = topics.remove(name) else {
            return Err(CatalogError::UnknownTopic { name: name.to_owned() });
        };
        self.commit(topics, self.next_topic_id)?;
        Ok(info)
    }

    /// Appends partitions `partitions.len()..total`, each on the shard with the fewest
    /// partitions across all topics (counted by effective shard; ties go to the lowest index).
    fn place_partitions(&self, partitions: &mut Vec<PartitionInfo>, total: u32) {
        assert!(partitions.len() < total as usize);
        assert!(total <= PARTITIONS_PER_TOPIC_MAX);
        let mut load = vec![0u64; self.shard_count as usize];
        for p in self.topics.values().flat_map(|t| &t.partitions) {
            load[self.effective_shard(p) as usize] += 1;
        }
        // Min-heap of (load, shard): pops the least loaded, lowest-indexed shard first.
        let mut heap: BinaryHeap<Reverse<(u64, u32)>> =
            (0..self.shard_count).map(|shard| Reverse((load[shard as usize], shard))).collect();
        for partition in partitions.len() as u32..total {
            let Some(Reverse((shard_load, shard))) = heap.pop() else {
                unreachable!("the shard heap is never empty");
            };
            partitions.push(PartitionInfo { partition, shard, leader_epoch: 0 });
            heap.push(Reverse((shard_load + 1, shard)));
        }
        assert_eq!(partitions.len(), total as usize);
    }

    /// Persists the new state, then makes it visible. On error memory is unchanged.
    fn commit(&mut self, topics: BTreeMap<String, TopicInfo>, next_topic_id: u64) -> Result<(), CatalogError> {
        assert!(next_topic_id >= self.next_topic_id);
        let bytes = encode(&topics, next_topic_id, self.incarnation)?;
        persist(&self.dir, &bytes)?;
        self.topics = topics;
        self.next_topic_id = next_topic_id;
        self.assert_invariants();
        Ok(())
    }

    fn assert_invariants(&self) {
        assert!(self.shard_count >= 1);
        assert_ne!(self.incarnation, 0);
        assert!(self.topics.len() <= TOPICS_MAX);
        let mut ids = BTreeSet::new();
        for (name, info) in &self.topics {
            assert_eq!(name, &info.name);
            info.assert_invariants();
            assert!(info.id < self.next_topic_id);
            assert!(ids.insert(info.id), "duplicate topic id {}", info.id);
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> CatalogError {
    CatalogError::Io { path: path.to_owned(), source }
}

/// Serializes the body and appends the checksum trailer.
fn encode(topics: &BTreeMap<String, TopicInfo>, next_topic_id: u64, incarnation: u64) -> Result<Vec<u8>, CatalogError> {
    let body = CatalogBody {
        version: CATALOG_FORMAT_VERSION,
        next_topic_id,
        incarnation,
        topics: topics.values().cloned().collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&body)
        .map_err(|e| CatalogError::InvalidConfig { reason: format!("cannot serialize catalog: {e}") })?;
    assert!(!bytes.ends_with(b"\n"));
    let checksum = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(format!("\ncrc32c={checksum:08x}\n").as_bytes());
    Ok(bytes)
}

/// Verifies the trailer and parses and validates the body; the error is the corruption reason.
fn decode(bytes: &[u8]) -> Result<(BTreeMap<String, TopicInfo>, u64, u64), String> {
    let (body, checksum_stored) = split_trailer(bytes)?;
    let checksum_computed = crc32c::crc32c(body);
    if checksum_computed != checksum_stored {
        return Err(format!("checksum mismatch: stored {checksum_stored:08x}, computed {checksum_computed:08x}"));
    }
    let body: CatalogBody = serde_json::from_slice(body).map_err(|e| format!("body does not parse: {e}"))?;
    validate_body(body)
}

/// Splits `body \n crc32c=XXXXXXXX \n` into the body and the stored checksum.
fn split_trailer(bytes: &[u8]) -> Result<(&[u8], u32), String> {
    let missing = || "missing or malformed crc32c trailer (truncated?)".to_owned();
    let content = bytes.strip_suffix(b"\n").ok_or_else(missing)?;
    let separator = content.iter().rposition(|&b| b == b'\n').ok_or_else(missing)?;
    let (body, trailer) = (&content[..separator], &content[separator + 1..]);
    let hex = trailer.strip_prefix(TRAILER_PREFIX).ok_or_else(missing)?;
    let hex_valid =
        hex.len() == TRAILER_HEX_DIGITS && hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !hex_valid {
        return Err(missing());
    }
    let hex = std::str::from_utf8(hex).map_err(|_| missing())?;
    let checksum = u32::from_str_radix(hex, 16).map_err(|_| missing())?;
    Ok((body, checksum))
}

/// Checks every invariant of a parsed body; disk contents are untrusted, so these are errors
/// rather than assertions.
fn validate_body(body: CatalogBody) -> Result<(BTreeMap<String, TopicInfo>, u64, u64), String> {
    if body.version != CATALOG_FORMAT_VERSION {
        return Err(format!("unsupported version {}", body.version));
    }
    if body.topics.len() > TOPICS_MAX {
        return Err(format!("{} topics exceed the limit {TOPICS_MAX}", body.topics.len()));
    }
    let mut topics = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for info in body.topics {
        validate_topic_name(&info.name).map_err(|e| e.to_string())?;
        info.config.validate().map_err(|e| format!("topic {:?}: {e}", info.name))?;
        if info.id < TOPIC_ID_FIRST || info.id >= body.next_topic_id || !ids.insert(info.id) {
            return Err(format!("topic {:?} has invalid or duplicate id {}", info.name, info.id));
        }
        let count = info.partitions.len();
        let numbered = info.partitions.iter().enumerate().all(|(i, p)| p.partition as usize == i);
        if count == 0 || count > PARTITIONS_PER_TOPIC_MAX as usize || !numbered {
            return Err(format!("topic {:?} partitions are not 0..n", info.name));
        }
        if let Some(duplicate) = topics.insert(info.name.clone(), info) {
            return Err(format!("duplicate topic {:?}", duplicate.name));
        }
    }
    Ok((topics, body.next_topic_id, body.incarnation))
}

/// Kafka's topic id of topic `id` in a catalog of `incarnation`: a UUID whose high half is
/// the catalog's random incarnation and low half the topic's never-reused id, so a topic
/// deleted and re-created gets a new one, and no two catalogs share one.
pub fn topic_uuid(incarnation: u64, id: u64) -> [u8; 16] {
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&incarnation.to_be_bytes());
    uuid[8..].copy_from_slice(&id.to_be_bytes());
    uuid
}

/// A fresh random incarnation (never 0), from the kernel's random source.
fn new_incarnation(dir: &Path) -> Result<u64, CatalogError> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer it is given.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        return Err(io_error(dir, io::Error::last_os_error()));
    }
    // The top bit set: never 0 (Kafka's Uuid.ZERO), never Kafka's reserved ids.
    Ok(u64::from_be_bytes(bytes) | (1 << 63))
}

/// Atomically replaces `dir/catalog.json` with `bytes` (see the module doc for the protocol).
fn persist(dir: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    let tmp_path = dir.join(CATALOG_TMP_FILE_NAME);
    let path = dir.join(CATALOG_FILE_NAME);
    let result =
        write_synced(&tmp_path, bytes).and_then(|()| fs::rename(&tmp_path, &path).map_err(|e| io_error(&path, e)));
    if result.is_err() {
        // Best effort: open() removes a leftover tmp file anyway.
        let _ = fs::remove_file(&tmp_path);
    }
    result?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))?;
    tracing::debug!(path = %path.display(), bytes = bytes.len(), "catalog persisted");
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    let mut file = fs::File::create(path).map_err(|e| io_error(path, e))?;
    file.write_all(bytes).map_err(|e| io_error(path, e))?;
    file.sync_all().map_err(|e| io_error(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn topic(name: &str, id: u64, partitions: u32) -> TopicInfo {
        TopicInfo {
            name: name.to_owned(),
            id,
            config: TopicConfig::default(),
            partitions: (0..partitions).map(|p| PartitionInfo { partition: p, shard: p, leader_epoch: 0 }).collect(),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut topics = BTreeMap::new();
        topics.insert("a".to_owned(), topic("a", 1, 3));
        topics.insert("b".to_owned(), topic("b", 4, 1));
        let bytes = encode(&topics, 5, 9).unwrap();
        assert!(bytes.ends_with(b"\n"));
        let (decoded, next_topic_id, incarnation) = decode(&bytes).unwrap();
        assert_eq!(decoded, topics);
        assert_eq!((next_topic_id, incarnation), (5, 9));
    }

    #[test]
    fn decode_rejects_semantic_corruption() {
        let mut topics = BTreeMap::new();
        topics.insert("a".to_owned(), topic("a", 1, 3));
        // The id must be below next_topic_id.
        assert!(decode(&encode(&topics, 1, 9).unwrap()).is_err());
        // Partitions must be numbered 0..n.
        topics.get_mut("a").unwrap().partitions[1].partition = 7;
        assert!(decode(&encode(&topics, 2, 9).unwrap()).is_err());
    }

    #[test]
    fn split_trailer_requires_exact_format() {
        assert!(split_trailer(b"{}\ncrc32c=0000000a\n").is_ok());
        assert!(split_trailer(b"{}\ncrc32c=0000000A\n").is_err());
        assert!(split_trailer(b"{}\ncrc32c=000000a\n").is_err());
        assert!(split_trailer(b"{}\ncrc32c=0000000a").is_err());
        assert!(split_trailer(b"").is_err());
    }
}
