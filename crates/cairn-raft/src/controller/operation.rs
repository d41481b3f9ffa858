//! Replica moves and node decommissions: long-running operations the controller records as
//! desired state. The controller only changes its state; each partition's leader drives the
//! group's Raft membership toward it and reports back (see `mover.rs`).
//!
//! A move of partition P from node A to node B goes through these phases:
//! - `Queued`: waits for a free slot (at most `moves_active_max` moves run at once).
//! - `Copying`: B joins P's replica list; the leader adds B as a learner, which catches up by
//!   log replication or by a streamed snapshot.
//! - `Promoting`: the leader replaces A by B among the voters (joint consensus).
//! - `Done`: A leaves the replica list, and only then does A delete its copy.
//!
//! A move whose target leaves the cluster (or whose topic is deleted) is cancelled: the leader
//! restores the old voters (`Cancelling`), and once that membership has committed, B leaves
//! the replica list (`Cancelled`). B keeps its replica until then: after the promotion it
//! may be a voter holding writes no other replica has.
//!
//! A node leaves a replica list only once the group's committed membership no longer has it;
//! even then it deletes its copy only after it has confirmed that with the group's other
//! members (see `host/departure.rs`).

use serde::{Deserialize, Serialize};

use cairn_types::{GroupId, NodeId, PartitionId};

/// Finished operations kept for `cairn operation list`; older ones are forgotten.
pub const FINISHED_OPERATIONS_KEPT: usize = 200;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Operation {
    pub id: u64,
    pub kind: OperationKind,
    pub phase: Phase,
    /// When it was asked for (the proposing node's clock).
    pub created_ms: u64,
    /// For moves: bytes of the partition streamed to the target so far, and the partition's
    /// size on its leader, as last reported by the leader.
    pub bytes_copied: u64,
    pub bytes_total: u64,
    /// Why it was cancelled, or what it waits for.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum OperationKind {
    Move(Move),
    /// Moves every replica off `node`, then removes it from the cluster.
    Decommission {
        node: NodeId,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    pub topic: String,
    pub partition: PartitionId,
    pub group_id: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    /// The replica that should lead the partition once the move is done (rebalancing picks
    /// it so leaders end up spread too); `None` keeps `to` where `from` stood in the list.
    pub leader: Option<NodeId>,
}

impl Move {
    /// The replica list once this move is done: `to` (appended while it copied) takes
    /// `from`'s place, then the chosen leader, if any, goes first.
    pub fn apply_to(&self, replicas: &mut Vec<NodeId>) {
        replicas.retain(|n| *n != self.to);
        if let Some(slot) = replicas.iter_mut().find(|n| **n == self.from) {
            *slot = self.to;
        }
        if let Some(leader) = self.leader {
            super::topic::prefer(replicas, leader);
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Queued,
    Copying,
    Promoting,
    Cancelling,
    Done,
    Cancelled,
}

impl Phase {
    /// Whether the operation still has work to do.
    pub fn is_active(self) -> bool {
        !matches!(self, Phase::Done | Phase::Cancelled)
    }

    /// Whether a move in this phase copies or promotes: it takes one of the
    /// `moves_active_max` slots.
    pub fn is_running(self) -> bool {
        matches!(self, Phase::Copying | Phase::Promoting)
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Copying => "copying",
            Phase::Promoting => "promoting",
            Phase::Cancelling => "cancelling",
            Phase::Done => "done",
            Phase::Cancelled => "cancelled",
        }
    }
}

impl Operation {
    pub fn as_move(&self) -> Option<&Move> {
        match &self.kind {
            OperationKind::Move(m) => Some(m),
            OperationKind::Decommission { .. } => None,
        }
    }
}

/// What a rebalance would do: replica moves first, then new preferred leaders for
/// partitions that do not move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalancePlan {
    pub moves: Vec<Move>,
    pub leaders: Vec<LeaderChange>,
    /// More moves are needed than one round can plan (each partition moves at most once per
    /// round, and not while it is already moving).
    pub unfinished: bool,
}

impl RebalancePlan {
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.leaders.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderChange {
    pub topic: String,
    pub partition: PartitionId,
    pub group_id: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}
