//! Wall-clock faults through each node's faketime file: skews of seconds to minutes, each
//! node its own, some ahead and some behind; halfway through, some nodes jump (a forward
//! clock stepped back, as NTP does). Healing puts every clock back to real time, which is
//! one more jump. Raft's timers use the monotonic clock, which never moves: these faults
//! test what reads the wall clock (record timestamps, retention, time-based lookups).

use std::fmt;

use rand::Rng;
use rand::rngs::StdRng;

use crate::hosts::{Cluster, MAX_NODES};

/// The largest skew, in seconds.
const SKEW_SECONDS_MAX: i64 = 300;

#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// Per node slot (1..=MAX_NODES): the offset at the start and, for some, the offset
    /// it jumps to halfway.
    offsets: Vec<(u64, i64, Option<i64>)>,
}

impl Plan {
    pub fn draw(rng: &mut StdRng) -> Plan {
        let mut offsets = Vec::new();
        for slot in 1..=MAX_NODES as u64 {
            if !rng.random_bool(0.6) {
                continue;
            }
            let start = signed(rng, SKEW_SECONDS_MAX);
            // A node ahead jumps back behind real time, one behind jumps ahead.
            let jump = rng.random_bool(0.3).then(|| -start.signum() * rng.random_range(1..=SKEW_SECONDS_MAX / 2));
            offsets.push((slot, start, jump));
        }
        if offsets.is_empty() {
            offsets.push((1, signed(rng, SKEW_SECONDS_MAX), None));
        }
        Plan { offsets }
    }

    pub fn start(&self, cluster: &mut Cluster) -> anyhow::Result<String> {
        self.apply(cluster, |(_, start, _)| Some(*start))
    }

    /// Halfway: the jumping nodes jump. None when no node jumps.
    pub fn midpoint(&self, cluster: &mut Cluster) -> Option<anyhow::Result<String>> {
        self.offsets.iter().any(|(_, _, jump)| jump.is_some()).then(|| self.apply(cluster, |(_, _, jump)| *jump))
    }

    fn apply(
        &self,
        cluster: &mut Cluster,
        offset: impl Fn(&(u64, i64, Option<i64>)) -> Option<i64>,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(cluster.config().clock, "clock faults need ClusterConfig::clock");
        let members = cluster.node_ids();
        let mut done = Vec::new();
        for entry in &self.offsets {
            let node = entry.0;
            let (Some(seconds), true) = (offset(entry), members.contains(&node)) else { continue };
            if let Some(clock) = cluster.clock(node) {
                clock.set_offset(seconds)?;
                done.push(format!("node {node} {seconds:+} s"));
            }
        }
        Ok(if done.is_empty() { "no member's clock moved".into() } else { done.join(", ") })
    }
}

/// A nonzero number of seconds in -max..=max.
fn signed(rng: &mut StdRng, max: i64) -> i64 {
    let magnitude = rng.random_range(1..=max);
    if rng.random_bool(0.5) { magnitude } else { -magnitude }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .offsets
            .iter()
            .map(|(slot, start, jump)| match jump {
                Some(jump) => format!("node {slot} {start:+} s then {jump:+} s"),
                None => format!("node {slot} {start:+} s"),
            })
            .collect();
        write!(f, "skew clocks: {}", parts.join(", "))
    }
}

/// Every node's clock back to real time.
pub(super) fn heal(cluster: &mut Cluster) -> anyhow::Result<String> {
    let mut reset = Vec::new();
    for id in 1..=cluster.network().config().max_nodes {
        if let Some(clock) = cluster.clock(id) {
            if clock.offset().ok() != Some(0) {
                reset.push(id);
            }
            clock.set_offset(0)?;
        }
    }
    Ok(if reset.is_empty() { "clocks already at real time".into() } else { format!("clocks of {reset:?} reset to +0") })
}
