use std::collections::{BTreeMap, BTreeSet};

use cairn_types::{GroupId, NodeId, PartitionId, TopicConfig};
use serde::{Deserialize, Serialize};

use crate::command::{ControllerCommand, ControllerError};
use crate::operation::{FINISHED_OPERATIONS_KEPT, LeaderChange, Move, Operation, OperationKind, Phase, RebalancePlan};

/// Cluster metadata, replicated by the controller group. Small: bounded by the topic and
/// partition limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControllerState {
    pub nodes: BTreeMap<NodeId, String>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next Raft group id to hand out. Group ids are never reused.
    pub next_group_id: GroupId,
    /// The next producer id to hand out (ids start at 1). Never reused.
    #[serde(default)]
    pub next_producer_id: u64,
    /// Nodes removed from the cluster: never placed on, even while still controller members
    /// (their membership change may not have happened yet), and never registered again:
    /// node ids are not reused, so a new machine cannot take over a removed node's replicas
    /// with an empty disk.
    #[serde(default)]
    pub removed: BTreeSet<NodeId>,
    /// Replica moves and decommissions, active and recently finished, by id.
    #[serde(default)]
    pub operations: BTreeMap<u64, Operation>,
    #[serde(default)]
    pub next_operation_id: u64,
    /// Nodes being emptied before their removal: never chosen for new replicas.
    #[serde(default)]
    pub decommissioning: BTreeSet<NodeId>,
    /// How many moves copy or promote at once; more wait queued. Set by the command that
    /// last queued moves.
    #[serde(default)]
    pub moves_active_max: u32,
    /// The placeable nodes at the last rebalance: automatic balancing starts when the set
    /// of nodes differs (a node joined, or is being decommissioned or was removed).
    #[serde(default)]
    pub balanced_nodes: BTreeSet<NodeId>,
    /// The last rebalance could not plan every move it wanted (a partition moves once per
    /// round): the controller leader runs another round once its moves are done.
    #[serde(default)]
    pub rebalance_unfinished: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionAssignment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub partition: PartitionId,
    pub group_id: GroupId,
    /// The nodes that hold a replica (during a move, the target too). The first one is the
    /// preferred leader, and bootstraps the group unless the group was ever reassigned.
    pub replicas: Vec<NodeId>,
    /// The active operation (a move) on this partition: at most one at a time.
    #[serde(default)]
    pub operation: Option<u64>,
    /// Set once a move completed: the replica list no longer names the group's founder.
    #[serde(default)]
    pub reassigned: bool,
}

#[derive(Debug, Clone)]
pub enum ControllerOutcome {
    Topic(Result<TopicMeta, ControllerError>),
    TopicDeleted(Result<(), ControllerError>),
    NodeRegistered,
    ProducerId(u64),
    NodeRemoved(Result<u32, ControllerError>),
    Operations(Result<Vec<u64>, ControllerError>),
    Rebalanced(RebalancePlan, Vec<u64>),
    OperationUpdated(Result<(), ControllerError>),
}

impl ControllerState {
    /// Applies `command`. `members` are the controller group's members at this entry
    /// (replicated state, so every replica passes the same): they can hold replicas even
    /// before their registration is applied.
    pub fn apply(&mut self, command: &ControllerCommand, members: &BTreeMap<NodeId, String>) -> ControllerOutcome {
        match command {
            // A removed id stays removed: ids are never reused.
            ControllerCommand::RegisterNode { node_id, .. } if self.removed.contains(node_id) => {
                ControllerOutcome::NodeRegistered
            }
            ControllerCommand::RegisterNode { node_id, address } => {
                self.nodes.insert(*node_id, address.clone());
                ControllerOutcome::NodeRegistered
            }
            ControllerCommand::CreateTopic { name, config, topics_max } => {
                ControllerOutcome::Topic(self.create_topic(name, config, *topics_max, members))
            }
            ControllerCommand::AllocateProducerId => {
                let id = self.next_producer_id.max(1);
                self.next_producer_id = id + 1;
                ControllerOutcome::ProducerId(id)
            }
            ControllerCommand::DeleteTopic { name } => ControllerOutcome::TopicDeleted(self.delete_topic(name)),
            ControllerCommand::AddPartitions { name, partition_count } => {
                ControllerOutcome::Topic(self.add_partitions(name, *partition_count, members))
            }
            ControllerCommand::RemoveNode { node_id, force } => {
                ControllerOutcome::NodeRemoved(self.remove_node(*node_id, *force, members))
            }
            ControllerCommand::MovePartition { topic, partition, from, to, created_ms, moves_active_max } => {
                self.moves_active_max = *moves_active_max;
                let moved = self.move_partition(topic, *partition, *from, *to, *created_ms, members);
                self.activate_queued_moves();
                ControllerOutcome::Operations(moved.map(|id| vec![id]))
            }
            ControllerCommand::Rebalance { created_ms, moves_active_max } => {
                self.moves_active_max = *moves_active_max;
                let plan = self.plan_rebalance(members);
                self.balanced_nodes = self.placeable_nodes(members).into_keys().collect();
                self.rebalance_unfinished = plan.unfinished && !plan.moves.is_empty();
                let ids = self.apply_plan(plan.clone(), *created_ms);
                self.activate_queued_moves();
                ControllerOutcome::Rebalanced(plan, ids)
            }
            ControllerCommand::Decommission { node_id, created_ms, moves_active_max } => {
                self.moves_active_max = *moves_active_max;
                let started = self.decommission(*node_id, *created_ms, members);
                self.activate_queued_moves();
                ControllerOutcome::Operations(started)
            }
            ControllerCommand::MoveProgress { id, phase, bytes_copied, bytes_total } => {
                ControllerOutcome::OperationUpdated(self.move_progress(*id, *phase, *bytes_copied, *bytes_total))
            }
            ControllerCommand::PreferLeader { topic, partition, node } => {
                ControllerOutcome::OperationUpdated(self.prefer_leader(topic, *partition, *node))
            }
            ControllerCommand::FinishOperation { id } => {
                let finished = self.finish_operation(*id);
                self.activate_queued_moves();
                ControllerOutcome::OperationUpdated(finished)
            }
        }
    }

    fn delete_topic(&mut self, name: &str) -> Result<(), ControllerError> {
        let topic = self.topics.remove(name).ok_or_else(|| ControllerError::TopicNotFound(name.to_owned()))?;
        for id in topic.partitions.iter().filter_map(|p| p.operation) {
            if let Some(op) = self.operations.get_mut(&id) {
                op.phase = Phase::Cancelled;
                op.detail = "the topic was deleted".into();
            }
        }
        self.activate_queued_moves();
        self.forget_finished_operations();
        Ok(())
    }

