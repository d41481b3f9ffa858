//! Finding a topic, and one of its partitions, by name in this node's view of the
//! controller: the first step of most requests.

use cairn_raft::{PartitionAssignment, TopicMeta};
use cairn_types::{PartitionId, TopicError, validate_topic_name};

use crate::api::underlying::topic_error_code;
use crate::api::{ApiError, CairnApi, ErrorCode};

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

impl CairnApi {
    /// The topic named `name`, as this node's view of the controller has it.
    pub fn topic(&self, name: &str) -> Result<TopicMeta, TopicLookupError> {
        validate_topic_name(name).map_err(TopicLookupError::InvalidName)?;
        self.host.topic(name).ok_or_else(|| TopicLookupError::TopicNotFound(name.to_owned()))
    }
}

/// `topic`'s partition `partition`.
pub fn partition_of(topic: &TopicMeta, partition: PartitionId) -> Result<&PartitionAssignment, TopicLookupError> {
    topic.partitions.get(partition as usize).ok_or_else(|| TopicLookupError::PartitionNotFound {
        topic: topic.name.clone(),
        partition,
        count: topic.config.partition_count,
    })
}
