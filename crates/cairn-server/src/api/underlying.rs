//! Codes and messages for the errors of the layers below the api (the Raft host, storage,
//! the controller's decisions, topic configuration), as clients see them.

use cairn_raft::{ControllerError, HostError};
use cairn_storage::StorageError;
use cairn_types::TopicError;

use crate::api::{ErrorCode, NotLeader};

pub fn host_error_code(err: &HostError) -> ErrorCode {
    match err {
        HostError::NotLeader { .. }
        | HostError::NoLeader { .. }
        | HostError::Indeterminate { .. }
        | HostError::LeaderTransferTimedOut { .. }
        | HostError::MembershipChanging { .. } => ErrorCode::Unavailable,
        HostError::UnknownGroup(_) => ErrorCode::NotFound,
        HostError::Misrouted { .. } | HostError::Membership { .. } => ErrorCode::FailedPrecondition,
        HostError::Raft(_) | HostError::Storage(_) => ErrorCode::Internal,
    }
}

pub fn host_error_message(err: &HostError) -> String {
    match err {
        HostError::NotLeader { group, leader: Some(leader), leader_address } => format!(
            "this node does not lead group {group}; the leader is node {leader} at {}: retry there or shortly",
            leader_address.as_deref().unwrap_or("an unknown address")
        ),
        HostError::NotLeader { group, leader: None, .. } => {
            format!("group {group} is electing a leader; retry shortly")
        }
        HostError::NoLeader { group, waited_ms } => {
            format!("group {group} had no leader within {waited_ms} ms; retry shortly")
        }
        HostError::Raft(message) => format!("raft failure on this node: {message}"),
        HostError::Storage(err) => format!("storage failure on this node: {err}"),
        err => err.to_string(),
    }
}

/// A host's "not leader" means nothing was proposed.
pub fn host_not_leader(err: &HostError) -> Option<NotLeader> {
    match err {
        HostError::NotLeader { leader: Some(_), leader_address, .. } => {
            Some(NotLeader { leader_address: leader_address.clone() })
        }
        HostError::NotLeader { leader: None, .. } => Some(NotLeader { leader_address: None }),
        _ => None,
    }
}

pub fn storage_error_code(err: &StorageError) -> ErrorCode {
    match err {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OutOfRange,
        StorageError::Corrupt { .. } | StorageError::CorruptMeta { .. } => ErrorCode::DataLoss,
        _ => ErrorCode::Internal,
    }
}

pub fn storage_error_message(err: &StorageError) -> String {
    match err {
        StorageError::Corrupt { .. } | StorageError::CorruptMeta { .. } => {
            format!("{err}; this replica's copy is damaged, read from another replica")
        }
        err => err.to_string(),
    }
}

pub fn controller_error_code(err: &ControllerError) -> ErrorCode {
    match err {
        ControllerError::TopicExists(_) => ErrorCode::AlreadyExists,
        ControllerError::TopicNotFound(_) => ErrorCode::NotFound,
        ControllerError::TooManyTopics { .. } => ErrorCode::ResourceExhausted,
        ControllerError::NotEnoughNodes { .. } | ControllerError::NodeHoldsReplicas { .. } => {
            ErrorCode::FailedPrecondition
        }
        ControllerError::NodeNotFound(_)
        | ControllerError::PartitionNotFound { .. }
        | ControllerError::OperationNotFound(_) => ErrorCode::NotFound,
        ControllerError::PartitionsCanOnlyGrow { .. }
        | ControllerError::NotAReplica { .. }
        | ControllerError::AlreadyAReplica { .. } => ErrorCode::InvalidArgument,
        ControllerError::PartitionBusy { .. } | ControllerError::OperationPhase { .. } => ErrorCode::Aborted,
        ControllerError::NodeDecommissioning(_) | ControllerError::CannotDecommission { .. } => {
            ErrorCode::FailedPrecondition
        }
    }
}

pub fn topic_error_code(err: &TopicError) -> ErrorCode {
    match err {
        TopicError::TooManyPartitions { .. } => ErrorCode::ResourceExhausted,
        TopicError::ReplicationFactorTooLarge { .. } => ErrorCode::FailedPrecondition,
        _ => ErrorCode::InvalidArgument,
    }
}
