//! Node membership of the cluster: adding a node (a controller learner, then registered)
//! and removing one (deregistered, then out of the controller group, after it has received
//! its removal when it is alive).

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_types::{CONTROLLER_GROUP_ID, NodeId};
use openraft::{BasicNode, ChangeMembers, RaftMetrics};

use super::error::write_result;
use super::{Host, HostError};
use crate::command::{CommandResponse, ControllerCommand};
use crate::controller::ControllerError;
use crate::type_config::TypeConfig;

/// How long a node removal waits for the node to receive it (see `let_removed_node_catch_up`).
const REMOVED_NODE_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node removal waits for its controller membership change to commit.
pub(super) const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

impl Host {
    /// Adds `node_id` to the cluster: a learner of the controller group (so it follows the
    /// metadata) and a registered node (so topics can place replicas on it). This node
    /// must lead the controller.
    pub async fn add_node(&self, node_id: NodeId, address: String) -> Result<(), HostError> {
        let metrics = self.controller_metrics();
        let known = metrics.membership_config.membership().get_node(&node_id).map(|n| n.addr.clone());
        if known.as_deref() != Some(address.as_str()) {
            let result = self.controller.add_learner(node_id, BasicNode { addr: address.clone() }, false).await;
            write_result(CONTROLLER_GROUP_ID, result)?;
        }
        self.controller_write(ControllerCommand::RegisterNode { node_id, address }).await?;
        Ok(())
    }

    /// Takes `node_id` out of the cluster: deregisters it, so no replica is placed on it
    /// (refused while partitions list it, unless `force`), then removes it from the
    /// controller group. Returns the replicas it still held. This node must lead the
    /// controller. Retrying a removal that stopped half-way finishes it.
    pub async fn remove_node(&self, node_id: NodeId, force: bool) -> Result<Result<u32, ControllerError>, HostError> {
        let membership = self.controller_metrics().membership_config.membership().clone();
        let is_member = membership.get_node(&node_id).is_some();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() == 1 && voters.contains(&node_id) {
            return Err(HostError::Membership {
                group: CONTROLLER_GROUP_ID,
                detail: format!("node {node_id} is the controller's only voter; the cluster cannot lose it"),
            });
        }
        let replicas = match self.controller_write(ControllerCommand::RemoveNode { node_id, force }).await? {
            CommandResponse::NodeRemoved(Ok(replicas)) => replicas,
            // Deregistered by an earlier attempt that stopped before the membership change.
            CommandResponse::NodeRemoved(Err(ControllerError::NodeNotFound(_))) if is_member => 0,
            CommandResponse::NodeRemoved(Err(err)) => return Ok(Err(err)),
            other => return Err(HostError::Raft(format!("unexpected controller outcome {other:?}"))),
        };
        if is_member {
            self.let_removed_node_catch_up(node_id).await;
            let change = if voters.contains(&node_id) {
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            };
            // Removing a voter needs a majority of the new voter set; if it is not there the
            // change cannot commit: answer instead of waiting forever (openraft keeps trying).
            let changed =
                tokio::time::timeout(MEMBERSHIP_CHANGE_TIMEOUT, self.controller.change_membership(change, false))
                    .await
                    .map_err(|_| HostError::Membership {
                        group: CONTROLLER_GROUP_ID,
                        detail: format!(
                            "removing node {node_id} did not commit within {} s: a majority of the remaining \
                         controller voters must be up; it completes once they are",
                            MEMBERSHIP_CHANGE_TIMEOUT.as_secs()
                        ),
                    })?;
            write_result(CONTROLLER_GROUP_ID, changed)?;
        }
        tracing::info!(node_id, force, replicas, "node removed from the cluster");
        Ok(Ok(replicas))
    }

    /// Waits (bounded) until a live node being removed has the controller's log up to its
    /// removal: it stops receiving that log once it leaves the controller group, and a move
    /// to it that the removal cancelled may need it (as the group's leader) to restore the
    /// old voters.
    async fn let_removed_node_catch_up(&self, node_id: NodeId) {
        if !self.liveness.is_live(node_id, self.failure_detection()) {
            return;
        }
        let Some(removal) = self.controller_metrics().last_log_index else { return };
        let caught_up = replicated_up_to(node_id, removal);
        let wait = self.controller.wait(Some(REMOVED_NODE_CATCH_UP_TIMEOUT));
        if wait.metrics(caught_up, "removed node caught up").await.is_err() {
            tracing::warn!(node_id, "the removed node did not receive its removal in time; removing it anyway");
        }
    }
}

/// Whether the leader's metrics show `node_id` has the log up to `index`. A named function,
/// not a closure in the async fn, so that the future is `Send` for every lifetime.
fn replicated_up_to(node_id: NodeId, index: u64) -> impl Fn(&RaftMetrics<TypeConfig>) -> bool + Send {
    move |m| {
        let matched = m.replication.as_ref().and_then(|r| r.get(&node_id).cloned().flatten());
        matched.is_some_and(|log_id| log_id.index >= index)
    }
}
