//! The simulated hosts' network: one network namespace per node, all on one Ethernet
//! segment, plus the control host (the root namespace, where the suite's clients run).
//!
//! ```text
//!  root namespace            hub namespace                 node namespaces
//!  cjctl0 10.77.0.254 ──veth── ctl ┐
//!                                  ├─ cjbr0 (bridge)
//!                                  │  n1 ──veth── eth0 10.77.0.1   cj-n1
//!                                  │  n2 ──veth── eth0 10.77.0.2   cj-n2   ...
//! ```
//!
//! The bridge lives in its own namespace, not in the root one: with `br_netfilter` loaded
//! (Docker loads it), bridged frames go through the root namespace's iptables FORWARD
//! chain, whose policy on a Docker host is DROP, so node-to-node traffic on a root bridge
//! is silently dropped (seen on the development machine). Turning that off would mean
//! changing the host's firewall or a global sysctl. A fresh namespace has no firewall
//! rules, and traffic between the control host and a node is locally sent or received in
//! the root namespace (OUTPUT/INPUT, both accepting), never forwarded there. The host gains
//! one interface with one /24 route and no other change: no default route, no NAT, no
//! firewall rule.

use anyhow::Context as _;
use std::net::Ipv4Addr;

use super::command::{is_root, run, run_ignoring_failure};

/// Names and addresses of a network. Two runs can coexist if theirs all differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Node `i`'s namespace is `{namespace_prefix}{i}`.
    pub namespace_prefix: String,
    /// The namespace that holds the bridge.
    pub hub_namespace: String,
    /// The bridge's name (inside the hub namespace).
    pub bridge: String,
    /// The control host's interface in the root namespace.
    pub control_link: String,
    /// The /24 every address is in: its first three octets.
    pub subnet: [u8; 3],
    /// The control host's last octet.
    pub control_host: u8,
    /// Nodes 1..=max_nodes get a namespace.
    pub max_nodes: u64,
}

/// At most this many node namespaces (node ids are last octets, below the control host's).
pub const MAX_NODES_LIMIT: u64 = 250;

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            namespace_prefix: "cj-n".into(),
            hub_namespace: "cj-hub".into(),
            bridge: "cjbr0".into(),
            control_link: "cjctl0".into(),
            subnet: [10, 77, 0],
            control_host: 254,
            max_nodes: 5,
        }
    }
}

impl NetworkConfig {
    pub fn namespace(&self, node: u64) -> String {
        format!("{}{node}", self.namespace_prefix)
    }

    pub fn node_ip(&self, node: u64) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(node).unwrap_or(u8::MAX))
    }

    /// The address the suite's clients connect from (root namespace).
    pub fn control_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, self.control_host)
    }

    /// The subnet in CIDR notation.
    pub fn cidr(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.0/24")
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=MAX_NODES_LIMIT).contains(&self.max_nodes) && self.max_nodes < u64::from(self.control_host),
            "max_nodes must be 1..={MAX_NODES_LIMIT} and below the control host's octet {}",
            self.control_host
        );
        // Linux interface names have at most 15 bytes.
        for name in [&self.bridge, &self.control_link] {
            anyhow::ensure!(!name.is_empty() && name.len() <= 15, "interface name {name:?} must have 1..=15 bytes");
        }
        Ok(())
    }
}

/// The namespaces, links and addresses of one run. Removed by `teardown` or on drop (a
/// panicking run included); a run killed outright leaves them behind, and the next
/// `create` with the same config removes them first.
pub struct Network {
    config: NetworkConfig,
    up: bool,
    /// Held while the network exists: runs and tests that use the same names (the test
    /// threads of one binary, two suites started by hand) take turns instead of tearing
    /// down each other's namespaces.
    _lock: std::fs::File,
}

