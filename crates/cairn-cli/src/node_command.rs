use std::io::Write;

use cairn_client::CairnClient;

use crate::OutputFormat;
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
