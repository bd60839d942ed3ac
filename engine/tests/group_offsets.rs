//! Committed consumer-group offsets survive restarts and compaction.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use engine::group_offsets::{GroupOffsets, GroupOffsetsError, OffsetCommit};

fn commit(topic: &str, partition: u32, offset: u64) -> OffsetCommit {
    OffsetCommit { topic: topic.into(), partition, offset, metadata: format!("m{offset}"), leader_epoch: None }
}

#[test]
fn commits_survive_reopen_and_compaction() {
    let dir = temp_dir();
    let data = dir.path().to_path_buf();
    run(move || async move {
        let offsets = GroupOffsets::open(&data).await.unwrap();
        assert_eq!(offsets.fetch("g", "users", 0), None);
        offsets.commit("g", &[commit("users", 0, 5), commit("users", 1, 7)], 1000).await.unwrap();
        offsets.commit("g", &[commit("users", 0, 9)], 2000).await.unwrap();
        offsets.commit("h", &[commit("users", 0, 1)], 3000).await.unwrap();
        offsets.commit("g", &[commit("orders", 3, 42)], 4000).await.unwrap();
        let got = offsets.fetch("g", "users", 0).unwrap();
        assert_eq!((got.offset, got.metadata.as_str(), got.commit_timestamp_ms), (9, "m9", 2000));
        offsets.close().await.unwrap();

        let offsets = GroupOffsets::open(&data).await.unwrap();
        assert_eq!(offsets.fetch("g", "users", 0).unwrap().offset, 9);
        assert_eq!(offsets.fetch("g", "users", 1).unwrap().offset, 7);
        assert_eq!(offsets.fetch("h", "users", 0).unwrap().offset, 1);
        let group: Vec<_> = offsets.fetch_group("g").into_iter().map(|(t, p, c)| (t, p, c.offset)).collect();
        assert_eq!(group, vec![("orders".into(), 3, 42), ("users".into(), 0, 9), ("users".into(), 1, 7)]);

        offsets.delete_topic("orders", 5000).await.unwrap();
        assert_eq!(offsets.fetch("g", "orders", 3), None);

        // Many commits, then compaction keeps exactly the latest values in a smaller log.
        for i in 0..200u64 {
            offsets.commit("g", &[commit("users", (i % 4) as u32, 100 + i)], 6000).await.unwrap();
        }
        let before = offsets.log_size_bytes();
        offsets.compact().await.unwrap();
        assert!(offsets.log_size_bytes() < before);
        for p in 0..4u32 {
            assert_eq!(offsets.fetch("g", "users", p).unwrap().offset, 100 + 196 + u64::from(p));
        }
        offsets.close().await.unwrap();
        let offsets = GroupOffsets::open(&data).await.unwrap();
        for p in 0..4u32 {
            assert_eq!(offsets.fetch("g", "users", p).unwrap().offset, 100 + 196 + u64::from(p));
        }
        assert_eq!(offsets.fetch("g", "orders", 3), None);
        assert_eq!(offsets.fetch("h", "users", 0).unwrap().offset, 1);
        offsets.close().await.unwrap();
    });
}

#[test]
fn bad_commits_are_clear_errors() {
    let dir = temp_dir();
    let data = dir.path().to_path_buf();
    run(move || async move {
        let offsets = GroupOffsets::open(&data).await.unwrap();
        let err = offsets.commit("", &[commit("users", 0, 1)], 0).await.unwrap_err();
        assert!(matches!(err, GroupOffsetsError::InvalidGroup { .. }), "{err}");
        let err = offsets.commit("g", &[commit("../x", 0, 1)], 0).await.unwrap_err();
        assert!(matches!(err, GroupOffsetsError::InvalidTopic(_)), "{err}");
        let mut big = commit("users", 0, 1);
        big.metadata = "x".repeat(5000);
        let err = offsets.commit("g", &[big], 0).await.unwrap_err();
        assert!(matches!(err, GroupOffsetsError::MetadataTooLarge { .. }), "{err}");
        assert_eq!(offsets.fetch_group("g"), vec![]);
        offsets.close().await.unwrap();
    });
}
