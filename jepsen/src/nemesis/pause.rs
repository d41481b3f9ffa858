//! SIGSTOP: a leader or a random node freezes with its connections open (a long GC pause,
//! a stalled VM), then SIGCONT: it wakes up believing whatever it believed.

use std::fmt;

use rand::rngs::StdRng;

use super::target::Target;
use crate::hosts::Cluster;

#[derive(Debug, Clone)]
pub(super) struct Plan(Target);

impl Plan {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        Plan(Target::draw(rng, topics))
    }

    pub async fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        let (node, chosen) = self.0.resolve(cluster).await?;
        if let Some(node) = cluster.node_mut(node) {
            node.pause()?;
        }
        Ok(format!("paused {chosen}"))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pause {}", self.0)
    }
}

/// Resumes every paused node (members or not).
pub(super) fn heal(cluster: &mut Cluster) -> anyhow::Result<String> {
    let mut resumed = Vec::new();
    let ids: Vec<u64> = (1..=cluster.network().config().max_nodes).collect();
    for id in ids {
        if let Some(node) = cluster.node_mut(id)
            && node.is_paused()
        {
            node.resume()?;
            resumed.push(id);
        }
    }
    Ok(if resumed.is_empty() { "nothing paused".into() } else { format!("resumed {resumed:?}") })
}
