//! Event appends and stream reads to and from the proto messages, both ways (they are
//! forwarded). Events themselves convert in `cairn-proto`. A request with an event id
//! that is not a UUID is refused here, before it reaches the api.

use cairn_proto::v1 as pb;
use cairn_proto::{
    BadEventId, expected_from_proto, new_event_from_proto, query_from_proto, stored_records_from_proto,
    stored_records_to_proto,
};
use cairn_raft::{EventPosition, StreamChangeKind, StreamCheck, StreamWrite};
use cairn_storage::Direction;
use cairn_types::QueryCondition;
use cairn_types::stream::StreamMetadata;

use crate::api::{
    AppendToStreamsRequest, ChangeStreamRequest, PartitionOf, QueryEventsRead, QueryEventsRequest, ReadStreamRequest,
    StreamChangedAnswer, StreamEventsRead, StreamFrom, StreamInfo, StreamInfoRequest, StreamsAppended,
};
use crate::grpc::convert::{consistency, consistency_to_proto};

impl TryFrom<pb::AppendToStreamsRequest> for AppendToStreamsRequest {
    type Error = BadEventId;

    fn try_from(request: pb::AppendToStreamsRequest) -> Result<AppendToStreamsRequest, BadEventId> {
        let writes = request.writes.into_iter().map(|write| {
            let events = write.events.into_iter().map(new_event_from_proto).collect::<Result<_, _>>()?;
            Ok(StreamWrite { stream: write.stream, expected: expected_from_proto(write.expected), events })
        });
        Ok(AppendToStreamsRequest {
            topic: request.topic,
            writes: writes.collect::<Result<_, BadEventId>>()?,
            checks: request
                .checks
                .into_iter()
                .map(|check| StreamCheck { stream: check.stream, expected: expected_from_proto(check.expected) })
                .collect(),
            condition: request.condition.map(QueryCondition::from),
        })
    }
}

impl From<AppendToStreamsRequest> for pb::AppendToStreamsRequest {
    fn from(request: AppendToStreamsRequest) -> pb::AppendToStreamsRequest {
        pb::AppendToStreamsRequest {
            topic: request.topic,
            writes: request
                .writes
                .into_iter()
                .map(|write| pb::StreamWrite {
                    stream: write.stream,
                    expected: Some(write.expected.into()),
                    events: write.events.into_iter().map(pb::Event::from).collect(),
                })
                .collect(),
            checks: request
                .checks
                .into_iter()
                .map(|check| pb::StreamCheck { stream: check.stream, expected: Some(check.expected.into()) })
                .collect(),
            condition: request.condition.map(pb::QueryCondition::from),
        }
    }
}

impl From<StreamsAppended> for pb::AppendToStreamsResponse {
    fn from(answer: StreamsAppended) -> pb::AppendToStreamsResponse {
        pb::AppendToStreamsResponse {
            partition: answer.partition,
            positions: answer
                .positions
                .into_iter()
                .map(|p| pb::EventPosition { offset: p.offset, stream_revision: p.stream_revision })
                .collect(),
            timestamp_ms: answer.timestamp_ms,
            applied_index: answer.applied_index,
            duplicate: answer.duplicate,
        }
    }
}

impl From<pb::AppendToStreamsResponse> for StreamsAppended {
    fn from(response: pb::AppendToStreamsResponse) -> StreamsAppended {
        StreamsAppended {
            partition: response.partition,
            positions: response
                .positions
                .into_iter()
                .map(|p| EventPosition { offset: p.offset, stream_revision: p.stream_revision })
                .collect(),
            timestamp_ms: response.timestamp_ms,
            applied_index: response.applied_index,
            duplicate: response.duplicate,
        }
    }
}

impl From<pb::ReadStreamRequest> for ReadStreamRequest {
    fn from(request: pb::ReadStreamRequest) -> ReadStreamRequest {
        ReadStreamRequest {
            topic: request.topic,
            stream: request.stream,
            from: request.from_revision.map_or(StreamFrom::Start, StreamFrom::Revision),
            direction: if request.backwards { Direction::Backwards } else { Direction::Forwards },
            max_events: request.max_events,
            as_of_ms: request.as_of_ms,
            consistency: consistency(request.consistency, request.min_applied_index),
        }
    }
}

