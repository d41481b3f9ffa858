//! What a node knows of the cluster: the nodes (and which it heard from lately), the Raft
//! groups it runs with their state and lag, and the operations under way.

use cairn_raft::{Operation, TypeConfig};
use cairn_types::{GroupId, NodeId, Offset, PartitionId};
use openraft::{RaftMetrics, ServerState};

use crate::api::CairnApi;

#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The node answering.
    pub node_id: NodeId,
    pub nodes: Vec<NodeStatus>,
    /// The controller group first, then each partition replica on this node.
    pub groups: Vec<GroupStatus>,
    /// The cluster's identity.
    pub cluster: String,
    /// Operations under way.
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub address: String,
    /// Heard from within the failure detection time.
    pub live: bool,
}

/// One Raft group on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    pub group_id: GroupId,
    /// Empty for the controller group.
    pub topic: String,
    pub partition: PartitionId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub high_watermark: Offset,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: &'static str,
    /// On a leader: each replica's matched index and how many entries it is behind.
    pub replica_lag: Vec<ReplicaLag>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLag {
    pub node_id: NodeId,
    pub matched_index: Option<u64>,
    pub lag_entries: u64,
}

impl CairnApi {
    pub fn cluster_status(&self) -> ClusterStatus {
        let nodes = self
            .host
            .cluster_nodes()
            .into_iter()
            .map(|(node_id, address)| NodeStatus { node_id, address, live: self.host.is_node_live(node_id) })
            .collect();
        let controller = self.host.controller_metrics();
        let mut groups = vec![group_status(cairn_types::CONTROLLER_GROUP_ID, &controller, String::new(), 0, 0)];
        for replica in self.host.partitions() {
            let high_watermark = replica.view.borrow().high_watermark();
            groups.push(group_status(
                replica.group_id,
                &replica.metrics(),
                replica.topic.clone(),
                replica.partition,
                high_watermark,
            ));
        }
        ClusterStatus {
            node_id: self.host.node_id(),
            nodes,
            groups,
            cluster: self.cluster.get(),
            operations: self.list_operations(false),
        }
    }
}

fn group_status(
    group_id: GroupId,
    metrics: &RaftMetrics<TypeConfig>,
    topic: String,
    partition: PartitionId,
    high_watermark: Offset,
) -> GroupStatus {
    let state = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    GroupStatus {
        group_id,
        topic,
        partition,
        leader: metrics.current_leader,
        term: metrics.current_term,
        voters: metrics.membership_config.membership().voter_ids().collect(),
        committed_index: metrics.cluster_committed.map(|id| id.index),
        applied_index: metrics.last_applied.map(|id| id.index),
        high_watermark,
        state,
        replica_lag: replica_lag(metrics),
    }
}

fn replica_lag(metrics: &RaftMetrics<TypeConfig>) -> Vec<ReplicaLag> {
    let last_log_index = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .iter()
        .flatten()
        .map(|(node_id, matched)| {
            let matched_index = matched.as_ref().map(|log_id| log_id.index);
            ReplicaLag {
                node_id: *node_id,
                matched_index,
                lag_entries: last_log_index.saturating_sub(matched_index.unwrap_or(0)),
            }
        })
        .collect()
}
