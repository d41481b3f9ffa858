//! What an event append asks of a partition's state machine (`EventAppend`) and what
//! applying it answers (`EventsAppended`, or why nothing was written). Every condition is
//! checked when the entry is applied, on every replica alike, so two appends that expect
//! the same revision of a stream (or that both require no new event matching a query) can
//! never both succeed.

use cairn_types::stream::StreamMetadata;
use cairn_types::{ConditionViolations, ExpectedRevision, NewEvent, Offset, QueryCondition};
use serde::{Deserialize, Serialize};

/// Events for one or more streams of one partition, written all or none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventAppend {
    /// Each stream at most once.
    pub writes: Vec<StreamWrite>,
    /// Streams not written whose revision must still be as expected.
    pub checks: Vec<StreamCheck>,
    /// No event matching this query may be stored after its position (DCB).
    pub condition: Option<QueryCondition>,
    /// The leader's clock when it proposed the append (see `PartitionCommand::Append`).
    pub timestamp_ms: u64,
}

impl EventAppend {
    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|write| write.events.len()).sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamWrite {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamCheck {
    pub stream: String,
    pub expected: ExpectedRevision,
}

/// A change to one stream that appends nothing: a deletion or new metadata, when the
/// stream is at the expected revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamChange {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub change: StreamChangeKind,
    /// The leader's clock when it proposed the change (the control record's timestamp).
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum StreamChangeKind {
    /// Hide every event so far; appends may resume at the next revision.
    SoftDelete,
    /// Hide every event so far and refuse every later append, for good.
    Tombstone,
    SetMetadata(StreamMetadata),
}

/// A stream after a change: its last event's revision, and what reads start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChanged {
    pub current_revision: Option<u64>,
    pub first_visible_revision: u64,
    pub applied_index: u64,
}

/// Where an appended event is: one per event, in the order the append listed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPosition {
    pub offset: Offset,
    pub stream_revision: u64,
}

/// An applied event append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsAppended {
    pub positions: Vec<EventPosition>,
    pub timestamp_ms: u64,
    /// The Raft log index that applied the entry.
    pub applied_index: u64,
    /// Every event id was already stored, with the same content: these are the original
    /// positions, and nothing was written.
    pub duplicate: bool,
}

/// Why an event append was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventAppendRefusal {
    /// Every stream whose revision was not as expected, and the query condition's first
    /// match when it failed.
    ConditionsFailed(ConditionViolations),
    /// An event id is stored already, but the append is not a retry of the one that stored
    /// it: the content differs, or only part of the append is stored.
    EventIdReused { event_id: [u8; 16], stored_at: Offset, reason: EventIdReuse },
    /// The append lists one event id twice.
    EventIdRepeated { event_id: [u8; 16] },
    /// Streams that were deleted for good (tombstoned): never written again.
    StreamsTombstoned(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventIdReuse {
    /// The stored event has another stream, type, data, metadata, content type or tags.
    OtherContent,
    /// Other events of the append are not stored: it is not the append that stored it.
    PartOfAnotherAppend,
}
