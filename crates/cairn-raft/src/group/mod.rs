//! Consumer groups, as the coordinator keeps them: a group lives in one partition of the
//! internal `__groups` topic (the partition its name hashes to), and that partition's
//! Raft group replicates every change to it. Its leader is the group's coordinator.
//!
//! - `command.rs`: the changes (`GroupCommand`), their outcomes and the limits;
//! - `state.rs`: one group (members, generation, ownership, committed positions) and how a
//!   command changes it;
//! - `assignor.rs`: which member each partition should go to (range, cooperative-sticky);
//! - `table.rs`: a coordinator partition's groups, shared with the node, and their storage.

pub mod assignor;
pub mod command;
pub mod state;
pub mod table;

pub use assignor::Assignor;
pub use command::{
    GROUP_NAME_LEN_MAX, GROUPS_PER_PARTITION_MAX, GroupCommand, GroupOutcome, GroupRefusal, MEMBERS_PER_GROUP_MAX,
    POSITIONS_PER_GROUP_MAX, PositionCommit, TOPICS_PER_MEMBER_MAX,
};
pub use state::{CommittedPosition, GroupMember, GroupState, MemberAssignment, Ownership, TopicPartition};
pub use table::{GroupStore, GroupTable, SharedGroups};

#[cfg(test)]
mod state_tests;
