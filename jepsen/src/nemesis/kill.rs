//! SIGKILL: a leader, a random node, or a majority (the cluster stops until healed).
//! Healing restarts every member that is not running.

use std::fmt;

use rand::Rng;
use rand::rngs::StdRng;

use super::target::{Target, pick_nodes};
use crate::hosts::Cluster;

#[derive(Debug, Clone)]
pub(super) enum Plan {
    One(Target),
    Majority { pick: u64 },
}

impl Plan {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        // One in five kills takes a majority down.
        if rng.random_ratio(1, 5) {
            Plan::Majority { pick: rng.random() }
        } else {
            Plan::One(Target::draw(rng, topics))
        }
    }

    pub async fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        let (nodes, chosen) = match self {
            Plan::One(target) => {
                let (node, chosen) = target.resolve(cluster).await?;
                (vec![node], chosen)
            }
            Plan::Majority { pick } => {
                let members = cluster.node_ids();
                let nodes = pick_nodes(&members, members.len() / 2 + 1, *pick);
                (nodes.clone(), format!("majority {nodes:?} of {members:?}"))
            }
        };
        for node in &nodes {
            cluster.node_mut(*node).map(|n| n.kill()).transpose()?;
        }
        Ok(format!("killed {nodes:?}: {chosen}"))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::One(target) => write!(f, "kill {target}"),
            Plan::Majority { pick } => write!(f, "kill a majority (pick {pick})"),
        }
    }
}

/// Restarts every member whose process is not running (killed, or exited on its own);
/// says which. All are launched before any is waited for: a restarted node may wait for
/// the others to form a quorum before it listens.
pub(super) async fn heal(cluster: &mut Cluster) -> anyhow::Result<String> {
    let mut launched = Vec::new();
    let mut errors = Vec::new();
    for id in cluster.node_ids() {
        let Some(node) = cluster.node_mut(id) else { continue };
        if node.is_running() {
            continue;
        }
        let exit = node.last_exit().map(|status| status.to_string()).unwrap_or_else(|| "never started".into());
        match node.spawn() {
            Ok(listening) => launched.push((id, exit, listening)),
            Err(error) => errors.push(format!("restarting node {id}: {error:#}")),
        }
    }
    let mut restarted = Vec::new();
    for (id, exit, listening) in launched {
        let Some(node) = cluster.node_mut(id) else { continue };
        match node.wait_listening(listening).await {
            Ok(()) => restarted.push(format!("{id} (was: {exit})")),
            Err(error) => errors.push(format!("restarting node {id}: {error:#}")),
        }
    }
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(if restarted.is_empty() { "all nodes running".into() } else { format!("restarted {}", restarted.join(", ")) })
}
