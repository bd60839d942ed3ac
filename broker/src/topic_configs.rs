//! Kafka's topic configs on shardlog's `TopicConfig`: the one table every protocol uses
//! (Kafka's DescribeConfigs / AlterConfigs / CreateTopics, and the native protocol's
//! `topic config get/set`).
//!
//! Every Kafka 4 topic config is known (`TOPIC_CONFIGS`). Those shardlog applies —
//! `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`, and `flush.messages` /
//! `flush.ms` as the topic's
//! durability — are read from and written to the `TopicConfig` fields. `cleanup.policy` is
//! kept as set (Kafka Streams creates its changelogs `compact`) but old segments are only ever
//! deleted by retention: there is no compaction. The others are kept in
//! `TopicConfig::unapplied` and reported back as set, but change nothing. A name that is no
//! Kafka topic config is refused, as in Kafka.

use engine::catalog::{Durability, TopicConfig, DURABILITY_INTERVAL_MS_MAX};

/// Kafka's config sources (DescribeConfigs v1+).
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// Kafka's config types (DescribeConfigs v3+).
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_DOUBLE: i8 = 6;
pub const TYPE_LIST: i8 = 7;

/// Kafka's "never" for flush.messages and flush.ms (Long.MAX_VALUE).
pub const LONG_MAX: &str = "9223372036854775807";

pub const NOTE_UNAPPLIED: &str = "shardlog stores and reports this config but does not apply it";

/// One Kafka topic config: its name, type, Kafka's default, and whether shardlog applies it.
struct KafkaTopicConfig {
    name: &'static str,
    config_type: i8,
    kafka_default: &'static str,
    applied: bool,
}

const fn config(name: &'static str, config_type: i8, kafka_default: &'static str, applied: bool) -> KafkaTopicConfig {
    KafkaTopicConfig { name, config_type, kafka_default, applied }
}

/// Every topic config of Kafka 4 (`org.apache.kafka.common.config.TopicConfig`), sorted, and
/// two Kafka 3 configs that 4.0 removed.
const TOPIC_CONFIGS: &[KafkaTopicConfig] = &[
    config("cleanup.policy", TYPE_LIST, "delete", false),
    config("compression.gzip.level", TYPE_INT, "-1", false),
    config("compression.lz4.level", TYPE_INT, "9", false),
    config("compression.type", TYPE_STRING, "producer", false),
    config("compression.zstd.level", TYPE_INT, "3", false),
    config("delete.retention.ms", TYPE_LONG, "86400000", false),
    config("file.delete.delay.ms", TYPE_LONG, "60000", false),
    config("flush.messages", TYPE_LONG, LONG_MAX, true),
    config("flush.ms", TYPE_LONG, LONG_MAX, true),
    config("follower.replication.throttled.replicas", TYPE_LIST, "", false),
    config("index.interval.bytes", TYPE_INT, "4096", false),
    config("leader.replication.throttled.replicas", TYPE_LIST, "", false),
    config("local.retention.bytes", TYPE_LONG, "-2", false),
    config("local.retention.ms", TYPE_LONG, "-2", false),
    config("max.compaction.lag.ms", TYPE_LONG, LONG_MAX, false),
    config("max.message.bytes", TYPE_INT, "1048588", false),
    // Removed in Kafka 4.0, still set by tools written for 3.x (librdkafka's 0092): kept.
    config("message.downconversion.enable", TYPE_BOOLEAN, "true", false),
    config("message.format.version", TYPE_STRING, "3.0-IV1", false),
    config("message.timestamp.after.max.ms", TYPE_LONG, "3600000", false),
    config("message.timestamp.before.max.ms", TYPE_LONG, LONG_MAX, false),
    config("message.timestamp.type", TYPE_STRING, "CreateTime", false),
    config("min.cleanable.dirty.ratio", TYPE_DOUBLE, "0.5", false),
    config("min.compaction.lag.ms", TYPE_LONG, "0", false),
    config("min.insync.replicas", TYPE_INT, "1", false),
    config("preallocate", TYPE_BOOLEAN, "false", false),
    config("remote.log.copy.disable", TYPE_BOOLEAN, "false", false),
    config("remote.log.delete.on.disable", TYPE_BOOLEAN, "false", false),
    config("remote.storage.enable", TYPE_BOOLEAN, "false", false),
    config("retention.bytes", TYPE_LONG, "-1", true),
    config("retention.ms", TYPE_LONG, "604800000", true),
    config("segment.bytes", TYPE_INT, "1073741824", true),
    config("segment.index.bytes", TYPE_INT, "10485760", false),
    config("segment.jitter.ms", TYPE_LONG, "0", false),
    config("segment.ms", TYPE_LONG, "604800000", true),
    config("unclean.leader.election.enable", TYPE_BOOLEAN, "false", false),
];

