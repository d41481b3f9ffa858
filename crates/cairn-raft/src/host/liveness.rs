//! Node liveness, which lets idle partition groups go quiet.
//!
//! Partition groups run without openraft's timers (`enable_tick = false`): an idle group
//! sends nothing and wakes nothing, so a node can hold thousands of them. Instead every
//! node runs one liveness loop that, each `heartbeat_interval`:
//! - sends every other node one `NodeHeartbeat` naming the partition groups it leads, with
//!   their terms, and the groups it follows without knowing their leader;
//! - wakes the groups it leads whose replication to a live replica stalled behind the log,
//!   those that just went idle, and those a peer asked to be woken: the wake-up (an
//!   openraft heartbeat) carries the commit index, which openraft sends once and does not
//!   resend if that message is lost. A replica asks when it knows no leader, or when its
//!   commit index stayed behind the one its leader claims for two passes in a row (the
//!   wake-up that carried it was lost, so an idle replica would never apply the entry);
//! - starts an election, pre-vote first, in every group it votes in that no live node
//!   leads: no node heard from within `election_timeout_min` claims the group at this
//!   replica's term or later. A random delay of up to `election_timeout_max -
//!   election_timeout_min` keeps replicas from splitting the vote; a failed election is
//!   retried, less often each time;
//! - stops claiming a group whose leadership it started handing over more than the failure
//!   detection time ago: openraft refuses writes during a transfer and never gives one up,
//!   so the other replicas must elect;
//! - stops claiming every group while its disk makes no progress: a WAL sync that has run
//!   for the failure detection time (a fail-slow disk) commits nothing meanwhile, and
//!   openraft would keep the leadership while its replication streams still answer.
//!
//! A busy group needs none of this to replicate: its replication streams carry entries and
//! commit indexes as they come. The controller group keeps openraft's own timers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_types::{CONTROLLER_GROUP_ID, GroupId, NodeId};
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Host, HostError, PartitionReplica};
use crate::network::RpcKind;
use crate::{decode, encode};

/// What a node tells every other node each heartbeat interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeHeartbeat {
    pub from: NodeId,
    /// Partition groups the sender leads.
    pub leads: Vec<Claim>,
    /// Partition groups the sender hosts that need a wake-up from their leader: it votes in
    /// them but knows no leader, or its commit index stays behind its leader's.
    pub wake: Vec<GroupId>,
}

/// A leader's claim on one group, as its heartbeats carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub group: GroupId,
    pub term: u64,
    /// The leader's commit index in the group.
    pub committed: Option<u64>,
}

/// What this node last heard from each other node.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    peers: Mutex<HashMap<NodeId, PeerBeat>>,
    /// Whether this node's disk was stalled at the last heartbeat (to log changes once).
    storage_stalled: AtomicBool,
}

#[derive(Debug)]
struct PeerBeat {
    /// The last message of any kind from the peer: a sign of life.
    heard_at: Instant,
    /// The last `NodeHeartbeat`, which says what the peer leads.
    beat_at: Instant,
    /// Term and commit index of each group the peer leads.
    leads: HashMap<GroupId, (u64, Option<u64>)>,
    wake: Vec<GroupId>,
}

/// A peer's leadership claims stay good this many failure detection times after its last
/// heartbeat, as long as other messages from it keep coming: under replication load a
/// heartbeat may be late while the peer is plainly alive.
const CLAIMS_VALID_DETECTIONS: u32 = 4;

impl Liveness {
    fn record(&self, beat: NodeHeartbeat) {
        if let Ok(mut peers) = self.peers.lock() {
            let leads = beat.leads.into_iter().map(|claim| (claim.group, (claim.term, claim.committed))).collect();
            let now = Instant::now();
            peers.insert(beat.from, PeerBeat { heard_at: now, beat_at: now, leads, wake: beat.wake });
        }
    }

    /// Any message from `node` shows it is alive (its claims are known only from heartbeats).
    fn heard(&self, node: NodeId) {
        if let Ok(mut peers) = self.peers.lock()
            && let Some(beat) = peers.get_mut(&node)
        {
            beat.heard_at = Instant::now();
        }
    }

    /// Whether `node` was heard from within `within`.
    pub(crate) fn is_live(&self, node: NodeId, within: Duration) -> bool {
        self.peers.lock().is_ok_and(|peers| peers.get(&node).is_some_and(|beat| beat.heard_at.elapsed() < within))
    }

