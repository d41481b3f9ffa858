//! Membership changes under load: a spare node joins, a member is decommissioned (its
//! replicas move away, then it leaves and its process stops), a partition replica moves to
//! another node, a partition's leadership moves. The cluster keeps at least
//! `MEMBERS_MIN` live members. A change that does not apply now (no spare left, too few
//! members, no node to move to) gives way to the next in a fixed order, so a seed still
//! means one sequence of plans. Healing waits for the change's operations to finish.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::{CairnClient, RetryPolicy};
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::Mutex;

use super::target::pick_partition;
use crate::hosts::Cluster;

/// Never fewer live members than this.
const MEMBERS_MIN: usize = 3;
/// How long one admin call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a move or a decommission may take to finish.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Join,
    Decommission,
    Move,
    Transfer,
}

#[derive(Debug, Clone)]
pub(super) struct Plan {
    change: Change,
    partition: Option<(String, u32)>,
    pick: u64,
    to_pick: u64,
}

/// What healing waits for.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    Decommission { node: u64, operations: Vec<u64> },
    Move { operation: u64 },
}

impl Plan {
    pub fn draw(rng: &mut StdRng, topics: &[(String, u32)]) -> Plan {
        let change = [Change::Join, Change::Decommission, Change::Move, Change::Transfer][rng.random_range(0..4)];
        Plan { change, partition: pick_partition(rng, topics), pick: rng.random(), to_pick: rng.random() }
    }

    pub async fn start(&self, cluster: &mut Cluster) -> anyhow::Result<(String, Option<Pending>)> {
        let order: &[Change] = match self.change {
            Change::Join => &[Change::Join, Change::Decommission, Change::Transfer],
            Change::Decommission => &[Change::Decommission, Change::Join, Change::Transfer],
            Change::Move => &[Change::Move, Change::Transfer],
            Change::Transfer => &[Change::Transfer],
        };
        for change in order {
            if let Some(done) = self.try_change(*change, cluster).await? {
                return Ok(done);
            }
        }
        anyhow::bail!("no membership change applies now (members {:?})", cluster.node_ids())
    }

