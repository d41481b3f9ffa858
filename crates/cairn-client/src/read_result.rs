use cairn_types::{Offset, StoredRecord};

/// The answer to one `CairnClient::read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: Vec<StoredRecord>,
    /// The offset after the last committed record of the partition.
    pub high_watermark: Offset,
    /// The first offset still stored.
    pub log_start_offset: Offset,
    /// Where the next read should start.
    pub next_offset: Offset,
}