    /// A node heard from within `within` that claims to lead `group` at `term` or later
    /// (the claim of the highest term).
    pub(crate) fn live_leader(&self, group: GroupId, term: u64, within: Duration) -> Option<NodeId> {
        let peers = self.peers.lock().ok()?;
        peers
            .iter()
            .filter_map(|(node, beat)| {
                let (claimed, _) = *beat.leads.get(&group)?;
                let current =
                    beat.heard_at.elapsed() < within && beat.beat_at.elapsed() < within * CLAIMS_VALID_DETECTIONS;
                (current && claimed >= term).then_some((claimed, *node))
            })
            .max()
            .map(|(_, node)| node)
    }

    /// The commit index `leader` claimed for `group` at `term` in its last heartbeat.
    fn claimed_commit(&self, leader: NodeId, group: GroupId, term: u64) -> Option<u64> {
        let peers = self.peers.lock().ok()?;
        let (claimed_term, committed) = *peers.get(&leader)?.leads.get(&group)?;
        (claimed_term == term).then_some(committed).flatten()
    }

    /// Groups that live peers asked to be woken.
    fn wake_requests(&self, within: Duration) -> HashSet<GroupId> {
        let Ok(peers) = self.peers.lock() else { return HashSet::new() };
        peers
            .values()
            .filter(|beat| beat.beat_at.elapsed() < within)
            .flat_map(|beat| beat.wake.iter().copied())
            .collect()
    }
}

/// The liveness loop's memory between passes.
#[derive(Default)]
struct Watch {
    /// Groups without a live leader: when to start (or retry) an election, and how many
    /// were started.
    elect_at: HashMap<GroupId, (Instant, u32)>,
    /// Each led group's replicas behind its log at the previous pass, with their progress.
    behind: HashMap<GroupId, Vec<(NodeId, Option<u64>)>>,
    /// Each led group's commit index at the previous pass, and whether the group was
    /// woken since it last changed.
    committed: HashMap<GroupId, (Option<u64>, bool)>,
    /// Followed groups whose commit index was behind their leader's at the previous pass:
    /// the commit index the leader claimed then.
    commit_behind: HashMap<GroupId, u64>,
}

/// What the liveness loop needs of one group's metrics.
struct GroupView {
    state: ServerState,
    /// False once the group stopped on a fatal error: it then leads nothing.
    running: bool,
    term: u64,
    /// The commit index: the cluster's on a leader, this replica's own on a follower.
    committed: Option<u64>,
    leader: Option<NodeId>,
    voter: bool,
    /// Replicas behind the leader's log, with their progress (leaders only).
    behind: Vec<(NodeId, Option<u64>)>,
}

impl Host {
    /// Serves a peer's `NodeHeartbeat`.
    pub(super) fn serve_node_heartbeat(&self, payload: &[u8]) -> Result<Vec<u8>, HostError> {
        let beat: NodeHeartbeat = decode(payload)?;
        self.liveness.record(beat);
        Ok(encode(&Ok::<(), String>(()))?)
    }

    /// Whether `node` is this node or was heard from within the failure detection time.
    pub fn is_node_live(&self, node: NodeId) -> bool {
        node == self.config.node_id || self.liveness.is_live(node, self.failure_detection())
    }

    /// The live node that claims to lead `group` in its heartbeats, with its address: where
    /// a node without a replica of the group sends its writes.
    pub fn claimed_leader(&self, group: GroupId) -> Option<(NodeId, String)> {
        let leader = self.liveness.live_leader(group, 0, self.failure_detection())?;
        let address = self.cluster_nodes().get(&leader)?.clone();
        Some((leader, address))
    }

    /// Any Raft message from `node` counts as a sign of life, as its heartbeats do.
    pub fn heard_from(&self, node: NodeId) {
        self.liveness.heard(node);
    }

    /// How long a node may stay silent before its groups count as leaderless: the partition
    /// groups' leader lease (see `Host::start`).
    pub(super) fn failure_detection(&self) -> Duration {
        Duration::from_millis(self.partition_raft_config.election_timeout_max)
    }

