//! When a replica may delete its data: only once the group's committed Raft membership no
//! longer has this node (as voter or learner), or the partition's topic is deleted.
//!
//! The controller's replica list says where replicas should be; the group's membership says
//! which replicas hold data the group needs. The two differ while a move runs: a promoted
//! target is a voter, holding writes the source never saw, before its move is done, and a
//! cancelled move restores the old voters before its target leaves the list. So a replica
//! the list no longer names keeps running (and voting) until it has proof that it left:
//!
//! - a committed membership without this node, and
//! - no membership this replica knows of that is newer than that one.
//!
//! The proof comes from the replica itself when it saw that membership commit, or else from
//! another replica of the group (`RpcKind::Membership`): a removed node often never learns
//! that its removal committed, because the leader stops replicating to it, and one that was
//! down or cut off learns nothing at all.
//!
//! Why that suffices: once a membership is committed, a quorum of it holds every entry up to
//! it, so no committed entry needs this node's copy; later entries count this node only under
//! a later membership that adds it back, and that membership reaches this node's log before
//! any entry it could acknowledge under it, so it would be newer than the proof. The check is
//! repeated on the stopped replica before anything is deleted, so a node added back meanwhile
//! keeps its data and starts the replica again.
//!
//! At start the node also looks for data of groups it does not run (it was down when its
//! topic was deleted, or stopped between leaving a group and deleting the data): those of
//! deleted topics are deleted, the others are started and leave as above.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use cairn_types::{CONTROLLER_GROUP_ID, GroupId, NodeId};
use serde::{Deserialize, Serialize};

use super::{Host, HostError, PartitionReplica, RpcKind};
use crate::controller::{ControllerState, PartitionAssignment, TopicMeta};
use crate::type_config::{LogId, StoredMembership};
use crate::{decode, encode};

/// How long a departing replica waits for another replica's membership.
const MEMBERSHIP_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A membership of a group as one replica knows it: its log id and every node in it
/// (voters of every configuration of a joint membership, and learners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownMembership {
    pub log_id: Option<LogId>,
    pub members: BTreeSet<NodeId>,
}

impl KnownMembership {
    pub fn of(stored: &StoredMembership) -> KnownMembership {
        KnownMembership { log_id: *stored.log_id(), members: stored.membership().nodes().map(|(id, _)| *id).collect() }
    }

    /// Whether this membership, known to be committed, proves that `node` left the group,
    /// for a replica of `node` whose latest membership is `latest`.
    pub fn proves_departure(&self, node: NodeId, latest: &KnownMembership) -> bool {
        !self.members.contains(&node) && self.log_id >= latest.log_id
    }
}

/// What a departing replica learnt: its topic is gone, or a committed membership without it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Departure {
    TopicDeleted,
    Left(KnownMembership),
}

impl Host {
    /// Handles a replica the controller no longer lists on this node: deletes it once its
    /// topic is deleted or the group's committed membership no longer has this node (see the
    /// module doc); until then it keeps running. Returns whether it is still here.
    pub(super) async fn depart(&self, state: &ControllerState, group: GroupId) -> Result<bool, HostError> {
        let Some(replica) = self.partition(group) else { return Ok(false) };
        let Some(departure) = self.departure(state, &replica).await else {
            tracing::debug!(group, "not listed here any more, but still a member of the group: keeping it");
            return Ok(true);
        };
        // Stop it, then check again what the stopped replica knows: a membership that added
        // this node back after the proof keeps its data.
        let stopped = self.stop_partition(group).await?;
        if let (Departure::Left(proof), Some(stopped)) = (&departure, stopped) {
            let latest = KnownMembership::of(&stopped.metrics().membership_config);
            if !proof.proves_departure(self.config.node_id, &latest) {
                tracing::warn!(group, ?proof, ?latest, "added back to the group while leaving it: starting it again");
                if let Some((topic, assignment)) = listing(state, group) {
                    self.start_partition(&topic, &assignment).await?;
                }
                return Ok(true);
            }
        }
        self.delete_partition(group).await?;
        tracing::info!(group, topic = %replica.topic, partition = replica.partition, ?departure, "partition replica deleted");
        Ok(false)
    }

