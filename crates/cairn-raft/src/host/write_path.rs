//! The write path: proposing controller and partition commands. A partition write renews
//! the leader's lease first (idle partition groups send no heartbeats), and an idempotent
//! producer's appends are proposed in sequence order (`proposal_order.rs`); a "not leader"
//! answer names the leader's current address.

use cairn_types::{CONTROLLER_GROUP_ID, GroupId, NodeId};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::RaftError;
use openraft::impls::ProgressResponder;
use openraft::{Instant as _, RaftMetrics, ServerState};

use super::error::write_result;
use super::proposal_order::ProducerArrival;
use super::{Host, HostError, PartitionReplica};
use crate::command::{Command, CommandResponse, ControllerCommand, PartitionCommand, ProducerSequence};
use crate::type_config::TypeConfig;

impl Host {
    /// Proposes a controller command; this node must lead the controller.
    pub async fn controller_write(&self, command: ControllerCommand) -> Result<CommandResponse, HostError> {
        let result = self.controller.client_write(Command::Controller(command)).await;
        write_result(CONTROLLER_GROUP_ID, result)
    }

    /// Registers an idempotent append that reached this node, when it holds a replica of
    /// `group`: until the arrival is dropped, the producer's later batches wait for it
    /// (see `proposal_order`). Hold it across the attempts at writing it.
    pub fn arrive(&self, group: GroupId, producer: ProducerSequence) -> Option<ProducerArrival> {
        Some(self.partition(group)?.order.arrive(producer))
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
        let me = self.config.node_id;
        let fresh = move |m: &RaftMetrics<TypeConfig>| {
            m.state != ServerState::Leader
                || is_lone_voter(m, me)
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
            || is_lone_voter(&metrics, self.config.node_id)
            || metrics.last_quorum_acked.as_ref().is_some_and(|at| at.elapsed() < lease * 9 / 10)
    }
}

/// Whether `me` is the only voter of the group `metrics` describes. A lone voter is its own
/// quorum: its lease never lapses. A leader that removed itself (see `mover`) may still lead
/// a group whose lone voter is another node: its lease rests on that node's answers.
fn is_lone_voter(metrics: &RaftMetrics<TypeConfig>, me: NodeId) -> bool {
    let mut voters = metrics.membership_config.membership().voter_ids();
    voters.next() == Some(me) && voters.next().is_none()
}
