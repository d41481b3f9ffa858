//! What reads, offset lookups and subscriptions ask and answer, as every front door and
//! `Forward` see them. Imports nothing that serves them.

use cairn_types::{Offset, PartitionId, StoredRecord};

use crate::api::Consistency;

/// Records of `topic`/`partition` from `from_offset`, at most `max_records` and
/// `max_bytes` (0: the defaults; never more than the node's limits), waiting up to
/// `wait_ms` for records when there are none yet.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub from_offset: Offset,
    pub max_records: u32,
    pub max_bytes: u32,
    pub wait_ms: u64,
    pub consistency: Consistency,
}

/// The records read, and the partition's bounds when they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<StoredRecord>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    /// Where the next read goes on.
    pub next_offset: Offset,
}

/// The first offset of `topic`/`partition` whose record's timestamp is at least
/// `timestamp_ms`.
#[derive(Debug, Clone)]
pub struct OffsetForTimestampRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub timestamp_ms: u64,
}

/// The offset found, or (`found` false) the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetFound {
    pub offset: Offset,
    pub found: bool,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    Offset(Offset),
    /// The first record at or after this time.
    TimestampMs(u64),
}

/// Records of `topic`/`partition` from `start` on, at most `max_bytes_per_message` (0:
/// the default) per batch, at `consistency` before the first.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub start: StartPosition,
    pub max_bytes_per_message: u32,
    pub consistency: Consistency,
}

/// Records of a subscription, and the partition's high watermark when they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeBatch {
    pub records: Vec<StoredRecord>,
    pub high_watermark: Offset,
}