    /// Once, at start: data of groups this node does not run. A group of a deleted topic
    /// is deleted; any other is started, so that `depart` deletes it once the group's
    /// committed membership leaves this node out. Groups newer than this node's view of the
    /// controller are left alone. Returns whether it started any.
    pub(super) async fn adopt_stray_groups(&self, state: &ControllerState) -> Result<bool, HostError> {
        let store = Arc::clone(&self.store);
        let stored = tokio::task::spawn_blocking(move || store.group_ids())
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::from)?;
        let mut started = false;
        for group in stored {
            if group == CONTROLLER_GROUP_ID || self.partition(group).is_some() {
                continue;
            }
            match listing(state, group) {
                Some((topic, assignment)) => {
                    tracing::info!(group, topic = %topic.name, "data of a group not assigned here: starting it until it leaves");
                    self.start_partition(&topic, &assignment).await?;
                    started = true;
                }
                None if group < state.next_group_id => {
                    self.delete_partition(group).await?;
                    tracing::info!(group, "partition replica of a deleted topic deleted");
                }
                None => {}
            }
        }
        Ok(started)
    }

    /// `depart`, boxed, for the reconciler to run several at once.
    pub(super) fn depart_boxed<'a>(
        &'a self,
        state: &'a ControllerState,
        group: GroupId,
    ) -> futures::future::BoxFuture<'a, (GroupId, Result<bool, HostError>)> {
        Box::pin(async move { (group, self.depart(state, group).await) })
    }

    /// Why `replica` may be deleted, if it may.
    async fn departure(&self, state: &ControllerState, replica: &PartitionReplica) -> Option<Departure> {
        let group = replica.group_id;
        let Some((_, assignment)) = listing(state, group) else { return Some(Departure::TopicDeleted) };
        let me = self.config.node_id;
        let metrics = replica.metrics();
        let latest = KnownMembership::of(&metrics.membership_config);
        let committed = KnownMembership::of(&metrics.committed_membership_config);
        if committed.proves_departure(me, &latest) {
            return Some(Departure::Left(committed));
        }
        // Ask the group's other replicas: those this replica knows, its leader, and those the
        // controller lists now.
        let mut peers: BTreeSet<NodeId> = latest.members.union(&committed.members).copied().collect();
        peers.extend(metrics.current_leader);
        peers.extend(assignment.replicas.iter().copied());
        peers.remove(&me);
        let nodes = self.cluster_nodes();
        let known_address = |peer: &NodeId| {
            nodes
                .get(peer)
                .cloned()
                .or_else(|| metrics.membership_config.membership().get_node(peer).map(|n| n.addr.clone()))
        };
        let queries = peers.iter().filter_map(|peer| Some((*peer, known_address(peer)?))).map(|(peer, address)| {
            let call = self.transport.call(peer, address, group, RpcKind::Membership, Vec::new());
            async move {
                let reply = tokio::time::timeout(MEMBERSHIP_QUERY_TIMEOUT, call).await.ok()?.ok()?;
                let answer: Result<Option<KnownMembership>, String> = decode(&reply).ok()?;
                answer.ok().flatten()
            }
        });
        let answers = futures::future::join_all(queries).await;
        answers.into_iter().flatten().find(|known| known.proves_departure(me, &latest)).map(Departure::Left)
    }

    /// Serves `RpcKind::Membership`: the committed membership of `group` as this node's
    /// replica knows it; `None` when it holds no replica.
    pub(super) fn serve_membership(&self, group: GroupId) -> Result<Vec<u8>, HostError> {
        let known =
            self.partition(group).map(|replica| KnownMembership::of(&replica.metrics().committed_membership_config));
        Ok(encode(&Ok::<_, String>(known))?)
    }
}

/// The topic and assignment of `group` in `state`, if a topic has it.
fn listing(state: &ControllerState, group: GroupId) -> Option<(TopicMeta, PartitionAssignment)> {
    state.topics.values().find_map(|topic| {
        let assignment = topic.partitions.iter().find(|p| p.group_id == group)?;
        Some((topic.clone(), assignment.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_id(term: u64, index: u64) -> Option<LogId> {
        Some(openraft::LogId::new(openraft::vote::leader_id_adv::LeaderId { term, node_id: 1 }, index))
    }

    fn known(log_id: Option<LogId>, members: &[NodeId]) -> KnownMembership {
        KnownMembership { log_id, members: members.iter().copied().collect() }
    }

    #[test]
    fn a_committed_membership_proves_departure_only_without_the_node_and_not_older_than_what_it_knows() {
        let me = 2;
        let cases = [
            // (proof, latest, proves)
            (known(log_id(1, 10), &[1, 3]), known(log_id(1, 10), &[1, 3]), true),
            // The removed node saw its removal appended but never learnt it committed.
            (known(log_id(1, 10), &[1, 3]), known(log_id(1, 9), &[1, 2, 3]), true),
            (known(log_id(2, 4), &[1, 3]), known(log_id(1, 9), &[1, 2, 3]), true),
            // A committed membership that still has the node (voter or learner).
            (known(log_id(1, 10), &[1, 2, 3]), known(log_id(1, 10), &[1, 2, 3]), false),
            // The joint membership still has the old voters.
            (known(log_id(1, 9), &[1, 2, 3]), known(log_id(1, 10), &[1, 3]), false),
            // Added back after the proof: the node knows a newer membership.
            (known(log_id(1, 10), &[1, 3]), known(log_id(1, 12), &[1, 2, 3]), false),
            (known(log_id(1, 10), &[1, 3]), known(log_id(2, 1), &[1, 2, 3]), false),
            // A replica that never learnt any membership holds nothing the group needs.
            (known(None, &[]), known(None, &[]), true),
            (known(log_id(1, 3), &[1]), known(None, &[]), true),
        ];
        for (proof, latest, proves) in cases {
            assert_eq!(proof.proves_departure(me, &latest), proves, "proof {proof:?}, latest {latest:?}");
        }
    }
}
