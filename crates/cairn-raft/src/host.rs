//! The multi-group host: one per node. Runs the controller group and every partition group
//! this node holds a replica of, all over one `Store` and one `Transport`.
//!
//! This file holds the host's parts (`Host`, `PartitionReplica`) and the reads of them;
//! each concern has a file of its own: `config.rs` (`HostConfig` and the openraft
//! configurations derived from it), `lifecycle.rs` (starting and stopping the host and its
//! groups), `reconciler.rs` (the local groups follow the controller state), `departure.rs`
//! (when a replica no longer assigned here may go), `write_path.rs` and `proposal_order.rs`
//! (proposals), `leadership.rs` (read index, leader transfer), `rpc.rs` (incoming Raft
//! messages), `membership.rs` (nodes joining and leaving), `mover.rs` (replica moves and
//! balancing), `liveness.rs` (failure detection for the timer-less partition groups),
//! `retention.rs`, `stats.rs` (counters for `/metrics`) and `error.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_storage::{PartitionLog, Store};
use cairn_types::{GroupId, Limits, NodeId, PartitionId};
use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::{ControllerState, ControllerStateMachine, TopicMeta};
use crate::network::{RpcKind, StreamedBytes, Throttle, Transport};
use crate::node_addresses::NodeAddresses;
use crate::partition::{PartitionStateMachine, PartitionView, SnapshotReceiver};
use crate::type_config::{Raft, TypeConfig};

mod compaction;
mod config;
mod controller_write_refusal;
mod departure;
mod error;
mod leadership;
mod lifecycle;
mod liveness;
mod membership;
mod mover;
mod proposal_order;
mod reconciler;
mod retention;
mod rpc;
mod stats;
mod write_path;

pub use config::HostConfig;
pub use error::HostError;
use error::write_result;
use liveness::Liveness;
use membership::MEMBERSHIP_CHANGE_TIMEOUT;
pub use proposal_order::ProducerArrival;
use proposal_order::ProposalOrder;
pub use stats::HostStats;

/// How long a background task (registration, retention) waits for one Raft write.
const BACKGROUND_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition replica hosted here.
pub struct PartitionReplica {
    pub topic: String,
    pub partition: PartitionId,
    pub group_id: GroupId,
    pub raft: Raft<PartitionStateMachine>,
    pub log: PartitionLog,
    pub view: watch::Receiver<PartitionView>,
    /// The consumer groups it coordinates, as applied (a partition of the groups topic).
    pub groups: crate::group::SharedGroups,
    /// Bytes streamed to each replica in snapshots (move progress).
    pub streamed: Arc<StreamedBytes>,
    /// Idempotent appends are proposed in sequence order.
    order: ProposalOrder,
    /// Checks incoming snapshot chunks; closed before the replica's data is deleted.
    snapshots: SnapshotReceiver,
}

impl PartitionReplica {
    pub fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }
}

pub struct Host {
    config: HostConfig,
    store: Arc<Store>,
    transport: Arc<dyn Transport>,
    /// Partition groups run without openraft's timers; see `liveness`.
    partition_raft_config: Arc<openraft::Config>,
    controller: Raft<ControllerStateMachine>,
    controller_view: watch::Receiver<Arc<ControllerState>>,
    partitions: RwLock<HashMap<GroupId, Arc<PartitionReplica>>>,
    /// Bumped whenever a local partition group starts or stops.
    partitions_changed: watch::Sender<u64>,
    throttle: Arc<Throttle>,
    /// Every node's current address, for all groups' messages (see `node_addresses`).
    addresses: Arc<NodeAddresses>,
    liveness: Liveness,
    /// When this node started handing over the leadership of each group (see `liveness`).
    transfers: std::sync::Mutex<HashMap<GroupId, tokio::time::Instant>>,
    shutdown: CancellationToken,
    /// Counters and durations for `/metrics`.
    stats: Arc<HostStats>,
}

impl Host {
    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// What the host counts for `/metrics`.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    pub fn controller_state(&self) -> Arc<ControllerState> {
        Arc::clone(&self.controller_view.borrow())
    }

    /// Every node of the cluster with its address: registered nodes and controller members.
    pub fn cluster_nodes(&self) -> BTreeMap<NodeId, String> {
        let members: BTreeMap<NodeId, String> = self
            .controller_metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        self.controller_state().all_nodes(&members)
    }

    /// What a rebalance would do now, from this node's view of the controller state.
    pub fn plan_rebalance(&self) -> crate::controller::RebalancePlan {
        self.controller_state().plan_rebalance(&self.cluster_nodes())
    }

    pub fn controller_metrics(&self) -> RaftMetrics<TypeConfig> {
        self.controller.metrics().borrow_watched().clone()
    }

    pub fn partition(&self, group: GroupId) -> Option<Arc<PartitionReplica>> {
        self.partitions.read().ok()?.get(&group).cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<PartitionReplica>> {
        let mut replicas: Vec<_> = self.partitions.read().map(|p| p.values().cloned().collect()).unwrap_or_default();
        replicas.sort_by_key(|r| r.group_id);
        replicas
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.controller_view.borrow().topics.get(name).cloned()
    }
}