    fn prefer_leader(&mut self, topic: &str, partition: PartitionId, node: NodeId) -> Result<(), ControllerError> {
        let assignment = self.assignment(topic, partition)?;
        if !assignment.replicas.contains(&node) {
            return Err(ControllerError::NotAReplica { node, topic: topic.to_owned(), partition });
        }
        if let Some(operation) = assignment.operation {
            return Err(ControllerError::PartitionBusy { topic: topic.to_owned(), partition, operation });
        }
        if let Some(assignment) = self.assignment_mut(topic, partition) {
            prefer(&mut assignment.replicas, node);
        }
        Ok(())
    }

    /// The assignment of `topic`/`partition`.
    pub fn assignment(&self, topic: &str, partition: PartitionId) -> Result<&PartitionAssignment, ControllerError> {
        let meta = self.topics.get(topic).ok_or_else(|| ControllerError::TopicNotFound(topic.to_owned()))?;
        meta.partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ControllerError::PartitionNotFound { topic: topic.to_owned(), partition })
    }

    fn assignment_mut(&mut self, topic: &str, partition: PartitionId) -> Option<&mut PartitionAssignment> {
        self.topics.get_mut(topic)?.partitions.iter_mut().find(|p| p.partition == partition)
    }

    /// Nodes new replicas may go to: the cluster's nodes less those being decommissioned.
    pub fn placeable_nodes(&self, members: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, String> {
        let mut nodes = self.all_nodes(members);
        nodes.retain(|id, _| !self.decommissioning.contains(id));
        nodes
    }

    fn move_partition(
        &mut self,
        topic: &str,
        partition: PartitionId,
        from: NodeId,
        to: NodeId,
        created_ms: u64,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<u64, ControllerError> {
        if !self.placeable_nodes(members).contains_key(&to) {
            return Err(if self.decommissioning.contains(&to) {
                ControllerError::NodeDecommissioning(to)
            } else {
                ControllerError::NodeNotFound(to)
            });
        }
        let assignment = self.assignment(topic, partition)?;
        if let Some(operation) = assignment.operation {
            return Err(ControllerError::PartitionBusy { topic: topic.to_owned(), partition, operation });
        }
        if !assignment.replicas.contains(&from) {
            return Err(ControllerError::NotAReplica { node: from, topic: topic.to_owned(), partition });
        }
        if assignment.replicas.contains(&to) {
            return Err(ControllerError::AlreadyAReplica { node: to, topic: topic.to_owned(), partition });
        }
        let group_id = assignment.group_id;
        let planned = Move { topic: topic.to_owned(), partition, group_id, from, to, leader: None };
        Ok(self.queue_move(planned, created_ms))
    }

    fn new_operation(&mut self, kind: OperationKind, phase: Phase, created_ms: u64) -> u64 {
        let id = self.next_operation_id.max(1);
        self.next_operation_id = id + 1;
        let operation =
            Operation { id, kind, phase, created_ms, bytes_copied: 0, bytes_total: 0, detail: String::new() };
        self.operations.insert(id, operation);
        id
    }

    fn queue_move(&mut self, planned: Move, created_ms: u64) -> u64 {
        let (topic, partition) = (planned.topic.clone(), planned.partition);
        let id = self.new_operation(OperationKind::Move(planned), Phase::Queued, created_ms);
        if let Some(assignment) = self.assignment_mut(&topic, partition) {
            assignment.operation = Some(id);
        }
        id
    }

    /// Starts queued moves, oldest first, while fewer than `moves_active_max` run.
    fn activate_queued_moves(&mut self) {
        let limit = self.moves_active_max.max(1) as usize;
        let mut running = self.operations.values().filter(|op| op.as_move().is_some() && op.phase.is_running()).count();
        let queued: Vec<u64> = self
            .operations
            .values()
            .filter(|op| op.as_move().is_some() && op.phase == Phase::Queued)
            .map(|op| op.id)
            .collect();
        for id in queued {
            if running >= limit {
                break;
            }
            let Some(planned) = self.operations.get(&id).and_then(|op| op.as_move().cloned()) else { continue };
            let Some(assignment) = self.assignment_mut(&planned.topic, planned.partition) else { continue };
            assignment.replicas.push(planned.to);
            if let Some(op) = self.operations.get_mut(&id) {
                op.phase = Phase::Copying;
            }
            running += 1;
        }
    }

    /// The leader of a moving partition reports progress; `Promoting` once the target has
    /// caught up.
    fn move_progress(
        &mut self,
        id: u64,
        phase: Phase,
        bytes_copied: u64,
        bytes_total: u64,
    ) -> Result<(), ControllerError> {
        let op = self.operations.get_mut(&id).ok_or(ControllerError::OperationNotFound(id))?;
        let allowed = matches!((op.phase, phase), (Phase::Copying, Phase::Copying | Phase::Promoting));
        if !allowed {
            return Err(ControllerError::OperationPhase { id, phase: op.phase.name().to_owned() });
        }
        op.phase = phase;
        op.bytes_copied = bytes_copied;
        op.bytes_total = bytes_total;
        Ok(())
    }

    /// The leader of a moving partition reports that the group's committed membership
    /// matches the desired state: a promoted move is done (the source leaves the replica
    /// list), a cancelled one is over (the target leaves it). Only now does a node leave
    /// the list: it was a member of the group until this membership committed.
    fn finish_operation(&mut self, id: u64) -> Result<(), ControllerError> {
        let op = self.operations.get(&id).ok_or(ControllerError::OperationNotFound(id))?;
        let Some(planned) = op.as_move().cloned() else {
            return Err(ControllerError::OperationPhase { id, phase: op.phase.name().to_owned() });
        };
        let phase = match op.phase {
            Phase::Promoting => Phase::Done,
            Phase::Cancelling => Phase::Cancelled,
            other => return Err(ControllerError::OperationPhase { id, phase: other.name().to_owned() }),
        };
        if let Some(assignment) = self.assignment_mut(&planned.topic, planned.partition) {
            if phase == Phase::Done {
                planned.apply_to(&mut assignment.replicas);
                assignment.reassigned = true;
            } else {
                assignment.replicas.retain(|n| *n != planned.to);
            }
            assignment.operation = None;
        }
        if let Some(op) = self.operations.get_mut(&id) {
            op.phase = phase;
            if phase == Phase::Done {
                op.bytes_copied = op.bytes_copied.max(op.bytes_total);
            }
        }
        self.forget_finished_operations();
        Ok(())
    }

    /// Stops move `id`: a queued one at once; a running one waits for the leader to restore
    /// the old voters (`Cancelling`). Its target stays in the replica list until then: it
    /// may be a learner or, once promoting, a voter holding writes no other replica has,
    /// so it keeps its replica until the group's committed membership leaves it out
    /// (`finish_operation`).
    fn cancel_move(&mut self, id: u64, reason: &str) {
        let Some(op) = self.operations.get(&id) else { return };
        let Some(planned) = op.as_move().cloned() else { return };
        let phase = op.phase;
        let assignment = self.assignment_mut(&planned.topic, planned.partition);
        let next = match (phase, assignment) {
            (Phase::Copying | Phase::Promoting, Some(_)) => Phase::Cancelling,
            (Phase::Queued | Phase::Copying | Phase::Promoting, assignment) => {
                if let Some(assignment) = assignment {
                    assignment.operation = None;
                }
                Phase::Cancelled
            }
            _ => return,
        };
        if let Some(op) = self.operations.get_mut(&id) {
            op.phase = next;
            op.detail = reason.to_owned();
        }
    }

    /// Forgets the oldest finished operations beyond `FINISHED_OPERATIONS_KEPT`.
    fn forget_finished_operations(&mut self) {
        let finished: Vec<u64> = self.operations.values().filter(|op| !op.phase.is_active()).map(|op| op.id).collect();
        for id in finished.iter().take(finished.len().saturating_sub(FINISHED_OPERATIONS_KEPT)) {
            self.operations.remove(id);
        }
    }

    /// The replica list a partition will have once its active move (if any) is done.
    pub fn projected_replicas(&self, assignment: &PartitionAssignment) -> Vec<NodeId> {
        let mut replicas = assignment.replicas.clone();
        let active = assignment.operation.and_then(|id| self.operations.get(&id));
        if let Some(op) = active
            && let Some(planned) = op.as_move()
        {
            match op.phase {
                Phase::Queued | Phase::Copying | Phase::Promoting => planned.apply_to(&mut replicas),
                Phase::Cancelling => replicas.retain(|n| *n != planned.to),
                Phase::Done | Phase::Cancelled => {}
            }
        }
        replicas
    }

    /// Whether `node`'s replica of `assignment` serves reads: it is a wanted voter, not the
    /// target of a move still copying or cancelled (nor its source once promoting). No
    /// allocation: every read asks.
    pub fn serves_reads(&self, assignment: &PartitionAssignment, node: NodeId) -> bool {
        if !assignment.replicas.contains(&node) {
            return false;
        }
        let active = assignment.operation.and_then(|id| self.operations.get(&id));
        match active.and_then(|op| op.as_move().map(|m| (op.phase, m))) {
            Some((Phase::Copying | Phase::Cancelling, m)) => m.to != node,
            Some((Phase::Promoting, m)) => m.from != node,
            _ => true,
        }
    }

    /// The voters and learners the group of `assignment` should have now: what the leader
    /// of the group drives its Raft membership to.
    pub fn desired_membership(&self, assignment: &PartitionAssignment) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
        let mut voters: BTreeSet<NodeId> = assignment.replicas.iter().copied().collect();
        let mut learners = BTreeSet::new();
        let active = assignment.operation.and_then(|id| self.operations.get(&id));
        if let Some(op) = active
            && let Some(planned) = op.as_move()
        {
            match op.phase {
                Phase::Copying => {
                    voters.remove(&planned.to);
                    learners.insert(planned.to);
                }
                Phase::Promoting => {
                    voters.remove(&planned.from);
                }
                // The target leaves the group: the old voters are restored.
                Phase::Cancelling => {
                    voters.remove(&planned.to);
                }
                _ => {}
            }
        }
        (voters, learners)
    }

    /// A plan that evens out replicas per node (within one), then preferred leaders per
    /// node (within one), with as few moves as it can: each move takes one replica from the
    /// fullest node to the emptiest one that lacks that partition. Partitions with an
    /// operation under way are left alone but counted as they will end up.
    pub fn plan_rebalance(&self, members: &BTreeMap<NodeId, String>) -> RebalancePlan {
        struct Slot {
            topic: String,
            partition: PartitionId,
            group_id: GroupId,
            replicas: Vec<NodeId>,
            busy: bool,
            planned_move: Option<usize>,
        }
        let nodes: Vec<NodeId> = self.placeable_nodes(members).into_keys().collect();
        let mut plan = RebalancePlan::default();
        if nodes.len() < 2 {
            return plan;
        }
        let mut slots: Vec<Slot> = self
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .map(|(t, p)| Slot {
                topic: t.name.clone(),
                partition: p.partition,
                group_id: p.group_id,
                replicas: self.projected_replicas(p),
                busy: p.operation.is_some(),
                planned_move: None,
            })
            .collect();
        let mut replica_counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        for replica in slots.iter().flat_map(|s| s.replicas.iter()) {
            if let Some(count) = replica_counts.get_mut(replica) {
                *count += 1;
            }
        }
        // Replicas: the fullest node gives one to the emptiest node that can take it.
        for _ in 0..slots.iter().map(|s| s.replicas.len()).sum::<usize>() {
            let Some((&fullest, &most)) =
                replica_counts.iter().max_by_key(|(id, count)| (**count, std::cmp::Reverse(**id)))
            else {
                break;
            };
            let mut targets: Vec<(usize, NodeId)> =
                replica_counts.iter().filter(|(_, c)| most > **c + 1).map(|(id, c)| (*c, *id)).collect();
            targets.sort_unstable();
            if targets.is_empty() {
                break;
            }
            let found = targets.iter().find_map(|(_, target)| {
                slots
                    .iter()
                    .position(|s| {
                        !s.busy
                            && s.planned_move.is_none()
                            && s.replicas.contains(&fullest)
                            && !s.replicas.contains(target)
                    })
                    .map(|slot| (slot, *target))
            });
            let Some((slot, target)) = found else {
                // Partitions already moving (or moved by this plan) were the only candidates:
                // another round, once these moves are done, goes on.
                plan.unfinished = slots.iter().any(|s| s.busy || s.planned_move.is_some());
                break;
            };
            let slot = &mut slots[slot];
            if let Some(position) = slot.replicas.iter().position(|n| *n == fullest) {
                slot.replicas[position] = target;
            }
            slot.planned_move = Some(plan.moves.len());
            plan.moves.push(Move {
                topic: slot.topic.clone(),
                partition: slot.partition,
                group_id: slot.group_id,
                from: fullest,
                to: target,
                leader: None,
            });
            *replica_counts.entry(fullest).or_default() -= 1;
            *replica_counts.entry(target).or_default() += 1;
        }
        // Leaders: the node preferred by the most partitions hands one to a replica that is
        // preferred by the fewest.
        let mut leader_counts: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        for slot in &slots {
            if let Some(count) = slot.replicas.first().and_then(|n| leader_counts.get_mut(n)) {
                *count += 1;
            }
        }
        for _ in 0..slots.len() {
            let Some((&busiest, &most)) =
                leader_counts.iter().max_by_key(|(id, count)| (**count, std::cmp::Reverse(**id)))
            else {
                break;
            };
            let mut targets: Vec<(usize, NodeId)> =
                leader_counts.iter().filter(|(_, c)| most > **c + 1).map(|(id, c)| (*c, *id)).collect();
            targets.sort_unstable();
            let found = targets.iter().find_map(|(_, target)| {
                slots
                    .iter()
                    .position(|s| !s.busy && s.replicas.first() == Some(&busiest) && s.replicas.contains(target))
                    .map(|slot| (slot, *target))
            });
            let Some((slot, target)) = found else { break };
            let slot = &mut slots[slot];
            prefer(&mut slot.replicas, target);
            match slot.planned_move {
                Some(index) => plan.moves[index].leader = Some(target),
                None => plan.leaders.push(LeaderChange {
                    topic: slot.topic.clone(),
                    partition: slot.partition,
                    group_id: slot.group_id,
                    from: busiest,
                    to: target,
                }),
            }
            *leader_counts.entry(busiest).or_default() -= 1;
            *leader_counts.entry(target).or_default() += 1;
        }
        // A partition may have changed its preferred leader twice: keep only its last change.
        let mut seen = BTreeSet::new();
        plan.leaders.reverse();
        plan.leaders.retain(|change| seen.insert(change.group_id));
        plan.leaders.reverse();
        plan
    }

    /// Queues the plan's moves and reorders the preferred leaders; returns the moves' ids.
    fn apply_plan(&mut self, plan: RebalancePlan, created_ms: u64) -> Vec<u64> {
        for change in &plan.leaders {
            if let Some(assignment) = self.assignment_mut(&change.topic, change.partition) {
                prefer(&mut assignment.replicas, change.to);
            }
        }
        plan.moves.into_iter().map(|planned| self.queue_move(planned, created_ms)).collect()
    }

    /// Starts emptying `node`: a move for each of its replicas to the least loaded node that
    /// lacks the partition, then (driven by the controller leader) its removal. Refused when
    /// some partition would have nowhere to go. Returns the decommission's id, then the
    /// moves' ids. Asking again answers the running decommission.
    fn decommission(
        &mut self,
        node: NodeId,
        created_ms: u64,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<Vec<u64>, ControllerError> {
        if !self.all_nodes(members).contains_key(&node) {
            return Err(ControllerError::NodeNotFound(node));
        }
        if let Some(op) = self
            .operations
            .values()
            .find(|op| op.phase.is_active() && matches!(op.kind, OperationKind::Decommission { node: n } if n == node))
        {
            return Ok(vec![op.id]);
        }
        let mut remaining = self.placeable_nodes(members);
        remaining.remove(&node);
        let mut counts: BTreeMap<NodeId, usize> = remaining.keys().map(|n| (*n, 0)).collect();
        for (_, assignment) in self.topics.values().flat_map(|t| t.partitions.iter().map(move |p| (t, p))) {
            for replica in self.projected_replicas(assignment) {
                if let Some(count) = counts.get_mut(&replica) {
                    *count += 1;
                }
            }
        }
        let mut cancels = Vec::new();
        let mut moves = Vec::new();
        for (topic, assignment) in self.groups_of(node) {
            let partition = assignment.partition;
            let active = assignment.operation.and_then(|id| self.operations.get(&id));
            if let Some(op) = active {
                match op.as_move() {
                    Some(m) if m.from == node => continue,
                    Some(m) if m.to == node && matches!(op.phase, Phase::Queued | Phase::Copying) => {
                        cancels.push(op.id);
                        continue;
                    }
                    // Leaving already: it drops out of the list once the voters are restored.
                    Some(m) if m.to == node && op.phase == Phase::Cancelling => continue,
                    _ => {
                        return Err(ControllerError::PartitionBusy {
                            topic: topic.name.clone(),
                            partition,
                            operation: op.id,
                        });
                    }
                }
            }
            let projected = self.projected_replicas(assignment);
            let target = counts
                .iter()
                .filter(|(n, _)| !projected.contains(n))
                .min_by_key(|(n, count)| (**count, **n))
                .map(|(n, _)| *n)
                .ok_or_else(|| ControllerError::CannotDecommission {
                    node,
                    detail: format!(
                        "partition {}/{partition} (replication factor {}) would have no node left to move to",
                        topic.name, topic.config.replication_factor
                    ),
                })?;
            *counts.entry(target).or_default() += 1;
            moves.push(Move {
                topic: topic.name.clone(),
                partition,
                group_id: assignment.group_id,
                from: node,
                to: target,
                leader: None,
            });
        }
        for id in cancels {
            self.cancel_move(id, &format!("node {node} is being decommissioned"));
        }
        self.decommissioning.insert(node);
        let mut ids = vec![self.new_operation(OperationKind::Decommission { node }, Phase::Copying, created_ms)];
        ids.extend(moves.into_iter().map(|planned| self.queue_move(planned, created_ms)));
        Ok(ids)
    }

    /// Deregisters `node`; the caller then removes it from the controller group.
    fn remove_node(
        &mut self,
        node: NodeId,
        force: bool,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<u32, ControllerError> {
        if !self.all_nodes(members).contains_key(&node) {
            return Err(ControllerError::NodeNotFound(node));
        }
        let replicas = self.groups_of(node).count() as u32;
        if replicas > 0 && !force {
            return Err(ControllerError::NodeHoldsReplicas { node, replicas });
        }
        self.nodes.remove(&node);
        self.removed.insert(node);
        self.decommissioning.remove(&node);
        let ended: Vec<(u64, bool)> = self
            .operations
            .values()
            .filter(|op| op.phase.is_active())
            .filter_map(|op| match &op.kind {
                OperationKind::Move(m) if m.to == node => Some((op.id, true)),
                OperationKind::Decommission { node: n } if *n == node => Some((op.id, false)),
                _ => None,
            })
            .collect();
        for (id, is_move) in ended {
            if is_move {
                self.cancel_move(id, &format!("target node {node} was removed from the cluster"));
            } else if let Some(op) = self.operations.get_mut(&id) {
                op.phase = Phase::Done;
            }
        }
        self.activate_queued_moves();
        self.forget_finished_operations();
        Ok(replicas)
    }

    fn create_topic(
        &mut self,
        name: &str,
        config: &TopicConfig,
        topics_max: usize,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<TopicMeta, ControllerError> {
        if self.topics.contains_key(name) {
            return Err(ControllerError::TopicExists(name.to_owned()));
        }
        if self.topics.len() >= topics_max {
            return Err(ControllerError::TooManyTopics { max: topics_max });
        }
        let partitions = self.place(0..config.partition_count, config.replication_factor, members)?;
        let topic = TopicMeta { name: name.to_owned(), config: config.clone(), partitions };
        self.topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    /// Grows `name` to `partition_count` partitions, placed like a new topic's; existing
    /// partitions (their groups, replicas and records) are untouched.
    fn add_partitions(
        &mut self,
        name: &str,
        partition_count: u32,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<TopicMeta, ControllerError> {
        let topic = self.topics.get(name).ok_or_else(|| ControllerError::TopicNotFound(name.to_owned()))?;
        let current = topic.config.partition_count;
        if partition_count <= current {
            return Err(ControllerError::PartitionsCanOnlyGrow {
                topic: name.to_owned(),
                current,
                requested: partition_count,
            });
        }
        let replication_factor = topic.config.replication_factor;
        let added = self.place(current..partition_count, replication_factor, members)?;
        let topic = self.topics.get_mut(name).ok_or_else(|| ControllerError::TopicNotFound(name.to_owned()))?;
        topic.partitions.extend(added);
        topic.config.partition_count = partition_count;
        Ok(topic.clone())
    }

    /// Assignments for `partitions`: `replication_factor` distinct nodes each, spread
    /// round-robin (so initial leaders, the first replicas, spread too), starting after the
    /// replicas already placed so that topics do not pile onto one node. Fresh group ids.
    fn place(
        &mut self,
        partitions: std::ops::Range<u32>,
        replication_factor: u32,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<Vec<PartitionAssignment>, ControllerError> {
        let nodes: Vec<NodeId> = self.placeable_nodes(members).into_keys().collect();
        let rf = replication_factor as usize;
        if rf == 0 || rf > nodes.len() {
            return Err(ControllerError::NotEnoughNodes { requested: replication_factor, nodes: nodes.len() });
        }
        let placed: usize = self.topics.values().map(|t| t.partitions.len()).sum();
        Ok(partitions
            .enumerate()
            .map(|(n, partition)| {
                let first = (placed + n) % nodes.len();
                let replicas = (0..rf).map(|r| nodes[(first + r) % nodes.len()]).collect();
                let group_id = self.next_group_id.max(1);
                self.next_group_id = group_id + 1;
                PartitionAssignment { partition, group_id, replicas, operation: None, reassigned: false }
            })
            .collect())
    }

    /// Whether `producer_id` was handed out by this controller.
    pub fn knows_producer(&self, producer_id: u64) -> bool {
        producer_id >= 1 && producer_id < self.next_producer_id
    }

    /// Registered nodes and controller members, with their addresses; removed nodes are
    /// left out.
    pub fn all_nodes(&self, members: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, String> {
        let mut nodes = members.clone();
        nodes.extend(self.nodes.iter().map(|(id, address)| (*id, address.clone())));
        nodes.retain(|id, _| !self.removed.contains(id));
        nodes
    }

    /// Every partition group `node` holds a replica of.
    pub fn groups_of(&self, node: NodeId) -> impl Iterator<Item = (&TopicMeta, &PartitionAssignment)> {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
            .filter(move |(_, p)| p.replicas.contains(&node))
    }
}

/// Makes `node` the first of `replicas` (the preferred leader), keeping the others' order.
pub(crate) fn prefer(replicas: &mut [NodeId], node: NodeId) {
    if let Some(position) = replicas.iter().position(|n| *n == node) {
        replicas[..=position].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(partitions: u32, rf: u32) -> TopicConfig {
        TopicConfig { partition_count: partitions, replication_factor: rf, retention_ms: None, retention_bytes: None }
    }

    #[test]
    fn create_topic_places_replicas_on_distinct_nodes_and_spreads_leaders() {
        let mut state = ControllerState::default();
        for node in 1..=3 {
            state.apply(
                &ControllerCommand::RegisterNode { node_id: node, address: format!("n{node}") },
                &BTreeMap::new(),
            );
        }
        let ControllerOutcome::Topic(Ok(topic)) = state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(6, 3), topics_max: 10 },
            &BTreeMap::new(),
        ) else {
            panic!("topic not created")
        };
        let mut leaders = [0; 4];
        for p in &topic.partitions {
            let mut replicas = p.replicas.clone();
            replicas.sort_unstable();
            replicas.dedup();
            assert_eq!(replicas.len(), 3);
            leaders[p.replicas[0] as usize] += 1;
        }
        assert_eq!(&leaders[1..], &[2, 2, 2]);
        let groups: Vec<GroupId> = topic.partitions.iter().map(|p| p.group_id).collect();
        assert_eq!(groups, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn controller_members_count_before_registration() {
        let mut state = ControllerState::default();
        let members = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string())]);
        let created = state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(2, 2), topics_max: 10 },
            &members,
        );
        assert!(matches!(created, ControllerOutcome::Topic(Ok(_))), "{created:?}");
    }

    #[test]
    fn remove_node_refuses_while_it_holds_replicas_unless_forced() {
        let mut state = ControllerState::default();
        let members = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string()), (3, "c".to_string())]);
        state.apply(&ControllerCommand::RegisterNode { node_id: 4, address: "d".into() }, &members);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 3), topics_max: 10 },
            &members,
        );
        let holder = state.topics["t"].partitions[0].replicas[0];
        let remove = |state: &mut ControllerState, node_id, force| match state
            .apply(&ControllerCommand::RemoveNode { node_id, force }, &members)
        {
            ControllerOutcome::NodeRemoved(result) => result,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(remove(&mut state, 9, false), Err(ControllerError::NodeNotFound(9)));
        assert_eq!(
            remove(&mut state, holder, false),
            Err(ControllerError::NodeHoldsReplicas { node: holder, replicas: 1 })
        );
        let idle = (1..=4).find(|n| !state.topics["t"].partitions[0].replicas.contains(n)).expect("an idle node");
        assert_eq!(remove(&mut state, idle, false), Ok(0));
        assert!(!state.all_nodes(&members).contains_key(&idle), "a removed node is never placed on");
        assert_eq!(remove(&mut state, holder, true), Ok(1));
        let created = state.apply(
            &ControllerCommand::CreateTopic { name: "u".into(), config: config(1, 3), topics_max: 10 },
            &members,
        );
        assert!(
            matches!(created, ControllerOutcome::Topic(Err(ControllerError::NotEnoughNodes { nodes: 2, .. }))),
            "{created:?}"
        );
        state.apply(&ControllerCommand::RegisterNode { node_id: idle, address: "again".into() }, &members);
        assert!(!state.all_nodes(&members).contains_key(&idle), "a removed id never comes back");
    }

    #[test]
    fn partitions_grow_only_and_keep_existing_assignments() {
        let mut state = ControllerState::default();
        let members = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string()), (3, "c".to_string())]);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(2, 2), topics_max: 10 },
            &members,
        );
        let before = state.topics["t"].partitions.clone();
        let grow = |state: &mut ControllerState, partition_count| match state
            .apply(&ControllerCommand::AddPartitions { name: "t".into(), partition_count }, &members)
        {
            ControllerOutcome::Topic(result) => result,
            other => panic!("unexpected {other:?}"),
        };
        let grown = grow(&mut state, 5).expect("grows");
        assert_eq!(grown.config.partition_count, 5);
        assert_eq!(&grown.partitions[..2], &before[..], "existing partitions untouched");
        let ids: Vec<u32> = grown.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        let groups: Vec<GroupId> = grown.partitions.iter().map(|p| p.group_id).collect();
        assert_eq!(groups, [1, 2, 3, 4, 5], "fresh group ids");
        assert!(grown.partitions.iter().all(|p| p.replicas.len() == 2));
        assert_eq!(
            grow(&mut state, 5),
            Err(ControllerError::PartitionsCanOnlyGrow { topic: "t".into(), current: 5, requested: 5 })
        );
        assert!(matches!(
            state.apply(&ControllerCommand::AddPartitions { name: "u".into(), partition_count: 3 }, &members),
            ControllerOutcome::Topic(Err(ControllerError::TopicNotFound(_)))
        ));
    }

    fn members(nodes: std::ops::RangeInclusive<NodeId>) -> BTreeMap<NodeId, String> {
        nodes.map(|n| (n, format!("n{n}"))).collect()
    }

    fn operations(outcome: ControllerOutcome) -> Result<Vec<u64>, ControllerError> {
        match outcome {
            ControllerOutcome::Operations(result) => result,
            ControllerOutcome::Rebalanced(_, ids) => Ok(ids),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn move_command(topic: &str, partition: u32, from: NodeId, to: NodeId) -> ControllerCommand {
        ControllerCommand::MovePartition {
            topic: topic.into(),
            partition,
            from,
            to,
            created_ms: 1,
            moves_active_max: 2,
        }
    }

    /// Plays the partition leaders' part: every running move reports caught up, then done,
    /// until no operation is active.
    fn complete_moves(state: &mut ControllerState, members: &BTreeMap<NodeId, String>) {
        for _ in 0..1_000 {
            let running: Vec<(u64, Phase)> = state
                .operations
                .values()
                .filter(|op| op.as_move().is_some() && op.phase.is_running())
                .map(|op| (op.id, op.phase))
                .collect();
            if running.is_empty() {
                return;
            }
            for (id, phase) in running {
                let command = if phase == Phase::Copying {
                    ControllerCommand::MoveProgress { id, phase: Phase::Promoting, bytes_copied: 0, bytes_total: 0 }
                } else {
                    ControllerCommand::FinishOperation { id }
                };
                let outcome = state.apply(&command, members);
                assert!(matches!(outcome, ControllerOutcome::OperationUpdated(Ok(()))), "{outcome:?}");
            }
        }
        panic!("moves never finished");
    }

    fn replica_counts(state: &ControllerState) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for p in state.topics.values().flat_map(|t| t.partitions.iter()) {
            for r in &p.replicas {
                *counts.entry(*r).or_default() += 1;
            }
        }
        counts
    }

    fn leader_counts(state: &ControllerState) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for p in state.topics.values().flat_map(|t| t.partitions.iter()) {
            *counts.entry(p.replicas[0]).or_default() += 1;
        }
        counts
    }

    fn spread(counts: &BTreeMap<NodeId, usize>, nodes: &[NodeId]) -> usize {
        let values: Vec<usize> = nodes.iter().map(|n| counts.get(n).copied().unwrap_or(0)).collect();
        values.iter().max().unwrap_or(&0) - values.iter().min().unwrap_or(&0)
    }

    #[test]
    fn a_move_adds_the_target_then_swaps_it_in_and_only_then_drops_the_source() {
        let mut state = ControllerState::default();
        let members = members(1..=3);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 2), topics_max: 10 },
            &members,
        );
        let before = state.topics["t"].partitions[0].replicas.clone();
        let from = before[0];
        let to = (1..=3).find(|n| !before.contains(n)).expect("a free node");
        let ids = operations(state.apply(&move_command("t", 0, from, to), &members)).expect("queued");
        let id = ids[0];
        let assignment = &state.topics["t"].partitions[0];
        assert_eq!(state.operations[&id].phase, Phase::Copying, "a free slot starts it at once");
        assert_eq!(assignment.replicas, [before.clone(), vec![to]].concat(), "the target runs a replica");
        let (voters, learners) = state.desired_membership(assignment);
        assert_eq!(voters, before.iter().copied().collect(), "voters unchanged while copying");
        assert_eq!(learners, BTreeSet::from([to]));

        let progress = ControllerCommand::MoveProgress { id, phase: Phase::Promoting, bytes_copied: 5, bytes_total: 5 };
        state.apply(&progress, &members);
        let (voters, learners) = state.desired_membership(&state.topics["t"].partitions[0]);
        assert_eq!(voters, BTreeSet::from([before[1], to]), "the target replaces the source");
        assert!(learners.is_empty());
        assert_eq!(state.topics["t"].partitions[0].replicas.len(), 3, "the source keeps its copy until done");

        state.apply(&ControllerCommand::FinishOperation { id }, &members);
        let assignment = &state.topics["t"].partitions[0];
        assert_eq!(assignment.replicas, vec![to, before[1]], "the target takes the source's place");
        assert!(assignment.reassigned && assignment.operation.is_none());
        assert_eq!(state.operations[&id].phase, Phase::Done);
        assert!(matches!(
            state.apply(&ControllerCommand::FinishOperation { id }, &members),
            ControllerOutcome::OperationUpdated(Err(ControllerError::OperationPhase { .. }))
        ));
    }

    #[test]
    fn bad_moves_are_refused_with_the_reason() {
        let mut state = ControllerState::default();
        let members = members(1..=3);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 2), topics_max: 10 },
            &members,
        );
        let replicas = state.topics["t"].partitions[0].replicas.clone();
        let free = (1..=3).find(|n| !replicas.contains(n)).expect("a free node");
        let mut attempt = |command| operations(state.apply(&command, &members));
        assert_eq!(attempt(move_command("t", 0, replicas[0], 9)), Err(ControllerError::NodeNotFound(9)));
        assert!(matches!(
            attempt(move_command("t", 0, replicas[0], replicas[1])),
            Err(ControllerError::AlreadyAReplica { .. })
        ));
        assert!(matches!(attempt(move_command("t", 0, free, replicas[0])), Err(ControllerError::NotAReplica { .. })));
        assert!(matches!(
            attempt(move_command("t", 3, replicas[0], free)),
            Err(ControllerError::PartitionNotFound { .. })
        ));
        assert!(matches!(attempt(move_command("u", 0, replicas[0], free)), Err(ControllerError::TopicNotFound(_))));
        let first = attempt(move_command("t", 0, replicas[0], free)).expect("first move");
        assert_eq!(
            attempt(move_command("t", 0, replicas[1], free)),
            Err(ControllerError::PartitionBusy { topic: "t".into(), partition: 0, operation: first[0] }),
            "two conflicting moves of one partition"
        );
    }

    #[test]
    fn moves_beyond_the_limit_wait_queued() {
        let mut state = ControllerState::default();
        let members = members(1..=3);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(3, 1), topics_max: 10 },
            &members,
        );
        let mut ids = Vec::new();
        for p in 0..3 {
            let from = state.topics["t"].partitions[p].replicas[0];
            let to = if from == 1 { 2 } else { 1 };
            let command = ControllerCommand::MovePartition {
                topic: "t".into(),
                partition: p as u32,
                from,
                to,
                created_ms: 1,
                moves_active_max: 1,
            };
            ids.extend(operations(state.apply(&command, &members)).expect("queued"));
        }
        let phases: Vec<Phase> = ids.iter().map(|id| state.operations[id].phase).collect();
        assert_eq!(phases, [Phase::Copying, Phase::Queued, Phase::Queued]);
        let progress =
            ControllerCommand::MoveProgress { id: ids[0], phase: Phase::Promoting, bytes_copied: 0, bytes_total: 0 };
        state.apply(&progress, &members);
        state.apply(&ControllerCommand::FinishOperation { id: ids[0] }, &members);
        let phases: Vec<Phase> = ids.iter().map(|id| state.operations[id].phase).collect();
        assert_eq!(phases, [Phase::Done, Phase::Copying, Phase::Queued], "a finished move frees its slot");
    }

    #[test]
    fn rebalance_spreads_replicas_and_leaders_within_one_and_decommission_empties_a_node() {
        let mut state = ControllerState::default();
        let three = members(1..=3);
        state
            .apply(&ControllerCommand::CreateTopic { name: "t".into(), config: config(12, 3), topics_max: 10 }, &three);
        assert!(state.plan_rebalance(&three).is_empty(), "a fresh topic is balanced");
        let five = members(1..=5);
        // 36 replicas over 5 nodes: 12,12,12,0,0 -> 8,7,7,7,7 takes 14 moves; a partition
        // moves once per round, so 12 partitions need two rounds.
        let mut moves = 0;
        for round in 1..=3 {
            let rebalance = ControllerCommand::Rebalance { created_ms: 1, moves_active_max: 3 };
            moves += operations(state.apply(&rebalance, &five)).expect("rebalanced").len();
            complete_moves(&mut state, &five);
            if !state.rebalance_unfinished {
                assert_eq!(round, 2, "the second round finishes");
                break;
            }
        }
        assert_eq!(moves, 14, "as few moves as the counts need");
        let nodes = [1, 2, 3, 4, 5];
        assert!(spread(&replica_counts(&state), &nodes) <= 1, "{:?}", replica_counts(&state));
        assert!(spread(&leader_counts(&state), &nodes) <= 1, "{:?}", leader_counts(&state));
        for p in &state.topics["t"].partitions {
            let distinct: BTreeSet<NodeId> = p.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "{p:?}");
        }
        assert!(state.plan_rebalance(&five).is_empty(), "balanced after the moves");

        let ids = operations(
            state.apply(&ControllerCommand::Decommission { node_id: 2, created_ms: 2, moves_active_max: 2 }, &five),
        )
        .expect("decommission starts");
        assert_eq!(ids.len(), 1 + replica_counts(&state)[&2], "one move per replica of node 2");
        assert!(!state.placeable_nodes(&five).contains_key(&2));
        complete_moves(&mut state, &five);
        assert_eq!(state.groups_of(2).count(), 0, "node 2 holds nothing");
        assert_eq!(state.operations[&ids[0]].phase, Phase::Copying, "removal is the controller leader's step");
        state.apply(&ControllerCommand::RemoveNode { node_id: 2, force: false }, &five);
        assert_eq!(state.operations[&ids[0]].phase, Phase::Done);
        // The node set changed: automatic balancing evens out what the decommission's
        // greedy targets left.
        for _ in 0..3 {
            let rebalance = ControllerCommand::Rebalance { created_ms: 3, moves_active_max: 2 };
            operations(state.apply(&rebalance, &five)).expect("rebalanced");
            complete_moves(&mut state, &five);
            if !state.rebalance_unfinished {
                break;
            }
        }
        assert!(spread(&replica_counts(&state), &[1, 3, 4, 5]) <= 1, "{:?}", replica_counts(&state));
        assert!(spread(&leader_counts(&state), &[1, 3, 4, 5]) <= 1, "{:?}", leader_counts(&state));
    }

    #[test]
    fn decommission_refuses_when_replication_factors_cannot_be_kept() {
        let mut state = ControllerState::default();
        let members = members(1..=3);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(2, 3), topics_max: 10 },
            &members,
        );
        let refused = operations(
            state.apply(&ControllerCommand::Decommission { node_id: 1, created_ms: 1, moves_active_max: 2 }, &members),
        );
        assert!(matches!(refused, Err(ControllerError::CannotDecommission { node: 1, .. })), "{refused:?}");
        assert!(state.decommissioning.is_empty() && state.operations.is_empty(), "nothing changed");
    }

    #[test]
    fn removing_a_move_target_cancels_the_move() {
        let mut state = ControllerState::default();
        let members = members(1..=4);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 2), topics_max: 10 },
            &members,
        );
        let replicas = state.topics["t"].partitions[0].replicas.clone();
        let to = (1..=4).find(|n| !replicas.contains(n)).expect("a free node");
        let id = operations(state.apply(&move_command("t", 0, replicas[0], to), &members)).expect("queued")[0];
        state.apply(&ControllerCommand::RemoveNode { node_id: to, force: true }, &members);
        let assignment = &state.topics["t"].partitions[0];
        assert_eq!(state.operations[&id].phase, Phase::Cancelling);
        assert_eq!(assignment.replicas, [replicas.clone(), vec![to]].concat(), "the learner keeps its replica");
        assert_eq!(state.projected_replicas(assignment), replicas);
        assert_eq!(state.desired_membership(assignment), (replicas.iter().copied().collect(), BTreeSet::new()));
        state.apply(&ControllerCommand::FinishOperation { id }, &members);
        assert_eq!(state.operations[&id].phase, Phase::Cancelled);
        let assignment = &state.topics["t"].partitions[0];
        assert_eq!(assignment.replicas, replicas, "the target left once the voters were restored");
        assert!(assignment.operation.is_none());
    }

    /// A cancel that races the promotion: the target may already be a voter holding writes
    /// the source never saw, so it stays listed (keeps its data) until the leader reports
    /// the old voters restored.
    #[test]
    fn a_move_cancelled_while_promoting_keeps_the_target_until_the_old_voters_are_back() {
        let mut state = ControllerState::default();
        let members = members(1..=3);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 1), topics_max: 10 },
            &members,
        );
        let from = state.topics["t"].partitions[0].replicas[0];
        let to = (1..=3).find(|n| *n != from).expect("a free node");
        let id = operations(state.apply(&move_command("t", 0, from, to), &members)).expect("queued")[0];
        let progress = ControllerCommand::MoveProgress { id, phase: Phase::Promoting, bytes_copied: 1, bytes_total: 1 };
        state.apply(&progress, &members);
        assert_eq!(state.desired_membership(&state.topics["t"].partitions[0]), (BTreeSet::from([to]), BTreeSet::new()));

        state.apply(&ControllerCommand::RemoveNode { node_id: to, force: true }, &members);
        let assignment = &state.topics["t"].partitions[0];
        assert_eq!(state.operations[&id].phase, Phase::Cancelling);
        assert_eq!(assignment.replicas, vec![from, to], "the promoted target keeps its replica");
        assert_eq!(state.groups_of(to).count(), 1);
        assert_eq!(state.desired_membership(assignment), (BTreeSet::from([from]), BTreeSet::new()));
        assert_eq!(state.projected_replicas(assignment), vec![from]);
        assert!(state.serves_reads(assignment, from) && !state.serves_reads(assignment, to));
        assert!(matches!(
            state.apply(
                &ControllerCommand::MoveProgress { id, phase: Phase::Promoting, bytes_copied: 1, bytes_total: 1 },
                &members
            ),
            ControllerOutcome::OperationUpdated(Err(ControllerError::OperationPhase { .. }))
        ));

        state.apply(&ControllerCommand::FinishOperation { id }, &members);
        let assignment = &state.topics["t"].partitions[0];
        assert_eq!(state.operations[&id].phase, Phase::Cancelled);
        assert_eq!(assignment.replicas, vec![from]);
        assert!(!assignment.reassigned && assignment.operation.is_none());
        assert_eq!(state.groups_of(to).count(), 0);
    }

    #[test]
    fn decommissioning_a_node_whose_incoming_move_is_cancelling_waits_for_it() {
        let mut state = ControllerState::default();
        let members = members(1..=4);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 1), topics_max: 10 },
            &members,
        );
        let from = state.topics["t"].partitions[0].replicas[0];
        let to = (1..=4).find(|n| *n != from).expect("a free node");
        let id = operations(state.apply(&move_command("t", 0, from, to), &members)).expect("queued")[0];
        let decommission = ControllerCommand::Decommission { node_id: to, created_ms: 1, moves_active_max: 2 };
        let ids = operations(state.apply(&decommission, &members)).expect("decommission starts");
        assert_eq!(ids.len(), 1, "nothing to move: the incoming move is cancelled instead");
        assert_eq!(state.operations[&id].phase, Phase::Cancelling);
        assert_eq!(state.groups_of(to).count(), 1, "the target leaves only once the voters are restored");
        assert_eq!(operations(state.apply(&decommission, &members)), Ok(ids.clone()), "asking again answers it");
        state.apply(&ControllerCommand::FinishOperation { id }, &members);
        assert_eq!(state.groups_of(to).count(), 0);
    }

    #[test]
    fn create_topic_errors() {
        let mut state = ControllerState::default();
        state.apply(&ControllerCommand::RegisterNode { node_id: 1, address: "n1".into() }, &BTreeMap::new());
        let create = |state: &mut ControllerState, name: &str, rf| match state.apply(
            &ControllerCommand::CreateTopic { name: name.into(), config: config(1, rf), topics_max: 2 },
            &BTreeMap::new(),
        ) {
            ControllerOutcome::Topic(result) => result.map(|_| ()),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(create(&mut state, "a", 2), Err(ControllerError::NotEnoughNodes { requested: 2, nodes: 1 }));
        assert_eq!(create(&mut state, "a", 1), Ok(()));
        assert_eq!(create(&mut state, "a", 1), Err(ControllerError::TopicExists("a".into())));
        assert_eq!(create(&mut state, "b", 1), Ok(()));
        assert_eq!(create(&mut state, "c", 1), Err(ControllerError::TooManyTopics { max: 2 }));
    }
}
