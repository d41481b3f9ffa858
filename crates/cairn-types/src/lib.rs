//! Cairn's vocabulary: identifiers, records and their on-disk batch format, topic
//! configuration, limits and the key partitioner. No IO lives here.

pub mod batch;
pub mod event_query;
pub mod latency_histogram;
pub mod limits;
pub mod partitioner;
pub mod record;
pub mod retry_delays;
pub mod stream;
pub mod topic;

pub use batch::{BatchHeader, CodecError, DecodedBatch, decode_batch, encode_batch, remove_records};
pub use event_query::{ConditionViolations, EventQuery, QueryCondition, QueryItem, QueryViolation};
pub use latency_histogram::{HistogramSnapshot, LatencyHistogram};
pub use limits::Limits;
pub use record::{EventFields, Record, StoredRecord};
pub use retry_delays::retry_delays;
pub use stream::{ExpectedRevision, NewEvent, RevisionViolation};
pub use topic::{TopicConfig, TopicError, validate_topic_name};

/// A Cairn server process. Stable for the life of its data directory.
pub type NodeId = u64;
/// A Raft group hosted by one or more nodes. Group 0 is the controller.
pub type GroupId = u64;
/// A partition index inside a topic, from 0.
pub type PartitionId = u32;
/// A record's position in its partition: dense, from 0.
pub type Offset = u64;

/// The Raft group that holds cluster metadata (topics, partitions, nodes).
pub const CONTROLLER_GROUP_ID: GroupId = 0;

/// Batches of each idempotent producer a partition remembers (Kafka's 5): a retry of any
/// of them is answered with its original offsets. It also bounds the appends a producer
/// may have in flight per partition, so that every one of them can be retried safely.
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
