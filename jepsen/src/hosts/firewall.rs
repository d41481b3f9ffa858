//! Network faults as nftables rules inside the nodes' namespaces: each fault owns one
//! table per namespace, so healing is deleting that table, and the host's own firewall is
//! never touched. Rules name node addresses only: the control host (the suite's clients)
//! stays reachable from every node whatever is cut.

use std::collections::{BTreeMap, BTreeSet};

use super::command::run_with_input;
use super::network::Network;

/// The table of partitions (traffic between some nodes dropped).
pub const PARTITION_TABLE: &str = "cj_partition";
/// The table of packet loss between nodes.
pub const LOSS_TABLE: &str = "cj_loss";

/// Runs before the kernel's own filter chains would (none exist in a fresh namespace).
const PRIORITY: &str = "-10";

impl Network {
    /// Cuts each node of `blocked` off from its peers there, both ways, replacing any
    /// earlier partition. A node not listed keeps its links, except to nodes that list it.
    pub fn partition(&self, blocked: &BTreeMap<u64, BTreeSet<u64>>) -> anyhow::Result<()> {
        for (node, peers) in blocked {
            if peers.is_empty() {
                self.delete_table(*node, PARTITION_TABLE)?;
                continue;
            }
            let addresses: Vec<String> = peers.iter().map(|peer| self.node_ip(*peer).to_string()).collect();
            let set = addresses.join(", ");
            let rules = format!(
                "chain input {{ type filter hook input priority {PRIORITY}; policy accept; ip saddr {{ {set} }} drop; }}\n\
                 chain output {{ type filter hook output priority {PRIORITY}; policy accept; ip daddr {{ {set} }} drop; }}"
            );
            self.replace_table(*node, PARTITION_TABLE, &rules)?;
        }
        Ok(())
    }

    /// Drops `percent`% of the packets between `node` and the other nodes, picked at random
    /// per packet: incoming ones, and with `outgoing` also those it sends.
    pub fn lose_packets(&self, node: u64, percent: u8, outgoing: bool) -> anyhow::Result<()> {
        anyhow::ensure!(percent <= 100, "packet loss of {percent}%");
        if percent == 0 {
            return self.delete_table(node, LOSS_TABLE);
        }
        let subnet = self.config().cidr();
        let control = self.control_ip();
        // nft's `numgen random mod 100` is 0..=99: `< 100` is refused, and means "always".
        let chance = if percent < 100 { format!("numgen random mod 100 < {percent} ") } else { String::new() };
        let mut rules = format!(
            "chain input {{ type filter hook input priority {PRIORITY}; policy accept; \
             ip saddr {subnet} ip saddr != {control} {chance}drop; }}"
        );
        if outgoing {
            rules.push_str(&format!(
                "\nchain output {{ type filter hook output priority {PRIORITY}; policy accept; \
                 ip daddr {subnet} ip daddr != {control} {chance}drop; }}"
            ));
        }
        self.replace_table(node, LOSS_TABLE, &rules)
    }

    /// Removes every partition rule, in every node namespace.
    pub fn heal_partitions(&self) -> anyhow::Result<()> {
        self.delete_everywhere(PARTITION_TABLE)
    }

    /// Removes every packet loss rule, in every node namespace.
    pub fn heal_packet_loss(&self) -> anyhow::Result<()> {
        self.delete_everywhere(LOSS_TABLE)
    }

    /// The rules now in `node`'s namespace (`nft list ruleset`), for details and tests.
    pub fn ruleset(&self, node: u64) -> anyhow::Result<String> {
        self.exec(node, "nft", &["list", "ruleset"])
    }

    fn delete_everywhere(&self, table: &str) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for node in self.node_slots() {
            if let Err(error) = self.delete_table(node, table) {
                errors.push(format!("node {node}: {error:#}"));
            }
        }
        anyhow::ensure!(errors.is_empty(), "deleting nft table {table}: {}", errors.join("; "));
        Ok(())
    }

    /// One atomic nft transaction: the old table goes and the new one comes at once, so the
    /// namespace is never briefly without rules between two faults.
    fn replace_table(&self, node: u64, table: &str, chains: &str) -> anyhow::Result<()> {
        let script =
            format!("add table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n{chains}\n}}\n");
        self.nft(node, &script)
    }

    /// Deletes `table` if present (adding it first makes the delete succeed either way).
    fn delete_table(&self, node: u64, table: &str) -> anyhow::Result<()> {
        self.nft(node, &format!("add table inet {table}\ndelete table inet {table}\n"))
    }

    fn nft(&self, node: u64, script: &str) -> anyhow::Result<()> {
        let namespace = self.namespace(node);
        run_with_input("ip", &["netns", "exec", &namespace, "nft", "-f", "-"], Some(script)).map(drop)
    }
}
