//! What a coordinator partition's Raft entry asks of a consumer group, what applying it
//! answers, and the limits that keep a coordinator's state bounded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::assignor::Assignor;
use super::state::TopicPartition;

/// Members one group holds at most.
pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;
/// Committed positions (partitions) one group holds at most.
pub const POSITIONS_PER_GROUP_MAX: usize = 10_000;
/// Groups one coordinator partition holds at most.
pub const GROUPS_PER_PARTITION_MAX: usize = 1_000;
/// Bytes of a group name, member id, client id or commit metadata at most.
pub const GROUP_NAME_LEN_MAX: usize = 255;
/// Topics one member subscribes to at most.
pub const TOPICS_PER_MEMBER_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionCommit {
    pub partition: TopicPartition,
    /// The next offset to consume.
    pub offset: u64,
    pub metadata: String,
}

/// One change to one group. `now_ms` is the proposer's clock, so every replica stamps alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// A member joins, or changes its subscription (a retry with the same member id and
    /// topics changes nothing). `partition_counts` are the subscribed topics' counts as the
    /// proposer knows them.
    Join {
        group: String,
        member_id: String,
        client_id: String,
        topics: Vec<String>,
        assignor: Assignor,
        session_timeout_ms: u32,
        rebalance_timeout_ms: u32,
        partition_counts: BTreeMap<String, u32>,
        now_ms: u64,
    },
    Leave {
        group: String,
        member_id: String,
        now_ms: u64,
    },
    /// The coordinator's leader saw no heartbeat from these members within their session
    /// timeout, or they kept revoked partitions past their rebalance timeout.
    Expire {
        group: String,
        members: Vec<String>,
        now_ms: u64,
    },
    /// A member commits positions at `generation`, and releases partitions it was asked to
    /// give up (after committing their final position in the same entry).
    Commit {
        group: String,
        member_id: String,
        generation: u64,
        positions: Vec<PositionCommit>,
        release: Vec<TopicPartition>,
        now_ms: u64,
    },
    /// An operator sets positions; refused while the group has members.
    ResetPositions {
        group: String,
        positions: Vec<PositionCommit>,
        now_ms: u64,
    },
    /// A subscribed topic grew: rebalance over its new partitions.
    Refresh {
        group: String,
        partition_counts: BTreeMap<String, u32>,
        now_ms: u64,
    },
    /// Removes the group and its positions; refused while it has members.
    Delete {
        group: String,
    },
}

impl GroupCommand {
    pub fn group(&self) -> &str {
        match self {
            GroupCommand::Join { group, .. }
            | GroupCommand::Leave { group, .. }
            | GroupCommand::Expire { group, .. }
            | GroupCommand::Commit { group, .. }
            | GroupCommand::ResetPositions { group, .. }
            | GroupCommand::Refresh { group, .. }
            | GroupCommand::Delete { group } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOutcome {
    Joined { member_id: String, generation: u64 },
    Left { generation: u64 },
    Committed { generation: u64 },
    Refreshed { generation: u64 },
    Deleted,
    Refused(GroupRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GroupRefusal {
    #[error("the group does not exist")]
    UnknownGroup,
    #[error("the member is not in the group (expired after its session timeout, or left): join again")]
    UnknownMember,
    #[error("the group rebalanced: generation {current} is current; heartbeat for the new assignment, then commit")]
    StaleGeneration { current: u64 },
    #[error("the member does not own {partitions:?} in this generation")]
    NotOwned { partitions: Vec<TopicPartition> },
    #[error("the group has {members} members; stop its consumers first")]
    GroupNotEmpty { members: u32 },
    #[error("the group uses the {group} assignor; every member must use the same")]
    AssignorMismatch { group: String },
    #[error("the group has {max} members, the most it may have")]
    TooManyMembers { max: u32 },
    #[error("the group has committed positions for {max} partitions, the most it may have")]
    TooManyPositions { max: u32 },
    #[error("this coordinator partition holds {max} groups, the most it may hold")]
    TooManyGroups { max: u32 },
}
