//! A full disk: one node's tmpfs is filled to the last byte. A node whose write or fsync
//! fails stops (by design: it cannot know what reached the disk), so healing deletes the
//! filler and restarts the node if it exited, saying so.

use std::fmt;

use anyhow::Context;
use rand::rngs::StdRng;

use super::target::Target;
use crate::hosts::{Cluster, fill};

#[derive(Debug, Clone)]
pub(super) struct Plan(Target);

impl Plan {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        Plan(Target::draw(rng, topics))
    }

    pub async fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        let (node, chosen) = self.0.resolve(cluster).await?;
        let filler = cluster
            .disk(node)
            .and_then(|disk| disk.filler())
            .context("disk faults need ClusterConfig::disk_bytes (a size-limited disk)")?;
        let written = tokio::task::spawn_blocking(move || fill(&filler)).await??;
        Ok(format!("filled the disk of {chosen} ({} MiB written)", written >> 20))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fill the disk of {}", self.0)
    }
}

/// Deletes every filler; restarts the members that exited meanwhile, and those whose
/// storage failed on the full disk but kept running: a node does not exit when a write or
/// fsync fails, it stops using that store for good (logging the error on every Raft
/// message), so only a restart brings it back (seen with the debug build).
pub(super) async fn heal(cluster: &mut Cluster) -> anyhow::Result<String> {
    let mut freed = Vec::new();
    for id in 1..=cluster.network().config().max_nodes {
        if let Some(filler) = cluster.disk(id).and_then(|disk| disk.filler())
            && filler.exists()
        {
            std::fs::remove_file(&filler).with_context(|| format!("deleting {}", filler.display()))?;
            freed.push(id);
        }
    }
    let mut failed = Vec::new();
    for id in freed.iter().copied() {
        if let Some(node) = cluster.node_mut(id)
            && node.is_running()
            && storage_failed(&node.log_of_this_start(), node.data_dir())
        {
            node.kill()?;
            failed.push(id);
        }
    }
    let restarted = super::kill::heal(cluster).await?;
    let freed = if freed.is_empty() { "no filler".to_string() } else { format!("freed the disks of {freed:?}") };
    let failed = if failed.is_empty() {
        String::new()
    } else {
        format!("; {failed:?} kept running with failed storage (ENOSPC in the log), killed")
    };
    Ok(format!("{freed}{failed}; {restarted}"))
}

/// How ENOSPC reads in a node's log.
const DISK_FULL: &str = "No space left on device";

/// Whether `log` reports ENOSPC on a file in `data_dir`. Peers log the error too (in a
/// failed replication's answer), but naming the full node's files, not their own.
fn storage_failed(log: &str, data_dir: &std::path::Path) -> bool {
    let data_dir = data_dir.display().to_string();
    log.lines().any(|line| line.contains(DISK_FULL) && line.contains(&data_dir))
}