impl From<ReadStreamRequest> for pb::ReadStreamRequest {
    fn from(request: ReadStreamRequest) -> pb::ReadStreamRequest {
        let (consistency, min_applied_index) = consistency_to_proto(request.consistency);
        pb::ReadStreamRequest {
            topic: request.topic,
            stream: request.stream,
            from_revision: match request.from {
                StreamFrom::Start => None,
                StreamFrom::Revision(revision) => Some(revision),
            },
            backwards: request.direction == Direction::Backwards,
            max_events: request.max_events,
            as_of_ms: request.as_of_ms,
            consistency,
            min_applied_index,
        }
    }
}

impl From<StreamEventsRead> for pb::ReadStreamResponse {
    fn from(read: StreamEventsRead) -> pb::ReadStreamResponse {
        pb::ReadStreamResponse {
            partition: read.partition,
            events: stored_records_to_proto(read.events),
            next_revision: read.next_revision,
            first_revision: read.first_revision,
        }
    }
}

impl From<pb::ReadStreamResponse> for StreamEventsRead {
    fn from(response: pb::ReadStreamResponse) -> StreamEventsRead {
        StreamEventsRead {
            partition: response.partition,
            events: stored_records_from_proto(response.events),
            next_revision: response.next_revision,
            first_revision: response.first_revision,
        }
    }
}

impl From<pb::DeleteStreamRequest> for ChangeStreamRequest {
    fn from(request: pb::DeleteStreamRequest) -> ChangeStreamRequest {
        ChangeStreamRequest {
            topic: request.topic,
            stream: request.stream,
            expected: expected_from_proto(request.expected),
            change: if request.tombstone { StreamChangeKind::Tombstone } else { StreamChangeKind::SoftDelete },
        }
    }
}

impl From<pb::SetStreamMetadataRequest> for ChangeStreamRequest {
    fn from(request: pb::SetStreamMetadataRequest) -> ChangeStreamRequest {
        ChangeStreamRequest {
            topic: request.topic,
            stream: request.stream,
            expected: expected_from_proto(request.expected),
            change: StreamChangeKind::SetMetadata(metadata_from_proto(request.metadata)),
        }
    }
}

fn metadata_from_proto(metadata: Option<pb::StreamMetadata>) -> StreamMetadata {
    let metadata = metadata.unwrap_or_default();
    StreamMetadata {
        max_age_ms: metadata.max_age_ms,
        max_count: metadata.max_count,
        truncate_before: metadata.truncate_before,
    }
}

fn metadata_to_proto(metadata: StreamMetadata) -> pb::StreamMetadata {
    pb::StreamMetadata {
        max_age_ms: metadata.max_age_ms,
        max_count: metadata.max_count,
        truncate_before: metadata.truncate_before,
    }
}

/// The request that carries `request` to another node: a deletion or a metadata change.
pub enum ChangeStreamMessage {
    Delete(pb::DeleteStreamRequest),
    SetMetadata(pb::SetStreamMetadataRequest),
}

impl From<ChangeStreamRequest> for ChangeStreamMessage {
    fn from(request: ChangeStreamRequest) -> ChangeStreamMessage {
        let expected = Some(request.expected.into());
        let (topic, stream) = (request.topic, request.stream);
        match request.change {
            StreamChangeKind::SoftDelete | StreamChangeKind::Tombstone => {
                let tombstone = matches!(request.change, StreamChangeKind::Tombstone);
                ChangeStreamMessage::Delete(pb::DeleteStreamRequest { topic, stream, expected, tombstone })
            }
            StreamChangeKind::SetMetadata(metadata) => {
                let metadata = Some(metadata_to_proto(metadata));
                ChangeStreamMessage::SetMetadata(pb::SetStreamMetadataRequest { topic, stream, expected, metadata })
            }
        }
    }
}

impl From<StreamChangedAnswer> for pb::StreamChangedResponse {
    fn from(answer: StreamChangedAnswer) -> pb::StreamChangedResponse {
        pb::StreamChangedResponse {
            partition: answer.partition,
            current_revision: answer.current_revision,
            first_visible_revision: answer.first_visible_revision,
            applied_index: answer.applied_index,
        }
    }
}

