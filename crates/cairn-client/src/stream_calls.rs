//! The event store's calls: appends to streams with expected revisions (retried safely:
//! every event carries an id, so a retry is answered with the original positions), with
//! query conditions (DCB), stream reads and query reads.

use bytes::Bytes;
use cairn_proto::Message as _;
use cairn_types::stream::{StreamMetadata, format_event_id, new_event_id};
use cairn_types::{
    ConditionViolations, EventFields, EventQuery, ExpectedRevision, NewEvent, Offset, PartitionId, QueryCondition,
    StoredRecord,
};

use crate::{CairnClient, ClientError, Consistency, proto};

/// An event to append (`json_event` makes one with a fresh id). Its id makes a retry of
/// the append safe: send the same value again.
pub type EventData = NewEvent;

/// A new event of `event_type` with JSON `data` and a fresh id.
pub fn json_event(event_type: &str, data: impl Into<Bytes>) -> EventData {
    NewEvent {
        event_id: new_event_id(),
        event_type: event_type.to_owned(),
        content_type: "application/json".to_owned(),
        data: data.into(),
        metadata: Bytes::new(),
        tags: Vec::new(),
    }
}

/// Events for one stream of an append, with what its revision must be.
#[derive(Debug, Clone)]
pub struct StreamWrite {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub events: Vec<EventData>,
}

/// Where an append's events went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedEvents {
    pub partition: PartitionId,
    /// Each event's offset and stream revision, in the order appended.
    pub positions: Vec<(Offset, u64)>,
    pub timestamp_ms: u64,
    /// For `Consistency::ReadYourWrites` reads of `partition`.
    pub applied_index: u64,
    /// The append had been stored already (a retry): the original positions.
    pub duplicate: bool,
}

impl AppendedEvents {
    /// The revision of the last event appended (the stream's revision after a one-stream
    /// append).
    pub fn last_revision(&self) -> Option<u64> {
        self.positions.last().map(|(_, revision)| *revision)
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub stream: String,
    pub stream_revision: u64,
    pub offset: Offset,
    /// The partition leader's clock when it was appended.
    pub timestamp_ms: u64,
    pub event_id: [u8; 16],
    pub event_type: String,
    pub content_type: String,
    pub data: Bytes,
    pub metadata: Bytes,
    pub tags: Vec<String>,
}

impl RecordedEvent {
    /// The event id as a UUID string.
    pub fn event_id_string(&self) -> String {
        format_event_id(&self.event_id)
    }

    fn from_record(record: StoredRecord) -> Option<RecordedEvent> {
        let EventFields { event_id, stream_revision, event_type, content_type, metadata, tags } = record.event?;
        Some(RecordedEvent {
            stream: String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned(),
            stream_revision,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            event_id,
            event_type,
            content_type,
            data: record.value,
            metadata,
            tags,
        })
    }
}

/// A stream after a deletion or a metadata change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamChanged {
    pub partition: PartitionId,
    /// The revision of its last event; `None` when it never had one.
    pub current_revision: Option<u64>,
    /// What reads start from now.
    pub first_visible_revision: u64,
    /// For `Consistency::ReadYourWrites` reads of `partition`.
    pub applied_index: u64,
}

impl From<proto::StreamChangedResponse> for StreamChanged {
    fn from(response: proto::StreamChangedResponse) -> StreamChanged {
        StreamChanged {
            partition: response.partition,
            current_revision: response.current_revision,
            first_visible_revision: response.first_visible_revision,
            applied_index: response.applied_index,
        }
    }
}

/// Where a stream read starts, which way it goes, how much it returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadStreamOptions {
    /// Inclusive; `None`: the first event stored (forwards) or the last (backwards).
    pub from_revision: Option<u64>,
    pub backwards: bool,
    /// 0: the server's default.
    pub max_events: u32,
    /// Only events stamped at or before this time (ms since the Unix epoch): the stream
    /// exactly as it stood then.
    pub as_of_ms: Option<u64>,
    pub consistency: Consistency,
}

/// Which partition a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryPartition {
    Partition(PartitionId),
    /// The partition of this stream, or of streams with this hash tag (`{order-17}`).
    OfKey(String),
}

/// Where a query read starts and how much it returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOptions {
    /// Exclusive: a position an earlier read answered. `None`: from the first event stored.
    pub after: Option<Offset>,
    /// 0: the server's default.
    pub max_events: u32,
    /// Only events stamped at or before this time (ms since the Unix epoch).
    pub as_of_ms: Option<u64>,
    pub consistency: Consistency,
}

/// A query read's events, in offset order, and how far it looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    pub partition: PartitionId,
    pub events: Vec<RecordedEvent>,
    /// Every matching event up to this offset was returned (or precedes `after`): the
    /// next read's `after`, or an append condition's. `None`: nothing is stored yet.
    pub position: Option<Offset>,
    /// The read stopped at a limit: more may follow `position`.
    pub limited: bool,
}

