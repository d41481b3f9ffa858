//! What a node knows of the cluster: the nodes (and which it heard from lately), the Raft
//! groups it runs with their state and lag, every topic's partitions with their leaders,
//! and the operations under way. `cairn cluster status` (over gRPC) and the HTTP status
//! page (`/api/status`, as JSON) both show this one model.

use cairn_raft::{Operation, TypeConfig};
use cairn_types::{GroupId, NodeId, Offset, PartitionId};
use openraft::{RaftMetrics, ServerState};
use serde::Serialize;

use crate::api::{CairnApi, GroupSummary};

#[derive(Debug, Clone, Serialize)]
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
    /// The answering node's version (`cairn --version`).
    pub version: &'static str,
    /// Every topic of the controller state, as this node sees it.
    pub topics: Vec<TopicStatus>,
    /// The consumer groups, when asked for (`cluster_status_with_groups`); empty otherwise.
    pub consumer_groups: Vec<GroupSummary>,
    /// Why the consumer groups could not be listed (a `__groups` partition unreachable).
    pub consumer_groups_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicStatus {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionStatus>,
}

/// One partition of the cluster, wherever its replicas are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    pub partition: PartitionId,
    pub group_id: GroupId,
    /// The preferred leader first; during a move, the target too.
    pub replicas: Vec<NodeId>,
    /// The leader this node's replica follows, else the live node that claims the group in
    /// its heartbeats.
    pub leader: Option<NodeId>,
    /// Fewer replicas than the replication factor, or one of them not live.
    pub under_replicated: bool,
    /// A replica move runs on this partition.
    pub moving: bool,
    /// The high watermark of this node's replica, if it has one.
    pub high_watermark: Option<Offset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub address: String,
    /// Heard from within the failure detection time.
    pub live: bool,
}

/// One Raft group on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
            version: env!("CARGO_PKG_VERSION"),
            topics: self.topic_statuses(),
            consumer_groups: Vec::new(),
            consumer_groups_error: None,
        }
    }

    /// `cluster_status` with the consumer groups of every `__groups` partition (read here
    /// or from a node holding a replica), waiting for them up to `timeout`.
    pub async fn cluster_status_with_groups(&self, timeout: std::time::Duration) -> ClusterStatus {
        let mut status = self.cluster_status();
        match tokio::time::timeout(timeout, self.list_groups(0)).await {
            Ok(Ok(groups)) => status.consumer_groups = groups,
            Ok(Err(err)) => status.consumer_groups_error = Some(err.to_string()),
            Err(_) => status.consumer_groups_error = Some(format!("no answer within {timeout:?}")),
        }
        status
    }

    fn topic_statuses(&self) -> Vec<TopicStatus> {
        let state = self.host.controller_state();
        state
            .topics
            .values()
            .map(|topic| TopicStatus {
                name: topic.name.clone(),
                replication_factor: topic.config.replication_factor,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|assignment| {
                        let local = self.host.partition(assignment.group_id);
                        let followed = local.as_ref().and_then(|replica| replica.metrics().current_leader);
                        let leader = followed
                            .filter(|leader| self.host.is_node_live(*leader))
                            .or_else(|| self.host.claimed_leader(assignment.group_id).map(|(leader, _)| leader))
                            .or(followed);
                        let short = assignment.replicas.len() < topic.config.replication_factor as usize;
                        PartitionStatus {
                            partition: assignment.partition,
                            group_id: assignment.group_id,
                            replicas: assignment.replicas.clone(),
                            leader,
                            under_replicated: short
                                || assignment.replicas.iter().any(|node| !self.host.is_node_live(*node)),
                            moving: assignment.operation.is_some(),
                            high_watermark: local.map(|replica| replica.view.borrow().high_watermark()),
                        }
                    })
                    .collect(),
            })
            .collect()
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
