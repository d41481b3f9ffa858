//! The controller's apply dispatcher: one `ControllerCommand` in, one `ControllerOutcome`
//! out. Each command's work is in the file of its concern (`placement.rs`,
//! `operation_lifecycle.rs`, `rebalance.rs`); here is only the routing, and the commands
//! too small for a file of their own (node registration, producer ids).
//!
//! Runs at apply time on every replica: everything it decides must come from the state and
//! the command alone.

use std::collections::BTreeMap;

use cairn_types::NodeId;

use super::error::ControllerError;
use super::operation::RebalancePlan;
use super::state::ControllerState;
use super::topic::TopicMeta;
use crate::command::ControllerCommand;

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
}
