//! One fault of any kind: drawn from the seed, started against the cluster, healed.

use std::fmt;

use rand::rngs::StdRng;
use tokio::sync::Mutex;

use super::{NemesisKind, clock, disk, kill, loss, membership, partition, pause, power};
use crate::hosts::Cluster;

#[derive(Debug, Clone)]
pub(super) enum Plan {
    Kill(kill::Plan),
    Pause(pause::Plan),
    Partition(partition::Plan),
    Loss(loss::Plan),
    Clock(clock::Plan),
    Disk(disk::Plan),
    Power(power::Plan),
    Membership(membership::Plan),
}

/// What a started fault leaves for healing to finish, besides its kind's usual heal.
pub(super) type Pending = Option<membership::Pending>;

impl Plan {
    /// Draws a fault of `kind` from `rng` alone (never from the cluster's state).
    pub fn draw(kind: NemesisKind, rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        match kind {
            NemesisKind::Kill => Plan::Kill(kill::Plan::draw(rng, topics)),
            NemesisKind::Pause => Plan::Pause(pause::Plan::draw(rng, topics)),
            NemesisKind::Partition => Plan::Partition(partition::Plan::draw(rng, topics)),
            NemesisKind::Loss => Plan::Loss(loss::Plan::draw(rng)),
            NemesisKind::Clock => Plan::Clock(clock::Plan::draw(rng)),
            NemesisKind::Disk => Plan::Disk(disk::Plan::draw(rng, topics)),
            NemesisKind::Power => Plan::Power(power::Plan::draw(rng, topics)),
            NemesisKind::Membership => Plan::Membership(membership::Plan::draw(rng, topics)),
        }
    }

    /// Whether the fault stays in place for the fault time. A power cut is instantaneous:
    /// the nodes come back at once, on what their disks kept.
    pub fn holds(&self) -> bool {
        !matches!(self, Plan::Power(_))
    }

    /// Injects the fault; what was done.
    pub async fn start(&self, cluster: &Mutex<Cluster>) -> anyhow::Result<(String, Pending)> {
        let mut cluster = cluster.lock().await;
        let cluster = &mut *cluster;
        let detail = match self {
            Plan::Kill(plan) => plan.start(cluster).await?,
            Plan::Pause(plan) => plan.start(cluster).await?,
            Plan::Partition(plan) => plan.start(cluster).await?,
            Plan::Loss(plan) => plan.start(cluster)?,
            Plan::Clock(plan) => plan.start(cluster)?,
            Plan::Disk(plan) => plan.start(cluster).await?,
            Plan::Power(plan) => plan.start(cluster).await?,
            Plan::Membership(plan) => return plan.start(cluster).await,
        };
        Ok((detail, None))
    }

    /// A second step halfway through the fault (clocks jump), if this fault has one.
    pub async fn midpoint(&self, cluster: &Mutex<Cluster>) -> Option<anyhow::Result<String>> {
        match self {
            Plan::Clock(plan) => plan.midpoint(&mut *cluster.lock().await),
            _ => None,
        }
    }

    /// What healing this kind of fault does.
    pub fn heal_description(&self) -> &'static str {
        match self {
            Plan::Kill(_) => "restart every member that is not running",
            Plan::Pause(_) => "resume every paused node",
            Plan::Partition(_) => "remove the partition rules",
            Plan::Loss(_) => "remove the packet loss rules",
            Plan::Clock(_) => "reset every clock to real time",
            Plan::Disk(_) => "delete the filler; restart the node if it exited",
            Plan::Power(_) => "restart the nodes on what their disks kept",
            Plan::Membership(_) => "wait for the change to finish",
        }
    }

    /// Heals every fault of this kind (not only this one: a start that failed halfway is
    /// healed too); what was done.
    pub async fn heal(&self, cluster: &Mutex<Cluster>, pending: Pending) -> anyhow::Result<String> {
        if let Plan::Membership(_) = self {
            return membership::heal(cluster, pending).await;
        }
        let mut cluster = cluster.lock().await;
        let cluster = &mut *cluster;
        match self {
            Plan::Kill(_) | Plan::Power(_) => kill::heal(cluster).await,
            Plan::Pause(_) => pause::heal(cluster),
            Plan::Partition(_) => partition::heal(cluster),
            Plan::Loss(_) => loss::heal(cluster),
            Plan::Clock(_) => clock::heal(cluster),
            Plan::Disk(_) => disk::heal(cluster).await,
            Plan::Membership(_) => Ok(String::new()),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Kill(plan) => plan.fmt(f),
            Plan::Pause(plan) => plan.fmt(f),
            Plan::Partition(plan) => plan.fmt(f),
            Plan::Loss(plan) => plan.fmt(f),
            Plan::Clock(plan) => plan.fmt(f),
            Plan::Disk(plan) => plan.fmt(f),
            Plan::Power(plan) => plan.fmt(f),
            Plan::Membership(plan) => plan.fmt(f),
        }
    }
}

/// Heals every kind of fault, each attempted even when another fails: resume paused nodes
/// first (a paused node cannot be restarted usefully), then the network, clocks and disks,
/// and last restart whatever is not running.
pub(super) async fn heal_everything(cluster: &mut Cluster) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut note = |what: &str, result: anyhow::Result<String>| match result {
        Ok(detail) => done.push(format!("{what}: {detail}")),
        Err(error) => errors.push(format!("{what}: {error:#}")),
    };
    note("pause", pause::heal(cluster));
    note("partition", partition::heal(cluster));
    note("loss", loss::heal(cluster));
    if cluster.config().clock {
        note("clock", clock::heal(cluster));
    }
    // Deletes fillers, then restarts every member not running (killed, power-cut, crashed).
    note("disk and kill", disk::heal(cluster).await);
    (done, errors)
}
