//! Serving the Raft messages of other nodes: the host's own requests (node heartbeats,
//! membership questions, forwarded controller writes, read index) and each group's
//! openraft RPCs, with the checks on incoming snapshot chunks and snapshots.

use cairn_storage::PartitionLog;
use cairn_types::{CONTROLLER_GROUP_ID, GroupId, NodeId};
use openraft::async_runtime::WatchReceiver;

use super::{Host, HostError};
use crate::network::RpcKind;
use crate::partition::{PartitionSmState, Snapshot, SnapshotChunk, SnapshotReceiver, StateSnapshot};
use crate::type_config::{Raft, TypeConfig, Vote};
use crate::{decode, encode};

impl Host {
    /// Serves one Raft message from another node. The reply is `Result<Resp, String>`.
    pub async fn handle_rpc(
        &self,
        group: GroupId,
        to: NodeId,
        kind: RpcKind,
        payload: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        if to != self.config.node_id {
            return Err(HostError::Misrouted { to, me: self.config.node_id });
        }
        if kind == RpcKind::NodeHeartbeat {
            return self.serve_node_heartbeat(payload);
        }
        if kind == RpcKind::Membership {
            return self.serve_membership(group);
        }
        if group == CONTROLLER_GROUP_ID && kind == RpcKind::ControllerWrite {
            return self.serve_controller_write(payload).await;
        }
        if group == CONTROLLER_GROUP_ID {
            return serve_rpc(&self.controller, None, kind, payload).await;
        }
        if kind == RpcKind::ReadIndex {
            let index = self.read_index(group).await.map_err(|err| err.to_string());
            return Ok(encode(&index)?);
        }
        let replica = self.partition(group).ok_or(HostError::UnknownGroup(group))?;
        serve_rpc(&replica.raft, Some((&replica.log, &replica.snapshots)), kind, payload).await
    }
}

async fn serve_rpc<SM>(
    raft: &Raft<SM>,
    partition: Option<(&PartitionLog, &SnapshotReceiver)>,
    kind: RpcKind,
    payload: &[u8],
) -> Result<Vec<u8>, HostError>
where
    SM: openraft::storage::RaftStateMachine<TypeConfig, SnapshotData = StateSnapshot>,
{
    fn reply<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Vec<u8>, HostError> {
        Ok(encode(&result.map_err(|err| err.to_string()))?)
    }
    match kind {
        RpcKind::AppendEntries => reply(raft.append_entries(decode(payload)?).await),
        RpcKind::Vote => reply(raft.vote(decode(payload)?).await),
        RpcKind::PreVote => reply(raft.pre_vote(decode(payload)?).await),
        RpcKind::SnapshotChunk => {
            let Some((log, snapshots)) = partition else {
                return reply::<(), _>(Err("the controller has no record chunks"));
            };
            let chunk: SnapshotChunk = decode(payload)?;
            tracing::debug!(group = log.group(), batches = chunk.batches.len(), "snapshot chunk received");
            let current = raft.metrics().borrow_watched().vote;
            let imported = snapshots.import(log, current, chunk).await;
            if let Err(err) = &imported {
                tracing::warn!(group = log.group(), error = %err, "snapshot chunk refused");
            }
            reply(imported)
        }
        RpcKind::TransferLeader => reply(raft.handle_transfer_leader(decode(payload)?).await),
        RpcKind::ReadIndex | RpcKind::ControllerWrite | RpcKind::NodeHeartbeat | RpcKind::Membership => {
            // Answered by the host (it needs the group's replica or the controller).
            reply::<u64, _>(Err("this request is served by the host, not a group"))
        }
        RpcKind::InstallSnapshot => {
            let (vote, meta, snapshot): (Vote, crate::type_config::SnapshotMeta, StateSnapshot) = decode(payload)?;
            if let Some((log, snapshots)) = partition {
                let state: PartitionSmState = decode(&snapshot.0)?;
                if let Err(err) = snapshots.check_complete(&vote, meta.last_log_id, &state).await {
                    tracing::warn!(group = log.group(), error = %err, "snapshot refused");
                    return reply::<(), _>(Err(err));
                }
            }
            reply(raft.install_full_snapshot(vote, Snapshot { meta, snapshot }).await)
        }
    }
}
