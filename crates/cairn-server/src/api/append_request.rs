//! What an append asks, as every front door and `Forward` see it.

use cairn_types::{PartitionId, Record};

/// Records for a topic: to `partition`, or else each to its key's partition (unkeyed ones
/// together to one round-robin partition). With a producer id and sequence (both or
/// neither) it is idempotent, and then it names its partition.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub topic: String,
    pub partition: Option<PartitionId>,
    pub records: Vec<Record>,
    pub producer_id: Option<u64>,
    pub sequence: Option<u64>,
}