/// The topic configs Kafka's clients see (the `applied` ones in `TOPIC_CONFIGS`).
pub fn applied_configs() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS.iter().filter(|c| c.applied).map(|c| c.name)
}

/// One config as DescribeConfigs and CreateTopics report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
    pub documentation: Option<&'static str>,
}

/// The (flush.messages, flush.ms) that read back as `durability` (`durability_from_flush`
/// is its inverse on these).
pub fn flush_of(durability: Durability) -> (String, String) {
    match durability {
        Durability::Sync => ("1".to_owned(), LONG_MAX.to_owned()),
        Durability::Interval { ms } => (LONG_MAX.to_owned(), ms.to_string()),
        Durability::None => (LONG_MAX.to_owned(), LONG_MAX.to_owned()),
    }
}

/// An optional limit as Kafka spells it: -1 for none.
pub fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "-1".to_owned(), |v| v.to_string())
}

/// The value shardlog applies for an applied config.
fn applied_value(config: &TopicConfig, name: &str) -> Option<String> {
    let (flush_messages, flush_ms) = flush_of(config.durability);
    Some(match name {
        "retention.ms" => limit_text(config.retention_ms),
        "retention.bytes" => limit_text(config.retention_bytes),
        "segment.bytes" => config.segment_bytes.to_string(),
        "segment.ms" => config.segment_ms.map_or_else(|| LONG_MAX.to_owned(), |v| v.to_string()),
        "flush.messages" => flush_messages,
        "flush.ms" => flush_ms,
        _ => return None,
    })
}

/// Every topic config of `config` (or those named in `keys`), with where its value comes from.
pub fn topic_entries(config: &TopicConfig, keys: Option<&[String]>) -> Vec<ConfigEntry> {
    let defaults = TopicConfig::default();
    TOPIC_CONFIGS
        .iter()
        .filter(|c| keys.is_none_or(|keys| keys.iter().any(|k| k == c.name)))
        .map(|c| {
            let (value, set) = if c.applied {
                let value = applied_value(config, c.name).unwrap_or_default();
                let set = applied_value(&defaults, c.name).as_ref() != Some(&value);
                (value, set)
            } else {
                match config.unapplied.get(c.name) {
                    Some(v) => (v.clone(), true),
                    None => (c.kafka_default.to_owned(), false),
                }
            };
            ConfigEntry {
                name: c.name.to_owned(),
                value,
                source: if set { SOURCE_TOPIC } else { SOURCE_DEFAULT },
                read_only: false,
                config_type: c.config_type,
                documentation: if c.applied { None } else { Some(NOTE_UNAPPLIED) },
            }
        })
        .collect()
}

/// Sets (`Some`) or resets to its default (`None`) one topic config in `config`. The error
/// is the message for INVALID_CONFIG.
pub fn set_topic_config(config: &mut TopicConfig, name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(known) = TOPIC_CONFIGS.iter().find(|c| c.name == name) else {
        return Err(format!("unknown topic config {name:?}"));
    };
    let defaults = TopicConfig::default();
    let bad = |value: &str| format!("{name} = {value:?}");
    // -1 means unlimited in Kafka.
    let limit = |v: &str| -> Result<Option<u64>, String> {
        match v.trim().parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n > 0 => Ok(Some(n as u64)),
            _ => Err(bad(v)),
        }
    };
    if name == "cleanup.policy" {
        if let Some(v) = value {
            if v.split(',').any(|p| !matches!(p.trim(), "delete" | "compact")) {
                return Err(format!("cleanup.policy = {v:?}: the policies are delete and compact"));
            }
        }
    }
    if !known.applied {
        match value {
            Some(v) if v != known.kafka_default => {
                config.unapplied.insert(name.to_owned(), v.to_owned());
            }
            _ => {
                config.unapplied.remove(name);
            }
        }
        return Ok(());
    }
    match (name, value) {
        ("retention.ms", v) => config.retention_ms = v.map_or(Ok(defaults.retention_ms), limit)?,
        ("retention.bytes", v) => config.retention_bytes = v.map_or(Ok(defaults.retention_bytes), limit)?,
        ("segment.bytes", v) => {
            config.segment_bytes = match v {
                None => defaults.segment_bytes,
                Some(v) => limit(v)?.ok_or_else(|| bad(v))?,
            }
        }
        ("segment.ms", v) => config.segment_ms = v.map_or(Ok(defaults.segment_ms), limit)?,
        ("flush.messages" | "flush.ms", None) => config.durability = defaults.durability,
        ("flush.messages", Some(v)) => {
            let n = v.trim().parse::<i64>().ok().filter(|&n| n >= 1).ok_or_else(|| bad(v))?;
            let (_, flush_ms) = flush_of(config.durability);
            config.durability = durability_from_flush(Some(n), flush_ms.parse().ok()).unwrap_or(config.durability);
        }
        ("flush.ms", Some(v)) => {
            let ms = v.trim().parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(|| bad(v))?;
            let (flush_messages, _) = flush_of(config.durability);
            let flush_messages = flush_messages.parse::<i64>().ok().filter(|&n| n != 1);
            config.durability = durability_from_flush(flush_messages, Some(ms)).unwrap_or(config.durability);
        }
        _ => return Err(format!("topic config {name:?} cannot be set")),
    }
    Ok(())
}

