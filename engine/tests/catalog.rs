#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use engine::catalog::{
    partition_dir_name, validate_topic_name, Catalog, CatalogError, Durability, TopicConfig, TopicInfo,
    CATALOG_FILE_NAME, CATALOG_TMP_FILE_NAME,
};
use engine::limits::{PARTITIONS_PER_TOPIC_MAX, SEGMENT_SIZE_BYTES_MAX};
use proptest::prelude::*;

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn shard_loads(catalog: &Catalog) -> Vec<u32> {
    let mut loads = vec![0; catalog.shard_count() as usize];
    for p in catalog.topics().flat_map(|t| &t.partitions) {
        loads[catalog.effective_shard(p) as usize] += 1;
    }
    loads
}

fn all_topics(catalog: &Catalog) -> Vec<TopicInfo> {
    catalog.topics().cloned().collect()
}

#[test]
fn round_trip_create_describe_add_delete_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(dir.path(), 4).unwrap();
    assert_eq!(catalog.topics().count(), 0);
    assert!(dir_entries(dir.path()).is_empty(), "open must create nothing");

    let config = TopicConfig {
        retention_ms: None,
        retention_bytes: Some(1 << 30),
        durability: Durability::Interval { ms: 50 },
        ..TopicConfig::default()
    };
    let orders = catalog.create_topic("orders", 3, config.clone()).unwrap();
    assert_eq!(orders.name, "orders");
    assert_eq!(orders.config, config);
    assert_eq!(orders.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(catalog.topic("orders"), Some(&orders));
    assert!(matches!(catalog.create_topic("orders", 1, TopicConfig::default()), Err(CatalogError::TopicExists { .. })));

    let logs = catalog.create_topic("logs.v2_x-1", 2, TopicConfig::default()).unwrap();
    assert_ne!(logs.id, orders.id);
    let grown = catalog.add_partitions("orders", 6).unwrap();
    assert_eq!(grown.id, orders.id);
    assert_eq!(grown.partitions.len(), 6);
    assert_eq!(grown.partitions[..3], orders.partitions[..]);
    assert_eq!(dir_entries(dir.path()), [CATALOG_FILE_NAME]);

    let before = all_topics(&catalog);
    drop(catalog);
    let mut catalog = Catalog::open(dir.path(), 4).unwrap();
    assert_eq!(all_topics(&catalog), before);

    let deleted = catalog.delete_topic("orders").unwrap();
    assert_eq!(deleted, grown);
    assert!(catalog.topic("orders").is_none());
    assert!(matches!(catalog.delete_topic("orders"), Err(CatalogError::UnknownTopic { .. })));
    assert!(matches!(catalog.add_partitions("orders", 9), Err(CatalogError::UnknownTopic { .. })));

    // next_topic_id survives a reopen: the re-created topic gets an id never seen before.
    drop(catalog);
    let mut catalog = Catalog::open(dir.path(), 4).unwrap();
    assert_eq!(all_topics(&catalog), std::slice::from_ref(&logs));
    let recreated = catalog.create_topic("orders", 1, TopicConfig::default()).unwrap();
    assert!(recreated.id != orders.id && recreated.id != logs.id);
    assert!(recreated.id > logs.id);
}

#[test]
fn placement_is_balanced_and_stable_across_shard_count_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(dir.path(), 2).unwrap();
    catalog.create_topic("a", 4, TopicConfig::default()).unwrap();
    catalog.create_topic("b", 3, TopicConfig::default()).unwrap();
    let loads = shard_loads(&catalog);
    assert_eq!(loads.iter().sum::<u32>(), 7);
    assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{loads:?}");
    // Ties go to the lowest shard index.
    assert_eq!(catalog.topic("a").unwrap().partitions[0].shard, 0);

    let before = all_topics(&catalog);
    drop(catalog);
    let mut catalog = Catalog::open(dir.path(), 3).unwrap();
    assert_eq!(catalog.shard_count(), 3);
    assert_eq!(all_topics(&catalog), before, "existing assignments are kept");

    // New partitions fill the new, empty shard first.
    let c = catalog.create_topic("c", 2, TopicConfig::default()).unwrap();
    assert!(c.partitions.iter().all(|p| p.shard == 2));
    catalog.add_partitions("b", 5).unwrap();
    let loads = shard_loads(&catalog);
    assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "{loads:?}");

    // Shrinking the shard count keeps the recorded shard; effective_shard folds it.
    drop(catalog);
    let catalog = Catalog::open(dir.path(), 1).unwrap();
    let c = catalog.topic("c").unwrap();
    assert_eq!(c.partitions[0].shard, 2);
    assert_eq!(catalog.effective_shard(&c.partitions[0]), 0);
}

