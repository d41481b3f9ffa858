//! The lifecycle of operations on `ControllerState`: queueing a move, starting queued moves
//! within `moves_active_max`, the leaders' progress and completion reports, cancellation,
//! decommissions (a move per replica of the node) and node removal (which ends a
//! decommission and cancels the moves to the node). The phases themselves, and why they
//! are ordered so, are in `operation.rs`.

use std::collections::BTreeMap;

use cairn_types::{NodeId, PartitionId};

use super::error::ControllerError;
use super::operation::{FINISHED_OPERATIONS_KEPT, Move, Operation, OperationKind, Phase};
use super::state::ControllerState;

impl ControllerState {
    pub(super) fn move_partition(
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

    pub(super) fn queue_move(&mut self, planned: Move, created_ms: u64) -> u64 {
        let (topic, partition) = (planned.topic.clone(), planned.partition);
        let id = self.new_operation(OperationKind::Move(planned), Phase::Queued, created_ms);
        if let Some(assignment) = self.assignment_mut(&topic, partition) {
            assignment.operation = Some(id);
        }
        id
    }

    /// Starts queued moves, oldest first, while fewer than `moves_active_max` run.
    pub(super) fn activate_queued_moves(&mut self) {
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
    pub(super) fn move_progress(
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
    pub(super) fn finish_operation(&mut self, id: u64) -> Result<(), ControllerError> {
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
    pub(super) fn forget_finished_operations(&mut self) {
        let finished: Vec<u64> = self.operations.values().filter(|op| !op.phase.is_active()).map(|op| op.id).collect();
        for id in finished.iter().take(finished.len().saturating_sub(FINISHED_OPERATIONS_KEPT)) {
            self.operations.remove(id);
        }
    }

    /// Starts emptying `node`: a move for each of its replicas to the least loaded node that
    /// lacks the partition, then (driven by the controller leader) its removal. Refused when
    /// some partition would have nowhere to go. Returns the decommission's id, then the
    /// moves' ids. Asking again answers the running decommission.
    pub(super) fn decommission(
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
    pub(super) fn remove_node(
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
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::command::ControllerCommand;
    use crate::controller::apply::ControllerOutcome;
    use crate::controller::error::ControllerError;
    use crate::controller::test_support::*;

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
}
