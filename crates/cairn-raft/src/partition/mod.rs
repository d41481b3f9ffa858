//! A partition's Raft group, as far as its data goes: the state machine that applies
//! batches to the partition log (`state_machine.rs`) and event appends with their
//! conditions (`stream_apply.rs`), the idempotent producers' table
//! (`producer_table.rs`) and how it is stored (`producer_store.rs`), and snapshots: how
//! they are stored (`snapshot.rs`, shared with the controller's state machine) and the
//! checks on the record chunks a snapshot streams in (`snapshot_receiver.rs`).

pub mod producer_store;
pub mod producer_table;
pub mod snapshot;
pub mod snapshot_receiver;
pub mod state_machine;
mod stream_apply;

pub use snapshot::{Snapshot, StateSnapshot};
pub use snapshot_receiver::{SnapshotChunk, SnapshotReceiver};
pub use state_machine::{PartitionSmState, PartitionStateMachine, PartitionView};
