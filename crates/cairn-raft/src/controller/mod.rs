//! The controller: the Raft group that replicates the cluster's metadata (nodes, topics and
//! their placement, replica moves and decommissions).
//!
//! - `topic.rs`, `operation.rs`, `error.rs`: the types the commands, the state and the host
//!   share; they import nothing else of the controller (`operation.rs` only `topic.rs`).
//! - `state.rs`: `ControllerState` and the queries on it.
//! - `apply.rs`: the apply dispatcher, routing each command to its concern:
//!   `placement.rs` (topics and replicas), `operation_lifecycle.rs` (moves, decommissions,
//!   node removal) and `rebalance.rs` (the planner).
//! - `state_machine.rs` and `store.rs`: openraft's state machine over the state, and how
//!   the state is stored (a topic per entry).
//!
//! Imports go one way: the shared types ◀ `state.rs` ◀ the concerns ◀ `apply.rs` ◀
//! `state_machine.rs`; `crate::command` sits between the shared types and `apply.rs`.

mod apply;
pub(crate) mod error;
pub(crate) mod operation;
mod operation_lifecycle;
mod placement;
mod rebalance;
mod state;
mod state_machine;
mod store;
#[cfg(test)]
mod test_support;
pub(crate) mod topic;

pub use apply::ControllerOutcome;
pub use error::ControllerError;
pub use operation::{FINISHED_OPERATIONS_KEPT, LeaderChange, Move, Operation, OperationKind, Phase, RebalancePlan};
pub use state::ControllerState;
pub use state_machine::ControllerStateMachine;
pub use topic::{PartitionAssignment, TopicMeta};
