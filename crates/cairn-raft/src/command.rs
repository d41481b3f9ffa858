//! What a Raft entry asks a state machine to do (`Command`: a partition's append or prefix
//! deletion, or a controller command) and what applying it answers (`CommandResponse`).
//! Shared by both state machines and openraft's type configuration.

use cairn_types::{NodeId, Offset, PartitionId, Record, TopicConfig};
use serde::{Deserialize, Serialize};

use crate::controller::error::ControllerError;
use crate::controller::operation::{Phase, RebalancePlan};
use crate::controller::topic::TopicMeta;
use crate::group::{GroupCommand, GroupOutcome};
use crate::stream_command::{EventAppend, EventAppendRefusal, EventsAppended, StreamChange, StreamChanged};

/// What a Raft entry asks a state machine to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Partition(PartitionCommand),
    Controller(ControllerCommand),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Partition(PartitionCommand::Append { records, .. }) => {
                write!(f, "append({} records)", records.len())
            }
            Command::Partition(PartitionCommand::DeletePrefix { before_offset }) => {
                write!(f, "delete-prefix(before {before_offset})")
            }
            Command::Partition(PartitionCommand::AppendEvents(append)) => {
                write!(f, "append-events({} events, {} streams)", append.event_count(), append.writes.len())
            }
            Command::Partition(PartitionCommand::ChangeStream(change)) => {
                write!(f, "change-stream({:?}, {:?})", change.stream, change.change)
            }
            Command::Partition(PartitionCommand::CompactStreams { streams, now_ms }) => {
                write!(f, "compact-streams({} streams, at {now_ms})", streams.len())
            }
            Command::Partition(PartitionCommand::Group(command)) => write!(f, "group({:?})", command.group()),
            Command::Controller(command) => write!(f, "controller({command:?})"),
        }
    }
}

impl std::fmt::Display for CommandResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PartitionCommand {
    /// One atomic batch. `timestamp_ms` is the leader's clock when it proposed the batch;
    /// the state machine stamps `max(timestamp_ms, last timestamp)` so timestamps never
    /// decrease and every replica stamps the same.
    Append { records: Vec<Record>, timestamp_ms: u64, producer: Option<ProducerSequence> },
    /// Retention: drop every batch that ends at or before `before_offset`.
    DeletePrefix { before_offset: Offset },
    /// Events for streams of the partition, with conditions checked at apply time.
    AppendEvents(EventAppend),
    /// A stream deleted, or its metadata set, with its condition checked at apply time.
    ChangeStream(StreamChange),
    /// Compaction: remove from the store the events of `streams` that their deletion or
    /// metadata hides at `now_ms` (the leader's clock when it proposed), at most
    /// `COMPACTION_EVENTS_MAX` of them. Decided at apply time from the state, so every
    /// replica removes the same events.
    CompactStreams { streams: Vec<String>, now_ms: u64 },
    /// A change to a consumer group this partition of the internal groups topic coordinates.
    Group(GroupCommand),
}

/// Events one `CompactStreams` entry removes at most (it rewrites the batches holding them
/// in one write).
pub const COMPACTION_EVENTS_MAX: u64 = 4096;
/// Streams one `CompactStreams` entry names at most.
pub const COMPACTION_STREAMS_MAX: usize = 256;

/// An idempotent producer's id and the sequence number of a batch's first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSequence {
    pub producer_id: u64,
    pub sequence: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Hands out a cluster-unique producer id.
    AllocateProducerId,
    RegisterNode {
        node_id: NodeId,
        address: String,
    },
    /// `topics_max` travels in the command so every replica decides alike.
    CreateTopic {
        name: String,
        config: TopicConfig,
        topics_max: usize,
    },
    DeleteTopic {
        name: String,
    },
    /// Takes a node out of placement; refused while partitions list it as a replica,
    /// unless `force`.
    RemoveNode {
        node_id: NodeId,
        force: bool,
    },
    /// Grows a topic to `partition_count` partitions (never shrinks it).
    AddPartitions {
        name: String,
        partition_count: u32,
    },
    /// Queues a move of one replica of a partition from `from` to `to`.
    MovePartition {
        topic: String,
        partition: PartitionId,
        from: NodeId,
        to: NodeId,
        created_ms: u64,
        moves_active_max: u32,
    },
    /// Plans (at apply time, from the state) and queues the moves and preferred-leader
    /// changes that even out replicas and leaders per node.
    Rebalance {
        created_ms: u64,
        moves_active_max: u32,
    },
    /// Moves every replica off `node_id`; the controller leader removes it once empty.
    Decommission {
        node_id: NodeId,
        created_ms: u64,
        moves_active_max: u32,
    },
    /// The leader of a moving partition reports progress (`Promoting` once caught up).
    MoveProgress {
        id: u64,
        phase: Phase,
        bytes_copied: u64,
        bytes_total: u64,
    },
    /// The leader of a moving partition reports the membership change complete.
    FinishOperation {
        id: u64,
    },
    /// Makes `node` the partition's preferred leader (first in its replica list), as an
    /// operator's leader transfer asks.
    PreferLeader {
        topic: String,
        partition: PartitionId,
        node: NodeId,
    },
}

/// The answer to one applied entry.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub enum CommandResponse {
    /// Blank and membership entries.
    #[default]
    None,
    Appended(AppendOutcome),
    PrefixDeleted {
        log_start_offset: Offset,
    },
    Topic(Result<TopicMeta, ControllerError>),
    TopicDeleted(Result<(), ControllerError>),
    NodeRegistered,
    ProducerId(u64),
    /// An idempotent append out of order: `expected` is the next sequence accepted.
    SequenceError {
        producer_id: u64,
        sequence: u64,
        expected: u64,
    },
    /// The entry was not meant for this kind of group.
    Misrouted,
    /// The replicas the removed node still held.
    NodeRemoved(Result<u32, ControllerError>),
    /// The operations a move, rebalance or decommission started.
    Operations(Result<Vec<u64>, ControllerError>),
    /// What a rebalance planned, and the ids of the moves it queued.
    Rebalanced {
        plan: RebalancePlan,
        operations: Vec<u64>,
    },
    OperationUpdated(Result<(), ControllerError>),
    EventsAppended(EventsAppended),
    EventAppendRefused(EventAppendRefusal),
    StreamChanged(StreamChanged),
    /// What a `CompactStreams` entry removed.
    Compacted {
        events: u64,
        bytes: u64,
    },
    Group(GroupOutcome),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: Offset,
    pub record_count: u32,
    pub timestamp_ms: u64,
    /// The Raft log index that applied the batch.
    pub applied_index: u64,
    /// A retry of a batch already applied: these are its original offsets.
    pub duplicate: bool,
}
