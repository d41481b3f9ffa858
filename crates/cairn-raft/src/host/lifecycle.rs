//! The lifecycle of the host and of its groups: starting the host (the controller group,
//! forming the cluster on first start, the background tasks), starting a partition
//! replica (its founder bootstraps the group), stopping one, deleting its data, and
//! shutting the host down.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, RwLock};

use cairn_storage::Store;
use cairn_types::{CONTROLLER_GROUP_ID, GroupId, NodeId};
use openraft::BasicNode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::raft_configs;
use super::liveness::Liveness;
use super::proposal_order::ProposalOrder;
use super::stats::count_leadership_changes;
use super::{Host, HostConfig, HostError, PartitionReplica};
use crate::controller::{ControllerStateMachine, PartitionAssignment, TopicMeta};
use crate::log_store::LogStore;
use crate::network::{GroupNetworkFactory, StreamedBytes, Throttle, Transport};
use crate::node_addresses::NodeAddresses;
use crate::partition::{PartitionStateMachine, SnapshotReceiver};
use crate::type_config::Raft;

impl Host {
    pub async fn start(
        config: HostConfig,
        store: Arc<Store>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Host>, HostError> {
        let (raft_config, partition_raft_config) = raft_configs(&config)?;
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
            stats: Arc::default(),
        });
        count_leadership_changes(Arc::clone(&host.stats), host.controller.server_metrics());
        tokio::spawn(Arc::clone(&host).reconcile_loop());
        tokio::spawn(Arc::clone(&host).mover_loop());
        tokio::spawn(Arc::clone(&host).retention_loop());
        tokio::spawn(Arc::clone(&host).compaction_loop());
        tokio::spawn(Arc::clone(&host).liveness_loop());
        Ok(host)
    }

    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        for replica in self.partitions() {
            let _ = replica.raft.shutdown().await;
        }
        let _ = self.controller.shutdown().await;
    }

    pub(super) async fn start_partition(
        &self,
        topic: &TopicMeta,
        assignment: &PartitionAssignment,
    ) -> Result<(), HostError> {
        let group = assignment.group_id;
        let (mut state_machine, view) = PartitionStateMachine::open(Arc::clone(&self.store), group)?;
        state_machine.observe_applies(Arc::clone(&self.stats.apply_latency));
        let log = state_machine.log().clone();
        let groups = state_machine.groups();
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
        count_leadership_changes(Arc::clone(&self.stats), raft.server_metrics());
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
            groups,
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
    pub(super) async fn stop_partition(&self, group: GroupId) -> Result<Option<Arc<PartitionReplica>>, HostError> {
        let replica = self.partitions.write().ok().and_then(|mut p| p.remove(&group));
        if let Some(replica) = &replica {
            let _ = replica.raft.shutdown().await;
            replica.snapshots.close().await;
        }
        self.partitions_changed.send_modify(|n| *n += 1);
        Ok(replica)
    }

    /// Deletes everything a stopped replica of `group` stored here.
    pub(super) async fn delete_partition(&self, group: GroupId) -> Result<(), HostError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.delete_group(group))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::from)?;
        Ok(())
    }
}
