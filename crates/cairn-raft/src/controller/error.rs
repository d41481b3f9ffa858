//! `ControllerError`: the controller's refusals. Decided at apply time from the replicated
//! state, so every replica refuses alike, and carried in the command's response.
//!
//! Shared by the commands and every part of the controller, so it imports none of them.

use cairn_types::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};

/// Controller decisions made at apply time: deterministic on every replica.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error, PartialEq, Eq)]
pub enum ControllerError {
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    #[error("the cluster already has {max} topics, the configured maximum")]
    TooManyTopics { max: usize },
    #[error("replication factor {requested} exceeds the {nodes} registered node(s)")]
    NotEnoughNodes { requested: u32, nodes: usize },
    #[error(
        "topic {topic:?} has {current} partitions; it can only grow, so ask for more than {current} (not {requested})"
    )]
    PartitionsCanOnlyGrow { topic: String, current: u32, requested: u32 },
    #[error("node {0} is not part of the cluster")]
    NodeNotFound(NodeId),
    #[error(
        "node {node} still holds {replicas} partition replica(s); move them off first, or remove it with --force \
         (those partitions then run one replica short)"
    )]
    NodeHoldsReplicas { node: NodeId, replicas: u32 },
    #[error("topic {topic:?} has no partition {partition}")]
    PartitionNotFound { topic: String, partition: PartitionId },
    #[error("node {node} holds no replica of {topic}/{partition}")]
    NotAReplica { node: NodeId, topic: String, partition: PartitionId },
    #[error("node {node} already holds a replica of {topic}/{partition}; pick another target")]
    AlreadyAReplica { node: NodeId, topic: String, partition: PartitionId },
    #[error("{topic}/{partition} is already being moved by operation {operation}; wait for it (cairn operation list)")]
    PartitionBusy { topic: String, partition: PartitionId, operation: u64 },
    #[error("node {0} is being decommissioned, so no replica may move to it")]
    NodeDecommissioning(NodeId),
    #[error("node {node} cannot be decommissioned: {detail}; add a node first or lower the replication factor")]
    CannotDecommission { node: NodeId, detail: String },
    #[error("operation {0} does not exist")]
    OperationNotFound(u64),
    #[error("operation {id} is {phase}")]
    OperationPhase { id: u64, phase: String },
}
