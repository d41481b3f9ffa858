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
}

impl NodeCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let NodeCommand::List { output } = self;
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
