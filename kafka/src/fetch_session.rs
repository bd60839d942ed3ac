//! Fetch sessions (KIP-227, Fetch v7+) and topic ids in Fetch (v13+), around `fetch.rs`.
//!
//! `open` runs before the fetch: it resolves topic ids to names (v13+), and for a fetch in a
//! session it turns the request into the full set of partitions to read — the session's,
//! updated with the partitions the request names (new ones, or new fetch offsets) and
//! without the forgotten ones. `close` runs after: it sets the session id and the topic ids
//! in the response, and for an incremental fetch keeps only the partitions with something
//! new for the client (records, an error, or a changed high watermark, last stable offset or
//! log start), remembering what it sent.
//!
//! Sessions live per shard (every shard is a Kafka broker), at most
//! `FETCH_SESSIONS_PER_SHARD_MAX`, each of at most `FETCH_SESSION_PARTITIONS_MAX` partitions;
//! past the first bound the least recently used session is evicted, and its client, told
//! FETCH_SESSION_ID_NOT_FOUND, starts a new one with a full fetch — as Kafka does.
//!
//! Session epochs: 0 with session id 0 asks for a new session (full fetch); -1 (FINAL) ends
//! the session named and fetches without one; n > 0 is the n-th incremental fetch, and must
//! be the session's next epoch (INVALID_FETCH_SESSION_EPOCH otherwise); epochs wrap from
//! i32::MAX to 1.

use std::cell::RefCell;
use std::collections::HashMap;

use broker::limits::{FETCH_SESSIONS_PER_SHARD_MAX, FETCH_SESSION_PARTITIONS_MAX};
use broker::topics::TopicTable;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use crate::{codes, str_bytes, topic_ids};

/// The first Fetch version with sessions, and with topic ids.
const SESSIONS_VERSION_MIN: i16 = 7;
const TOPIC_IDS_VERSION_MIN: i16 = 13;
/// Session epochs with a meaning of their own.
const EPOCH_INITIAL: i32 = 0;
const EPOCH_FINAL: i32 = -1;

/// What a partition of a session last told the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Sent {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug, Clone)]
struct SessionPartition {
    request: FetchPartition,
    sent: Option<Sent>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental fetch must carry.
    next_epoch: i32,
    /// By (topic, partition), in the order they joined (responses keep it).
    partitions: Vec<((String, i32), SessionPartition)>,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Sessions {
    sessions: HashMap<i32, Session>,
    last_id: i32,
    clock: u64,
}

thread_local! {
    /// This shard's sessions (each shard is one executor thread, and one Kafka broker).
    static SESSIONS: RefCell<Sessions> = RefCell::new(Sessions::default());
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl Sessions {
    fn new_session(&mut self, partitions: Vec<((String, i32), SessionPartition)>) -> i32 {
        if self.sessions.len() >= FETCH_SESSIONS_PER_SHARD_MAX {
            if let Some((&oldest, _)) = self.sessions.iter().min_by_key(|(_, s)| s.last_used) {
                self.sessions.remove(&oldest);
            }
        }
        // Ids are positive, never 0 (no session), and not in use.
        let mut id = self.last_id;
        loop {
            id = if id == i32::MAX { 1 } else { id + 1 };
            if !self.sessions.contains_key(&id) {
                break;
            }
        }
        self.last_id = id;
        self.clock += 1;
        self.sessions.insert(id, Session { next_epoch: 1, partitions, last_used: self.clock });
        assert!(self.sessions.len() <= FETCH_SESSIONS_PER_SHARD_MAX);
        id
    }
}

/// What `open` decided, for `close`.
#[derive(Debug)]
pub struct Opened {
    version: i16,
    /// The session this fetch is in (0: none).
    session_id: i32,
    incremental: bool,
    /// The topic ids the request named, in its order (v13+; the response keeps the order of
    /// a full fetch): an id that names no topic is answered UNKNOWN_TOPIC_ID with that id.
    request_ids: Vec<uuid::Uuid>,
}

/// Prepares `request` for `fetch.rs` (see the module doc); `Err` is the whole answer.
pub fn open(table: &TopicTable, version: i16, request: &mut FetchRequest) -> Result<Opened, FetchResponse> {
    let mut request_ids = Vec::new();
    if version >= TOPIC_IDS_VERSION_MIN {
        for topic in request.topics.iter_mut() {
            resolve(table, &mut topic.topic, &topic.topic_id);
            request_ids.push(topic.topic_id);
        }
        for forgotten in request.forgotten_topics_data.iter_mut() {
            resolve(table, &mut forgotten.topic, &forgotten.topic_id);
        }
    }
    let mut opened = Opened { version, session_id: 0, incremental: false, request_ids };
    if version < SESSIONS_VERSION_MIN {
        return Ok(opened);
    }
    let error = |code: i16| FetchResponse::default().with_error_code(code).with_session_id(0);
    let (id, epoch) = (request.session_id, request.session_epoch);
    SESSIONS.with(|cell| {
        let mut sessions = cell.borrow_mut();
        if id != 0 && (epoch == EPOCH_INITIAL || epoch == EPOCH_FINAL) {
            // The client closes its session (and maybe starts another).
            sessions.sessions.remove(&id);
        }
        if epoch == EPOCH_FINAL {
            return Ok(opened);
        }
        if epoch == EPOCH_INITIAL {
            let partitions = session_partitions(&request.topics);
            if partitions.len() <= FETCH_SESSION_PARTITIONS_MAX && !partitions.is_empty() {
                opened.session_id = sessions.new_session(partitions);
            }
            return Ok(opened);
        }
        sessions.clock += 1;
        let clock = sessions.clock;
        let Some(session) = sessions.sessions.get_mut(&id) else {
            return Err(error(codes::FETCH_SESSION_ID_NOT_FOUND));
        };
        if epoch != session.next_epoch {
            return Err(error(codes::INVALID_FETCH_SESSION_EPOCH));
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = clock;
        // Forgotten partitions leave; named ones join or get their new position.
        for forgotten in &request.forgotten_topics_data {
            let name = forgotten.topic.0.as_str();
            session.partitions.retain(|((t, p), _)| !(t == name && forgotten.partitions.contains(p)));
        }
        for (key, update) in session_partitions(&request.topics) {
            match session.partitions.iter().position(|(k, _)| *k == key) {
                Some(at) => session.partitions[at].1.request = update.request,
                None if session.partitions.len() < FETCH_SESSION_PARTITIONS_MAX => {
                    session.partitions.push((key, update))
                }
                None => return Err(error(codes::INVALID_REQUEST)),
            }
        }
        // Read every partition of the session, in the session's order.
        let mut topics: Vec<FetchTopic> = Vec::new();
        for ((topic, _), p) in &session.partitions {
            match topics.last_mut() {
                Some(last) if last.topic.0.as_str() == topic => last.partitions.push(p.request.clone()),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(str_bytes(topic.clone())))
                        .with_partitions(vec![p.request.clone()]),
                ),
            }
        }
        request.topics = topics;
        opened.session_id = id;
        opened.incremental = true;
        Ok(opened)
    })
}

fn resolve(table: &TopicTable, name: &mut TopicName, id: &uuid::Uuid) {
    // An id that names nothing gets an empty name, which reads as an unknown topic.
    *name = TopicName(str_bytes(topic_ids::name_of(table, id).unwrap_or("")));
}

fn session_partitions(topics: &[FetchTopic]) -> Vec<((String, i32), SessionPartition)> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                ((t.topic.0.to_string(), p.partition), SessionPartition { request: p.clone(), sent: None })
            })
        })
        .collect()
}