/// A stream's events, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSlice {
    pub events: Vec<RecordedEvent>,
    /// Where the next read in the same direction starts; `None` at the end of the stream.
    pub next_revision: Option<u64>,
    /// The stream's first revision still stored.
    pub first_revision: Option<u64>,
}

impl CairnClient {
    /// Appends `events` to `stream` of `topic` when its revision is as `expected`.
    /// Refused with `ClientError::ConditionFailed` (nothing written) otherwise.
    pub async fn append_to_stream(
        &self,
        topic: &str,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendedEvents, ClientError> {
        let write = StreamWrite { stream: stream.to_owned(), expected, events };
        self.append_to_streams(topic, vec![write], Vec::new()).await
    }

    /// Appends to several streams of one partition of `topic` at once, all or none, when
    /// every written stream and every one in `checks` is at its expected revision
    /// (violations: `ClientError::ConditionFailed`, listing all of them). Retried
    /// while the cluster answers `UNAVAILABLE`: the events' ids make a retry safe.
    pub async fn append_to_streams(
        &self,
        topic: &str,
        writes: Vec<StreamWrite>,
        checks: Vec<(String, ExpectedRevision)>,
    ) -> Result<AppendedEvents, ClientError> {
        self.append_to_streams_if(topic, writes, checks, None).await
    }

    /// `append_to_streams` with a query condition too (Dynamic Consistency Boundaries):
    /// refused (`ClientError::ConditionFailed`, its `query` naming the first match) when an
    /// event matching `condition.query` is stored in the streams' partition after
    /// `condition.after`. Pass the `position` of the `query_events` read the decision was
    /// made on: the append then succeeds only if nothing that read would have returned has
    /// been appended since.
    pub async fn append_to_streams_if(
        &self,
        topic: &str,
        writes: Vec<StreamWrite>,
        checks: Vec<(String, ExpectedRevision)>,
        condition: Option<QueryCondition>,
    ) -> Result<AppendedEvents, ClientError> {
        let event_count: usize = writes.iter().map(|write| write.events.len()).sum();
        let request = proto::AppendToStreamsRequest {
            topic: topic.to_owned(),
            writes: writes
                .into_iter()
                .map(|write| proto::StreamWrite {
                    stream: write.stream,
                    expected: Some(write.expected.into()),
                    events: write.events.into_iter().map(proto::Event::from).collect(),
                })
                .collect(),
            checks: checks
                .into_iter()
                .map(|(stream, expected)| proto::StreamCheck { stream, expected: Some(expected.into()) })
                .collect(),
            condition: condition.map(proto::QueryCondition::from),
        };
        let outcome = self
            .call_idempotent(request, |mut client, request| async move { client.append_to_streams(request).await })
            .await;
        let response = outcome.result.map_err(from_stream_append_status)?;
        if response.positions.len() != event_count {
            return Err(ClientError::InvalidResponse(format!(
                "append of {event_count} events returned {} positions",
                response.positions.len()
            )));
        }
        Ok(AppendedEvents {
            partition: response.partition,
            positions: response.positions.iter().map(|p| (p.offset, p.stream_revision)).collect(),
            timestamp_ms: response.timestamp_ms,
            applied_index: response.applied_index,
            duplicate: response.duplicate,
        })
    }

    /// Reads events of `stream` of `topic` (see `ReadStreamOptions`).
    pub async fn read_stream(
        &self,
        topic: &str,
        stream: &str,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice, ClientError> {
        let (consistency, min_applied_index) = options.consistency.to_proto();
        let request = proto::ReadStreamRequest {
            topic: topic.to_owned(),
            stream: stream.to_owned(),
            from_revision: options.from_revision,
            backwards: options.backwards,
            max_events: options.max_events,
            as_of_ms: options.as_of_ms,
            consistency,
            min_applied_index,
        };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.read_stream(request).await })
            .await
            .result?;
        let events = events_of(response.events)?;
        Ok(StreamSlice { events, next_revision: response.next_revision, first_revision: response.first_revision })
    }

