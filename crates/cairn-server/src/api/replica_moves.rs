//! Replica moves and leadership: moving a partition's replica, rebalancing the cluster,
//! handing a partition's leadership over, and listing the operations under way.

use cairn_raft::{CommandResponse, ControllerCommand, HostError, Operation};
use cairn_types::{NodeId, now_ms};

use crate::api::controller_leader::unexpected;
use crate::api::forwarding_bounds::HOPS_MAX;
use crate::api::nodes::operation_ids;
use crate::api::topic_lookup::partition_of;
use crate::api::{AdminError, CairnApi, MovePartitionRequest, RebalanceAnswer, TransferLeaderRequest};

impl CairnApi {
    /// Records a replica move; answers the operation ids.
    pub async fn move_partition(&self, request: MovePartitionRequest, hops: u32) -> Result<Vec<u64>, AdminError> {
        if request.from_node == request.to_node {
            return Err(AdminError::MoveToSameNode);
        }
        self.topic(&request.topic)?;
        let command = ControllerCommand::MovePartition {
            topic: request.topic.clone(),
            partition: request.partition,
            from: request.from_node,
            to: request.to_node,
            created_ms: now_ms(),
            moves_active_max: self.host.config().moves_active_max,
        };
        match self.controller_write(command, hops).await? {
            Ok(response) => operation_ids(response),
            Err(leader) => self.forward.move_partition(leader, request, hops).await.map_err(AdminError::Remote),
        }
    }

    /// Plans a rebalance from this node's view (`dry_run`), or records one at the
    /// controller leader, planned there at apply time.
    pub async fn rebalance(&self, dry_run: bool, hops: u32) -> Result<RebalanceAnswer, AdminError> {
        if dry_run {
            return Ok(RebalanceAnswer::new(&self.host.plan_rebalance(), Vec::new()));
        }
        let command = ControllerCommand::Rebalance {
            created_ms: now_ms(),
            moves_active_max: self.host.config().moves_active_max,
        };
        match self.controller_write(command, hops).await? {
            Ok(CommandResponse::Rebalanced { plan, operations }) => Ok(RebalanceAnswer::new(&plan, operations)),
            Ok(other) => Err(unexpected(other)),
            Err(leader) => self.forward.rebalance(leader, hops).await.map_err(AdminError::Remote),
        }
    }

    /// Hands `topic`/`partition`'s leadership to a replica; answers the new leader.
    pub async fn transfer_leader(&self, request: TransferLeaderRequest, hops: u32) -> Result<NodeId, AdminError> {
        let topic = self.topic(&request.topic)?;
        let assignment = partition_of(&topic, request.partition)?;
        if !assignment.replicas.contains(&request.to_node) {
            return Err(AdminError::LeaderNotAReplica {
                node: request.to_node,
                topic: request.topic,
                partition: request.partition,
                replicas: assignment.replicas.clone(),
            });
        }
        let (group, to) = (assignment.group_id, request.to_node);
        let leader_address = if self.host.partition(group).is_some() {
            match self.host.transfer_leader(group, to).await {
                Ok(()) => return Ok(to),
                Err(HostError::NotLeader { leader_address: Some(address), leader, .. })
                    if leader != Some(self.host.node_id()) =>
                {
                    Some(address)
                }
                Err(err) => return Err(AdminError::Host(err)),
            }
        } else {
            None
        };
        if hops >= HOPS_MAX {
            return Err(AdminError::LeaderMoved);
        }
        // Ask the leader, or a replica (which knows the leader) when this node has none.
        let address = match leader_address {
            Some(address) => address,
            None => {
                let nodes = self.host.cluster_nodes();
                assignment
                    .replicas
                    .iter()
                    .find_map(|replica| nodes.get(replica).cloned())
                    .ok_or(AdminError::NoReplicaReachable)?
            }
        };
        self.forward.transfer_leader(address, request, hops).await.map_err(AdminError::Remote)
    }

    /// The operations under way, or (`all`) every one the controller remembers.
    pub fn list_operations(&self, all: bool) -> Vec<Operation> {
        let state = self.host.controller_state();
        state.operations.values().filter(|op| all || op.phase.is_active()).cloned().collect()
    }
}
