//! Drives partition groups' Raft membership toward the controller's desired state.
//!
//! Every node runs the mover loop. For each active move whose partition this node leads, it
//! takes the next step toward the membership the controller wants (add the target as a
//! learner, promote it and drop the source with one joint-consensus change, or restore the
//! old voters of a cancelled move), one membership change at a time per group, and reports
//! progress back through the controller. Every step is re-derived from replicated state and
//! the group's current membership, so a new leader (of the partition or of the controller)
//! simply carries on.
//!
//! The loop also hands a partition's leadership to its preferred replica (the first of its
//! replica list) once that replica is caught up, and, on the controller leader, finishes
//! decommissions and starts automatic rebalancing when the set of nodes changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cairn_types::{CONTROLLER_GROUP_ID, NodeId, now_ms};
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState};

use super::controller_write_refusal::ControllerWriteRefusal;
use super::{BACKGROUND_WRITE_TIMEOUT, Host, HostError, MEMBERSHIP_CHANGE_TIMEOUT, PartitionReplica, write_result};
use crate::command::{CommandResponse, ControllerCommand};
use crate::controller::{ControllerState, Operation, OperationKind, Phase};
use crate::type_config::TypeConfig;
use crate::{decode, encode};

/// How often the mover looks at its moves when nothing wakes it sooner.
const MOVER_TICK: Duration = Duration::from_millis(250);
/// How often a copying move reports its progress to the controller.
const PROGRESS_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often leaders check whether their partition's preferred replica should lead.
const PREFERRED_LEADER_CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// A replica this many entries behind the leader's last log entry counts as caught up:
/// under load every replica is a few entries (those in flight) behind.
const CAUGHT_UP_ENTRIES: u64 = 32;
/// Test hook, for tests only: while the file this variable names exists, leaders do not
/// report promoted moves done, so a test can act between a move's membership change and
/// its `FinishOperation` (a cancel racing the promotion). Unset, it changes nothing.
pub const HOLD_PROMOTED_MOVES_ENV: &str = "CAIRN_TEST_HOLD_PROMOTED_MOVES";

/// Whether this node's replica, with `metrics`, may propose the next membership change of
/// its group: it leads the group and is a member of the group's latest membership.
///
/// A leader that removed itself (the source of a move with replication factor 1 is the only
/// voter, so nobody else can drive the change) stays in openraft's `Leader` state after its
/// removal commits, until openraft's step-down watcher hands the leadership to a voter of
/// the new membership (`removed_leader_step_down`: 150 ms, then a transfer and, a heartbeat
/// interval later, a refresh that makes it a learner). If a cancel makes this node's mover
/// re-add itself in that window, openraft appends the membership entry on a core whose own
/// state says it does not lead (`is_leader` requires being in the membership), and its
/// assertion "Only leader is allowed to call update_effective_membership()" panics the
/// RaftCore: that replica is dead until the process restarts, and the cancelled move never
/// finishes. Raft itself says the same (Ongaro's thesis, 4.2.2): a leader outside the new
/// configuration manages the cluster only until that configuration is committed, then steps
/// down. So such a leader proposes no membership (it may still report a settled membership
/// to the controller); the group's next leader, elected among the new voters or handed the
/// leadership, proposes it, and re-adding this node then reaches it as an
/// AppendEntries at that leader's higher term, which makes its stale leader state follow.
fn proposes_membership(metrics: &RaftMetrics<TypeConfig>, me: NodeId) -> bool {
    metrics.state == ServerState::Leader && metrics.membership_config.membership().get_node(&me).is_some()
}

/// Whether the test hook `HOLD_PROMOTED_MOVES_ENV` holds promoted moves now.
fn promoted_moves_held() -> bool {
    static GATE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let gate = GATE.get_or_init(|| std::env::var_os(HOLD_PROMOTED_MOVES_ENV).map(std::path::PathBuf::from));
    gate.as_deref().is_some_and(std::path::Path::exists)
}

