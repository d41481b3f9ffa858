//! The one place where errors become gRPC statuses: stable codes, actionable messages.

use cairn_raft::{ControllerError, HostError};
use cairn_storage::StorageError;
use cairn_types::TopicError;
use tonic::Status;

pub fn from_host(err: HostError) -> Status {
    match err {
        HostError::NotLeader { group, leader: Some(leader), leader_address } => crate::forward::not_leader(
            Status::unavailable(format!(
                "this node does not lead group {group}; the leader is node {leader} at {}: retry there or shortly",
                leader_address.as_deref().unwrap_or("an unknown address")
            )),
            leader_address.as_deref(),
        ),
        HostError::NotLeader { group, leader: None, .. } => crate::forward::not_leader(
            Status::unavailable(format!("group {group} is electing a leader; retry shortly")),
            None,
        ),
        HostError::NoLeader { group, waited_ms } => {
            Status::unavailable(format!("group {group} had no leader within {waited_ms} ms; retry shortly"))
        }
        err @ (HostError::Indeterminate { .. }
        | HostError::LeaderTransferTimedOut { .. }
        | HostError::MembershipChanging { .. }) => Status::unavailable(err.to_string()),
        err @ HostError::UnknownGroup(_) => Status::not_found(err.to_string()),
        err @ (HostError::Misrouted { .. } | HostError::Membership { .. }) => {
            Status::failed_precondition(err.to_string())
        }
        HostError::Raft(message) => {
            tracing::error!(%message, "raft failure");
            Status::internal(format!("raft failure on this node: {message}"))
        }
        HostError::Storage(err) => {
            tracing::error!(error = %err, "storage failure");
            Status::internal(format!("storage failure on this node: {err}"))
        }
    }
}

pub fn from_storage(err: StorageError) -> Status {
    match err {
        err @ StorageError::OffsetOutOfRange { .. } => Status::out_of_range(err.to_string()),
        err @ (StorageError::Corrupt { .. } | StorageError::CorruptMeta { .. }) => {
            tracing::error!(error = %err, "stored data failed verification");
            Status::data_loss(format!("{err}; this replica's copy is damaged, read from another replica"))
        }
        err => {
            tracing::error!(error = %err, "storage failure");
            Status::internal(err.to_string())
        }
    }
}

pub fn from_controller(err: ControllerError) -> Status {
    match err {
        err @ ControllerError::TopicExists(_) => Status::already_exists(err.to_string()),
        err @ ControllerError::TopicNotFound(_) => Status::not_found(err.to_string()),
        err @ ControllerError::TooManyTopics { .. } => Status::resource_exhausted(err.to_string()),
        err @ (ControllerError::NotEnoughNodes { .. } | ControllerError::NodeHoldsReplicas { .. }) => {
            Status::failed_precondition(err.to_string())
        }
        err @ (ControllerError::NodeNotFound(_)
        | ControllerError::PartitionNotFound { .. }
        | ControllerError::OperationNotFound(_)) => Status::not_found(err.to_string()),
        err @ (ControllerError::PartitionsCanOnlyGrow { .. }
        | ControllerError::NotAReplica { .. }
        | ControllerError::AlreadyAReplica { .. }) => Status::invalid_argument(err.to_string()),
        err @ (ControllerError::PartitionBusy { .. } | ControllerError::OperationPhase { .. }) => {
            Status::aborted(err.to_string())
        }
        err @ (ControllerError::NodeDecommissioning(_) | ControllerError::CannotDecommission { .. }) => {
            Status::failed_precondition(err.to_string())
        }
    }
}

pub fn from_topic(err: TopicError) -> Status {
    match err {
        err @ TopicError::TooManyPartitions { .. } => Status::resource_exhausted(err.to_string()),
        err @ TopicError::ReplicationFactorTooLarge { .. } => Status::failed_precondition(err.to_string()),
        err => Status::invalid_argument(err.to_string()),
    }
}

pub fn topic_not_found(topic: &str) -> Status {
    Status::not_found(format!("topic {topic:?} does not exist; create it with `cairn topic create {topic}`"))
}

pub fn partition_not_found(topic: &str, partition: u32, count: u32) -> Status {
    Status::not_found(format!("topic {topic:?} has partitions 0..{count}; partition {partition} does not exist"))
}

/// A request forwarded `hops` times already reached a node without a replica of the
/// partition: it cannot be forwarded again. Nothing was proposed, so it is safe to retry.
pub fn last_hop_without_replica(node: u64, topic: &str, partition: u32, hops: u32) -> Status {
    crate::forward::not_leader(
        Status::unavailable(format!(
            "node {node} holds no replica of {topic}/{partition} and the request was forwarded {hops} times \
             already; retry shortly"
        )),
        None,
    )
}

/// `offset` is below the partition's log start, or still past its high watermark.
pub fn offset_outside(offset: u64, state: &cairn_storage::PartitionLogState) -> Status {
    Status::out_of_range(format!(
        "offset {offset} is outside the partition's [{}, {}]",
        state.log_start_offset, state.next_offset
    ))
}

/// A producer id this node's view of the controller does not know. Ids start at 1, so 0
/// was never handed out; an id at or above `next_producer_id` may have been, by a
/// controller leader this node has not caught up with yet: retryable.
pub fn unknown_producer(producer_id: u64, next_producer_id: u64) -> Status {
    if producer_id == 0 {
        return Status::failed_precondition("producer id 0 is never handed out: get one from InitProducer");
    }
    Status::unavailable(format!(
        "producer id {producer_id} is not known on this node yet (its view of the controller has ids below \
         {next_producer_id}): retry shortly; an id that did not come from InitProducer is never accepted"
    ))
}
