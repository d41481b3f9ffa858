//! openraft's type configuration, one for every Raft group (the controller and all
//! partitions), and the aliases of openraft's types under it that the crate uses.

use crate::command::{Command, CommandResponse};

openraft::declare_raft_types!(
    /// One type configuration for every Raft group: the controller and all partitions.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Raft<SM> = openraft::Raft<TypeConfig, SM>;
