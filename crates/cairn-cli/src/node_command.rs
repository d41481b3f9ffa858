use std::io::Write;

use cairn_client::CairnClient;

use crate::OutputFormat;
use crate::operation_command::wait_for_operations;
use crate::table::Table;

/// The cluster's nodes.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum NodeCommand {
    /// List the nodes of the cluster with their addresses.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Take a node out of the cluster: it leaves the controller group and gets no new
    /// replicas. Refused while it still holds partition replicas, unless --force.
    Remove {
        /// The node's id.
        id: u64,
        /// Remove it although partitions still list it as a replica; they then run one
        /// replica short until it is moved.
        #[arg(long)]
        force: bool,
    },
    /// Move every replica off a node (to the least loaded nodes), then remove it from the
    /// cluster. Refused when the other nodes cannot hold its replicas. Returns once the
    /// moves are queued, unless --wait.
    Decommission {
        /// The node's id.
        id: u64,
        /// Wait until the node is empty and removed.
        #[arg(long)]
        wait: bool,
    },
}

impl NodeCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let output = match self {
            NodeCommand::List { output } => output,
            NodeCommand::Remove { id, force } => {
                let replicas_left = client.remove_node(id, force).await?;
                if replicas_left == 0 {
                    writeln!(out, "removed node {id}")?;
                } else {
                    writeln!(out, "removed node {id}; it still held {replicas_left} partition replica(s)")?;
                }
                return Ok(());
            }
            NodeCommand::Decommission { id, wait } => {
                let ids = client.decommission_node(id).await?;
                let moves = ids.len().saturating_sub(1);
                let operation = ids.first().copied().unwrap_or_default();
                writeln!(out, "operation {operation}: decommissioning node {id}, {moves} replica move(s) queued")?;
                if wait {
                    wait_for_operations(client, &ids, out).await?;
                }
                return Ok(());
            }
        };
        let status = client.cluster_status().await?;
        match output {
            OutputFormat::Json => {
                let nodes: Vec<serde_json::Value> = status
                    .nodes
                    .iter()
                    .map(|n| serde_json::json!({"node_id": n.node_id, "address": n.address}))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Array(nodes))?;
            }
            OutputFormat::Table => {
                let mut table = Table::new(&["NODE", "ADDRESS"]);
                for node in &status.nodes {
                    table.row(vec![node.node_id.to_string(), node.address.clone()]);
                }
                table.write(out)?;
            }
        }
        Ok(())
    }
}
