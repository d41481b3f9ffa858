//! Who leads each partition group: confirming leadership for a linearizable read (read
//! index), handing the leadership to another voter, naming the leader, and waiting until a
//! new topic's groups here have leaders.

use std::time::Duration;

use cairn_types::{GroupId, NodeId};
use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;

use super::{Host, HostError};
use crate::command::{CommandResponse, ControllerCommand};
use crate::controller::TopicMeta;

/// How long a leader transfer waits for the new leader to take over.
const LEADER_TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

impl Host {
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
}
