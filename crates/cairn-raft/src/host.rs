//! The multi-group host: one per node. Runs the controller group and every partition group
//! this node holds a replica of, all over one `Store` and one `Transport`.
//!
//! A reconciler task watches the controller's state and makes the local groups match it:
//! it starts the groups of new partitions assigned here (the first replica bootstraps the
//! group), and stops and deletes the groups no longer assigned here, once their topic is
//! deleted or the group's committed membership no longer has this node (`departure`). A
//! retention task proposes prefix deletions for the partitions this node leads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_storage::{PartitionLog, Store};
use cairn_types::{CONTROLLER_GROUP_ID, GroupId, Limits, NodeId, PartitionId, now_ms};
use futures::StreamExt as _;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::impls::ProgressResponder;
use openraft::{BasicNode, ChangeMembers, Instant as _, RaftMetrics, ReadPolicy, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::command::{Command, CommandResponse, ControllerCommand, PartitionCommand, ProducerSequence};
use crate::controller::{ControllerError, ControllerState, ControllerStateMachine, PartitionAssignment, TopicMeta};
use crate::log_store::LogStore;
use crate::network::{GroupNetworkFactory, RpcKind, StreamedBytes, Throttle, Transport};
use crate::node_addresses::NodeAddresses;
use crate::partition::{
    PartitionSmState, PartitionStateMachine, PartitionView, Snapshot, SnapshotChunk, SnapshotReceiver, StateSnapshot,
};
use crate::type_config::{Raft, TypeConfig, Vote};
use crate::{decode, encode};

mod departure;
mod liveness;
mod mover;
mod proposal_order;

use liveness::Liveness;
pub use proposal_order::ProducerArrival;
use proposal_order::ProposalOrder;

/// How long a leader transfer waits for the new leader to take over.
const LEADER_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node removal waits for the node to receive it (see `let_removed_node_catch_up`).
const REMOVED_NODE_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a node removal waits for its controller membership change to commit.
const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a background task (registration, retention) waits for one Raft write.
const BACKGROUND_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the reconciler looks again at replicas it keeps only until their group's
/// membership leaves this node out (see `departure`).
const DEPARTURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Replicas the reconciler checks (and deletes) at once: each may wait for other nodes.
const DEPARTURES_AT_ONCE: usize = 16;

#[derive(Debug, Clone)]
pub struct HostConfig {
    pub node_id: NodeId,
    /// The controller's voters when the cluster is first formed. Ignored once initialised.
    pub initial_members: BTreeMap<NodeId, String>,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How often the retention task looks for prefixes to delete.
    pub retention_check_interval_ms: u64,
    /// Raft log entries between snapshots; older entries are then purged, and a replica
    /// that falls further behind catches up by streaming the partition.
    pub snapshot_log_entries: u64,
    pub limits: Limits,
    /// Whether the controller leader rebalances by itself when nodes join or leave.
    pub auto_balance: bool,
    /// Replica moves copying or promoting at once, cluster-wide; more wait queued.
    pub moves_active_max: u32,
    /// Snapshot streaming (replica moves, catch-up) per node, bytes per second; 0: no limit.
    pub move_bytes_per_sec: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("this node is not the leader of group {group}")]
    NotLeader { group: GroupId, leader: Option<NodeId>, leader_address: Option<String> },
    #[error("the outcome of the write to group {group} is unknown (leader changed); retry with deduplication")]
    Indeterminate { group: GroupId },
    #[error("group {0} is not hosted on this node")]
    UnknownGroup(GroupId),
    #[error("group {group} has no leader after {waited_ms} ms")]
    NoLeader { group: GroupId, waited_ms: u64 },
    #[error(
        "node {to} did not take over group {group} within {waited_ms} ms; the old leader may still lead: retry, or \
         see `cairn cluster status`"
    )]
    LeaderTransferTimedOut { group: GroupId, to: NodeId, waited_ms: u64 },
    #[error("membership change of group {group} refused: {detail}")]
    Membership { group: GroupId, detail: String },
    /// Another membership change of the group has not committed yet: a passing refusal.
    #[error("group {group} is already changing its membership ({detail}); retry shortly")]
    MembershipChanging { group: GroupId, detail: String },
    #[error("raft message for node {to} arrived at node {me}")]
    Misrouted { to: NodeId, me: NodeId },
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Storage(#[from] io::Error),
}

