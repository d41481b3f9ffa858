//! A power cut: SIGKILL, then the node's faultfs drops every write it did not fsync, as a
//! machine losing power loses its page cache. On one node, a minority, or (rarely) every
//! node at once. The cut is instantaneous; healing restarts the nodes on what survived.

use std::fmt;

use anyhow::Context;
use rand::Rng;
use rand::rngs::StdRng;

use super::target::{Target, pick_nodes};
use crate::hosts::Cluster;

#[derive(Debug, Clone)]
pub(super) enum Plan {
    One(Target),
    Minority { pick: u64 },
    All,
}

impl Plan {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        match rng.random_range(0..10) {
            0 => Plan::All,
            1..=3 => Plan::Minority { pick: rng.random() },
            _ => Plan::One(Target::draw(rng, topics)),
        }
    }

    pub async fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        anyhow::ensure!(cluster.config().power, "power faults need ClusterConfig::power (faultfs disks)");
        let members = cluster.node_ids();
        let (nodes, chosen) = match self {
            Plan::One(target) => {
                let (node, chosen) = target.resolve(cluster).await?;
                (vec![node], chosen)
            }
            Plan::Minority { pick } => {
                let nodes = pick_nodes(&members, members.len().saturating_sub(1) / 2, *pick);
                (nodes.clone(), format!("minority {nodes:?} of {members:?}"))
            }
            Plan::All => (members.clone(), "every node".to_string()),
        };
        // Kill them all before dropping anything: a node still running could sync.
        for node in &nodes {
            cluster.node_mut(*node).map(|n| n.kill()).transpose()?;
        }
        let mut dropped = Vec::new();
        for node in &nodes {
            let disk = cluster.disk(*node).context("no disk")?;
            let answer = disk.drop_unsynced()?;
            dropped.push(format!("node {node}: {answer}"));
        }
        Ok(format!("power cut {chosen}: {}", dropped.join("; ")))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::One(target) => write!(f, "power cut {target}"),
            Plan::Minority { pick } => write!(f, "power cut a minority (pick {pick})"),
            Plan::All => f.write_str("power cut every node"),
        }
    }
}
