use serde::{Deserialize, Serialize};

use crate::PartitionId;

pub const TOPIC_NAME_LEN_MAX: usize = 249;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic name must not be empty")]
    NameEmpty,
    #[error("topic name is {len} characters long; the maximum is {TOPIC_NAME_LEN_MAX}")]
    NameTooLong { len: usize },
    #[error("topic name {name:?} contains {bad:?}; use only ASCII letters, digits, '.', '_' and '-'")]
    NameCharacter { name: String, bad: char },
    #[error("topic name {0:?} is reserved")]
    NameReserved(String),
    #[error("a topic needs at least one partition")]
    NoPartitions,
    #[error("{requested} partitions requested; the maximum per topic is {max}")]
    TooManyPartitions { requested: u32, max: u32 },
    #[error("replication factor must be at least 1")]
    ReplicationFactorZero,
    #[error("replication factor {requested} exceeds the {nodes} node(s) in the cluster")]
    ReplicationFactorTooLarge { requested: u32, nodes: usize },
    #[error("retention of 0 {what} would delete every record; omit it for unlimited retention")]
    RetentionZero { what: &'static str },
}

/// Checks a topic name: 1-249 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::NameEmpty);
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return Err(TopicError::NameTooLong { len: name.chars().count() });
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(TopicError::NameCharacter { name: name.to_owned(), bad });
    }
    if name == "." || name == ".." {
        return Err(TopicError::NameReserved(name.to_owned()));
    }
    Ok(())
}

/// What a topic is, as stored by the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partition_count: PartitionId,
    pub replication_factor: u32,
    /// Records older than this are deleted (whole batches). `None`: kept forever.
    pub retention_ms: Option<u64>,
    /// A partition is trimmed from its start to stay under this size. `None`: no limit.
    pub retention_bytes: Option<u64>,
}

impl TopicConfig {
    pub fn validate(&self, partitions_max: u32, nodes: usize) -> Result<(), TopicError> {
        if self.partition_count == 0 {
            return Err(TopicError::NoPartitions);
        }
        if self.partition_count > partitions_max {
            return Err(TopicError::TooManyPartitions { requested: self.partition_count, max: partitions_max });
        }
        if self.replication_factor == 0 {
            return Err(TopicError::ReplicationFactorZero);
        }
        if self.replication_factor as usize > nodes {
            return Err(TopicError::ReplicationFactorTooLarge { requested: self.replication_factor, nodes });
        }
        if self.retention_ms == Some(0) {
            return Err(TopicError::RetentionZero { what: "milliseconds" });
        }
        if self.retention_bytes == Some(0) {
            return Err(TopicError::RetentionZero { what: "bytes" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert_eq!(validate_topic_name("orders.v1_EU-west"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicError::NameEmpty));
        assert_eq!(validate_topic_name(&"a".repeat(249)), Ok(()));
        assert_eq!(validate_topic_name(&"a".repeat(250)), Err(TopicError::NameTooLong { len: 250 }));
        assert!(matches!(validate_topic_name("a/b"), Err(TopicError::NameCharacter { bad: '/', .. })));
        assert!(matches!(validate_topic_name("é"), Err(TopicError::NameCharacter { bad: 'é', .. })));
        assert_eq!(validate_topic_name(".."), Err(TopicError::NameReserved("..".into())));
    }

    #[test]
    fn topic_config_limits() {
        let config =
            |p, r| TopicConfig { partition_count: p, replication_factor: r, retention_ms: None, retention_bytes: None };
        assert_eq!(config(4, 1).validate(10_000, 1), Ok(()));
        assert_eq!(config(0, 1).validate(10_000, 1), Err(TopicError::NoPartitions));
        assert_eq!(
            config(10_001, 1).validate(10_000, 1),
            Err(TopicError::TooManyPartitions { requested: 10_001, max: 10_000 })
        );
        assert_eq!(
            config(1, 3).validate(10_000, 1),
            Err(TopicError::ReplicationFactorTooLarge { requested: 3, nodes: 1 })
        );
    }
}
