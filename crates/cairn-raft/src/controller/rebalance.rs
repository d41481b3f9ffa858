//! The rebalance planner: from the state (counting partitions under a move as they will
//! end up), the fewest moves that even out replicas per node within one, then the preferred
//! leader changes that even out leaders per node within one; and how a plan is queued.
//!
//! Planned at apply time (`ControllerCommand::Rebalance`), so every replica plans alike;
//! the host also plans from its own view to show what a rebalance would do.

use std::collections::{BTreeMap, BTreeSet};

use cairn_types::{GroupId, NodeId, PartitionId};

use super::operation::{LeaderChange, Move, RebalancePlan};
use super::state::ControllerState;
use super::topic::prefer;

impl ControllerState {
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
    pub(super) fn apply_plan(&mut self, plan: RebalancePlan, created_ms: u64) -> Vec<u64> {
        for change in &plan.leaders {
            if let Some(assignment) = self.assignment_mut(&change.topic, change.partition) {
                prefer(&mut assignment.replicas, change.to);
            }
        }
        plan.moves.into_iter().map(|planned| self.queue_move(planned, created_ms)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ControllerCommand;
    use crate::controller::operation::Phase;
    use crate::controller::test_support::*;

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
}
