//! Why an append was refused or failed.

use cairn_raft::{EventIdReuse, HostError};
use cairn_types::stream::format_event_id;
use cairn_types::{ConditionViolations, Offset, PartitionId};

use crate::api::underlying::{host_error_code, host_error_message, host_not_leader};
use crate::api::{ApiError, ErrorCode, EventInputError, NotLeader, RecordLimitError, RemoteError, TopicLookupError};

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Topic(#[from] TopicLookupError),
    #[error(transparent)]
    Limits(#[from] RecordLimitError),
    #[error("an idempotent append (producer_id) must name its partition: sequences count per partition")]
    ProducerWithoutPartition,
    #[error("producer_id and sequence go together")]
    ProducerWithoutSequence,
    /// Ids start at 1: 0 was never handed out.
    #[error("producer id 0 is never handed out: get one from InitProducer")]
    ProducerIdZero,
    /// An id at or above `next_producer_id` may have been handed out by a controller
    /// leader this node has not caught up with yet: retryable.
    #[error(
        "producer id {producer_id} is not known on this node yet (its view of the controller has ids below \
         {next_producer_id}): retry shortly; an id that did not come from InitProducer is never accepted"
    )]
    UnknownProducer { producer_id: u64, next_producer_id: u64 },
    #[error(
        "producer {producer_id} sent sequence {sequence} to {topic}/{partition}, but the next sequence there is \
         {expected}: a gap, or a batch too old to be remembered"
    )]
    Sequence { producer_id: u64, sequence: u64, topic: String, partition: PartitionId, expected: u64 },
    #[error("{}", host_error_message(.0))]
    Host(HostError),
    /// A request forwarded `hops` times already reached a node without a replica of the
    /// partition: it cannot be forwarded again. Nothing was proposed, so it is safe to retry.
    #[error(
        "node {node} holds no replica of {topic}/{partition} and the request was forwarded {hops} times \
         already; retry shortly"
    )]
    LastHopWithoutReplica { node: u64, topic: String, partition: PartitionId, hops: u32 },
    #[error("partition {topic}/{partition} has no reachable leader after {waited_s} s; retry shortly")]
    NoReachableLeader { topic: String, partition: PartitionId, waited_s: u64 },
    #[error("unexpected append outcome {0}")]
    UnexpectedOutcome(String),
    #[error("forwarded append returned no offsets")]
    ForwardedWithoutOffsets,
    #[error(transparent)]
    Remote(RemoteError),
    #[error(transparent)]
    PartlyWritten(PartlyWritten),
    #[error(transparent)]
    InvalidEvents(#[from] EventInputError),
    /// Every stream not at the revision the append expected, and the first event that
    /// matches its query condition after the condition's position; nothing was written.
    #[error("{}, nothing was written: {}: read again and decide again", conditions_failed(.0), .0)]
    ConditionsFailed(ConditionViolations),
    #[error(
        "event id {} is already stored (offset {stored_at}) {}: give new events new ids, and retry an append \
         only with exactly the events it had",
        format_event_id(.event_id),
        match .reason {
            EventIdReuse::OtherContent => "with other content",
            EventIdReuse::PartOfAnotherAppend => "by another append (the rest of this one is not stored)",
        }
    )]
    EventIdReused { event_id: [u8; 16], stored_at: Offset, reason: EventIdReuse },
    /// The streams of one event append live in more than one partition.
    #[error(
        "the streams of one append must share a partition of topic {topic:?}, but they are in {}: append to \
         each partition separately, or name the streams with a common hash tag ({{order-17}}/payments)",
        list_partitions(.streams)
    )]
    StreamsInSeveralPartitions { topic: String, streams: Vec<(String, PartitionId)> },
    #[error("streams {0:?} were deleted for good (tombstone): nothing can be written to them")]
    StreamsTombstoned(Vec<String>),
}

fn conditions_failed(violations: &ConditionViolations) -> &'static str {
    match (violations.revisions.is_empty(), violations.query.is_none()) {
        (false, true) => "wrong expected revision",
        (true, false) => "query condition failed",
        _ => "wrong expected revision and query condition failed",
    }
}

fn list_partitions(streams: &[(String, PartitionId)]) -> String {
    streams
        .iter()
        .map(|(stream, partition)| format!("{stream:?} in partition {partition}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ApiError for AppendError {
    fn code(&self) -> ErrorCode {
        match self {
            AppendError::Topic(err) => err.code(),
            AppendError::Limits(err) => err.code(),
            AppendError::ProducerWithoutPartition | AppendError::ProducerWithoutSequence => ErrorCode::InvalidArgument,
            AppendError::ProducerIdZero | AppendError::Sequence { .. } => ErrorCode::FailedPrecondition,
            AppendError::UnknownProducer { .. }
            | AppendError::LastHopWithoutReplica { .. }
            | AppendError::NoReachableLeader { .. } => ErrorCode::Unavailable,
            AppendError::Host(err) => host_error_code(err),
            AppendError::UnexpectedOutcome(_) | AppendError::ForwardedWithoutOffsets => ErrorCode::Internal,
            AppendError::Remote(err) => err.code,
            AppendError::PartlyWritten(partly) => partly.code(),
            AppendError::InvalidEvents(err) => err.code(),
            AppendError::ConditionsFailed(_) => ErrorCode::FailedPrecondition,
            AppendError::EventIdReused { .. } => ErrorCode::AlreadyExists,
            AppendError::StreamsInSeveralPartitions { .. } => ErrorCode::InvalidArgument,
            AppendError::StreamsTombstoned(_) => ErrorCode::FailedPrecondition,
        }
    }

    fn not_leader(&self) -> Option<NotLeader> {
        match self {
            AppendError::Host(err) => host_not_leader(err),
            AppendError::LastHopWithoutReplica { .. } | AppendError::NoReachableLeader { .. } => {
                Some(NotLeader { leader_address: None })
            }
            AppendError::Remote(err) => err.not_leader.clone(),
            _ => None,
        }
    }
}

/// How one partition's batch of an append ended.
#[derive(Debug)]
pub struct PartitionWrite {
    pub partition: PartitionId,
    /// The positions, in the request, of the partition's records, in order.
    pub record_indexes: Vec<usize>,
    pub result: Result<Written, AppendError>,
}

/// A batch written: its first record's offset, the log index that applied it, and whether
/// it was a retry of a batch written before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub base_offset: Offset,
    pub applied_index: u64,
    pub duplicate: bool,
}

/// An append to several partitions of which some failed: every partition's outcome.
#[derive(Debug)]
pub struct PartlyWritten {
    pub writes: Vec<PartitionWrite>,
}

impl PartlyWritten {
    /// The first failure's code.
    pub fn code(&self) -> ErrorCode {
        self.writes.iter().find_map(|write| write.result.as_ref().err()).map_or(ErrorCode::Internal, ApiError::code)
    }
}

impl std::fmt::Display for PartlyWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let written: Vec<PartitionId> =
            self.writes.iter().filter(|write| write.result.is_ok()).map(|write| write.partition).collect();
        let failed: Vec<String> = self
            .writes
            .iter()
            .filter_map(|write| write.result.as_ref().err().map(|err| format!("partition {}: {err}", write.partition)))
            .collect();
        write!(
            f,
            "the append was written to {} of {} partitions (written: {written:?}); {}. Send only the failed \
             partitions' records again: the status details (AppendOutcomes) list them",
            written.len(),
            self.writes.len(),
            failed.join("; ")
        )
    }
}

impl std::error::Error for PartlyWritten {}