    pub(super) async fn liveness_loop(self: Arc<Self>) {
        let period = Duration::from_millis(self.config.heartbeat_interval_ms.max(1));
        let started = Instant::now();
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = Watch::default();
        let mut previous_pass = Instant::now();
        let mut skipped = false;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // A pass that comes late means this node itself stalled (no CPU, workers held):
            // peers' messages that arrived meanwhile may not have been served yet, so their
            // silence is no evidence in this pass. Only one pass in a row is skipped, so a
            // node that is always late still elects, one pass later.
            let late = previous_pass.elapsed().saturating_sub(period);
            let stalled = late > period && !skipped;
            skipped = stalled;
            if late >= self.failure_detection() {
                // Peers heard nothing from this node meanwhile either: they may elect.
                tracing::warn!(?late, "this node stalled for longer than the failure detection time");
            } else if stalled {
                tracing::debug!(?late, "liveness pass late: no elections in it");
            }
            previous_pass = Instant::now();
            let replicas = self.partitions();
            let views: Vec<GroupView> = replicas.iter().map(|replica| self.group_view(replica)).collect();
            self.send_heartbeats(&replicas, &views, &mut watch.commit_behind);
            // Until peers had time to say what they lead, no group counts as leaderless.
            let may_elect = started.elapsed() >= self.failure_detection() && !stalled;
            let wake_requests = self.liveness.wake_requests(self.failure_detection());
            for (replica, view) in replicas.iter().zip(&views) {
                self.watch_group(replica, view, &wake_requests, may_elect, &mut watch).await;
            }
            let hosted: HashSet<GroupId> = replicas.iter().map(|r| r.group_id).collect();
            watch.elect_at.retain(|group, _| hosted.contains(group));
            watch.behind.retain(|group, _| hosted.contains(group));
            watch.committed.retain(|group, _| hosted.contains(group));
            watch.commit_behind.retain(|group, _| hosted.contains(group));
            let led: HashSet<GroupId> = replicas
                .iter()
                .zip(&views)
                .filter(|(_, view)| view.state == ServerState::Leader)
                .map(|(replica, _)| replica.group_id)
                .collect();
            if let Ok(mut transfers) = self.transfers.lock() {
                transfers.retain(|group, _| led.contains(group));
            }
        }
    }

    fn group_view(&self, replica: &PartitionReplica) -> GroupView {
        let metrics = replica.raft.metrics();
        let metrics = metrics.borrow_watched();
        let last = metrics.last_log_index;
        let behind = match (&metrics.replication, metrics.state) {
            (Some(replication), ServerState::Leader) => replication
                .iter()
                .map(|(node, matched)| (*node, matched.as_ref().map(|log_id| log_id.index)))
                .filter(|(node, matched)| *node != self.config.node_id && *matched < last)
                .collect(),
            _ => Vec::new(),
        };
        GroupView {
            state: metrics.state,
            running: metrics.running_state.is_ok(),
            term: metrics.current_term,
            committed: match metrics.state {
                ServerState::Leader => metrics.cluster_committed.as_ref(),
                _ => metrics.local_committed.as_ref(),
            }
            .map(|log_id| log_id.index),
            leader: metrics.current_leader,
            voter: metrics.membership_config.membership().voter_ids().any(|id| id == self.config.node_id),
            behind,
        }
    }

    /// Whether this node's disk has made no progress for the failure detection time: its
    /// WAL sync has been running that long. Logged when it changes.
    fn storage_stalled(&self, detection: Duration) -> bool {
        let running = self.store.wal_sync_running_for();
        let stalled = running.is_some_and(|running| running >= detection);
        if self.liveness.storage_stalled.swap(stalled, Ordering::Relaxed) != stalled {
            if stalled {
                tracing::warn!(running = ?running, "the WAL sync makes no progress: this node stops claiming the groups it leads");
            } else {
                tracing::info!("the WAL sync completes again: this node claims the groups it leads");
            }
        }
        stalled
    }

    /// The commit index the leader this replica follows claims for `group` at its term.
    fn leader_commit(&self, view: &GroupView, group: GroupId) -> Option<u64> {
        let leader = view.leader.filter(|leader| *leader != self.config.node_id)?;
        self.liveness.claimed_commit(leader, group, view.term)
    }

    fn send_heartbeats(
        &self,
        replicas: &[Arc<PartitionReplica>],
        views: &[GroupView],
        commit_behind: &mut HashMap<GroupId, u64>,
    ) {
        let detection = self.failure_detection();
        let storage_stalled = self.storage_stalled(detection);
        let stuck: HashSet<GroupId> = self
            .transfers
            .lock()
            .map(|transfers| {
                transfers.iter().filter(|(_, started)| started.elapsed() >= detection).map(|(g, _)| *g).collect()
            })
            .unwrap_or_default();
        let mut beat = NodeHeartbeat { from: self.config.node_id, leads: Vec::new(), wake: Vec::new() };
        for (replica, view) in replicas.iter().zip(views) {
            let group = replica.group_id;
            if view.state == ServerState::Leader {
                if view.running && !storage_stalled && !stuck.contains(&group) {
                    beat.leads.push(Claim { group, term: view.term, committed: view.committed });
                }
            } else if view.voter && view.leader.is_none_or(|leader| leader == self.config.node_id) {
                beat.wake.push(group);
            } else if commit_lost(group, view.committed, self.leader_commit(view, group), commit_behind) {
                tracing::debug!(group, committed = ?view.committed, "the commit index stays behind the leader's: asking for a wake-up");
                beat.wake.push(group);
            }
        }
        let payload = match encode(&beat) {
            Ok(payload) => payload,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode a node heartbeat");
                return;
            }
        };
        for (node, address) in self.cluster_nodes() {
            if node == self.config.node_id {
                continue;
            }
            let call = self.transport.call(node, address, CONTROLLER_GROUP_ID, RpcKind::NodeHeartbeat, payload.clone());
            tokio::spawn(async move {
                // A lost heartbeat is simply not heard: the receiver's timeout is the signal. A
                // late one still counts when it arrives.
                let _ = tokio::time::timeout(detection, call).await;
            });
        }
    }

    async fn watch_group(
        &self,
        replica: &PartitionReplica,
        view: &GroupView,
        wake_requests: &HashSet<GroupId>,
        may_elect: bool,
        watch: &mut Watch,
    ) {
        let group = replica.group_id;
        let detection = self.failure_detection();
        if view.state == ServerState::Leader {
            watch.elect_at.remove(&group);
            // Wake the group when replication to some live replica made no progress since the
            // last pass (a failed stream waits for a wake-up), when a replica asked for it,
            // or once after its commit index stopped moving.
            let previous = watch.behind.insert(group, view.behind.clone()).unwrap_or_default();
            let stalled = view.behind.iter().any(|(node, matched)| {
                previous.contains(&(*node, *matched)) && self.liveness.is_live(*node, detection)
            });
            let mut wake = stalled || wake_requests.contains(&group);
            let (committed, woken) = watch.committed.entry(group).or_insert((view.committed, true));
            if *committed != view.committed {
                (*committed, *woken) = (view.committed, false);
            } else if !*woken {
                *woken = true;
                wake = true;
            }
            if wake && let Err(err) = replica.raft.trigger().heartbeat().await {
                tracing::warn!(group, error = %err, "cannot wake a partition group");
            }
            return;
        }
        if !view.voter || !may_elect || self.liveness.live_leader(group, view.term, detection).is_some() {
            watch.elect_at.remove(&group);
            return;
        }
        let now = Instant::now();
        let jitter_max = self.config.election_timeout_max_ms.saturating_sub(self.config.election_timeout_min_ms).max(1);
        let jitter = Duration::from_millis(rand::rng().random_range(0..jitter_max));
        let (elect_at, attempts) = *watch.elect_at.entry(group).or_insert((now + jitter, 0));
        if now < elect_at {
            return;
        }
        if attempts == 0 {
            tracing::info!(group, leader = ?view.leader, "no live leader: starting an election");
        } else {
            tracing::debug!(group, attempts, "still no live leader: starting another election");
        }
        self.stats.elections_started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(err) = replica.raft.trigger().elect(true).await {
            tracing::warn!(group, error = %err, "cannot start an election");
        }
        // Try again if this election does not bring a live leader: soon at first (a split
        // vote), less often while it keeps failing (no quorum reachable).
        let retry = detection * (attempts + 1).min(8) + jitter;
        watch.elect_at.insert(group, (now + retry, attempts.saturating_add(1)));
    }

    /// Hands the leadership of a group this node leads to `to`. openraft refuses writes
    /// during the hand-over and never gives it up; if `to` has not taken over within the
    /// failure detection time, this node stops claiming the group, so the others elect.
    pub(super) async fn start_transfer(&self, replica: &PartitionReplica, to: NodeId) -> Result<(), HostError> {
        if let Ok(mut transfers) = self.transfers.lock() {
            transfers.entry(replica.group_id).or_insert_with(Instant::now);
        }
        replica.raft.trigger().transfer_leader(to).await.map_err(|err| HostError::Raft(err.to_string()))
    }
}

