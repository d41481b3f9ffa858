//! Helpers of the controller's unit tests: members, commands, and playing the partition
//! leaders' part in moves.

use std::collections::BTreeMap;

use cairn_types::{NodeId, TopicConfig};

use super::apply::ControllerOutcome;
use super::error::ControllerError;
use super::operation::Phase;
use super::state::ControllerState;
use crate::command::ControllerCommand;

pub(super) fn config(partitions: u32, rf: u32) -> TopicConfig {
    TopicConfig { partition_count: partitions, replication_factor: rf, retention_ms: None, retention_bytes: None }
}

pub(super) fn members(nodes: std::ops::RangeInclusive<NodeId>) -> BTreeMap<NodeId, String> {
    nodes.map(|n| (n, format!("n{n}"))).collect()
}

pub(super) fn operations(outcome: ControllerOutcome) -> Result<Vec<u64>, ControllerError> {
    match outcome {
        ControllerOutcome::Operations(result) => result,
        ControllerOutcome::Rebalanced(_, ids) => Ok(ids),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn move_command(topic: &str, partition: u32, from: NodeId, to: NodeId) -> ControllerCommand {
    ControllerCommand::MovePartition { topic: topic.into(), partition, from, to, created_ms: 1, moves_active_max: 2 }
}

/// Plays the partition leaders' part: every running move reports caught up, then done,
/// until no operation is active.
pub(super) fn complete_moves(state: &mut ControllerState, members: &BTreeMap<NodeId, String>) {
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

pub(super) fn replica_counts(state: &ControllerState) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for p in state.topics.values().flat_map(|t| t.partitions.iter()) {
        for r in &p.replicas {
            *counts.entry(*r).or_default() += 1;
        }
    }
    counts
}

pub(super) fn leader_counts(state: &ControllerState) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for p in state.topics.values().flat_map(|t| t.partitions.iter()) {
        *counts.entry(p.replicas[0]).or_default() += 1;
    }
    counts
}

pub(super) fn spread(counts: &BTreeMap<NodeId, usize>, nodes: &[NodeId]) -> usize {
    let values: Vec<usize> = nodes.iter().map(|n| counts.get(n).copied().unwrap_or(0)).collect();
    values.iter().max().unwrap_or(&0) - values.iter().min().unwrap_or(&0)
}
