//! Finding a topic, and one of its partitions, by name in this node's view of the
//! controller: the first step of most requests.

use cairn_raft::{PartitionAssignment, TopicMeta};
use cairn_types::{PartitionId, validate_topic_name};

use crate::api::{CairnApi, TopicLookupError};

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