impl Network {
    /// Builds the network, after removing what a crashed earlier run left of it.
    pub fn create(config: NetworkConfig) -> anyhow::Result<Network> {
        config.check()?;
        check_prerequisites()?;
        let lock_path = std::env::temp_dir().join(format!("cairn-jepsen-{}.lock", config.hub_namespace));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("open {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("lock {}", lock_path.display()))?;
        remove(&config);
        let mut network = Network { config, up: true, _lock: lock };
        // On failure, drop removes whatever was built.
        network.build()?;
        Ok(network)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let c = &self.config;
        let hub = c.hub_namespace.as_str();
        run("ip", &["netns", "add", hub])?;
        run("ip", &["-n", hub, "link", "add", &c.bridge, "type", "bridge"])?;
        run("ip", &["-n", hub, "link", "set", &c.bridge, "up"])?;
        // Nothing in the hub filters, but bridged frames would still be handed to its
        // (empty) iptables hooks; spare them that where the kernel allows it per namespace.
        run_ignoring_failure("ip", &["netns", "exec", hub, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        run("ip", &["link", "add", &c.control_link, "type", "veth", "peer", "name", "ctl", "netns", hub])?;
        run("ip", &["-n", hub, "link", "set", "ctl", "master", &c.bridge, "up"])?;
        run("ip", &["addr", "add", &format!("{}/24", c.control_ip()), "dev", &c.control_link])?;
        run("ip", &["link", "set", &c.control_link, "up"])?;
        for node in 1..=c.max_nodes {
            let namespace = c.namespace(node);
            let hub_end = format!("n{node}");
            run("ip", &["netns", "add", &namespace])?;
            run(
                "ip",
                &["-n", hub, "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0", "netns", &namespace],
            )?;
            run("ip", &["-n", hub, "link", "set", &hub_end, "master", &c.bridge, "up"])?;
            run("ip", &["-n", &namespace, "addr", "add", &format!("{}/24", c.node_ip(node)), "dev", "eth0"])?;
            run("ip", &["-n", &namespace, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn namespace(&self, node: u64) -> String {
        self.config.namespace(node)
    }

    pub fn node_ip(&self, node: u64) -> Ipv4Addr {
        self.config.node_ip(node)
    }

    pub fn control_ip(&self) -> Ipv4Addr {
        self.config.control_ip()
    }

    /// Every node slot, 1..=max_nodes.
    pub fn node_slots(&self) -> std::ops::RangeInclusive<u64> {
        1..=self.config.max_nodes
    }

    /// Runs `program args...` inside `node`'s namespace; its stdout.
    pub fn exec(&self, node: u64, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let namespace = self.namespace(node);
        let mut full = vec!["netns", "exec", namespace.as_str(), program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Removes everything (killing any process still inside a node namespace). Safe to call
    /// twice.
    pub fn teardown(&mut self) -> anyhow::Result<()> {
        if !self.up {
            return Ok(());
        }
        self.up = false;
        remove(&self.config);
        let left = leftovers(&self.config);
        anyhow::ensure!(left.is_empty(), "namespaces left after teardown: {left:?}");
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(error) = self.teardown() {
            tracing::warn!(error = %format!("{error:#}"), "network teardown incomplete");
        }
    }
}

fn check_prerequisites() -> anyhow::Result<()> {
    anyhow::ensure!(is_root(), "the simulated hosts need root (network namespaces, nftables, mounts)");
    run("ip", &["-V"]).map_err(|error| anyhow::anyhow!("iproute2's `ip` is missing: {error:#}"))?;
    run("nft", &["--version"]).map_err(|error| anyhow::anyhow!("nftables' `nft` is missing: {error:#}"))?;
    Ok(())
}

/// This config's namespaces that exist now: node namespaces (prefix and a number) and the hub.
fn leftovers(config: &NetworkConfig) -> Vec<String> {
    let listed = run("ip", &["netns", "list"]).unwrap_or_default();
    listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            *name == config.hub_namespace
                || name
                    .strip_prefix(config.namespace_prefix.as_str())
                    .is_some_and(|number| !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()))
        })
        .map(str::to_owned)
        .collect()
}

/// Removes the namespaces and the control link, whether or not they exist. The links are
/// deleted explicitly: deleting a namespace frees its interfaces asynchronously, and a
/// `create` right after would find the old control link still there.
fn remove(config: &NetworkConfig) {
    run_ignoring_failure("ip", &["link", "del", &config.control_link]);
    for namespace in leftovers(config) {
        // Only this suite's nodes run in these namespaces (those of a crashed run, here).
        let pids = run("ip", &["netns", "pids", &namespace]).unwrap_or_default();
        for pid in pids.split_whitespace() {
            run_ignoring_failure("kill", &["-KILL", pid]);
        }
        run_ignoring_failure("ip", &["-n", &namespace, "link", "del", "eth0"]);
        run_ignoring_failure("ip", &["netns", "del", &namespace]);
    }
}
