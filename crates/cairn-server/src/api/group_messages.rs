//! Consumer group calls and their answers, on domain types (the gRPC adapter converts
//! them in `grpc/group_convert.rs`; a Kafka listener would map JoinGroup, Heartbeat,
//! LeaveGroup, OffsetCommit and OffsetFetch onto the same calls).

use cairn_raft::group::{Assignor, CommittedPosition, GroupRefusal, MemberAssignment, PositionCommit, TopicPartition};
use cairn_types::NodeId;

/// One call to a group's coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRequest {
    pub group: String,
    pub call: GroupCall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCall {
    Join {
        member_id: String,
        client_id: String,
        topics: Vec<String>,
        assignor: Assignor,
        session_timeout_ms: u32,
        rebalance_timeout_ms: u32,
    },
    Heartbeat {
        member_id: String,
    },
    Leave {
        member_id: String,
    },
    Commit {
        member_id: String,
        generation: u64,
        positions: Vec<PositionCommit>,
        release: Vec<TopicPartition>,
    },
    Reset {
        positions: Vec<PositionCommit>,
    },
    Describe,
    Delete,
}

impl GroupCall {
    /// Whether the call changes the group (a Raft write); the others are answered from the
    /// coordinator's applied state.
    pub fn writes(&self) -> bool {
        !matches!(self, GroupCall::Heartbeat { .. } | GroupCall::Describe)
    }
}

/// What the coordinator answered. `refusal` set: the group refused, nothing changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupAnswer {
    pub refusal: Option<GroupRefusal>,
    pub generation: u64,
    pub member_id: String,
    /// Join and heartbeat.
    pub assignment: Option<MemberAssignment>,
    /// Join and heartbeat: the committed positions of what the member owns.
    pub positions: Vec<(TopicPartition, CommittedPosition)>,
    pub description: Option<GroupDescription>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDescription {
    pub generation: u64,
    pub assignor: Assignor,
    pub members: Vec<GroupMemberInfo>,
    pub partitions: Vec<GroupPartitionInfo>,
    pub coordinator_partition: u32,
    pub coordinator_node: NodeId,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    pub joined_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionInfo {
    pub partition: TopicPartition,
    pub owner: Option<String>,
    pub target: Option<String>,
    pub position: Option<CommittedPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupSummary {
    pub group: String,
    pub generation: u64,
    pub members: u32,
    pub positions: u32,
    pub assignor: Assignor,
}
