//! Cairn's Rust client: a thin, typed layer over the gRPC API in `cairn-proto`.
//!
//! Records cross this boundary as `cairn_types` values; admin results are the generated
//! proto messages, re-exported as [`proto`]. Idempotent calls (reads, admin calls) are
//! retried on `UNAVAILABLE` for a bounded time, and so are event appends (their event ids
//! make a retry safe); record appends never are.

mod batching_producer;
mod cairn_client;
mod client_error;
mod create_topic_options;
mod group_calls;
mod group_consumer;
mod idempotent_producer;
mod read_result;
mod retry_policy;
mod start_position;
mod stream_calls;
mod subscription;

pub use batching_producer::{BatchingConfig, BatchingProducer};
pub use cairn_client::{CairnClient, MESSAGE_BYTES_MAX};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// What the replica asked has applied (committed data only).
    #[default]
    Local,
    /// At least up to this applied index (an append's `PartitionToken`).
    ReadYourWrites(u64),
    /// Every append acknowledged before the read began.
    Linearizable,
}

impl Consistency {
    /// The request fields `consistency` and `min_applied_index`.
    pub(crate) fn to_proto(self) -> (i32, u64) {
        match self {
            Consistency::Local => (proto::Consistency::Local as i32, 0),
            Consistency::ReadYourWrites(index) => (proto::Consistency::ReadYourWrites as i32, index),
            Consistency::Linearizable => (proto::Consistency::Linearizable as i32, 0),
        }
    }
}
pub use cairn_proto::v1 as proto;
pub use cairn_types::ExpectedRevision;
pub use cairn_types::stream::StreamMetadata;
pub use cairn_types::{ConditionViolations, EventQuery, QueryCondition, QueryItem, QueryViolation};
pub use client_error::ClientError;
pub use create_topic_options::CreateTopicOptions;
pub use group_consumer::{GroupConsumer, GroupConsumerConfig, GroupPartition, GroupRecords};
pub use idempotent_producer::{IdempotentProducer, ProducedBatch};
pub use read_result::ReadResult;
pub use retry_policy::RetryPolicy;
pub use start_position::StartPosition;
pub use stream_calls::{
    AppendedEvents, EventData, QueryOptions, QueryPartition, QueryResult, ReadStreamOptions, RecordedEvent,
    StreamChanged, StreamSlice, StreamWrite, json_event,
};
/// The gRPC status code a `ClientError::Status` carries.
pub use tonic::Code;