    /// Reads the events of one partition of `topic` that match `query`, after
    /// `options.after`, forwards (see `QueryOptions`). The result's `position` is the
    /// next read's `after`, and the `after` of an append's query condition.
    pub async fn query_events(
        &self,
        topic: &str,
        partition: QueryPartition,
        query: EventQuery,
        options: QueryOptions,
    ) -> Result<QueryResult, ClientError> {
        use proto::query_events_request::PartitionOf;
        let (consistency, min_applied_index) = options.consistency.to_proto();
        let request = proto::QueryEventsRequest {
            topic: topic.to_owned(),
            partition_of: Some(match partition {
                QueryPartition::Partition(partition) => PartitionOf::Partition(partition),
                QueryPartition::OfKey(key) => PartitionOf::Key(key),
            }),
            query: Some(query.into()),
            after: options.after,
            max_events: options.max_events,
            as_of_ms: options.as_of_ms,
            consistency,
            min_applied_index,
        };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.query_events(request).await })
            .await
            .result?;
        let events = events_of(response.events)?;
        Ok(QueryResult {
            partition: response.partition,
            events,
            position: response.position,
            limited: response.limited,
        })
    }

    /// Every event of one partition that matches `query` after `after`, read in pages;
    /// and the position to pass to an append's query condition.
    pub async fn query_all_events(
        &self,
        topic: &str,
        partition: QueryPartition,
        query: EventQuery,
        after: Option<Offset>,
        consistency: Consistency,
    ) -> Result<QueryResult, ClientError> {
        let mut options = QueryOptions { after, consistency, ..QueryOptions::default() };
        let mut whole = QueryResult { partition: 0, events: Vec::new(), position: after, limited: false };
        loop {
            let page = self.query_events(topic, partition.clone(), query.clone(), options).await?;
            whole.partition = page.partition;
            whole.events.extend(page.events);
            whole.position = page.position;
            if !page.limited {
                return Ok(whole);
            }
            options.after = page.position;
        }
    }

    /// Deletes `stream` when it is at `expected`: its events are hidden from reads at once.
    /// Soft (`tombstone` false): appends may resume, at the next revision. For good
    /// (`tombstone`): it never takes an event again. Safe to retry.
    pub async fn delete_stream(
        &self,
        topic: &str,
        stream: &str,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<StreamChanged, ClientError> {
        let request = proto::DeleteStreamRequest {
            topic: topic.to_owned(),
            stream: stream.to_owned(),
            expected: Some(expected.into()),
            tombstone,
        };
        let outcome = self
            .call_idempotent(request, |mut client, request| async move { client.delete_stream(request).await })
            .await;
        Ok(StreamChanged::from(outcome.result.map_err(from_stream_append_status)?))
    }

    /// Sets what `stream` keeps (`StreamMetadata`) when it is at `expected`; events outside
    /// it are hidden from reads at once. Replaces the metadata set before.
    pub async fn set_stream_metadata(
        &self,
        topic: &str,
        stream: &str,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<StreamChanged, ClientError> {
        let request = proto::SetStreamMetadataRequest {
            topic: topic.to_owned(),
            stream: stream.to_owned(),
            expected: Some(expected.into()),
            metadata: Some(proto::StreamMetadata {
                max_age_ms: metadata.max_age_ms,
                max_count: metadata.max_count,
                truncate_before: metadata.truncate_before,
            }),
        };
        let outcome = self
            .call_idempotent(request, |mut client, request| async move { client.set_stream_metadata(request).await })
            .await;
        Ok(StreamChanged::from(outcome.result.map_err(from_stream_append_status)?))
    }

    /// Where `stream` stands: its revision, what reads start from, deletion, metadata.
    pub async fn stream_info(
        &self,
        topic: &str,
        stream: &str,
        consistency: Consistency,
    ) -> Result<proto::StreamInfoResponse, ClientError> {
        let (consistency, min_applied_index) = consistency.to_proto();
        let request = proto::GetStreamInfoRequest {
            topic: topic.to_owned(),
            stream: stream.to_owned(),
            consistency,
            min_applied_index,
        };
        Ok(self
            .call_idempotent(request, |mut client, request| async move { client.get_stream_info(request).await })
            .await
            .result?)
    }

    /// Every event of `stream` from `from_revision` (inclusive; `None`: the first stored),
    /// read in pages.
    pub async fn read_whole_stream(
        &self,
        topic: &str,
        stream: &str,
        from_revision: Option<u64>,
        consistency: Consistency,
    ) -> Result<Vec<RecordedEvent>, ClientError> {
        let mut events = Vec::new();
        let mut options = ReadStreamOptions { from_revision, consistency, ..ReadStreamOptions::default() };
        loop {
            let slice = self.read_stream(topic, stream, options).await?;
            events.extend(slice.events);
            match slice.next_revision {
                Some(next) => options.from_revision = Some(next),
                None => return Ok(events),
            }
        }
    }
}

/// An append's error: `ConditionFailed` with every violation when the details carry them,
/// else the status as it is.
fn from_stream_append_status(status: tonic::Status) -> ClientError {
    if status.code() == tonic::Code::FailedPrecondition
        && let Ok(details) = proto::ConditionsFailed::decode(status.details())
        && (!details.violations.is_empty() || details.query.is_some())
    {
        let ConditionViolations { revisions, query } = details.into();
        return ClientError::ConditionFailed { message: status.message().to_owned(), violations: revisions, query };
    }
    status.into()
}

/// The events of a read's answer; a record that is no event breaks the API's contract.
fn events_of(records: Vec<proto::StoredRecord>) -> Result<Vec<RecordedEvent>, ClientError> {
    cairn_proto::stored_records_from_proto(records)
        .into_iter()
        .map(|record| {
            let offset = record.offset;
            RecordedEvent::from_record(record)
                .ok_or_else(|| ClientError::InvalidResponse(format!("record at offset {offset} is not an event")))
        })
        .collect()
}
