//! Random packet loss between nodes (nftables `numgen random`): on one node, both ways,
//! or on every member's incoming packets. Traffic with the control host is never dropped.
//! Healing deletes the rules.

use std::fmt;

use rand::Rng;
use rand::rngs::StdRng;

use crate::hosts::Cluster;

#[derive(Debug, Clone)]
pub(super) struct Plan {
    percent: u8,
    /// None: every member.
    one: Option<u64>,
}

impl Plan {
    pub fn draw(rng: &mut StdRng) -> Plan {
        let percent = rng.random_range(20..=40);
        let one = if rng.random_bool(0.5) { Some(rng.random()) } else { None };
        Plan { percent, one }
    }

    pub fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        let members = cluster.node_ids();
        anyhow::ensure!(!members.is_empty(), "no members");
        match self.one {
            Some(pick) => {
                let node = members[(pick % members.len() as u64) as usize];
                cluster.network().lose_packets(node, self.percent, true)?;
                Ok(format!("node {node} loses {}% of its packets to and from other nodes", self.percent))
            }
            None => {
                for node in &members {
                    cluster.network().lose_packets(*node, self.percent, false)?;
                }
                Ok(format!("nodes {members:?} lose {}% of the packets they receive from each other", self.percent))
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.one {
            Some(pick) => write!(f, "{}% packet loss on a node (pick {pick})", self.percent),
            None => write!(f, "{}% packet loss on every node", self.percent),
        }
    }
}

pub(super) fn heal(cluster: &mut Cluster) -> anyhow::Result<String> {
    cluster.network().heal_packet_loss()?;
    Ok("packet loss rules removed".into())
}
