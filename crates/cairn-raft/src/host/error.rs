//! `HostError`, the host's one error type, and how openraft's write errors map to it
//! (`write_result`): a caller learns the leader to retry at, or that the outcome is
//! unknown.

use std::io;

use cairn_types::{GroupId, NodeId};
use openraft::errors::{ClientWriteError, RaftError};

use crate::command::CommandResponse;
use crate::type_config::TypeConfig;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("this node is not the leader of group {group}")]
    NotLeader { group: GroupId, leader: Option<NodeId>, leader_address: Option<String> },
    #[error("the outcome of the write to group {group} is unknown (leader changed); retry with deduplication")]
    Indeterminate { group: GroupId },
    #[error("group {0} is not hosted on this node")]
    UnknownGroup(GroupId),
    #[error("group {group} has no leader after {waited_ms} ms")]
    NoLeader { group: GroupId, waited_ms: u64 },
    #[error(
        "node {to} did not take over group {group} within {waited_ms} ms; the old leader may still lead: retry, or \
         see `cairn cluster status`"
    )]
    LeaderTransferTimedOut { group: GroupId, to: NodeId, waited_ms: u64 },
    #[error("membership change of group {group} refused: {detail}")]
    Membership { group: GroupId, detail: String },
    /// Another membership change of the group has not committed yet: a passing refusal.
    #[error("group {group} is already changing its membership ({detail}); retry shortly")]
    MembershipChanging { group: GroupId, detail: String },
    #[error("raft message for node {to} arrived at node {me}")]
    Misrouted { to: NodeId, me: NodeId },
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Storage(#[from] io::Error),
}

pub(super) fn write_result(
    group: GroupId,
    result: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    >,
) -> Result<CommandResponse, HostError> {
    match result {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => Err(HostError::NotLeader {
            group,
            leader: forward.leader_id,
            leader_address: forward.leader_node.map(|n| n.addr),
        }),
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Err(HostError::Indeterminate { group }),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            err @ openraft::errors::ChangeMembershipError::InProgress(_),
        ))) => Err(HostError::MembershipChanging { group, detail: err.to_string() }),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(err))) => {
            Err(HostError::Membership { group, detail: err.to_string() })
        }
        Err(err) => Err(HostError::Raft(err.to_string())),
    }
}