impl Host {
    pub(super) async fn mover_loop(self: Arc<Self>) {
        let mut view = self.controller_view.clone();
        let mut last_report: HashMap<u64, tokio::time::Instant> = HashMap::new();
        let mut last_leader_check = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = view.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(MOVER_TICK) => {}
            }
            let state = self.controller_state();
            for op in state.operations.values().filter(|op| op.phase.is_active()) {
                if let Err(err) = self.step_move(&state, op, &mut last_report).await {
                    tracing::warn!(operation = op.id, error = %err, "replica move step failed; retrying");
                }
            }
            last_report.retain(|id, _| state.operations.get(id).is_some_and(|op| op.phase.is_active()));
            if last_leader_check.elapsed() >= PREFERRED_LEADER_CHECK_INTERVAL {
                last_leader_check = tokio::time::Instant::now();
                self.hand_over_to_preferred_leaders(&state).await;
            }
            if let Err(err) = self.controller_duties(&state).await {
                tracing::warn!(error = %err, "controller duties failed; retrying");
            }
        }
    }

    /// One step of move `op`, if this node leads its partition.
    async fn step_move(
        &self,
        state: &ControllerState,
        op: &Operation,
        last_report: &mut HashMap<u64, tokio::time::Instant>,
    ) -> Result<(), HostError> {
        let Some(planned) = op.as_move() else { return Ok(()) };
        if op.phase == Phase::Queued {
            return Ok(());
        }
        let Ok(assignment) = state.assignment(&planned.topic, planned.partition) else { return Ok(()) };
        if assignment.operation != Some(op.id) {
            return Ok(());
        }
        let Some(replica) = self.partition(planned.group_id) else { return Ok(()) };
        let metrics = replica.metrics();
        if metrics.state != ServerState::Leader {
            return Ok(());
        }
        let (voters, learners) = state.desired_membership(assignment);
        if !self.converge_membership(&replica, &metrics, &voters, &learners).await? {
            return Ok(());
        }
        let bytes_total = replica.view.borrow().log.size_bytes;
        let command = match op.phase {
            Phase::Copying if self.caught_up(&metrics, planned.to) => ControllerCommand::MoveProgress {
                id: op.id,
                phase: Phase::Promoting,
                bytes_copied: bytes_total,
                bytes_total,
            },
            Phase::Copying => {
                let due = last_report.get(&op.id).is_none_or(|at| at.elapsed() >= PROGRESS_REPORT_INTERVAL);
                let bytes_copied = replica.streamed.get(planned.to).min(bytes_total);
                if !due || (bytes_copied == op.bytes_copied && bytes_total == op.bytes_total) {
                    return Ok(());
                }
                last_report.insert(op.id, tokio::time::Instant::now());
                ControllerCommand::MoveProgress { id: op.id, phase: Phase::Copying, bytes_copied, bytes_total }
            }
            Phase::Promoting if promoted_moves_held() => return Ok(()),
            Phase::Promoting | Phase::Cancelling => ControllerCommand::FinishOperation { id: op.id },
            Phase::Queued | Phase::Done | Phase::Cancelled => return Ok(()),
        };
        tracing::info!(operation = op.id, group = planned.group_id, ?command, "replica move step");
        self.propose_to_controller(command).await?;
        Ok(())
    }

    /// Takes one step toward `voters` and `learners` for a group this node leads; true once
    /// the group's committed membership is exactly that.
    async fn converge_membership(
        &self,
        replica: &PartitionReplica,
        metrics: &RaftMetrics<TypeConfig>,
        voters: &BTreeSet<NodeId>,
        learners: &BTreeSet<NodeId>,
    ) -> Result<bool, HostError> {
        let group = replica.group_id;
        // One membership change at a time: wait for the last one to commit.
        if metrics.membership_config.log_id() != metrics.committed_membership_config.log_id() {
            return Ok(false);
        }
        let membership = metrics.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            return Ok(false);
        }
        let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        let current_voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let settled = current_voters == *voters && members.iter().all(|n| voters.contains(n) || learners.contains(n));
        if !settled && !proposes_membership(metrics, self.config.node_id) {
            return Ok(false);
        }
        let nodes = self.cluster_nodes();
        if let Some(missing) = voters.union(learners).find(|n| !members.contains(n)) {
            let Some(address) = nodes.get(missing) else {
                return Err(HostError::Membership { group, detail: format!("node {missing} has no known address") });
            };
            tracing::info!(group, node = missing, "adding a learner");
            self.renew_lease(replica).await;
            let added = replica.raft.add_learner(*missing, BasicNode { addr: address.clone() }, false).await;
            write_result(group, added)?;
            return Ok(false);
        }
        if current_voters != *voters {
            if !voters.difference(&current_voters).all(|n| self.caught_up(metrics, *n)) {
                return Ok(false);
            }
            if !voters.contains(&self.config.node_id) {
                // Hand the leadership to a caught-up voter that stays, then let it finish.
                if let Some(next) =
                    voters.intersection(&current_voters).find(|n| self.caught_up(metrics, **n) && self.is_live(**n))
                {
                    tracing::info!(group, to = next, "leaving the group: handing over its leadership first");
                    self.start_transfer(replica, *next).await?;
                    return Ok(false);
                }
            }
            tracing::info!(group, ?voters, "changing voters (joint consensus)");
            self.renew_lease(replica).await;
            let change = replica.raft.change_membership(voters.clone(), false);
            let changed =
                tokio::time::timeout(MEMBERSHIP_CHANGE_TIMEOUT, change).await.map_err(|_| HostError::Membership {
                    group,
                    detail: format!("the voter change did not commit within {} s", MEMBERSHIP_CHANGE_TIMEOUT.as_secs()),
                })?;
            write_result(group, changed)?;
            return Ok(false);
        }
        let extra: BTreeSet<NodeId> =
            members.iter().filter(|n| !voters.contains(n) && !learners.contains(n)).copied().collect();
        if !extra.is_empty() {
            tracing::info!(group, ?extra, "removing learners");
            self.renew_lease(replica).await;
            let removed = replica.raft.change_membership(ChangeMembers::RemoveNodes(extra), false).await;
            write_result(group, removed)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Whether `node`'s log is within `CAUGHT_UP_ENTRIES` of the leader's.
    fn caught_up(&self, metrics: &RaftMetrics<TypeConfig>, node: NodeId) -> bool {
        if node == self.config.node_id {
            return true;
        }
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&node))
            .and_then(|matched| matched.as_ref().map(|log_id| log_id.index));
        matched.is_some_and(|matched| matched + CAUGHT_UP_ENTRIES >= last)
    }

    /// Whether `node` sent its node heartbeat recently.
    fn is_live(&self, node: NodeId) -> bool {
        self.liveness.is_live(node, self.failure_detection())
    }

    /// Leaders of partitions without a move under way hand leadership to the preferred
    /// replica (the first of the list) when it is a live, fully caught-up voter: leaders
    /// spread as the controller placed them, and return after a failover.
    async fn hand_over_to_preferred_leaders(&self, state: &ControllerState) {
        if !self.config.auto_balance {
            return;
        }
        for replica in self.partitions() {
            let Some(assignment) = state
                .topics
                .get(&replica.topic)
                .and_then(|t| t.partitions.iter().find(|p| p.group_id == replica.group_id && p.operation.is_none()))
            else {
                continue;
            };
            let Some(preferred) = assignment.replicas.first().copied() else { continue };
            if preferred == self.config.node_id {
                continue;
            }
            let metrics = replica.metrics();
            if metrics.state != ServerState::Leader
                || !metrics.membership_config.membership().voter_ids().any(|id| id == preferred)
                || !self.caught_up(&metrics, preferred)
                || !self.is_live(preferred)
            {
                continue;
            }
            tracing::info!(group = replica.group_id, to = preferred, "handing leadership to the preferred replica");
            if let Err(err) = self.start_transfer(&replica, preferred).await {
                tracing::warn!(group = replica.group_id, error = %err, "leader hand-over failed");
            }
        }
    }

    /// On the controller leader: remove decommissioned nodes once they are empty, and
    /// rebalance when the set of nodes changed (automatic balancing).
    async fn controller_duties(&self, state: &ControllerState) -> Result<(), HostError> {
        let metrics = self.controller_metrics();
        if metrics.current_leader != Some(self.config.node_id) || metrics.state != ServerState::Leader {
            return Ok(());
        }
        for op in state.operations.values().filter(|op| op.phase.is_active()) {
            if let OperationKind::Decommission { node } = op.kind
                && state.groups_of(node).next().is_none()
            {
                tracing::info!(node, operation = op.id, "decommissioned node is empty: removing it");
                self.remove_node(node, false).await?.map_err(|err| HostError::Raft(err.to_string()))?;
            }
        }
        if state.operations.values().any(|op| op.phase.is_active()) {
            return Ok(());
        }
        let members: BTreeMap<NodeId, String> =
            metrics.membership_config.membership().nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        let placeable: BTreeSet<NodeId> = state.placeable_nodes(&members).into_keys().collect();
        let nodes_changed = self.config.auto_balance && placeable != state.balanced_nodes;
        if !nodes_changed && !state.rebalance_unfinished {
            return Ok(());
        }
        tracing::info!(nodes = ?placeable, nodes_changed, "rebalancing");
        let rebalance =
            ControllerCommand::Rebalance { created_ms: now_ms(), moves_active_max: self.config.moves_active_max };
        tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, self.controller_write(rebalance)).await.map_err(|_| {
            HostError::NoLeader { group: CONTROLLER_GROUP_ID, waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64 }
        })??;
        Ok(())
    }

    /// Proposes `command` at the controller leader: here, or over the Raft transport.
    pub(super) async fn propose_to_controller(&self, command: ControllerCommand) -> Result<CommandResponse, HostError> {
        let local = tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, self.controller_write(command.clone()))
            .await
            .map_err(|_| HostError::NoLeader {
                group: CONTROLLER_GROUP_ID,
                waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64,
            })?;
        let (leader, address) = match local {
            Err(HostError::NotLeader { leader: Some(leader), leader_address: Some(address), .. })
                if leader != self.config.node_id =>
            {
                (leader, address)
            }
            other => return other,
        };
        let call = self.transport.call(
            leader,
            address,
            CONTROLLER_GROUP_ID,
            super::RpcKind::ControllerWrite,
            encode(&command)?,
        );
        let reply = tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, call)
            .await
            .map_err(|_| HostError::NoLeader {
                group: CONTROLLER_GROUP_ID,
                waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64,
            })?
            .map_err(|err| HostError::Raft(err.to_string()))?;
        let answer: Result<CommandResponse, ControllerWriteRefusal> = decode(&reply)?;
        answer.map_err(ControllerWriteRefusal::into_host_error)
    }

    /// Serves `RpcKind::ControllerWrite`: only the commands partition leaders report.
    pub(super) async fn serve_controller_write(&self, payload: &[u8]) -> Result<Vec<u8>, HostError> {
        let command: ControllerCommand = decode(payload)?;
        let answer = match command {
            ControllerCommand::MoveProgress { .. }
            | ControllerCommand::FinishOperation { .. }
            | ControllerCommand::PreferLeader { .. } => {
                match tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, self.controller_write(command)).await {
                    Ok(written) => written.map_err(ControllerWriteRefusal::from_host_error),
                    Err(_) => {
                        Err(ControllerWriteRefusal::TimedOut { waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64 })
                    }
                }
            }
            other => Err(ControllerWriteRefusal::Failed(format!(
                "controller command {other:?} cannot be proposed over the Raft transport"
            ))),
        };
        Ok(encode(&answer)?)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use openraft::{BasicNode, Membership, RaftMetrics, ServerState};

    use super::proposes_membership;
    use crate::type_config::{StoredMembership, TypeConfig};

    /// Node 1's metrics in `state`, with a membership of `voters` and `learners`.
    fn metrics(state: ServerState, voters: &[u64], learners: &[u64]) -> RaftMetrics<TypeConfig> {
        let mut metrics = RaftMetrics::new_initial(1);
        metrics.state = state;
        let voters: BTreeSet<u64> = voters.iter().copied().collect();
        let membership: Membership<u64, BasicNode> =
            Membership::new_with_defaults(vec![voters], learners.iter().copied());
        metrics.membership_config = Arc::new(StoredMembership::new(None, membership));
        metrics
    }

    #[test]
    fn only_a_leader_in_its_membership_proposes_membership_changes() {
        assert!(proposes_membership(&metrics(ServerState::Leader, &[1, 2], &[]), 1));
        // A leader may be a learner of its membership (openraft allows it): it still leads.
        assert!(proposes_membership(&metrics(ServerState::Leader, &[2], &[1]), 1));
        // A leader whose removal committed leads until openraft steps it down: it proposes
        // no membership (openraft would panic), the new voters' leader does.
        assert!(!proposes_membership(&metrics(ServerState::Leader, &[2], &[]), 1));
        assert!(!proposes_membership(&metrics(ServerState::Follower, &[1, 2], &[]), 1));
        assert!(!proposes_membership(&metrics(ServerState::Learner, &[2], &[1]), 1));
    }
}