/// Kafka's flush settings as a shardlog durability (`None` when neither is set):
/// flush.messages=1 (fsync every message) → sync; else flush.ms=0 → sync, flush.ms =
/// Long.MAX (Kafka's "never") → none, flush.ms=MS → an fdatasync at least every MS
/// (capped at the longest interval, one hour: syncing more often only adds durability); else
/// flush.messages > 1 → none.
pub fn durability_from_flush(flush_messages: Option<i64>, flush_ms: Option<i64>) -> Option<Durability> {
    match (flush_messages, flush_ms) {
        (Some(1), _) | (_, Some(0)) => Some(Durability::Sync),
        (_, Some(i64::MAX)) => Some(Durability::None),
        (_, Some(ms)) => {
            let ms =
                u32::try_from(ms.clamp(1, i64::from(DURABILITY_INTERVAL_MS_MAX))).unwrap_or(DURABILITY_INTERVAL_MS_MAX);
            Some(Durability::Interval { ms })
        }
        (Some(_), None) => Some(Durability::None),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(config: &TopicConfig, name: &str) -> String {
        let keys = [name.to_owned()];
        topic_entries(config, Some(&keys)).remove(0).value
    }

    #[test]
    fn kafka_flush_settings_map_onto_durability() {
        let text = |flush_messages, flush_ms| durability_from_flush(flush_messages, flush_ms).map(|d| d.to_string());
        assert_eq!(text(None, None), None);
        assert_eq!(text(Some(1), None).as_deref(), Some("sync"));
        assert_eq!(text(Some(1), Some(i64::MAX)).as_deref(), Some("sync"));
        assert_eq!(text(None, Some(0)).as_deref(), Some("sync"));
        assert_eq!(text(Some(i64::MAX), Some(i64::MAX)).as_deref(), Some("none"));
        assert_eq!(text(Some(1000), None).as_deref(), Some("none"));
        assert_eq!(text(Some(i64::MAX), Some(50)).as_deref(), Some("interval:50"));
        assert_eq!(text(None, Some(1 << 40)).as_deref(), Some("interval:3600000"), "capped at the longest interval");
    }

    #[test]
    fn applied_configs_round_trip_and_unapplied_ones_are_kept() {
        let mut config = TopicConfig::default();
        assert_eq!(value(&config, "retention.ms"), "604800000");
        let defaults = topic_entries(&config, None);
        assert_eq!(defaults.len(), TOPIC_CONFIGS.len());
        assert!(defaults.iter().all(|e| e.source == SOURCE_DEFAULT), "{defaults:?}");
        set_topic_config(&mut config, "retention.ms", Some("-1")).unwrap();
        set_topic_config(&mut config, "segment.bytes", Some("1048576")).unwrap();
        set_topic_config(&mut config, "flush.ms", Some("250")).unwrap();
        set_topic_config(&mut config, "compression.type", Some("gzip")).unwrap();
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.segment_bytes, 1 << 20);
        assert_eq!(config.durability, Durability::Interval { ms: 250 });
        assert_eq!(value(&config, "retention.ms"), "-1");
        assert_eq!(value(&config, "flush.ms"), "250");
        assert_eq!(value(&config, "compression.type"), "gzip");
        let entry = topic_entries(&config, Some(&["compression.type".to_owned()])).remove(0);
        assert_eq!((entry.source, entry.documentation), (SOURCE_TOPIC, Some(NOTE_UNAPPLIED)));
        // Back to the defaults.
        for name in ["retention.ms", "segment.bytes", "flush.ms", "compression.type"] {
            set_topic_config(&mut config, name, None).unwrap();
        }
        assert_eq!(config, TopicConfig::default());
        assert!(set_topic_config(&mut config, "dummy.doesntexist", Some("1")).is_err());
        assert!(set_topic_config(&mut config, "cleanup.policy", Some("shred")).is_err());
        set_topic_config(&mut config, "cleanup.policy", Some("compact")).unwrap();
        assert_eq!(value(&config, "cleanup.policy"), "compact", "kept and reported (not applied)");
        set_topic_config(&mut config, "cleanup.policy", None).unwrap();
        assert!(set_topic_config(&mut config, "retention.ms", Some("soon")).is_err());
        set_topic_config(&mut config, "flush.messages", Some("1")).unwrap();
        assert_eq!(config.durability, Durability::Sync);
        set_topic_config(&mut config, "flush.ms", Some(LONG_MAX)).unwrap();
        assert_eq!(config.durability, Durability::None);
    }
}
