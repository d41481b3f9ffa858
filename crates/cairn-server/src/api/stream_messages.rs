//! What event appends and stream reads ask and answer, as every front door and `Forward`
//! see them. Imports nothing that serves them.

use cairn_raft::{EventPosition, StreamChangeKind, StreamCheck, StreamWrite};
use cairn_storage::Direction;
use cairn_types::ExpectedRevision;
use cairn_types::stream::StreamMetadata;
use cairn_types::{EventQuery, Offset, PartitionId, QueryCondition, StoredRecord};

use crate::api::Consistency;

/// Events for streams of `topic`, written all or none. Every stream written or checked
/// must be in one partition (streams sharing a hash tag are, see
/// `cairn_types::partitioner`).
#[derive(Debug, Clone)]
pub struct AppendToStreamsRequest {
    pub topic: String,
    pub writes: Vec<StreamWrite>,
    pub checks: Vec<StreamCheck>,
    /// No event matching the query may be stored in the streams' partition after the
    /// condition's position (DCB).
    pub condition: Option<QueryCondition>,
}

/// Where the events went: their partition, and each event's offset and stream revision, in
/// the order of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsAppended {
    pub partition: PartitionId,
    pub positions: Vec<EventPosition>,
    pub timestamp_ms: u64,
    /// For read-your-writes reads (see `Consistency::ReadYourWrites`).
    pub applied_index: u64,
    /// A retry of an append stored before: the original positions, nothing written.
    pub duplicate: bool,
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFrom {
    /// The first event still stored (going forwards) or the last one (backwards).
    Start,
    /// This revision, inclusive.
    Revision(u64),
}

/// Events of one stream, from `from` in `direction`, at most `max_events` (0: the default,
/// never more than the node's record limit), only those stamped at or before `as_of_ms`
/// when it is set.
#[derive(Debug, Clone)]
pub struct ReadStreamRequest {
    pub topic: String,
    pub stream: String,
    pub from: StreamFrom,
    pub direction: Direction,
    pub max_events: u32,
    /// "As of": leader timestamps never decrease within a partition, so the events
    /// stamped at or before a time are exactly the stream as it stood then.
    pub as_of_ms: Option<u64>,
    pub consistency: Consistency,
}

/// A stream's events, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEventsRead {
    pub partition: PartitionId,
    /// Each a record whose key is the stream and whose `event` is set.
    pub events: Vec<StoredRecord>,
    /// The revision the next read in the same direction starts from; `None` when the read
    /// reached the end (or, backwards, the start) of the stream.
    pub next_revision: Option<u64>,
    /// The stream's first revision still stored; `None` when it has none.
    pub first_revision: Option<u64>,
}

/// A stream to delete (soft, or for good) or whose metadata to set, when it is at
/// `expected`.
#[derive(Debug, Clone)]
pub struct ChangeStreamRequest {
    pub topic: String,
    pub stream: String,
    pub expected: ExpectedRevision,
    pub change: StreamChangeKind,
}

/// A stream after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamChangedAnswer {
    pub partition: PartitionId,
    /// The revision of its last event; `None` when it never had one.
    pub current_revision: Option<u64>,
    /// What reads start from now.
    pub first_visible_revision: u64,
    pub applied_index: u64,
}

/// A stream's state, read at `consistency`.
#[derive(Debug, Clone)]
pub struct StreamInfoRequest {
    pub topic: String,
    pub stream: String,
    pub consistency: Consistency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub partition: PartitionId,
    /// The revision of its last event; `None` when it never had one.
    pub current_revision: Option<u64>,
    /// The first revision reads may show (deletion, truncate-before, max count; a max age
    /// hides more at read time).
    pub first_visible_revision: u64,
    /// Events below this revision were deleted.
    pub deleted_before: u64,
    pub tombstoned: bool,
    pub metadata: StreamMetadata,
}

/// Which partition a query reads: named, or the one a stream (or hash tag) maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionOf {
    Partition(PartitionId),
    Key(String),
}

/// The events of one partition that match `query`, after `after` (`None`: from the first
/// stored), forwards, at most `max_events` (0: the default, never more than the node's
/// record limit), only those stamped at or before `as_of_ms` when it is set.
#[derive(Debug, Clone)]
pub struct QueryEventsRequest {
    pub topic: String,
    pub partition: PartitionOf,
    pub query: EventQuery,
    pub after: Option<Offset>,
    pub max_events: u32,
    pub as_of_ms: Option<u64>,
    pub consistency: Consistency,
}

/// A query read's events and the position to pass back (see `cairn_storage::QueryEvents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEventsRead {
    pub partition: PartitionId,
    pub events: Vec<StoredRecord>,
    /// Every matching event up to this offset was returned (or precedes `after`): the
    /// next read's `after`, or an append condition's. `None`: nothing is stored yet.
    pub position: Option<Offset>,
    /// The read stopped at a limit: more may follow `position`.
    pub limited: bool,
}
