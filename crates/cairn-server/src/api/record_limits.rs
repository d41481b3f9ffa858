//! An append's records checked against the node's limits (`cairn_types::Limits`) before
//! anything is proposed: each limit refused with a message that names it.

use cairn_types::{Limits, Record};

use crate::api::{ApiError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum RecordLimitError {
    #[error("an append needs at least one record")]
    NoRecords,
    #[error("{count} records in one append; the limit is {max} (records_per_request_max): split the batch")]
    TooManyRecords { count: usize, max: usize },
    #[error("record {index} has a {bytes} byte value; the limit is {max} bytes (record_value_bytes_max)")]
    ValueTooLarge { index: usize, bytes: usize, max: usize },
    #[error("record {index} has a {bytes} byte key; the limit is {max} bytes")]
    KeyTooLarge { index: usize, bytes: usize, max: usize },
    #[error("record {index} has {count} headers; the limit is {max}")]
    TooManyHeaders { index: usize, count: usize, max: usize },
    #[error("the append carries {bytes} bytes; the limit is {max} bytes per request (request_bytes_max): split it")]
    RequestTooLarge { bytes: usize, max: usize },
}

impl ApiError for RecordLimitError {
    fn code(&self) -> ErrorCode {
        match self {
            RecordLimitError::NoRecords => ErrorCode::InvalidArgument,
            _ => ErrorCode::ResourceExhausted,
        }
    }
}

/// Refuses an append of `records` that breaks one of `limits`.
pub fn check_records(records: &[Record], limits: &Limits) -> Result<(), RecordLimitError> {
    if records.is_empty() {
        return Err(RecordLimitError::NoRecords);
    }
    if records.len() > limits.records_per_request_max {
        return Err(RecordLimitError::TooManyRecords { count: records.len(), max: limits.records_per_request_max });
    }
    let mut total = 0usize;
    for (index, record) in records.iter().enumerate() {
        if record.value.len() > limits.record_value_bytes_max {
            return Err(RecordLimitError::ValueTooLarge {
                index,
                bytes: record.value.len(),
                max: limits.record_value_bytes_max,
            });
        }
        let key_len = record.key.as_ref().map_or(0, |k| k.len());
        if key_len > limits.record_key_bytes_max {
            return Err(RecordLimitError::KeyTooLarge { index, bytes: key_len, max: limits.record_key_bytes_max });
        }
        if record.headers.len() > limits.record_headers_max {
            return Err(RecordLimitError::TooManyHeaders {
                index,
                count: record.headers.len(),
                max: limits.record_headers_max,
            });
        }
        total += record.value.len()
            + key_len
            + record.headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>();
    }
    if total > limits.request_bytes_max {
        return Err(RecordLimitError::RequestTooLarge { bytes: total, max: limits.request_bytes_max });
    }
    Ok(())
}