/// Whether a replica whose commit index is `committed` needs a wake-up from its leader, which
/// claims `claimed`: it was behind that same claim at the previous pass too (a replica still
/// receiving entries is behind a moving claim, and needs nothing). `commit_behind` carries
/// each group's claim from pass to pass.
fn commit_lost(
    group: GroupId,
    committed: Option<u64>,
    claimed: Option<u64>,
    commit_behind: &mut HashMap<GroupId, u64>,
) -> bool {
    match claimed.filter(|claimed| committed.is_none_or(|committed| committed < *claimed)) {
        Some(claimed) => commit_behind.insert(group, claimed) == Some(claimed),
        None => {
            commit_behind.remove(&group);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECTION: Duration = Duration::from_millis(600);

    fn beat(from: NodeId, leads: &[(GroupId, u64)]) -> NodeHeartbeat {
        let leads = leads.iter().map(|&(group, term)| Claim { group, term, committed: None }).collect();
        NodeHeartbeat { from, leads, wake: Vec::new() }
    }

    /// Replication traffic keeps a peer alive when its heartbeats are late, but its claims
    /// still come only from heartbeats, and expire if none comes for long.
    #[tokio::test(start_paused = true)]
    async fn any_message_is_a_sign_of_life_and_claims_come_from_heartbeats() {
        let liveness = Liveness::default();
        liveness.heard(2);
        assert!(!liveness.is_live(2, DETECTION), "a message before any heartbeat claims nothing");
        liveness.record(beat(2, &[(7, 3)]));
        assert_eq!(liveness.live_leader(7, 3, DETECTION), Some(2));

        // Heartbeats stop coming but AppendEntries do: node 2 is alive, its claim stands.
        for _ in 0..5 {
            tokio::time::advance(DETECTION / 2).await;
            liveness.heard(2);
        }
        assert!(liveness.is_live(2, DETECTION));
        assert_eq!(liveness.live_leader(7, 3, DETECTION), Some(2), "a late heartbeat is no failure");
        assert_eq!(liveness.live_leader(7, 4, DETECTION), None, "a claim at an older term does not count");

        // Silence, whatever the kind of message, is a failure.
        tokio::time::advance(DETECTION).await;
        assert!(!liveness.is_live(2, DETECTION));
        assert_eq!(liveness.live_leader(7, 3, DETECTION), None);

        // Without heartbeats, claims expire even while other messages come.
        liveness.record(beat(2, &[(7, 3)]));
        for _ in 0..2 * CLAIMS_VALID_DETECTIONS {
            tokio::time::advance(DETECTION / 2).await;
            liveness.heard(2);
        }
        assert!(liveness.is_live(2, DETECTION));
        assert_eq!(
            liveness.live_leader(7, 3, DETECTION),
            None,
            "claims older than {CLAIMS_VALID_DETECTIONS} detection times"
        );
    }

    /// A replica asks for a wake-up only when it stays behind the same claimed commit index
    /// for two passes: a lost commit, not one still on its way.
    #[test]
    fn a_commit_index_behind_the_same_claim_twice_asks_for_a_wake_up() {
        let mut behind = HashMap::new();
        // (own commit index, leader's claim, wake-up asked)
        let passes = [
            (Some(4), Some(4), false), // caught up
            (Some(4), Some(5), false), // behind: the commit may be on its way
            (Some(4), Some(5), true),  // still behind the same claim: it was lost
            (Some(4), Some(5), true),  // and stays lost until the replica catches up
            (Some(4), Some(6), false), // the claim moved: entries are flowing
            (Some(6), Some(6), false), // caught up
            (None, Some(0), false),    // a fresh replica behind the first entry
            (None, Some(0), true),
            (Some(7), None, false), // no claim known: nothing to compare with
            (Some(7), Some(8), false),
        ];
        for (pass, (committed, claimed, asks)) in passes.into_iter().enumerate() {
            assert_eq!(
                commit_lost(9, committed, claimed, &mut behind),
                asks,
                "pass {pass}: {committed:?} vs {claimed:?}"
            );
        }
        assert!(!commit_lost(10, Some(1), Some(2), &mut behind), "groups are tracked apart");
    }

    #[test]
    fn a_claim_carries_the_commit_index_of_its_term() {
        let liveness = Liveness::default();
        let claim = Claim { group: 7, term: 3, committed: Some(12) };
        liveness.record(NodeHeartbeat { from: 2, leads: vec![claim], wake: vec![8] });
        assert_eq!(liveness.claimed_commit(2, 7, 3), Some(12));
        assert_eq!(liveness.claimed_commit(2, 7, 4), None, "a claim at another term says nothing of this one");
        assert_eq!(liveness.claimed_commit(3, 7, 3), None);
        assert_eq!(liveness.wake_requests(DETECTION), HashSet::from([8]));
    }
}
