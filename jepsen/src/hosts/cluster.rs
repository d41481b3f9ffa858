//! A Cairn cluster on the simulated hosts: the network, each node's disk and clock, its
//! process, and which nodes are members now (joins and decommissions change that).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::{CairnClient, RetryPolicy, proto};

use super::clock::{ClockFile, LIBFAKETIME_DEFAULT};
use super::disk::Disk;
use super::network::{Network, NetworkConfig};
use super::node::{Node, NodeOptions};

/// Every node listens on this port of its own address.
pub const NODE_PORT: u16 = 7000;
/// At most this many nodes (members and spares) in one run.
pub const MAX_NODES: usize = 5;
/// How long one status question to one node may take: nodes may be paused or cut off,
/// and a question must not hang the nemesis.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new cluster (or a joining node) may take to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Raft timeouts short enough for failovers within a second.
pub const FAST_RAFT: [&str; 6] =
    ["--heartbeat-interval-ms", "100", "--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600"];
/// The nodes' log filter, unless `CAIRN_JEPSEN_NODE_LOG` sets one.
const NODE_LOG_DEFAULT: &str = "info,openraft=warn";

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `cairn` binary.
    pub binary: PathBuf,
    /// The `cairn-faultfs` binary; needed with `power`.
    pub faultfs_binary: Option<PathBuf>,
    /// The run directory: data directories, logs, faketime files.
    pub dir: PathBuf,
    /// Initial members (3 or 5).
    pub nodes: usize,
    /// Namespaces prepared for nodes that join later.
    pub spare_nodes: usize,
    /// Passed to every node (`FAST_RAFT`, usually).
    pub raft_args: Vec<String>,
    /// Run nodes under libfaketime, for the clock nemesis.
    pub clock: bool,
    /// Data directories on a tmpfs of this size, for the disk nemesis.
    pub disk_bytes: Option<u64>,
    /// Data directories behind cairn-faultfs, for the power nemesis.
    pub power: bool,
    /// Names and addresses; `max_nodes` is set to `nodes + spare_nodes`.
    pub network: NetworkConfig,
    pub libfaketime: PathBuf,
}

impl ClusterConfig {
    /// Three members, no spares, fast Raft timeouts, no clock, disk or power faults.
    pub fn new(binary: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig {
            binary: binary.into(),
            faultfs_binary: None,
            dir: dir.into(),
            nodes: 3,
            spare_nodes: 0,
            raft_args: FAST_RAFT.iter().map(|arg| arg.to_string()).collect(),
            clock: false,
            disk_bytes: None,
            power: false,
            network: NetworkConfig::default(),
            libfaketime: PathBuf::from(LIBFAKETIME_DEFAULT),
        }
    }
}

pub struct Cluster {
    config: ClusterConfig,
    network: Network,
    /// Every node started so far, members or not.
    nodes: BTreeMap<u64, Node>,
    disks: BTreeMap<u64, Disk>,
    clocks: BTreeMap<u64, ClockFile>,
    members: BTreeSet<u64>,
    /// Namespaces no node has used yet, for joins.
    spares: BTreeSet<u64>,
}

