//! Kafka topic ids: a topic's UUID is the catalog's (`TopicTable::topic_uuid`: the catalog's
//! random incarnation and the topic's never-reused id), so it changes when the topic is
//! deleted and re-created, and a client holding the old id gets UNKNOWN_TOPIC_ID.

use broker::topics::TopicTable;
use engine::catalog::TopicInfo;
use uuid::Uuid;

pub fn uuid_of(table: &TopicTable, info: &TopicInfo) -> Uuid {
    Uuid::from_bytes(table.topic_uuid(info))
}

/// The name of the topic `id` names now; `None` for the nil id or an unknown one.
pub fn name_of<'a>(table: &'a TopicTable, id: &Uuid) -> Option<&'a str> {
    if id.is_nil() {
        return None;
    }
    table.topic_by_uuid(id.as_bytes()).map(|info| info.name.as_str())
}