/// One partition replica hosted here.
pub struct PartitionReplica {
    pub topic: String,
    pub partition: PartitionId,
    pub group_id: GroupId,
    pub raft: Raft<PartitionStateMachine>,
    pub log: PartitionLog,
    pub view: watch::Receiver<PartitionView>,
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
}

impl Host {
    pub async fn start(
        config: HostConfig,
        store: Arc<Store>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Host>, HostError> {
        let raft_config = openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_log_entries.max(1)),
            max_in_snapshot_log_to_keep: config.snapshot_log_entries / 10,
            install_snapshot_timeout: 30_000,
            // Applied state is not fsynced on its own: a restarted leader must win an
            // election again instead of resuming.
            enable_leader_restore: Some(false),
            // Per-entry latency tracking of openraft's `runtime-stats` feature, which Cairn
            // does not enable: without this, every group still allocates six ring buffers
            // of 1,024 timestamps, most of an idle partition replica's memory.
            log_stage_capacity: Some(1),
            ..Default::default()
        };
        // Partition groups have no timers (see `liveness`), so openraft's timeouts only set
        // two things there. The leader lease (`election_timeout_max`) is the failure detection
        // time: voters refuse other candidates that long after hearing from their leader, and
        // the liveness loop starts elections only after it anyway. The heartbeat interval is
        // the replication RPC timeout: half of it.
        let detection = config.election_timeout_min_ms.max(4);
        let partition_raft_config = openraft::Config {
            enable_tick: false,
            heartbeat_interval: detection / 2,
            election_timeout_min: detection * 3 / 4,
            election_timeout_max: detection,
            ..raft_config.clone()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(|err| HostError::Raft(err.to_string()))?);
        let partition_raft_config =
            Arc::new(partition_raft_config.validate().map_err(|err| HostError::Raft(err.to_string()))?);
        let (controller_sm, controller_view) = ControllerStateMachine::open(Arc::clone(&store))?;
        let throttle = Arc::new(Throttle::new(config.move_bytes_per_sec));
        let addresses = Arc::new(NodeAddresses::default());
        addresses.replace(controller_view.borrow().all_nodes(&BTreeMap::new()));
        let network = GroupNetworkFactory {
            group: CONTROLLER_GROUP_ID,
            transport: Arc::clone(&transport),
            partition_log: None,
            partition_view: None,
            streamed: Arc::default(),
            throttle: Arc::clone(&throttle),
            addresses: Arc::clone(&addresses),
        };
        let controller = Raft::new(
            config.node_id,
            Arc::clone(&raft_config),
            network,
            LogStore::new(Arc::clone(&store), CONTROLLER_GROUP_ID),
            controller_sm,
        )
        .await
        .map_err(|err| HostError::Raft(err.to_string()))?;
        if !config.initial_members.is_empty()
            && config.initial_members.contains_key(&config.node_id)
            && !controller.is_initialized().await.map_err(|err| HostError::Raft(err.to_string()))?
        {
            let members: BTreeMap<NodeId, BasicNode> =
                config.initial_members.iter().map(|(id, address)| (*id, BasicNode { addr: address.clone() })).collect();
            tracing::info!(?members, "forming a new cluster");
            if let Err(err) = controller.initialize(members).await {
                tracing::warn!(error = %err, "controller initialisation refused");
            }
        }
        let host = Arc::new(Host {
            config,
            store,
            transport,
            partition_raft_config,
            controller,
            controller_view,
            partitions: RwLock::new(HashMap::new()),
            partitions_changed: watch::channel(0).0,
            throttle,
            addresses,
            liveness: Liveness::default(),
            transfers: std::sync::Mutex::default(),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(Arc::clone(&host).reconcile_loop());
        tokio::spawn(Arc::clone(&host).mover_loop());
        tokio::spawn(Arc::clone(&host).retention_loop());
        tokio::spawn(Arc::clone(&host).liveness_loop());
        Ok(host)
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
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

    /// Proposes a controller command; this node must lead the controller.
    pub async fn controller_write(&self, command: ControllerCommand) -> Result<CommandResponse, HostError> {
        let result = self.controller.client_write(Command::Controller(command)).await;
        write_result(CONTROLLER_GROUP_ID, result)
    }

    /// Adds `node_id` to the cluster: a learner of the controller group (so it follows the
    /// metadata) and a registered node (so topics can place replicas on it). This node
    /// must lead the controller.
    pub async fn add_node(&self, node_id: NodeId, address: String) -> Result<(), HostError> {
        let metrics = self.controller_metrics();
        let known = metrics.membership_config.membership().get_node(&node_id).map(|n| n.addr.clone());
        if known.as_deref() != Some(address.as_str()) {
            let result = self.controller.add_learner(node_id, BasicNode { addr: address.clone() }, false).await;
            write_result(CONTROLLER_GROUP_ID, result)?;
        }
        self.controller_write(ControllerCommand::RegisterNode { node_id, address }).await?;
        Ok(())
    }

    /// Takes `node_id` out of the cluster: deregisters it, so no replica is placed on it
    /// (refused while partitions list it, unless `force`), then removes it from the
    /// controller group. Returns the replicas it still held. This node must lead the
    /// controller. Retrying a removal that stopped half-way finishes it.
    pub async fn remove_node(&self, node_id: NodeId, force: bool) -> Result<Result<u32, ControllerError>, HostError> {
        let membership = self.controller_metrics().membership_config.membership().clone();
        let is_member = membership.get_node(&node_id).is_some();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() == 1 && voters.contains(&node_id) {
            return Err(HostError::Membership {
                group: CONTROLLER_GROUP_ID,
                detail: format!("node {node_id} is the controller's only voter; the cluster cannot lose it"),
            });
        }
        let replicas = match self.controller_write(ControllerCommand::RemoveNode { node_id, force }).await? {
            CommandResponse::NodeRemoved(Ok(replicas)) => replicas,
            // Deregistered by an earlier attempt that stopped before the membership change.
            CommandResponse::NodeRemoved(Err(ControllerError::NodeNotFound(_))) if is_member => 0,
            CommandResponse::NodeRemoved(Err(err)) => return Ok(Err(err)),
            other => return Err(HostError::Raft(format!("unexpected controller outcome {other:?}"))),
        };
        if is_member {
            self.let_removed_node_catch_up(node_id).await;
            let change = if voters.contains(&node_id) {
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
            };
            // Removing a voter needs a majority of the new voter set; if it is not there the
            // change cannot commit: answer instead of waiting forever (openraft keeps trying).
            let changed =
                tokio::time::timeout(MEMBERSHIP_CHANGE_TIMEOUT, self.controller.change_membership(change, false))
                    .await
                    .map_err(|_| HostError::Membership {
                        group: CONTROLLER_GROUP_ID,
                        detail: format!(
                            "removing node {node_id} did not commit within {} s: a majority of the remaining \
                         controller voters must be up; it completes once they are",
                            MEMBERSHIP_CHANGE_TIMEOUT.as_secs()
                        ),
                    })?;
            write_result(CONTROLLER_GROUP_ID, changed)?;
        }
        tracing::info!(node_id, force, replicas, "node removed from the cluster");
        Ok(Ok(replicas))
    }

    /// Registers an idempotent append that reached this node, when it holds a replica of
    /// `group`: until the arrival is dropped, the producer's later batches wait for it
    /// (see `proposal_order`). Hold it across the attempts at writing it.
    pub fn arrive(&self, group: GroupId, producer: ProducerSequence) -> Option<ProducerArrival> {
        Some(self.partition(group)?.order.arrive(producer))
    }

    /// Waits (bounded) until a live node being removed has the controller's log up to its
    /// removal: it stops receiving that log once it leaves the controller group, and a move
    /// to it that the removal cancelled may need it (as the group's leader) to restore the
    /// old voters.
    async fn let_removed_node_catch_up(&self, node_id: NodeId) {
        if !self.liveness.is_live(node_id, self.failure_detection()) {
            return;
        }
        let Some(removal) = self.controller_metrics().last_log_index else { return };
        let caught_up = replicated_up_to(node_id, removal);
        let wait = self.controller.wait(Some(REMOVED_NODE_CATCH_UP_TIMEOUT));
        if wait.metrics(caught_up, "removed node caught up").await.is_err() {
            tracing::warn!(node_id, "the removed node did not receive its removal in time; removing it anyway");
        }
    }

    /// Proposes a partition command; this node must lead the partition.
    pub async fn partition_write(
        &self,
        group: GroupId,
        command: PartitionCommand,
    ) -> Result<CommandResponse, HostError> {
        let replica = self.partition(group).ok_or(HostError::UnknownGroup(group))?;
        let PartitionCommand::Append { records, producer: Some(producer), .. } = &command else {
            self.renew_lease(&replica).await;
            let result = replica.raft.client_write(Command::Partition(command)).await;
            return write_result(group, result).map_err(|err| self.current_leader_address(err));
        };
        let (producer, records) = (*producer, records.len() as u64);
        // Later batches of the producer wait for this one while it renews the lease.
        let _arrival = replica.order.arrive(producer);
        self.renew_lease(&replica).await;
        // Proposed in sequence order (see `proposal_order`); answered once applied.
        let (responder, answer) = ProgressResponder::complete_only();
        let term = replica.raft.metrics().borrow_watched().current_term;
        let not_proposed = || HostError::NotLeader { group, leader: None, leader_address: None };
        let proposal = async {
            // openraft would refuse the write: propose nothing, so the order stays as it is
            // for when this batch is sent again.
            if !self.lease_holds(&replica) {
                return Err(not_proposed());
            }
            // An error: the group stopped (this replica is shutting down), and another
            // replica may lead.
            replica.raft.client_write_ff(Command::Partition(command), Some(responder)).await.map_err(|_| not_proposed())
        };
        replica.order.propose(term, producer, records, proposal).await?;
        match answer.await {
            Ok(result) => {
                write_result(group, result.map_err(RaftError::APIError)).map_err(|err| self.current_leader_address(err))
            }
            // The group stopped before answering: the entry may or may not commit.
            Err(_) => Err(HostError::Indeterminate { group }),
        }
    }

    /// A "not leader" answer names the leader's current address, not the one in the group's
    /// membership (see `node_addresses`).
    fn current_leader_address(&self, err: HostError) -> HostError {
        match err {
            HostError::NotLeader { group, leader: Some(leader), leader_address } => HostError::NotLeader {
                group,
                leader: Some(leader),
                leader_address: Some(self.addresses.resolve(leader, leader_address.as_deref().unwrap_or_default())),
            },
            err => err,
        }
    }

    /// openraft accepts a write only while the leader's lease holds: a quorum acknowledged
    /// it within the lease (`election_timeout_max`). An idle partition group sends no
    /// heartbeats (see `liveness`), so its lease lapses; renew it with one heartbeat round.
    /// Returns at once when this node does not lead the group, and gives up after the
    /// failure detection time (the write then fails as not led, and is retried).
    pub(crate) async fn renew_lease(&self, replica: &PartitionReplica) {
        let lease = self.failure_detection();
        // A lone voter is its own quorum: its lease never lapses.
        let fresh = move |m: &RaftMetrics<TypeConfig>| {
            m.state != ServerState::Leader
                || m.membership_config.membership().voter_ids().nth(1).is_none()
                || m.last_quorum_acked.as_ref().is_some_and(|at| at.elapsed() < lease / 2)
        };
        if fresh(&replica.raft.metrics().borrow_watched()) {
            return;
        }
        if replica.raft.trigger().heartbeat().await.is_err() {
            return;
        }
        let _ = replica.raft.wait(Some(self.failure_detection())).metrics(fresh, "leader lease renewed").await;
    }

    /// Whether openraft would take a write in `replica` now, as far as its lease goes: it
    /// does not lead (openraft then names the leader), or its lease holds (with a margin
    /// for the clocks of the metrics and of openraft).
    fn lease_holds(&self, replica: &PartitionReplica) -> bool {
        let lease = self.failure_detection();
        let metrics = replica.raft.metrics().borrow_watched().clone();
        metrics.state != ServerState::Leader
            || metrics.membership_config.membership().voter_ids().nth(1).is_none()
            || metrics.last_quorum_acked.as_ref().is_some_and(|at| at.elapsed() < lease * 9 / 10)
    }

    /// The log index a linearizable read of `group` must see applied: the leader confirms
    /// its leadership with a quorum (read index), then answers. This node must lead.
    pub async fn read_index(&self, group: GroupId) -> Result<u64, HostError> {
        let replica = self.partition(group).ok_or(HostError::UnknownGroup(group))?;
        match replica.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read_log_id) => Ok(read_log_id.log_id().index),
            Err(err) => match err.forward_to_leader() {
                Some(forward) => Err(HostError::NotLeader {
                    group,
                    leader: forward.leader_id,
                    leader_address: forward.leader_node.as_ref().map(|n| n.addr.clone()),
                }),
                None => Err(HostError::Raft(err.to_string())),
            },
        }
    }

