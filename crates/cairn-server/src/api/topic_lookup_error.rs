//! The error of a request that named a topic or partition that is malformed or missing.

use cairn_types::{PartitionId, TopicError};

use crate::api::underlying::topic_error_code;
use crate::api::{ApiError, ErrorCode};

/// A request named a topic or partition that is malformed or does not exist.
#[derive(Debug, thiserror::Error)]
pub enum TopicLookupError {
    #[error(transparent)]
    InvalidName(TopicError),
    #[error("topic {0:?} does not exist; create it with `cairn topic create {0}`")]
    TopicNotFound(String),
    #[error("topic {topic:?} has partitions 0..{count}; partition {partition} does not exist")]
    PartitionNotFound { topic: String, partition: PartitionId, count: u32 },
}

impl ApiError for TopicLookupError {
    fn code(&self) -> ErrorCode {
        match self {
            TopicLookupError::InvalidName(err) => topic_error_code(err),
            TopicLookupError::TopicNotFound(_) | TopicLookupError::PartitionNotFound { .. } => ErrorCode::NotFound,
        }
    }
}