impl From<pb::StreamChangedResponse> for StreamChangedAnswer {
    fn from(response: pb::StreamChangedResponse) -> StreamChangedAnswer {
        StreamChangedAnswer {
            partition: response.partition,
            current_revision: response.current_revision,
            first_visible_revision: response.first_visible_revision,
            applied_index: response.applied_index,
        }
    }
}

impl From<pb::GetStreamInfoRequest> for StreamInfoRequest {
    fn from(request: pb::GetStreamInfoRequest) -> StreamInfoRequest {
        StreamInfoRequest {
            topic: request.topic,
            stream: request.stream,
            consistency: consistency(request.consistency, request.min_applied_index),
        }
    }
}

impl From<StreamInfoRequest> for pb::GetStreamInfoRequest {
    fn from(request: StreamInfoRequest) -> pb::GetStreamInfoRequest {
        let (consistency, min_applied_index) = consistency_to_proto(request.consistency);
        pb::GetStreamInfoRequest { topic: request.topic, stream: request.stream, consistency, min_applied_index }
    }
}

impl From<StreamInfo> for pb::StreamInfoResponse {
    fn from(info: StreamInfo) -> pb::StreamInfoResponse {
        pb::StreamInfoResponse {
            partition: info.partition,
            current_revision: info.current_revision,
            first_visible_revision: info.first_visible_revision,
            deleted_before: info.deleted_before,
            tombstoned: info.tombstoned,
            metadata: Some(metadata_to_proto(info.metadata)),
        }
    }
}

impl From<pb::StreamInfoResponse> for StreamInfo {
    fn from(response: pb::StreamInfoResponse) -> StreamInfo {
        StreamInfo {
            partition: response.partition,
            current_revision: response.current_revision,
            first_visible_revision: response.first_visible_revision,
            deleted_before: response.deleted_before,
            tombstoned: response.tombstoned,
            metadata: metadata_from_proto(response.metadata),
        }
    }
}

/// A query read that names neither a partition nor a key: refused rather than read from
/// partition 0 by default.
#[derive(Debug, thiserror::Error)]
#[error("a query reads one partition: set `partition`, or `key` (a stream or hash tag) for the partition it maps to")]
pub struct PartitionNotNamed;

impl TryFrom<pb::QueryEventsRequest> for QueryEventsRequest {
    type Error = PartitionNotNamed;

    fn try_from(request: pb::QueryEventsRequest) -> Result<QueryEventsRequest, PartitionNotNamed> {
        use pb::query_events_request::PartitionOf as Of;
        Ok(QueryEventsRequest {
            topic: request.topic,
            partition: match request.partition_of {
                Some(Of::Key(key)) => PartitionOf::Key(key),
                Some(Of::Partition(partition)) => PartitionOf::Partition(partition),
                None => return Err(PartitionNotNamed),
            },
            query: query_from_proto(request.query),
            after: request.after,
            max_events: request.max_events,
            as_of_ms: request.as_of_ms,
            consistency: consistency(request.consistency, request.min_applied_index),
        })
    }
}

impl From<QueryEventsRequest> for pb::QueryEventsRequest {
    fn from(request: QueryEventsRequest) -> pb::QueryEventsRequest {
        use pb::query_events_request::PartitionOf as Of;
        let (consistency, min_applied_index) = consistency_to_proto(request.consistency);
        pb::QueryEventsRequest {
            topic: request.topic,
            partition_of: Some(match request.partition {
                PartitionOf::Partition(partition) => Of::Partition(partition),
                PartitionOf::Key(key) => Of::Key(key),
            }),
            query: Some(request.query.into()),
            after: request.after,
            max_events: request.max_events,
            as_of_ms: request.as_of_ms,
            consistency,
            min_applied_index,
        }
    }
}

impl From<QueryEventsRead> for pb::QueryEventsResponse {
    fn from(read: QueryEventsRead) -> pb::QueryEventsResponse {
        pb::QueryEventsResponse {
            partition: read.partition,
            events: stored_records_to_proto(read.events),
            position: read.position,
            limited: read.limited,
        }
    }
}

impl From<pb::QueryEventsResponse> for QueryEventsRead {
    fn from(response: pb::QueryEventsResponse) -> QueryEventsRead {
        QueryEventsRead {
            partition: response.partition,
            events: stored_records_from_proto(response.events),
            position: response.position,
            limited: response.limited,
        }
    }
}