    /// Hands the leadership of `group` to `to`, a voter of it, and waits until `to` leads.
    /// This node must lead the group.
    pub async fn transfer_leader(&self, group: GroupId, to: NodeId) -> Result<(), HostError> {
        let replica = self.partition(group).ok_or(HostError::UnknownGroup(group))?;
        let metrics = replica.metrics();
        if metrics.current_leader != Some(to) && metrics.current_leader != Some(self.config.node_id) {
            let leader_address = metrics
                .current_leader
                .and_then(|leader| metrics.membership_config.membership().get_node(&leader).map(|n| n.addr.clone()));
            return Err(HostError::NotLeader { group, leader: metrics.current_leader, leader_address });
        }
        if !metrics.membership_config.membership().voter_ids().any(|id| id == to) {
            return Err(HostError::Membership {
                group,
                detail: format!("node {to} is not a voter of group {group}, so it cannot lead it"),
            });
        }
        // Record `to` as the preferred leader, so that balancing keeps it leading.
        let prefer =
            ControllerCommand::PreferLeader { topic: replica.topic.clone(), partition: replica.partition, node: to };
        if let CommandResponse::OperationUpdated(Err(err)) = self.propose_to_controller(prefer).await? {
            return Err(HostError::Membership { group, detail: err.to_string() });
        }
        if metrics.current_leader == Some(to) {
            return Ok(());
        }
        self.start_transfer(&replica, to).await?;
        let mut watched = replica.raft.metrics();
        let led = tokio::time::timeout(LEADER_TRANSFER_TIMEOUT, async {
            while watched.borrow_watched().current_leader != Some(to) {
                if watched.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        led.map_err(|_| HostError::LeaderTransferTimedOut {
            group,
            to,
            waited_ms: LEADER_TRANSFER_TIMEOUT.as_millis() as u64,
        })
    }

    /// The leader of `group` as this node's replica sees it, with its address. A replica
    /// that has not heard from its leader since it started (an idle group sends nothing)
    /// takes the live node that claims the group.
    pub fn partition_leader(&self, group: GroupId) -> Option<(NodeId, String)> {
        let metrics = self.partition(group)?.metrics();
        let leader =
            metrics.current_leader.or_else(|| self.liveness.live_leader(group, 0, self.failure_detection()))?;
        let address = metrics.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, self.addresses.resolve(leader, &address)))
    }

    /// Waits until the controller state holds `topic` (as created) and, for each of its
    /// partitions with a replica here, the group runs and has a leader.
    pub async fn wait_topic_ready(&self, topic: &TopicMeta, timeout: Duration) -> Result<(), HostError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.partitions_changed.subscribe();
        for assignment in topic.partitions.iter().filter(|p| p.replicas.contains(&self.config.node_id)) {
            let replica = loop {
                if let Some(replica) = self.partition(assignment.group_id) {
                    break replica;
                }
                if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                    return Err(HostError::NoLeader {
                        group: assignment.group_id,
                        waited_ms: timeout.as_millis() as u64,
                    });
                }
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            replica
                .raft
                .wait(Some(remaining))
                .metrics(|m| m.current_leader.is_some(), "partition has a leader")
                .await
                .map_err(|_| HostError::NoLeader {
                    group: assignment.group_id,
                    waited_ms: timeout.as_millis() as u64,
                })?;
        }
        Ok(())
    }

