//! The reconciler: a task that watches the controller's state and makes the local groups
//! match it. It starts the groups of new partitions assigned here, and stops and deletes
//! the groups no longer assigned here once their topic is deleted or the group's committed
//! membership no longer has this node (`departure.rs`); the controller leader also
//! registers the controller voters it does not know yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_types::{CONTROLLER_GROUP_ID, GroupId};
use futures::StreamExt as _;
use openraft::async_runtime::WatchReceiver;
use openraft::{RaftMetrics, ServerState};

use super::{BACKGROUND_WRITE_TIMEOUT, Host, HostError};
use crate::command::ControllerCommand;
use crate::controller::{ControllerState, PartitionAssignment, TopicMeta};
use crate::type_config::TypeConfig;

/// How often the reconciler looks again at replicas it keeps only until their group's
/// membership leaves this node out (see `departure`).
const DEPARTURE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Replicas the reconciler checks (and deletes) at once: each may wait for other nodes.
const DEPARTURES_AT_ONCE: usize = 16;

impl Host {
    pub(super) async fn reconcile_loop(self: Arc<Self>) {
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
}
