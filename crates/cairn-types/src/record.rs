use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Offset;

/// A record as a producer sends it: the partition leader assigns offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    pub value: Bytes,
}

impl Record {
    /// Bytes this record occupies in a stored batch (see `batch.rs`).
    pub fn encoded_len(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        8 + 4 + self.key.as_ref().map_or(0, |k| k.len()) + 4 + headers + 4 + self.value.len()
    }
}

/// A record as stored in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: Offset,
    pub timestamp_ms: u64,
    pub key: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    pub value: Bytes,
}