#[test]
fn hostile_topic_names_are_rejected_without_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(dir.path(), 2).unwrap();
    let too_long = "a".repeat(250);
    let hostile = ["", ".", "..", "../x", "a/b", "a b", "a\0b", "é", "/abs", "a\\b", &too_long];
    for name in hostile {
        let result = catalog.create_topic(name, 1, TopicConfig::default());
        assert!(
            matches!(&result, Err(CatalogError::InvalidTopicName { name: n, .. }) if n == name),
            "{name:?}: {result:?}"
        );
        assert!(matches!(validate_topic_name(name), Err(CatalogError::InvalidTopicName { .. })));
    }
    assert!(dir_entries(dir.path()).is_empty());
    let message = validate_topic_name("a\0b").unwrap_err().to_string();
    assert!(message.contains(r#""a\0b""#), "{message}");

    let longest = "a".repeat(249);
    catalog.create_topic(&longest, 1, TopicConfig::default()).unwrap();
    assert_eq!(partition_dir_name(&longest, 7), format!("{longest}-7"));
    assert_eq!(partition_dir_name("my.topic", 0), "my.topic-0");
}

#[test]
#[should_panic]
fn partition_dir_name_asserts_valid_name() {
    partition_dir_name("../etc", 0);
}

#[test]
fn partition_counts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(dir.path(), 2).unwrap();
    for count in [0, PARTITIONS_PER_TOPIC_MAX + 1] {
        assert!(matches!(
            catalog.create_topic("t", count, TopicConfig::default()),
            Err(CatalogError::InvalidPartitionCount { requested, current: 0 }) if requested == count
        ));
    }
    assert!(dir_entries(dir.path()).is_empty());
    catalog.create_topic("t", 3, TopicConfig::default()).unwrap();
    for total in [0, 2, 3, PARTITIONS_PER_TOPIC_MAX + 1] {
        assert!(matches!(
            catalog.add_partitions("t", total),
            Err(CatalogError::InvalidPartitionCount { requested, current: 3 }) if requested == total
        ));
    }
    assert_eq!(catalog.add_partitions("t", 4).unwrap().partitions.len(), 4);
}

#[test]
fn invalid_configs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(dir.path(), 1).unwrap();
    let base = TopicConfig::default();
    assert!(base.validate().is_ok());
    let bad = [
        TopicConfig { segment_bytes: 1, ..base.clone() },
        TopicConfig { segment_bytes: SEGMENT_SIZE_BYTES_MAX + 1, ..base.clone() },
        TopicConfig { retention_ms: Some(0), ..base.clone() },
        TopicConfig { retention_bytes: Some(0), ..base.clone() },
        TopicConfig { segment_ms: Some(0), ..base.clone() },
        TopicConfig { durability: Durability::Interval { ms: 0 }, ..base.clone() },
        TopicConfig { durability: Durability::Interval { ms: 3_600_001 }, ..base.clone() },
    ];
    for config in bad {
        assert!(
            matches!(catalog.create_topic("t", 1, config.clone()), Err(CatalogError::InvalidConfig { .. })),
            "{config:?}"
        );
    }
    assert!(dir_entries(dir.path()).is_empty());
}

fn populated_catalog(dir: &Path) -> Vec<u8> {
    let mut catalog = Catalog::open(dir, 2).unwrap();
    catalog.create_topic("a", 2, TopicConfig::default()).unwrap();
    catalog.create_topic("b", 1, TopicConfig::default()).unwrap();
    fs::read(dir.join(CATALOG_FILE_NAME)).unwrap()
}