    /// Serves one Raft message from another node. The reply is `Result<Resp, String>`.
    pub async fn handle_rpc(
        &self,
        group: GroupId,
        to: NodeId,
        kind: RpcKind,
        payload: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        if to != self.config.node_id {
            return Err(HostError::Misrouted { to, me: self.config.node_id });
        }
        if kind == RpcKind::NodeHeartbeat {
            return self.serve_node_heartbeat(payload);
        }
        if kind == RpcKind::Membership {
            return self.serve_membership(group);
        }
        if group == CONTROLLER_GROUP_ID && kind == RpcKind::ControllerWrite {
            return self.serve_controller_write(payload).await;
        }
        if group == CONTROLLER_GROUP_ID {
            return serve_rpc(&self.controller, None, kind, payload).await;
        }
        if kind == RpcKind::ReadIndex {
            let index = self.read_index(group).await.map_err(|err| err.to_string());
            return Ok(encode(&index)?);
        }
        let replica = self.partition(group).ok_or(HostError::UnknownGroup(group))?;
        serve_rpc(&replica.raft, Some((&replica.log, &replica.snapshots)), kind, payload).await
    }

    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        for replica in self.partitions() {
            let _ = replica.raft.shutdown().await;
        }
        let _ = self.controller.shutdown().await;
    }

    async fn reconcile_loop(self: Arc<Self>) {
        let mut view = self.controller_view.clone();
        let mut controller_metrics = self.controller.metrics();
        let leadership =
            |m: &RaftMetrics<TypeConfig>| (m.current_leader, m.current_term, *m.membership_config.log_id());
        // Data of groups not running here is looked for once, after the first pass.
        let mut strays_adopted = false;
        loop {
            let state = Arc::clone(&view.borrow_and_update());
            let seen = leadership(&controller_metrics.borrow_watched());
            let departing = match self.reconcile(&state).await {
                Ok(departing) if !strays_adopted => match self.adopt_stray_groups(&state).await {
                    Ok(started) => {
                        strays_adopted = true;
                        departing || started
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot look for stray partition data; retrying");
                        true
                    }
                },
                Ok(departing) => departing,
                Err(err) => {
                    tracing::warn!(error = %err, "reconcile failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            // Wake on a new controller state, or on a leadership or membership change (the
            // controller leader registers voters); metrics also tick on every heartbeat.
            // Replicas kept until they have left their group are looked at again.
            let recheck = async move {
                match departing {
                    true => tokio::time::sleep(DEPARTURE_CHECK_INTERVAL).await,
                    false => std::future::pending().await,
                }
            };
            tokio::pin!(recheck);
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = &mut recheck => break,
                    changed = view.changed() => if changed.is_err() { return } else { break },
                    changed = controller_metrics.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if leadership(&controller_metrics.borrow_watched()) != seen {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Makes the local groups match `state`; returns whether replicas no longer assigned
    /// here are kept because they may still be members of their group.
    async fn reconcile(&self, state: &ControllerState) -> Result<bool, HostError> {
        self.addresses.replace(self.cluster_nodes());
        // The controller leader registers every controller voter it does not know yet.
        let metrics = self.controller_metrics();
        if metrics.current_leader == Some(self.config.node_id) && metrics.state == ServerState::Leader {
            for (id, node) in metrics.membership_config.membership().nodes() {
                // A removed node may still be a member until its membership change commits.
                // A known node keeps the address it registered last: the membership's may
                // be one it had before a restart (see `node_addresses`).
                if !state.nodes.contains_key(id) && !state.removed.contains(id) {
                    let register = ControllerCommand::RegisterNode { node_id: *id, address: node.addr.clone() };
                    tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, self.controller_write(register)).await.map_err(
                        |_| HostError::NoLeader {
                            group: CONTROLLER_GROUP_ID,
                            waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64,
                        },
                    )??;
                }
            }
        }
        let wanted: BTreeMap<GroupId, (&TopicMeta, &PartitionAssignment)> =
            state.groups_of(self.config.node_id).map(|(t, p)| (p.group_id, (t, p))).collect();
        // One failing group must not keep the others from starting or stopping.
        let mut failed = None;
        for (group, (topic, assignment)) in &wanted {
            if self.partition(*group).is_none()
                && let Err(err) = self.start_partition(topic, assignment).await
            {
                tracing::error!(group, error = %err, "cannot start partition replica");
                failed = Some(err);
            }
        }
        let running: BTreeSet<GroupId> =
            self.partitions.read().map(|p| p.keys().copied().collect()).unwrap_or_default();
        let unwanted: Vec<GroupId> = running.difference(&wanted.keys().copied().collect()).copied().collect();
        let mut unwanted = unwanted.into_iter();
        let mut departures = futures::stream::FuturesUnordered::new();
        departures.extend(unwanted.by_ref().take(DEPARTURES_AT_ONCE).map(|group| self.depart_boxed(state, group)));
        let mut departing = false;
        while let Some((group, departed)) = departures.next().await {
            departures.extend(unwanted.next().map(|group| self.depart_boxed(state, group)));
            match departed {
                Ok(kept) => departing |= kept,
                Err(err) => {
                    tracing::error!(group, error = %err, "cannot stop partition replica");
                    failed = Some(err);
                }
            }
        }
        failed.map_or(Ok(departing), Err)
    }

    async fn start_partition(&self, topic: &TopicMeta, assignment: &PartitionAssignment) -> Result<(), HostError> {
        let group = assignment.group_id;
        let (state_machine, view) = PartitionStateMachine::open(Arc::clone(&self.store), group)?;
        let log = state_machine.log().clone();
        let streamed = Arc::new(StreamedBytes::default());
        let network = GroupNetworkFactory {
            group,
            transport: Arc::clone(&self.transport),
            partition_log: Some(log.clone()),
            partition_view: Some(view.clone()),
            streamed: Arc::clone(&streamed),
            throttle: Arc::clone(&self.throttle),
            addresses: Arc::clone(&self.addresses),
        };
        let raft = Raft::new(
            self.config.node_id,
            Arc::clone(&self.partition_raft_config),
            network,
            LogStore::new(Arc::clone(&self.store), group),
            state_machine,
        )
        .await
        .map_err(|err| HostError::Raft(err.to_string()))?;
        // Only the founder of a group bootstraps it; after a move the first replica may be a
        // node that must learn the group from its leader instead.
        if assignment.replicas.first() == Some(&self.config.node_id)
            && !assignment.reassigned
            && !raft.is_initialized().await.map_err(|err| HostError::Raft(err.to_string()))?
        {
            let nodes = self.cluster_nodes();
            let members: BTreeMap<NodeId, BasicNode> = assignment
                .replicas
                .iter()
                .map(|id| (*id, BasicNode { addr: nodes.get(id).cloned().unwrap_or_default() }))
                .collect();
            if let Err(err) = raft.initialize(members).await {
                tracing::warn!(group, error = %err, "partition initialisation refused");
            }
        }
        tracing::info!(group, topic = %topic.name, partition = assignment.partition, "partition replica started");
        let replica = Arc::new(PartitionReplica {
            topic: topic.name.clone(),
            partition: assignment.partition,
            group_id: group,
            raft,
            log,
            view,
            streamed,
            // Longer than a lease renewal (see `renew_lease`).
            order: ProposalOrder::new(self.failure_detection() * 2),
            snapshots: SnapshotReceiver::default(),
        });
        if let Ok(mut partitions) = self.partitions.write() {
            partitions.insert(group, replica);
        }
        self.partitions_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Stops the replica of `group`, if it runs here; its data stays. Returns it, stopped.
    async fn stop_partition(&self, group: GroupId) -> Result<Option<Arc<PartitionReplica>>, HostError> {
        let replica = self.partitions.write().ok().and_then(|mut p| p.remove(&group));
        if let Some(replica) = &replica {
            let _ = replica.raft.shutdown().await;
            replica.snapshots.close().await;
        }
        self.partitions_changed.send_modify(|n| *n += 1);
        Ok(replica)
    }

    /// Deletes everything a stopped replica of `group` stored here.
    async fn delete_partition(&self, group: GroupId) -> Result<(), HostError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.delete_group(group))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::from)?;
        Ok(())
    }

    async fn retention_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.retention_check_interval_ms.max(100));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for replica in self.partitions() {
                if let Err(err) = self.enforce_retention(&replica).await {
                    tracing::warn!(group = replica.group_id, error = %err, "retention check failed");
                }
            }
        }
    }

    async fn enforce_retention(&self, replica: &PartitionReplica) -> Result<(), HostError> {
        if replica.metrics().state != ServerState::Leader {
            return Ok(());
        }
        let Some(topic) = self.topic(&replica.topic) else { return Ok(()) };
        let state = replica.view.borrow().log;
        let (retention_ms, retention_bytes) = (topic.config.retention_ms, topic.config.retention_bytes);
        let log = replica.log.clone();
        let cut =
            tokio::task::spawn_blocking(move || log.retention_cut(&state, now_ms(), retention_ms, retention_bytes))
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::from)?;
        if let Some(before_offset) = cut {
            tracing::info!(group = replica.group_id, before_offset, "retention: deleting a prefix");
            let delete = self.partition_write(replica.group_id, PartitionCommand::DeletePrefix { before_offset });
            tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, delete).await.map_err(|_| HostError::NoLeader {
                group: replica.group_id,
                waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64,
            })??;
        }
        Ok(())
    }
}