    /// None when `change` does not apply to the cluster as it is.
    async fn try_change(
        &self,
        change: Change,
        cluster: &mut Cluster,
    ) -> anyhow::Result<Option<(String, Option<Pending>)>> {
        let members = cluster.node_ids();
        let live = cluster.live_members();
        match change {
            Change::Join => {
                if cluster.spare_ids().is_empty() {
                    return Ok(None);
                }
                let node = cluster.join_node().await?;
                Ok(Some((format!("node {node} joined"), None)))
            }
            Change::Decommission => {
                if members.len() <= MEMBERS_MIN || live.len() <= MEMBERS_MIN {
                    return Ok(None);
                }
                let node = live[(self.pick % live.len() as u64) as usize];
                let admin = admin_client(cluster, Some(node)).await?;
                let operations = timed(admin.decommission_node(node)).await?;
                Ok(Some((
                    format!("decommissioning node {node}: operations {operations:?}"),
                    Some(Pending::Decommission { node, operations }),
                )))
            }
            Change::Move => {
                let Some((topic, partition)) = &self.partition else { return Ok(None) };
                let admin = admin_client(cluster, None).await?;
                let replicas = replicas_of(&admin, topic, *partition).await?.0;
                let targets: Vec<u64> = live.iter().copied().filter(|id| !replicas.contains(id)).collect();
                if targets.is_empty() || replicas.is_empty() {
                    return Ok(None);
                }
                let from = replicas[(self.pick % replicas.len() as u64) as usize];
                let to = targets[(self.to_pick % targets.len() as u64) as usize];
                let operation = timed(admin.move_partition(topic, *partition, from, to)).await?;
                Ok(Some((
                    format!("moving {topic}/{partition} from node {from} to node {to}: operation {operation}"),
                    Some(Pending::Move { operation }),
                )))
            }
            Change::Transfer => {
                let Some((topic, partition)) = &self.partition else { return Ok(None) };
                let admin = admin_client(cluster, None).await?;
                let (replicas, leader) = replicas_of(&admin, topic, *partition).await?;
                let targets: Vec<u64> =
                    replicas.iter().copied().filter(|id| Some(*id) != leader && live.contains(id)).collect();
                if targets.is_empty() {
                    return Ok(None);
                }
                let to = targets[(self.to_pick % targets.len() as u64) as usize];
                let now = timed(admin.transfer_leader(topic, *partition, to)).await?;
                Ok(Some((format!("leader of {topic}/{partition}: {leader:?} -> {now} (asked for {to})"), None)))
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partition = match &self.partition {
            Some((topic, partition)) => format!("{topic}/{partition}"),
            None => "no partition".into(),
        };
        match self.change {
            Change::Join => f.write_str("join a spare node"),
            Change::Decommission => write!(f, "decommission a node (pick {})", self.pick),
            Change::Move => write!(f, "move a replica of {partition} (picks {}, {})", self.pick, self.to_pick),
            Change::Transfer => write!(f, "transfer the leadership of {partition} (pick {})", self.to_pick),
        }
    }
}

/// Waits for the change's operations; a decommissioned node's process is stopped once the
/// cluster no longer lists it. The cluster is locked only briefly: the wait can be long.
pub(super) async fn heal(cluster: &Mutex<Cluster>, pending: Option<Pending>) -> anyhow::Result<String> {
    let Some(pending) = pending else { return Ok("nothing to wait for".into()) };
    let avoid = match &pending {
        Pending::Decommission { node, .. } => Some(*node),
        Pending::Move { .. } => None,
    };
    let admin = admin_client(&mut *cluster.lock().await, avoid).await?;
    match pending {
        Pending::Move { operation } => {
            let phase = wait_operations(&admin, &[operation]).await?;
            Ok(format!("move {operation}: {phase}"))
        }
        Pending::Decommission { node, operations } => {
            let phase = wait_operations(&admin, &operations).await?;
            let deadline = Instant::now() + OPERATION_TIMEOUT;
            loop {
                let status = timed(admin.cluster_status()).await?;
                if !status.nodes.iter().any(|listed| listed.node_id == node) {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "node {node} still listed after {OPERATION_TIMEOUT:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            cluster.lock().await.retire_node(node)?;
            Ok(format!("node {node} left the cluster ({phase}); its process stopped"))
        }
    }
}

/// Waits until none of `operations` is under way; their final phases.
async fn wait_operations(admin: &CairnClient, operations: &[u64]) -> anyhow::Result<String> {
    let deadline = Instant::now() + OPERATION_TIMEOUT;
    loop {
        let running = timed(admin.list_operations(false)).await?;
        if !running.iter().any(|op| operations.contains(&op.id)) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "operations {operations:?} still running after {OPERATION_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let finished = timed(admin.list_operations(true)).await?;
    let phases: Vec<String> = finished
        .iter()
        .filter(|op| operations.contains(&op.id))
        .map(|op| format!("{} {} {}", op.kind, op.id, op.phase))
        .collect();
    Ok(phases.join(", "))
}

/// A partition's replicas and leader, as the cluster describes it.
async fn replicas_of(admin: &CairnClient, topic: &str, partition: u32) -> anyhow::Result<(Vec<u64>, Option<u64>)> {
    let described = timed(admin.describe_topic(topic)).await?;
    let found = described.partitions.iter().find(|p| p.partition == partition);
    let found = found.with_context(|| format!("{topic} has no partition {partition}"))?;
    Ok((found.replicas.clone(), found.leader))
}

/// A client of the controller leader if it is live, else of any live member but `avoid`.
async fn admin_client(cluster: &mut Cluster, avoid: Option<u64>) -> anyhow::Result<CairnClient> {
    let live: Vec<u64> = cluster.live_members().into_iter().filter(|id| Some(*id) != avoid).collect();
    let controller = cluster.controller_leader().await.filter(|id| live.contains(id));
    let node = controller.or_else(|| live.first().copied()).context("no live member to ask")?;
    let address = cluster.address(node);
    let connecting = CairnClient::connect_with(&address, RetryPolicy::default());
    Ok(tokio::time::timeout(ADMIN_TIMEOUT, connecting).await.context("connecting timed out")??)
}

/// An admin call, bounded by `ADMIN_TIMEOUT`.
async fn timed<T>(call: impl std::future::Future<Output = Result<T, cairn_client::ClientError>>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(ADMIN_TIMEOUT, call).await.context("admin call timed out")??)
}
