//! The host's configuration (`HostConfig`) and what it derives from it: the openraft
//! configurations of the controller group (openraft's own timers) and of the partition
//! groups (no timers: see `liveness.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_types::{Limits, NodeId};
use openraft::SnapshotPolicy;

use super::HostError;

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
    /// How often the compaction task looks for hidden events to remove.
    pub compaction_check_interval_ms: u64,
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

/// The openraft configurations of the controller group and of the partition groups.
pub(super) fn raft_configs(config: &HostConfig) -> Result<(Arc<openraft::Config>, Arc<openraft::Config>), HostError> {
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
    Ok((raft_config, partition_raft_config))
}
