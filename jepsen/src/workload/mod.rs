//! Workloads: what the client processes do during a run, what they read once the faults
//! have healed, and which checkers judge the history. Each workload is one file; adding one
//! means a file here, a variant of `WorkloadKind`, and its arms in the dispatch below.

pub mod clients;
pub mod groups;
pub mod producer;
pub mod queue;
pub mod streams;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::checker::CheckResult;
use crate::checker::replicas::ReplicaRecord;
use crate::history::{Operation, Recorder};
pub use clients::{Clients, Members};

/// The topic every workload writes to.
pub const TOPIC: &str = "jepsen";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Plain appends of unique values and polls at every consistency level (Jepsen's
    /// Kafka queue workload).
    Queue,
    /// Appends through idempotent producers that retry across failovers.
    Producer,
    /// Conditional event appends (expected revisions) with event ids, and stream reads.
    Streams,
    /// Plain appends, and the members of one consumer group polling and committing.
    Groups,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Queue => "queue",
            WorkloadKind::Producer => "producer",
            WorkloadKind::Streams => "streams",
            WorkloadKind::Groups => "groups",
        }
    }
}

/// What every client process of a run shares.
#[derive(Clone)]
pub struct Context {
    pub recorder: Recorder,
    pub members: Members,
    pub partitions: u32,
    pub seed: u64,
    /// Set when the client phase ends: processes finish their operation and return.
    pub stop: Arc<AtomicBool>,
    /// Pause between one process's operations (bounds the rate and the history's size).
    pub pause: Duration,
}

impl Context {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// What the final reads found, for the checkers.
#[derive(Debug, Default)]
pub struct FinalState {
    /// partition → (offset, value), dense from 0.
    pub log: BTreeMap<u32, Vec<(u64, String)>>,
    /// stream → (revision, event id, value).
    pub streams: BTreeMap<String, Vec<(u64, String, String)>>,
    /// partition → the consumer group's committed position (the groups workload).
    pub group_positions: BTreeMap<u32, u64>,
}

/// node → partition → records, read from each replica with local consistency.
pub type ReplicaDump = BTreeMap<u64, BTreeMap<u32, Vec<ReplicaRecord>>>;

/// Creates what the workload writes to.
pub async fn setup(context: &Context) -> anyhow::Result<()> {
    clients::create_topic(context).await
}

/// Runs client process slot `worker` until the context stops (new process numbers replace
/// a process whose operation ended indeterminate).
pub async fn run_worker(kind: WorkloadKind, context: Context, worker: u32, workers: u32) {
    match kind {
        WorkloadKind::Queue => queue::run_worker(context, worker, workers).await,
        WorkloadKind::Producer => producer::run_worker(context, worker, workers).await,
        WorkloadKind::Streams => streams::run_worker(context, worker, workers).await,
        WorkloadKind::Groups => groups::run_worker(context, worker, workers).await,
    }
}

/// Reads everything back through the cluster (recorded in the history as process `FINAL`).
pub async fn final_reads(kind: WorkloadKind, context: &Context) -> anyhow::Result<FinalState> {
    match kind {
        WorkloadKind::Queue | WorkloadKind::Producer => queue::final_reads(context).await,
        WorkloadKind::Streams => streams::final_reads(context).await,
        WorkloadKind::Groups => groups::final_reads(context).await,
    }
}

/// The workload's checkers over the history and the final state.
pub fn check(kind: WorkloadKind, operations: &[Operation], final_state: &FinalState) -> Vec<CheckResult> {
    match kind {
        WorkloadKind::Queue => crate::checker::queue::check(operations, &final_state.log),
        WorkloadKind::Producer => {
            // The queue's checks (lost, duplicated, offsets, order, reads) hold for
            // idempotent appends too; the producer's add exactly-once and per-producer order.
            let mut results = crate::checker::queue::check(operations, &final_state.log);
            results.extend(crate::checker::producer::check(operations, &final_state.log));
            results
        }
        WorkloadKind::Streams => crate::checker::streams::check(operations, &final_state.streams),
        WorkloadKind::Groups => {
            // The log itself is a queue's (lost, duplicated, offsets...); the group adds
            // its delivery and commit checks.
            let mut results = crate::checker::queue::check(operations, &final_state.log);
            results.extend(crate::checker::groups::check(operations, &final_state.log, &final_state.group_positions));
            results
        }
    }
}

/// The process number of the final reads.
pub const FINAL: u32 = u32::MAX - 1;
