//! What the admin requests ask and answer (topics, nodes, replica moves, leadership), as
//! every front door and `Forward` see them. Imports nothing that serves them.

use cairn_raft::RebalancePlan;
use cairn_types::{GroupId, NodeId, Offset, PartitionId};

/// A topic to create; a replication factor of 0 means 1.
#[derive(Debug, Clone)]
pub struct CreateTopicRequest {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
}

/// A topic to grow to `partitions` partitions.
#[derive(Debug, Clone)]
pub struct AlterTopicRequest {
    pub name: String,
    pub partitions: u32,
}

/// A topic as this node sees it: its configuration, and each partition's replicas, with
/// the leader and bounds of the replica on this node (when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub replication_factor: u32,
    pub retention_ms: Option<u64>,
    pub retention_bytes: Option<u64>,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: PartitionId,
    pub group_id: GroupId,
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
}

/// A node asking to join: its id, the address the others reach it at, and the cluster
/// its data directory belongs to (empty for a new one).
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub address: String,
    pub cluster: String,
}

/// A node to remove; `force` even while partitions list it as a replica.
#[derive(Debug, Clone, Copy)]
pub struct RemoveNodeRequest {
    pub node_id: NodeId,
    pub force: bool,
}

/// `topic`/`partition`'s replica to move from one node to another.
#[derive(Debug, Clone)]
pub struct MovePartitionRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub from_node: NodeId,
    pub to_node: NodeId,
}

/// `topic`/`partition`'s leadership to hand to `to_node` (which becomes preferred).
#[derive(Debug, Clone)]
pub struct TransferLeaderRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub to_node: NodeId,
}

/// What a rebalance moves (replicas, then preferred leaders), and the operations it
/// recorded (none for a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebalanceAnswer {
    pub moves: Vec<PlannedMove>,
    pub leaders: Vec<PlannedLeader>,
    pub operation_ids: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    pub topic: String,
    pub partition: PartitionId,
    pub from_node: NodeId,
    pub to_node: NodeId,
    /// The partition's leader when the move was planned.
    pub leader: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLeader {
    pub topic: String,
    pub partition: PartitionId,
    pub from_node: NodeId,
    pub to_node: NodeId,
}

impl RebalanceAnswer {
    pub(crate) fn new(plan: &RebalancePlan, operation_ids: Vec<u64>) -> RebalanceAnswer {
        RebalanceAnswer {
            moves: plan
                .moves
                .iter()
                .map(|m| PlannedMove {
                    topic: m.topic.clone(),
                    partition: m.partition,
                    from_node: m.from,
                    to_node: m.to,
                    leader: m.leader,
                })
                .collect(),
            leaders: plan
                .leaders
                .iter()
                .map(|l| PlannedLeader {
                    topic: l.topic.clone(),
                    partition: l.partition,
                    from_node: l.from,
                    to_node: l.to,
                })
                .collect(),
            operation_ids,
        }
    }
}
