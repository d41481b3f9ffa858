//! The event store's vocabulary: streams, revisions, the condition an append puts on a
//! stream's revision, and the events an append carries.
//!
//! A stream is the set of events with one key in a topic (`account-42` in `bank`), so it
//! lives in one partition (see `partitioner.rs` for hash tags, which put related streams in
//! one partition). Its events have revisions 0, 1, 2, ...: dense, never reused.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Most bytes of a stream name.
pub const STREAM_NAME_BYTES_MAX: usize = 1024;
/// Most tags on one event, and most bytes of one tag.
pub const EVENT_TAGS_MAX: usize = 32;
pub const EVENT_TAG_BYTES_MAX: usize = 256;
/// Most bytes of an event type or content type.
pub const EVENT_TYPE_BYTES_MAX: usize = 256;

/// What an append expects a stream's revision (the revision of its last event) to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// No condition.
    Any,
    /// The stream has no event yet.
    NoStream,
    /// The stream has at least one event.
    Exists,
    /// The stream's last event has this revision.
    Exact(u64),
}

impl ExpectedRevision {
    /// Whether a stream whose last event has revision `current` (`None`: it never had
    /// one) and which has events left to read or not (`has_events`: deleted and truncated
    /// ones are not) meets this expectation. A deleted stream counts as no stream, and its
    /// revisions go on: `Exact` compares with its last event's revision.
    pub fn is_met_by(self, current: Option<u64>, has_events: bool) -> bool {
        match self {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => !has_events,
            ExpectedRevision::Exists => has_events,
            ExpectedRevision::Exact(revision) => current == Some(revision),
        }
    }
}

impl std::fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedRevision::Any => write!(f, "any"),
            ExpectedRevision::NoStream => write!(f, "no stream"),
            ExpectedRevision::Exists => write!(f, "an existing stream"),
            ExpectedRevision::Exact(revision) => write!(f, "revision {revision}"),
        }
    }
}

/// What a stream keeps, set through Raft (as KurrentDB's `$maxAge`, `$maxCount`, `$tb`):
/// events outside it are hidden from reads at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMetadata {
    /// Events older than this (by their timestamp, at the time of the read) are hidden.
    pub max_age_ms: Option<u64>,
    /// Only the last this many events are shown.
    pub max_count: Option<u64>,
    /// Events below this revision are hidden.
    pub truncate_before: Option<u64>,
}

/// An event as a client appends it; the partition's leader adds the stream revision, the
/// offset and the timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// A UUID. Appending an id already stored answers the original append.
    pub event_id: [u8; 16],
    pub event_type: String,
    pub content_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
    pub tags: Vec<String>,
}

impl NewEvent {
    /// Roughly the bytes it takes in a stored batch, for limits.
    pub fn size_bytes(&self) -> usize {
        16 + 8
            + self.event_type.len()
            + self.content_type.len()
            + self.data.len()
            + self.metadata.len()
            + self.tags.iter().map(|tag| 4 + tag.len()).sum::<usize>()
            + 32
    }
}

/// A stream whose revision did not meet what an append expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionViolation {
    pub stream: String,
    pub expected: ExpectedRevision,
    /// The revision of the stream's last event; `None` when it has none.
    pub actual: Option<u64>,
}

impl std::fmt::Display for RevisionViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.actual {
            Some(actual) => write!(f, "stream {:?} is at revision {actual}, expected {}", self.stream, self.expected),
            None => write!(f, "stream {:?} has no events, expected {}", self.stream, self.expected),
        }
    }
}

/// Formats an event id as a UUID (`8-4-4-4-12` hex digits).
pub fn format_event_id(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// Parses a UUID (hyphenated, simple, braced or URN form).
pub fn parse_event_id(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(text).ok().map(|id| id.into_bytes())
}

/// A new random (version 4) UUID, for an event whose client named no id.
pub fn new_event_id() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        use ExpectedRevision::*;
        assert!(Any.is_met_by(None, false) && Any.is_met_by(Some(3), true));
        assert!(NoStream.is_met_by(None, false) && !NoStream.is_met_by(Some(0), true));
        assert!(!Exists.is_met_by(None, false) && Exists.is_met_by(Some(0), true));
        assert!(Exact(3).is_met_by(Some(3), true) && !Exact(3).is_met_by(Some(4), true));
        assert!(!Exact(0).is_met_by(None, false));
        // A deleted stream: no stream, and its revisions go on.
        assert!(NoStream.is_met_by(Some(5), false) && !Exists.is_met_by(Some(5), false));
        assert!(Exact(5).is_met_by(Some(5), false));
    }

    #[test]
    fn event_ids_round_trip() {
        let id = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8];
        let text = format_event_id(&id);
        assert_eq!(text, "12345678-9abc-def0-0102-030405060708");
        assert_eq!(parse_event_id(&text), Some(id));
        assert_eq!(parse_event_id(&text.replace('-', "")), Some(id));
        assert_eq!(parse_event_id("12345678-9abc-def0-0102-03040506070"), None);
        assert_eq!(parse_event_id("g2345678-9abc-def0-0102-030405060708"), None);
        assert_ne!(new_event_id(), new_event_id());
    }
}
