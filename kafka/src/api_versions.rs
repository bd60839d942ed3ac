//! ApiVersions: the APIs and versions this broker serves. A client picks, per API, the
//! highest version both sides support.
//!
//! Exactly what is served: every version in a range decodes and is answered. The ranges stop
//! below what is not implemented: Produce 10+ (KIP-890 transactions), OffsetCommit 10+ and
//! OffsetFetch 10+ (topic ids; the codec stops at 9 anyway), DescribeGroups 6, JoinGroup 8+,
//! Fetch 17 (KIP-853 replica directories), Metadata 13. The KIP-848 consumer protocol is
//! served: ConsumerGroupHeartbeat 0–1, ConsumerGroupDescribe 0–1, OffsetCommit 9 and
//! OffsetFetch 9 with member epochs.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::codes;

/// (API, lowest version, highest version).
pub const SUPPORTED: [(ApiKey, i16, i16); 33] = [
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// Produce is advertised from v0 though only v3+ is served, as Kafka 4 does (KAFKA-18659):
/// librdkafka (before 2.8) compresses with gzip, snappy or lz4 only if the broker lists
/// Produce v0, and otherwise silently sends uncompressed batches. No client picks v0–2 when
/// v9 is offered; one that sends them anyway has its connection closed.
const PRODUCE_ADVERTISED_MIN: i16 = 0;

pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|&(key, min, max)| key == api_key && (min..=max).contains(&version))
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            // Never serve a version the codec cannot decode.
            let codec = key.valid_versions();
            assert!(codec.min <= min && max <= codec.max, "{key:?} {min}..={max} outside the codec's {codec}");
            let min = if key == ApiKey::Produce { PRODUCE_ADVERTISED_MIN } else { min };
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect()
}

pub fn response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(codes::NONE).with_api_keys(api_keys())
}

/// Kafka's answer to an ApiVersions request of a version it does not know: error 35 and the
/// supported ranges, encoded as v0 (which every client can read).
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(codes::UNSUPPORTED_VERSION).with_api_keys(api_keys())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_the_codec() {
        assert_eq!(api_keys().len(), SUPPORTED.len());
        assert!(is_supported(ApiKey::ApiVersions, 3));
        assert!(!is_supported(ApiKey::ApiVersions, 4));
        assert!(!is_supported(ApiKey::Fetch, 17));
        assert!(is_supported(ApiKey::DescribeGroups, 0));
        assert!(is_supported(ApiKey::ConsumerGroupHeartbeat, 0));
        assert!(is_supported(ApiKey::ConsumerGroupHeartbeat, 1));
        assert!(is_supported(ApiKey::ConsumerGroupDescribe, 0));
        assert!(is_supported(ApiKey::OffsetCommit, 9));
        assert!(is_supported(ApiKey::OffsetFetch, 9));
        assert!(!is_supported(ApiKey::Produce, 2), "advertised from 0 for librdkafka, served from 3");
    }
}
