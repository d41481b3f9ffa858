//! A topic as the controller places it: its partitions, each with its Raft group and its
//! replica list (the first replica is the preferred leader), and `prefer`, the one way a
//! replica list is reordered.
//!
//! Shared by the commands, the controller's state and its operations, so it imports none of
//! them.

use cairn_types::{GroupId, NodeId, PartitionId, TopicConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionAssignment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub partition: PartitionId,
    pub group_id: GroupId,
    /// The nodes that hold a replica (during a move, the target too). The first one is the
    /// preferred leader, and bootstraps the group unless the group was ever reassigned.
    pub replicas: Vec<NodeId>,
    /// The active operation (a move) on this partition: at most one at a time.
    #[serde(default)]
    pub operation: Option<u64>,
    /// Set once a move completed: the replica list no longer names the group's founder.
    #[serde(default)]
    pub reassigned: bool,
}

/// Makes `node` the first of `replicas` (the preferred leader), keeping the others' order.
pub(crate) fn prefer(replicas: &mut [NodeId], node: NodeId) {
    if let Some(position) = replicas.iter().position(|n| *n == node) {
        replicas[..=position].rotate_right(1);
    }
}
