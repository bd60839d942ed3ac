//! Kafka's consumer protocol: the member metadata (ConsumerProtocolSubscription) and the
//! assignment (ConsumerProtocolAssignment) Kafka consumers put in JoinGroup and SyncGroup.
//! The broker only relays them; it reads them to list a group's subscriptions (OffsetDelete)
//! and each member's partitions (`shardlog group describe`). Every version (0–3) starts with
//! the fields read here: `i16 version`, then for a subscription an array of topic names, for
//! an assignment an array of (topic, [i32 partition]). Both are untrusted: every read is
//! checked, and a malformed one reads as `None`.

/// Most topics or partitions read from one of them (a count beyond the bytes left is refused
/// before anything is allocated anyway).
const ITEMS_MAX: usize = 100_000;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// An array count, checked against the bytes left (each item takes at least `item_bytes`).
    fn count(&mut self, item_bytes: usize) -> Option<usize> {
        let count = usize::try_from(self.i32()?).ok()?;
        (count <= ITEMS_MAX && count.saturating_mul(item_bytes) <= self.bytes.len()).then_some(count)
    }
}

/// The topics of a ConsumerProtocolSubscription.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader { bytes: metadata };
    r.i16()?;
    let count = r.count(2)?;
    (0..count).map(|_| r.string()).collect()
}

/// The (topic, partitions) of a ConsumerProtocolAssignment; empty for an empty assignment
/// (a member that got nothing, or whose assignment is not yet known).
pub fn assignment_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader { bytes: assignment };
    r.i16()?;
    let topics = r.count(6)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = r.string()?;
        let partitions = r.count(4)?;
        let partitions = (0..partitions).map(|_| r.i32()).collect::<Option<Vec<i32>>>()?;
        out.push((topic, partitions));
    }
    Some(out)
}

/// A ConsumerProtocolAssignment (version 0, no user data) of `partitions`: how a KIP-848
/// member's partitions are shown to tools that read classic DescribeGroups. Names longer than
/// an i16 length cannot occur (topic names are at most 249 bytes).
pub fn encode_assignment(partitions: &std::collections::BTreeSet<crate::partition::TopicPartition>) -> bytes::Bytes {
    let mut by_topic: Vec<(&str, Vec<u32>)> = Vec::new();
    for tp in partitions {
        match by_topic.last_mut() {
            Some((topic, list)) if *topic == tp.topic => list.push(tp.partition),
            _ => by_topic.push((tp.topic.as_str(), vec![tp.partition])),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(by_topic.len() as i32).to_be_bytes());
    for (topic, list) in by_topic {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&(list.len() as i32).to_be_bytes());
        for p in list {
            out.extend_from_slice(&(p as i32).to_be_bytes());
        }
    }
    // Null user data.
    out.extend_from_slice(&(-1i32).to_be_bytes());
    bytes::Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn reads_subscriptions_and_assignments_and_refuses_garbage() {
        let mut sub = vec![0, 1];
        sub.extend_from_slice(&2i32.to_be_bytes());
        string(&mut sub, "a");
        string(&mut sub, "bb");
        sub.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(subscription_topics(&sub), Some(vec!["a".to_owned(), "bb".to_owned()]));
        let mut assignment = vec![0, 0];
        assignment.extend_from_slice(&1i32.to_be_bytes());
        string(&mut assignment, "a");
        assignment.extend_from_slice(&2i32.to_be_bytes());
        assignment.extend_from_slice(&0i32.to_be_bytes());
        assignment.extend_from_slice(&3i32.to_be_bytes());
        assert_eq!(assignment_partitions(&assignment), Some(vec![("a".to_owned(), vec![0, 3])]));
        assert_eq!(assignment_partitions(&[]), Some(Vec::new()));
        for len in 1..assignment.len() {
            assert!(assignment_partitions(&assignment[..len]).is_none(), "prefix of {len}");
        }
        assert!(subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_none(), "a count past the end");
        let set =
            [("a", 0), ("a", 3), ("b", 1)].iter().map(|&(t, p)| crate::partition::TopicPartition::new(t, p)).collect();
        assert_eq!(
            assignment_partitions(&encode_assignment(&set)),
            Some(vec![("a".to_owned(), vec![0, 3]), ("b".to_owned(), vec![1])])
        );
    }
}