impl Cluster {
    /// Builds the hosts and starts the initial members; returns once each listens and the
    /// cluster has a controller leader.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<Cluster> {
        let total = config.nodes + config.spare_nodes;
        anyhow::ensure!(config.nodes >= 1 && total <= MAX_NODES, "{total} nodes: at most {MAX_NODES} in all");
        anyhow::ensure!(config.binary.exists(), "no cairn binary at {}", config.binary.display());
        anyhow::ensure!(!config.power || config.faultfs_binary.is_some(), "power faults need faultfs_binary");
        std::fs::create_dir_all(&config.dir).with_context(|| format!("creating {}", config.dir.display()))?;
        let mut network_config = config.network.clone();
        network_config.max_nodes = total as u64;
        let network = Network::create(network_config)?;
        let mut cluster = Cluster {
            network,
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            clocks: BTreeMap::new(),
            members: BTreeSet::new(),
            spares: (config.nodes as u64 + 1..=total as u64).collect(),
            config,
        };
        // From here on, an error drops `cluster`, which tears everything down.
        let initial: Vec<u64> = (1..=cluster.config.nodes as u64).collect();
        let spec: Vec<String> = initial.iter().map(|id| format!("{id}={}", cluster.address(*id))).collect();
        let mut waiting = Vec::new();
        for id in &initial {
            cluster.prepare_node(*id, vec!["--initial-cluster".into(), spec.join(",")])?;
            waiting.push((*id, cluster.node_or_err(*id)?.spawn()?));
        }
        for (id, listening) in waiting {
            cluster.node_or_err(id)?.wait_listening(listening).await?;
            cluster.members.insert(id);
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        while cluster.controller_leader().await.is_none() {
            anyhow::ensure!(Instant::now() < deadline, "no controller leader within {READY_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(cluster)
    }

    /// Mounts node `id`'s disk, writes its clock file and creates its (stopped) process.
    fn prepare_node(&mut self, id: u64, cluster_args: Vec<String>) -> anyhow::Result<()> {
        let dir = &self.config.dir;
        let faultfs = if self.config.power { self.config.faultfs_binary.as_deref() } else { None };
        let disk = Disk::prepare(dir, id, self.config.disk_bytes, faultfs)?;
        let log_filter = std::env::var("CAIRN_JEPSEN_NODE_LOG").unwrap_or_else(|_| NODE_LOG_DEFAULT.into());
        // NO_COLOR: plain log files, without terminal colour codes.
        let mut env = vec![("CAIRN_LOG".to_string(), log_filter), ("NO_COLOR".to_string(), "1".to_string())];
        if self.config.clock {
            let clock = ClockFile::create(&dir.join(format!("node{id}.faketime")), &self.config.libfaketime)?;
            env.extend(clock.env());
            self.clocks.insert(id, clock);
        }
        let mut args = cluster_args;
        args.extend(self.config.raft_args.iter().cloned());
        let options = NodeOptions {
            id,
            binary: self.config.binary.clone(),
            namespace: self.network.namespace(id),
            address: self.address(id),
            data_dir: disk.data_dir().to_owned(),
            log: dir.join(format!("node{id}.log")),
            args,
            env,
        };
        self.disks.insert(id, disk);
        self.nodes.insert(id, Node::new(options));
        Ok(())
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The members now, in id order.
    pub fn node_ids(&self) -> Vec<u64> {
        self.members.iter().copied().collect()
    }

    /// Namespaces still free for `join_node`.
    pub fn spare_ids(&self) -> Vec<u64> {
        self.spares.iter().copied().collect()
    }

    /// `10.77.0.{node}:7000`: where clients and peers reach `node`.
    pub fn address(&self, node: u64) -> String {
        format!("{}:{NODE_PORT}", self.network.node_ip(node))
    }

    /// The addresses of the members now.
    pub fn addresses(&self) -> Vec<String> {
        self.members.iter().map(|id| self.address(*id)).collect()
    }

    /// The members now, each with its address.
    pub fn member_addresses(&self) -> BTreeMap<u64, String> {
        self.members.iter().map(|id| (*id, self.address(*id))).collect()
    }

    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub fn node_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&id)
    }

    fn node_or_err(&mut self, id: u64) -> anyhow::Result<&mut Node> {
        self.nodes.get_mut(&id).with_context(|| format!("no node {id}"))
    }

    pub fn disk(&self, id: u64) -> Option<&Disk> {
        self.disks.get(&id)
    }

    pub fn clock(&self, id: u64) -> Option<&ClockFile> {
        self.clocks.get(&id)
    }

    /// Members whose process runs and is not paused.
    pub fn live_members(&mut self) -> Vec<u64> {
        let members: Vec<u64> = self.node_ids();
        members
            .into_iter()
            .filter(|id| self.nodes.get_mut(id).is_some_and(|n| n.is_running() && !n.is_paused()))
            .collect()
    }

    /// `node`'s answer to `cluster_status`, if it answers within `STATUS_TIMEOUT`.
    pub async fn status_of(&self, node: u64) -> Option<proto::ClusterStatusResponse> {
        status_at(self.address(node)).await
    }

    /// The answers of every member that answers, asked all at once.
    pub async fn statuses(&self) -> Vec<(u64, proto::ClusterStatusResponse)> {
        let mut asking = tokio::task::JoinSet::new();
        for id in &self.members {
            if self.nodes.get(id).is_some_and(|node| node.pid().is_some() && !node.is_paused()) {
                let (id, address) = (*id, self.address(*id));
                asking.spawn(async move { (id, status_at(address).await) });
            }
        }
        let mut answers = Vec::new();
        while let Some(joined) = asking.join_next().await {
            if let Ok((id, Some(status))) = joined {
                answers.push((id, status));
            }
        }
        answers.sort_by_key(|(id, _)| *id);
        answers
    }

    /// The leader of `topic`/`partition` as the reachable members report it (the claim
    /// with the highest term: a leader cut off from its group may still think it leads).
    pub async fn leader_of(&self, topic: &str, partition: u32) -> Option<u64> {
        leader_in(&self.statuses().await, |group| group.topic == topic && group.partition == partition)
    }

    /// The controller group's leader, likewise.
    pub async fn controller_leader(&self) -> Option<u64> {
        leader_in(&self.statuses().await, |group| group.topic.is_empty())
    }

    /// Starts the next spare namespace's node with `--join` through a live member; returns
    /// its id once the cluster lists it.
    pub async fn join_node(&mut self) -> anyhow::Result<u64> {
        let id = self.spares.first().copied().context("no spare namespace left to join")?;
        let via = self.live_members().first().copied().context("no live member to join through")?;
        self.spares.remove(&id);
        self.prepare_node(id, vec!["--join".into(), self.address(via)])?;
        self.node_or_err(id)?.start().await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let listed = self.status_of(via).await.is_some_and(|status| status.nodes.iter().any(|n| n.node_id == id));
            if listed {
                self.members.insert(id);
                return Ok(id);
            }
            if Instant::now() > deadline {
                let _ = self.node_or_err(id)?.kill();
                anyhow::bail!("node {id} not listed by node {via} within {READY_TIMEOUT:?} after joining");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops a node that left the cluster (decommissioned) and forgets it as a member. Its
    /// namespace is not reused: its data directory belongs to the old node id.
    pub fn retire_node(&mut self, id: u64) -> anyhow::Result<()> {
        self.members.remove(&id);
        self.node_or_err(id)?.kill()
    }

    /// Copies every node's log (and faultfs log) into `into`.
    pub fn copy_logs(&self, into: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
        for id in self.nodes.keys() {
            for name in [format!("node{id}.log"), format!("node{id}.faultfs.log")] {
                let from = self.config.dir.join(&name);
                if from.exists() {
                    std::fs::copy(&from, into.join(&name)).with_context(|| format!("copying {}", from.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Kills every node, unmounts the disks and removes the network. Safe to call twice;
    /// also done on drop.
    pub fn teardown(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for node in self.nodes.values_mut() {
            if let Err(error) = node.kill() {
                errors.push(format!("{error:#}"));
            }
        }
        for (id, disk) in &mut self.disks {
            if let Err(error) = disk.unmount() {
                errors.push(format!("disk of node {id}: {error:#}"));
            }
        }
        if let Err(error) = self.network.teardown() {
            errors.push(format!("{error:#}"));
        }
        anyhow::ensure!(errors.is_empty(), "teardown: {}", errors.join("; "));
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) = self.teardown() {
            tracing::warn!(error = %format!("{error:#}"), "cluster teardown incomplete");
        }
    }
}

async fn status_at(address: String) -> Option<proto::ClusterStatusResponse> {
    let asking = async {
        let client = CairnClient::connect_with(&address, RetryPolicy::none()).await.ok()?;
        client.cluster_status().await.ok()
    };
    tokio::time::timeout(STATUS_TIMEOUT, asking).await.ok().flatten()
}

/// The leader of the groups `wanted` selects: the claim with the highest term, a node
/// saying it leads itself winning a tie.
fn leader_in(
    statuses: &[(u64, proto::ClusterStatusResponse)],
    wanted: impl Fn(&proto::GroupStatus) -> bool,
) -> Option<u64> {
    statuses
        .iter()
        .flat_map(|(_, status)| status.groups.iter())
        .filter(|group| wanted(group))
        .filter_map(|group| group.leader.map(|leader| (group.term, group.state == "leader", leader)))
        .max()
        .map(|(_, _, leader)| leader)
}
