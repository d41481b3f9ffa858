use cairn_types::Offset;

use crate::proto::subscribe_request::Start;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// At this offset.
    Offset(Offset),
    /// At the first stored record (the log start offset).
    Earliest,
    /// At the high watermark: only records appended from now on.
    Latest,
    /// At the first record whose timestamp is at or after this many ms since the epoch.
    Timestamp(u64),
}

impl StartPosition {
    pub(crate) fn to_proto(self) -> Start {
        match self {
            StartPosition::Offset(offset) => Start::Offset(offset),
            StartPosition::Earliest => Start::Earliest(true),
            StartPosition::Latest => Start::Latest(true),
            StartPosition::Timestamp(timestamp_ms) => Start::TimestampMs(timestamp_ms),
        }
    }
}