fn write_result(
    group: GroupId,
    result: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    >,
) -> Result<CommandResponse, HostError> {
    match result {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => Err(HostError::NotLeader {
            group,
            leader: forward.leader_id,
            leader_address: forward.leader_node.map(|n| n.addr),
        }),
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Err(HostError::Indeterminate { group }),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
            err @ openraft::errors::ChangeMembershipError::InProgress(_),
        ))) => Err(HostError::MembershipChanging { group, detail: err.to_string() }),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(err))) => {
            Err(HostError::Membership { group, detail: err.to_string() })
        }
        Err(err) => Err(HostError::Raft(err.to_string())),
    }
}

async fn serve_rpc<SM>(
    raft: &Raft<SM>,
    partition: Option<(&PartitionLog, &SnapshotReceiver)>,
    kind: RpcKind,
    payload: &[u8],
) -> Result<Vec<u8>, HostError>
where
    SM: openraft::storage::RaftStateMachine<TypeConfig, SnapshotData = StateSnapshot>,
{
    fn reply<T: serde::Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Vec<u8>, HostError> {
        Ok(encode(&result.map_err(|err| err.to_string()))?)
    }
    match kind {
        RpcKind::AppendEntries => reply(raft.append_entries(decode(payload)?).await),
        RpcKind::Vote => reply(raft.vote(decode(payload)?).await),
        RpcKind::PreVote => reply(raft.pre_vote(decode(payload)?).await),
        RpcKind::SnapshotChunk => {
            let Some((log, snapshots)) = partition else {
                return reply::<(), _>(Err("the controller has no record chunks"));
            };
            let chunk: SnapshotChunk = decode(payload)?;
            tracing::debug!(group = log.group(), batches = chunk.batches.len(), "snapshot chunk received");
            let current = raft.metrics().borrow_watched().vote;
            let imported = snapshots.import(log, current, chunk).await;
            if let Err(err) = &imported {
                tracing::warn!(group = log.group(), error = %err, "snapshot chunk refused");
            }
            reply(imported)
        }
        RpcKind::TransferLeader => reply(raft.handle_transfer_leader(decode(payload)?).await),
        RpcKind::ReadIndex | RpcKind::ControllerWrite | RpcKind::NodeHeartbeat | RpcKind::Membership => {
            // Answered by the host (it needs the group's replica or the controller).
            reply::<u64, _>(Err("this request is served by the host, not a group"))
        }
        RpcKind::InstallSnapshot => {
            let (vote, meta, snapshot): (Vote, crate::type_config::SnapshotMeta, StateSnapshot) = decode(payload)?;
            if let Some((log, snapshots)) = partition {
                let state: PartitionSmState = decode(&snapshot.0)?;
                if let Err(err) = snapshots.check_complete(&vote, meta.last_log_id, &state).await {
                    tracing::warn!(group = log.group(), error = %err, "snapshot refused");
                    return reply::<(), _>(Err(err));
                }
            }
            reply(raft.install_full_snapshot(vote, Snapshot { meta, snapshot }).await)
        }
    }
}

/// Whether the leader's metrics show `node_id` has the log up to `index`. A named function,
/// not a closure in the async fn, so that the future is `Send` for every lifetime.
fn replicated_up_to(node_id: NodeId, index: u64) -> impl Fn(&RaftMetrics<TypeConfig>) -> bool + Send {
    move |m| {
        let matched = m.replication.as_ref().and_then(|r| r.get(&node_id).cloned().flatten());
        matched.is_some_and(|log_id| log_id.index >= index)
    }
}
