//! `ControllerState`: the cluster metadata the controller group replicates (nodes, topics
//! and their placement, operations, counters), and the queries the host and the commands
//! ask of it: assignments, placeable nodes, and what an active move means for a
//! partition's replicas, reads and Raft membership.
//!
//! What changes the state lives by concern: `apply.rs` (the dispatcher), `placement.rs`
//! (topics and their replicas), `operation_lifecycle.rs` (moves, decommissions, node
//! removal) and `rebalance.rs` (the planner).

use std::collections::{BTreeMap, BTreeSet};

use cairn_types::{GroupId, NodeId, PartitionId};
use serde::{Deserialize, Serialize};

use super::error::ControllerError;
use super::operation::{Operation, Phase};
use super::topic::{PartitionAssignment, TopicMeta};

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

impl ControllerState {
    /// The assignment of `topic`/`partition`.
    pub fn assignment(&self, topic: &str, partition: PartitionId) -> Result<&PartitionAssignment, ControllerError> {
        let meta = self.topics.get(topic).ok_or_else(|| ControllerError::TopicNotFound(topic.to_owned()))?;
        meta.partitions
            .iter()
            .find(|p| p.partition == partition)
            .ok_or_else(|| ControllerError::PartitionNotFound { topic: topic.to_owned(), partition })
    }

    pub(super) fn assignment_mut(&mut self, topic: &str, partition: PartitionId) -> Option<&mut PartitionAssignment> {
        self.topics.get_mut(topic)?.partitions.iter_mut().find(|p| p.partition == partition)
    }

    /// Nodes new replicas may go to: the cluster's nodes less those being decommissioned.
    pub fn placeable_nodes(&self, members: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, String> {
        let mut nodes = self.all_nodes(members);
        nodes.retain(|id, _| !self.decommissioning.contains(id));
        nodes
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

    /// Whether `producer_id` was handed out by this controller.
    pub fn knows_producer(&self, producer_id: u64) -> bool {
        producer_id >= 1 && producer_id < self.next_producer_id
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
}
