//! What the host counts for `/metrics`: apply durations, leader changes and elections.
//! Plain atomics, read when the metrics are scraped; `cairn-server` encodes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_types::LatencyHistogram;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

use crate::type_config::TypeConfig;

#[derive(Debug, Default)]
pub struct HostStats {
    /// Each apply call of a partition state machine: entries in, their batch written.
    pub apply_latency: Arc<LatencyHistogram>,
    /// Times a group on this node saw its leader change to another known node.
    pub leader_changes: AtomicU64,
    /// Times a group on this node became a candidate (an election of its own).
    pub candidacies: AtomicU64,
    /// Elections the liveness loop started for timer-less partition groups.
    pub elections_started: AtomicU64,
}

/// Counts `stats.leader_changes` and `stats.candidacies` from a group's server metrics,
/// which change only with its vote, state, leader or membership (not on every apply), until
/// the group shuts down. Idle groups cost nothing: the task sleeps on the watch channel.
pub(super) fn count_leadership_changes(
    stats: Arc<HostStats>,
    mut server_metrics: openraft::type_config::alias::WatchReceiverOf<
        TypeConfig,
        openraft::metrics::RaftServerMetrics<TypeConfig>,
    >,
) {
    tokio::spawn(async move {
        let (mut leader, mut state) = {
            let metrics = server_metrics.borrow_watched();
            (metrics.current_leader, metrics.state)
        };
        while server_metrics.changed().await.is_ok() {
            let (new_leader, new_state) = {
                let metrics = server_metrics.borrow_watched();
                (metrics.current_leader, metrics.state)
            };
            if new_leader.is_some() && new_leader != leader {
                stats.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            if new_state == ServerState::Candidate && state != ServerState::Candidate {
                stats.candidacies.fetch_add(1, Ordering::Relaxed);
            }
            (leader, state) = (new_leader, new_state);
        }
    });
}
