//! Cluster membership: a node joining, a node removed, a node decommissioned (its
//! replicas moved away first). All run at the controller leader.

use cairn_raft::{CommandResponse, ControllerCommand};
use cairn_types::{NodeId, now_ms};

use crate::api::controller_leader::unexpected;
use crate::api::{AdminError, CairnApi, JoinRequest, RemoveNodeRequest};

impl CairnApi {
    /// Adds a node to the cluster (as a learner of the controller group); answers the
    /// cluster's identity.
    pub async fn join_cluster(&self, request: JoinRequest, hops: u32) -> Result<String, AdminError> {
        if request.node_id == 0 || request.address.is_empty() {
            return Err(AdminError::JoinWithoutIdentity);
        }
        let cluster = self.cluster.get();
        if cluster.is_empty() {
            return Err(AdminError::StillJoining(self.host.node_id()));
        }
        if !request.cluster.is_empty() && request.cluster != cluster {
            return Err(AdminError::OtherCluster { node: request.node_id, theirs: request.cluster, ours: cluster });
        }
        if self.host.controller_state().removed.contains(&request.node_id) {
            return Err(AdminError::NodeRemoved(request.node_id));
        }
        if let Some(address) = self.host.cluster_nodes().get(&request.node_id)
            && *address != request.address
            && self.host.controller_metrics().membership_config.membership().voter_ids().any(|id| id == request.node_id)
        {
            return Err(AdminError::NodeIdTaken { node: request.node_id, address: address.clone() });
        }
        let (node_id, address) = (request.node_id, request.address.clone());
        match self.at_controller_leader(hops, || self.host.add_node(node_id, address.clone())).await? {
            Ok(()) => Ok(cluster),
            Err(leader) => self.forward.join_cluster(leader, request, hops).await.map_err(AdminError::Remote),
        }
    }

    /// Removes a node; answers how many replicas it still held.
    pub async fn remove_node(&self, request: RemoveNodeRequest, hops: u32) -> Result<u32, AdminError> {
        if request.node_id == 0 {
            return Err(AdminError::NodeIdZero);
        }
        let RemoveNodeRequest { node_id, force } = request;
        match self.at_controller_leader(hops, || self.host.remove_node(node_id, force)).await? {
            Ok(result) => result.map_err(AdminError::Controller),
            Err(leader) => self.forward.remove_node(leader, request, hops).await.map_err(AdminError::Remote),
        }
    }

    /// Records the decommission of a node (its replicas moved away, then it is removed);
    /// answers the operation ids.
    pub async fn decommission_node(&self, node_id: NodeId, hops: u32) -> Result<Vec<u64>, AdminError> {
        if node_id == 0 {
            return Err(AdminError::NodeIdZero);
        }
        let command = ControllerCommand::Decommission {
            node_id,
            created_ms: now_ms(),
            moves_active_max: self.host.config().moves_active_max,
        };
        match self.controller_write(command, hops).await? {
            Ok(response) => operation_ids(response),
            Err(leader) => self.forward.decommission_node(leader, node_id, hops).await.map_err(AdminError::Remote),
        }
    }
}

/// The operation ids a move or decommission answered.
pub(crate) fn operation_ids(response: CommandResponse) -> Result<Vec<u64>, AdminError> {
    match response {
        CommandResponse::Operations(result) => result.map_err(AdminError::Controller),
        other => Err(unexpected(other)),
    }
}
