//! Which node a fault hits. Drawn from the seed alone (a partition's leader, the
//! controller's leader, or a node by number); resolved against the cluster when the fault
//! starts. The draw never looks at the cluster, so a seed always draws the same targets;
//! what they resolve to depends on the run (who leads then).

use std::fmt;

use rand::Rng;
use rand::rngs::StdRng;

use crate::hosts::Cluster;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Aim {
    PartitionLeader { topic: String, partition: u32 },
    ControllerLeader,
    AnyNode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub aim: Aim,
    /// Picks a live member (`pick % count`) for `AnyNode`, and when a leader is unknown.
    pub pick: u64,
}

impl Target {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Target {
        let aim = match rng.random_range(0..3) {
            0 => match pick_partition(rng, topics) {
                Some((topic, partition)) => Aim::PartitionLeader { topic, partition },
                None => Aim::ControllerLeader,
            },
            1 => Aim::ControllerLeader,
            _ => Aim::AnyNode,
        };
        Target { aim, pick: rng.random() }
    }

    /// The node it hits now, among the live members, and how it was chosen.
    pub async fn resolve(&self, cluster: &mut Cluster) -> anyhow::Result<(u64, String)> {
        let live = cluster.live_members();
        anyhow::ensure!(!live.is_empty(), "no live member to hit");
        let fallback = live[(self.pick % live.len() as u64) as usize];
        let leader = match &self.aim {
            Aim::PartitionLeader { topic, partition } => cluster.leader_of(topic, *partition).await,
            Aim::ControllerLeader => cluster.controller_leader().await,
            Aim::AnyNode => return Ok((fallback, format!("node {fallback}"))),
        };
        Ok(match leader.filter(|leader| live.contains(leader)) {
            Some(leader) => (leader, format!("node {leader}, {self}")),
            None => (fallback, format!("node {fallback} ({self} unknown or not live)")),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.aim {
            Aim::PartitionLeader { topic, partition } => write!(f, "leader of {topic}/{partition}"),
            Aim::ControllerLeader => f.write_str("controller leader"),
            Aim::AnyNode => write!(f, "a node (pick {})", self.pick),
        }
    }
}

/// A topic's partition, uniformly over all partitions; None without topics.
pub(super) fn pick_partition(rng: &mut StdRng, topics: &[(String, u32)]) -> Option<(String, u32)> {
    let total: u64 = topics.iter().map(|(_, partitions)| u64::from(*partitions)).sum();
    if total == 0 {
        return None;
    }
    let mut index = rng.random_range(0..total);
    for (topic, partitions) in topics {
        if index < u64::from(*partitions) {
            return Some((topic.clone(), index as u32));
        }
        index -= u64::from(*partitions);
    }
    None
}

/// `count` distinct members chosen by `pick` (a seeded shuffle), in id order.
pub(super) fn pick_nodes(members: &[u64], count: usize, pick: u64) -> Vec<u64> {
    let mut shuffled = shuffle(members, pick);
    shuffled.truncate(count);
    shuffled.sort_unstable();
    shuffled
}

/// `members` in an order chosen by `pick`.
pub(super) fn shuffle(members: &[u64], pick: u64) -> Vec<u64> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut shuffled = members.to_vec();
    shuffled.shuffle(&mut StdRng::seed_from_u64(pick));
    shuffled
}