/// Finishes `response` for the client (see the module doc).
pub fn close(table: &TopicTable, opened: Opened, mut response: FetchResponse) -> FetchResponse {
    if opened.version >= TOPIC_IDS_VERSION_MIN {
        for (index, topic) in response.responses.iter_mut().enumerate() {
            match table.topics.get(topic.topic.0.as_str()) {
                Some(info) => topic.topic_id = topic_ids::uuid_of(table, info),
                None => {
                    if !opened.incremental {
                        topic.topic_id = opened.request_ids.get(index).copied().unwrap_or_default();
                    }
                    for p in topic.partitions.iter_mut() {
                        p.error_code = codes::UNKNOWN_TOPIC_ID;
                    }
                }
            }
        }
    }
    response.session_id = opened.session_id;
    if opened.session_id == 0 {
        return response;
    }
    SESSIONS.with(|cell| {
        let mut sessions = cell.borrow_mut();
        let Some(session) = sessions.sessions.get_mut(&opened.session_id) else {
            return;
        };
        for topic in response.responses.iter_mut() {
            let name = topic.topic.0.to_string();
            topic.partitions.retain(|p| {
                let now = Sent {
                    high_watermark: p.high_watermark,
                    last_stable_offset: p.last_stable_offset,
                    log_start_offset: p.log_start_offset,
                };
                let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                let Some((_, entry)) =
                    session.partitions.iter_mut().find(|((t, i), _)| *t == name && *i == p.partition_index)
                else {
                    return true;
                };
                let changed = entry.sent.as_ref() != Some(&now);
                entry.sent = Some(now);
                !opened.incremental || has_records || p.error_code != codes::NONE || changed
            });
        }
        response.responses.retain(|t| !t.partitions.is_empty());
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_wrap_to_1_and_ids_are_never_0() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
        let mut sessions = Sessions { last_id: i32::MAX - 1, ..Sessions::default() };
        assert_eq!(sessions.new_session(Vec::new()), i32::MAX);
        assert_eq!(sessions.new_session(Vec::new()), 1);
    }

    #[test]
    fn the_least_recently_used_session_is_evicted_at_the_bound() {
        let mut sessions = Sessions::default();
        let first = sessions.new_session(Vec::new());
        for _ in 1..FETCH_SESSIONS_PER_SHARD_MAX {
            sessions.new_session(Vec::new());
        }
        assert!(sessions.sessions.contains_key(&first));
        sessions.new_session(Vec::new());
        assert_eq!(sessions.sessions.len(), FETCH_SESSIONS_PER_SHARD_MAX);
        assert!(!sessions.sessions.contains_key(&first));
    }
}
