//! Why a read, a subscription or an offset lookup failed.

use cairn_raft::HostError;
use cairn_storage::StorageError;
use cairn_types::{GroupId, NodeId, Offset, PartitionId};

use crate::api::underlying::storage_error_message;
use crate::api::underlying::{host_error_code, host_error_message, host_not_leader, storage_error_code};
use crate::api::{ApiError, ErrorCode, NotLeader, RemoteError, TopicLookupError};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Topic(#[from] TopicLookupError),
    #[error("partition {topic}/{partition} has no reachable replica (replicas: {replicas:?}); retry shortly")]
    NoReachableReplica { topic: String, partition: PartitionId, replicas: Vec<NodeId> },
    #[error(
        "node {node} holds no replica of {topic}/{partition} and the request was forwarded {hops} times \
         already; retry shortly"
    )]
    LastHopWithoutReplica { node: NodeId, topic: String, partition: PartitionId, hops: u32 },
    #[error("no replica of this partition answered; retry shortly")]
    NoReplicaAnswered,
    #[error("unknown consistency {0}: use LOCAL (0), READ_YOUR_WRITES (1) or LINEARIZABLE (2)")]
    UnknownConsistency(i32),
    #[error("group {0} is electing a leader; retry shortly")]
    ElectingLeader(GroupId),
    #[error("the leader of group {0} did not answer a read index request")]
    ReadIndexTimedOut(GroupId),
    #[error("read index from the leader: {0}")]
    ReadIndexCall(String),
    #[error("read index reply: {0}")]
    ReadIndexReply(String),
    #[error("the leader could not confirm a read index: {0}")]
    ReadIndexRefused(String),
    #[error("this replica has applied up to index {applied}, the read needs {index}; retry or ask another node")]
    NotAppliedYet { applied: u64, index: u64 },
    #[error("the partition replica stopped; retry")]
    ReplicaStopped,
    #[error("the partition replica stopped; subscribe again")]
    SubscribedReplicaStopped,
    /// `offset` is below the partition's log start, or still past its high watermark.
    #[error("offset {offset} is outside the partition's [{log_start_offset}, {next_offset}]")]
    OffsetOutside { offset: Offset, log_start_offset: Offset, next_offset: Offset },
    #[error("this node already serves {0} subscriptions (subscriptions_max); retry later or use another replica")]
    TooManySubscriptions(usize),
    /// The blocking task that read RocksDB did not finish (its message as given).
    #[error("{0}")]
    ReadTask(String),
    #[error("{}", host_error_message(.0))]
    Host(HostError),
    #[error("{}", storage_error_message(.0))]
    Storage(StorageError),
    #[error(transparent)]
    Remote(RemoteError),
    /// A stream read started from a revision that was deleted, truncated (the stream's
    /// metadata) or removed by retention.
    #[error(
        "revision {revision} of stream {stream:?} is no longer readable (deleted, truncated or removed by \
         retention){}",
        match .first_revision {
            Some(first) => format!(": its first readable revision is {first}; read from there, or from the start"),
            None => ": none of its events is readable any more".to_owned(),
        }
    )]
    StreamRevisionRemoved { stream: String, revision: u64, first_revision: Option<u64> },
    #[error("stream {stream:?} was deleted for good (tombstone): it has no events and takes no more")]
    StreamTombstoned { stream: String },
    /// A query read after a position whose next records retention removed.
    #[error(
        "records after offset {after} were removed by retention (the first stored is {log_start_offset}): read \
         the query again from the start, or after offset {}",
        .log_start_offset.saturating_sub(1)
    )]
    QueryRangeRemoved { after: Offset, log_start_offset: Offset },
    #[error("{0}")]
    InvalidQuery(crate::api::EventInputError),
}

impl ApiError for ReadError {
    fn code(&self) -> ErrorCode {
        match self {
            ReadError::Topic(err) => err.code(),
            ReadError::UnknownConsistency(_) => ErrorCode::InvalidArgument,
            ReadError::NoReachableReplica { .. }
            | ReadError::LastHopWithoutReplica { .. }
            | ReadError::NoReplicaAnswered
            | ReadError::ElectingLeader(_)
            | ReadError::ReadIndexTimedOut(_)
            | ReadError::ReadIndexCall(_)
            | ReadError::ReadIndexRefused(_)
            | ReadError::NotAppliedYet { .. }
            | ReadError::ReplicaStopped
            | ReadError::SubscribedReplicaStopped => ErrorCode::Unavailable,
            ReadError::OffsetOutside { .. }
            | ReadError::StreamRevisionRemoved { .. }
            | ReadError::QueryRangeRemoved { .. } => ErrorCode::OutOfRange,
            ReadError::InvalidQuery(err) => err.code(),
            ReadError::StreamTombstoned { .. } => ErrorCode::NotFound,
            ReadError::TooManySubscriptions(_) => ErrorCode::ResourceExhausted,
            ReadError::ReadIndexReply(_) | ReadError::ReadTask(_) => ErrorCode::Internal,
            ReadError::Host(err) => host_error_code(err),
            ReadError::Storage(err) => storage_error_code(err),
            ReadError::Remote(err) => err.code,
        }
    }

    fn not_leader(&self) -> Option<NotLeader> {
        match self {
            ReadError::Host(err) => host_not_leader(err),
            ReadError::Remote(err) => err.not_leader.clone(),
            _ => None,
        }
    }
}
