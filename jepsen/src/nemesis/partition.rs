//! Network partitions, as nftables rules in the nodes' namespaces: one node cut off (often
//! a leader), the members split into a majority and a minority, or a bridge (two halves
//! that cannot talk to each other, and one node that talks to both, so both halves see a
//! majority). The control host stays reachable from every node. Healing deletes the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::Rng;
use rand::rngs::StdRng;

use super::target::{Target, shuffle};
use crate::hosts::Cluster;

#[derive(Debug, Clone)]
pub(super) enum Plan {
    Isolate(Target),
    Halves { pick: u64 },
    Bridge { pick: u64 },
}

impl Plan {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        match rng.random_range(0..3) {
            0 => Plan::Isolate(Target::draw(rng, topics)),
            1 => Plan::Halves { pick: rng.random() },
            _ => Plan::Bridge { pick: rng.random() },
        }
    }

    pub async fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        let members = cluster.node_ids();
        anyhow::ensure!(members.len() >= 2, "a partition needs two members, not {members:?}");
        let (sides, shared, chosen) = match self {
            Plan::Isolate(target) => {
                let (node, chosen) = target.resolve(cluster).await?;
                let rest: Vec<u64> = members.iter().copied().filter(|id| *id != node).collect();
                ((vec![node], rest), None, format!("isolated {chosen}"))
            }
            Plan::Halves { pick } => {
                let mut order = shuffle(&members, *pick);
                let minority = order.split_off(members.len() / 2 + 1);
                ((order, minority), None, "majority | minority".to_string())
            }
            Plan::Bridge { pick } => {
                let mut order = shuffle(&members, *pick);
                let bridge = order.remove(0);
                let right = order.split_off(order.len() / 2);
                ((order, right), Some(bridge), format!("bridge node {bridge}"))
            }
        };
        let (mut left, mut right) = sides;
        left.sort_unstable();
        right.sort_unstable();
        cluster.network().partition(&cut_between(&left, &right))?;
        let shared = shared.map(|node| format!(" | shared {node}")).unwrap_or_default();
        Ok(format!("{chosen}: {left:?} | {right:?}{shared}"))
    }
}

/// Each node of `left` loses `right`, and the other way round.
fn cut_between(left: &[u64], right: &[u64]) -> BTreeMap<u64, BTreeSet<u64>> {
    let mut blocked: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for a in left {
        for b in right {
            blocked.entry(*a).or_default().insert(*b);
            blocked.entry(*b).or_default().insert(*a);
        }
    }
    blocked
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Isolate(target) => write!(f, "isolate {target}"),
            Plan::Halves { pick } => write!(f, "split into majority and minority (pick {pick})"),
            Plan::Bridge { pick } => write!(f, "bridge: two halves sharing one node (pick {pick})"),
        }
    }
}

pub(super) fn heal(cluster: &mut Cluster) -> anyhow::Result<String> {
    cluster.network().heal_partitions()?;
    Ok("partition rules removed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_is_symmetric_and_spares_the_bridge() {
        let blocked = cut_between(&[1, 2], &[4, 5]);
        assert_eq!(blocked[&1], BTreeSet::from([4, 5]));
        assert_eq!(blocked[&5], BTreeSet::from([1, 2]));
        assert!(!blocked.contains_key(&3));
    }
}
