use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Offset;

/// A record as a producer sends it: the partition leader assigns offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    pub value: Bytes,
}

impl Record {
    /// Bytes this record occupies in a stored batch (see `batch.rs`), without event fields.
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        8 + 1 + 4 + self.key.as_ref().map_or(0, |k| k.len()) + 4 + headers + 4 + self.value.len()
    }
}

/// What makes a record an event of a stream (batch format v2). The stream is the record's
/// key and the event's data its value; these are the rest. Stored in the record itself so
/// that every index (stream revisions, event ids, tags) can be rebuilt from records alone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventFields {
    /// A UUID: the client's, or one its library generated. Appending an id already stored
    /// answers the original append.
    pub event_id: [u8; 16],
    /// The event's position in its stream: 0, 1, 2, ..., dense, never reused.
    pub stream_revision: u64,
    pub event_type: String,
    pub content_type: String,
    pub metadata: Bytes,
    /// Labels for conditions and queries (`key=value` by convention).
    pub tags: Vec<String>,
}

impl EventFields {
    /// Bytes these fields add to a stored record (see `batch.rs`).
    pub fn encoded_len(&self) -> usize {
        16 + 8
            + 4
            + self.event_type.len()
            + 4
            + self.content_type.len()
            + 4
            + self.metadata.len()
            + 4
            + self.tags.iter().map(|tag| 4 + tag.len()).sum::<usize>()
    }
}

/// A record as stored in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: Offset,
    pub timestamp_ms: u64,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    pub value: Bytes,
    /// Set when the record is an event of the stream named by its key.
    pub event: Option<EventFields>,
}