fn assert_corrupt(dir: &Path, bytes: &[u8], what: &str) {
    fs::write(dir.join(CATALOG_FILE_NAME), bytes).unwrap();
    let result = Catalog::open(dir, 2);
    assert!(matches!(result, Err(CatalogError::Corrupt { .. })), "{what}: {result:?}");
}

#[test]
fn every_flipped_bit_and_truncation_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let good = populated_catalog(dir.path());
    for i in 0..good.len() {
        let mut bytes = good.clone();
        bytes[i] ^= 0x01;
        assert_corrupt(dir.path(), &bytes, &format!("flip at {i}"));
    }
    for len in 0..good.len() {
        assert_corrupt(dir.path(), &good[..len], &format!("truncated to {len}"));
    }
    fs::write(dir.path().join(CATALOG_FILE_NAME), &good).unwrap();
    assert_eq!(Catalog::open(dir.path(), 2).unwrap().topics().count(), 2);
}

#[test]
fn garbage_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    assert_corrupt(dir.path(), b"hello world", "text");
    assert_corrupt(dir.path(), &[0xff, 0x00, 0x13, 0x37, b'\n'], "binary");
    assert_corrupt(dir.path(), b"{}", "json without trailer");

    // A valid checksum over a body that breaks an invariant is still corrupt.
    let with_trailer = |body: &str| format!("{body}\ncrc32c={:08x}\n", crc32c::crc32c(body.as_bytes()));
    assert_corrupt(dir.path(), with_trailer("{}").as_bytes(), "empty object");
    assert_corrupt(dir.path(), with_trailer("not json").as_bytes(), "not json");
    fs::remove_file(dir.path().join(CATALOG_FILE_NAME)).unwrap();
    let good = String::from_utf8(populated_catalog(dir.path())).unwrap();
    let (body, _) = good.trim_end().rsplit_once('\n').unwrap();
    let versioned = body.replacen("\"version\": 1", "\"version\": 2", 1);
    assert_ne!(versioned, body);
    assert_corrupt(dir.path(), with_trailer(&versioned).as_bytes(), "future version");
    let renamed = body.replacen("\"name\": \"b\"", "\"name\": \"a\"", 1);
    assert_ne!(renamed, body);
    assert_corrupt(dir.path(), with_trailer(&renamed).as_bytes(), "duplicate name");
    let hostile = body.replacen("\"name\": \"b\"", "\"name\": \"../b\"", 1);
    assert_corrupt(dir.path(), with_trailer(&hostile).as_bytes(), "hostile name");
    // Sanity: the unmodified body with a recomputed trailer is accepted.
    fs::write(dir.path().join(CATALOG_FILE_NAME), with_trailer(body)).unwrap();
    assert_eq!(Catalog::open(dir.path(), 2).unwrap().topics().count(), 2);
}

#[test]
fn stale_tmp_is_removed_and_failed_persist_leaves_memory_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join(CATALOG_TMP_FILE_NAME);
    fs::write(&tmp, b"half-written").unwrap();
    let mut catalog = Catalog::open(dir.path(), 2).unwrap();
    assert!(!tmp.exists());
    catalog.create_topic("a", 1, TopicConfig::default()).unwrap();
    let before = all_topics(&catalog);

    // A directory in the tmp file's place makes every persist fail.
    fs::create_dir(&tmp).unwrap();
    let result = catalog.create_topic("b", 1, TopicConfig::default());
    assert!(matches!(result, Err(CatalogError::Io { .. })), "{result:?}");
    assert!(matches!(catalog.add_partitions("a", 2), Err(CatalogError::Io { .. })));
    assert!(matches!(catalog.delete_topic("a"), Err(CatalogError::Io { .. })));
    assert_eq!(all_topics(&catalog), before);

    fs::remove_dir(&tmp).unwrap();
    let b = catalog.create_topic("b", 1, TopicConfig::default()).unwrap();
    drop(catalog);
    let catalog = Catalog::open(dir.path(), 2).unwrap();
    assert_eq!(catalog.topic("b"), Some(&b));
    assert_eq!(catalog.topic("a").unwrap().partitions.len(), 1);
}

#[test]
fn durability_parse_display_round_trip() {
    let cases = [
        ("sync", Durability::Sync),
        ("none", Durability::None),
        ("interval:1", Durability::Interval { ms: 1 }),
        ("interval:250", Durability::Interval { ms: 250 }),
        ("interval:3600000", Durability::Interval { ms: 3_600_000 }),
    ];
    for (text, durability) in cases {
        assert_eq!(text.parse::<Durability>().unwrap(), durability);
        assert_eq!(durability.to_string(), text);
    }
    let bad = [
        "",
        "fast",
        "Sync",
        " sync",
        "interval",
        "interval:",
        "interval:0",
        "interval:x",
        "interval:+5",
        "interval:-5",
        "interval:3600001",
        "interval:99999999999",
    ];
    for text in bad {
        let error = text.parse::<Durability>().unwrap_err();
        assert!(error.contains("durability"), "{text:?}: {error}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create { name: usize, partitions: u32 },
    Add { name: usize, total: u32 },
    Delete { name: usize },
    Reopen { shard_count: u32 },
}

const NAMES: [&str; 4] = ["alpha", "beta", "gamma.1", "delta_2-x"];

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        3 => (name.clone(), 0..6u32).prop_map(|(name, partitions)| Op::Create { name, partitions }),
        2 => (name.clone(), 0..9u32).prop_map(|(name, total)| Op::Add { name, total }),
        2 => name.prop_map(|name| Op::Delete { name }),
        1 => (1..5u32).prop_map(|shard_count| Op::Reopen { shard_count }),
    ]
}

fn check_against_model(catalog: &Catalog, model: &BTreeMap<String, u32>) {
    let actual: BTreeMap<String, u32> = catalog.topics().map(|t| (t.name.clone(), t.partitions.len() as u32)).collect();
    assert_eq!(&actual, model);
    let mut ids = BTreeSet::new();
    for topic in catalog.topics() {
        assert!(ids.insert(topic.id));
        for (i, p) in topic.partitions.iter().enumerate() {
            assert_eq!(p.partition as usize, i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn catalog_matches_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(dir.path(), 2).unwrap();
        let mut model: BTreeMap<String, u32> = BTreeMap::new();
        let mut ids_seen = BTreeSet::new();
        for op in ops {
            match op {
                Op::Create { name, partitions } => {
                    let name = NAMES[name];
                    let result = catalog.create_topic(name, partitions, TopicConfig::default());
                    if model.contains_key(name) {
                        prop_assert!(
 matches!(result, Err(CatalogError::TopicExists { .. })),
 "{:?}",
 result
 );
                    } else if partitions == 0 {
                        prop_assert!(
 matches!(result, Err(CatalogError::InvalidPartitionCount { .. })),
 "{:?}",
 result
 );
                    } else {
                        let info = result.unwrap();
                        prop_assert!(ids_seen.insert(info.id), "id {} reused", info.id);
                        model.insert(name.to_owned(), partitions);
                    }
                }
                Op::Add { name, total } => {
                    let name = NAMES[name];
                    let result = catalog.add_partitions(name, total);
                    match model.get_mut(name) {
                        None => prop_assert!(
 matches!(result, Err(CatalogError::UnknownTopic { .. })),
 "{:?}",
 result
 ),
                        Some(current) if total <= *current => prop_assert!(
 matches!(result, Err(CatalogError::InvalidPartitionCount { .. })),
 "{:?}",
 result
 ),
                        Some(current) => {
                            prop_assert_eq!(result.unwrap().partitions.len(), total as usize);
                            *current = total;
                        }
                    }
                }
                Op::Delete { name } => {
                    let name = NAMES[name];
                    let result = catalog.delete_topic(name);
                    match model.remove(name) {
                        None => prop_assert!(
 matches!(result, Err(CatalogError::UnknownTopic { .. })),
 "{:?}",
 result
 ),
                        Some(count) => prop_assert_eq!(result.unwrap().partitions.len(), count as usize),
                    }
                }
                Op::Reopen { shard_count } => {
                    let before = all_topics(&catalog);
                    drop(catalog);
                    catalog = Catalog::open(dir.path(), shard_count).unwrap();
                    prop_assert_eq!(all_topics(&catalog), before);
                }
            }
            check_against_model(&catalog, &model);
        }
        drop(catalog);
        let catalog = Catalog::open(dir.path(), 3).unwrap();
        check_against_model(&catalog, &model);
    }
}
