use std::io::{self, Write};
use std::time::Duration;

use anyhow::bail;
use cairn_client::{CairnClient, proto};
use serde::Serialize;

use crate::OutputFormat;
use crate::table::Table;

/// How often `--wait` looks at the operations.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Replica moves and decommissions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum OperationCommand {
    /// List running operations with their phase and bytes copied.
    List {
        /// Also list finished (done or cancelled) operations.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

impl OperationCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let OperationCommand::List { all, output } = self;
        let operations = client.list_operations(all).await?;
        write_operations(&operations, output, out)?;
        Ok(())
    }
}

#[derive(Serialize)]
pub(crate) struct OperationJson<'a> {
    id: u64,
    kind: &'a str,
    phase: &'a str,
    topic: &'a str,
    partition: u32,
    from_node: u64,
    to_node: u64,
    node_id: u64,
    bytes_copied: u64,
    bytes_total: u64,
    created_ms: u64,
    detail: &'a str,
}

pub(crate) fn operation_json(op: &proto::OperationStatus) -> OperationJson<'_> {
    OperationJson {
        id: op.id,
        kind: &op.kind,
        phase: &op.phase,
        topic: &op.topic,
        partition: op.partition,
        from_node: op.from_node,
        to_node: op.to_node,
        node_id: op.node_id,
        bytes_copied: op.bytes_copied,
        bytes_total: op.bytes_total,
        created_ms: op.created_ms,
        detail: &op.detail,
    }
}

/// JSON: one array of `OperationStatus`, field for field.
pub fn write_operations(
    operations: &[proto::OperationStatus],
    output: OutputFormat,
    out: &mut impl Write,
) -> io::Result<()> {
    match output {
        OutputFormat::Json => {
            let json: Vec<OperationJson<'_>> = operations.iter().map(operation_json).collect();
            writeln!(out, "{}", serde_json::to_string(&json).map_err(io::Error::other)?)
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["ID", "KIND", "PHASE", "WHAT", "COPIED", "DETAIL"]);
            for op in operations {
                let what = if op.kind == "move" {
                    format!("{}/{} node {} -> {}", op.topic, op.partition, op.from_node, op.to_node)
                } else {
                    format!("node {}", op.node_id)
                };
                let copied = if op.kind == "move" {
                    format!("{} / {}", human_bytes(op.bytes_copied), human_bytes(op.bytes_total))
                } else {
                    "-".to_string()
                };
                let detail = if op.detail.is_empty() { "-".to_string() } else { op.detail.clone() };
                table.row(vec![op.id.to_string(), op.kind.clone(), op.phase.clone(), what, copied, detail]);
            }
            table.write(out)
        }
    }
}

/// `512 B`, `3.2 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Waits until every operation in `ids` has finished; fails if one was cancelled.
pub async fn wait_for_operations(client: &CairnClient, ids: &[u64], out: &mut impl Write) -> anyhow::Result<()> {
    let mut last_line = String::new();
    loop {
        let operations = client.list_operations(true).await?;
        let ours: Vec<&proto::OperationStatus> = operations.iter().filter(|op| ids.contains(&op.id)).collect();
        if let Some(cancelled) = ours.iter().find(|op| op.phase == "cancelled") {
            bail!("operation {} was cancelled: {}", cancelled.id, cancelled.detail);
        }
        let pending = ours.iter().filter(|op| op.phase != "done").count();
        // Forgotten operations (beyond the kept history) finished long ago.
        if pending == 0 {
            writeln!(out, "done")?;
            return Ok(());
        }
        let line = format!("{pending} of {} operation(s) still running", ids.len());
        if line != last_line {
            writeln!(out, "{line}")?;
            last_line = line;
        }
        tokio::time::sleep(WAIT_POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn table_shows_moves_and_decommissions() {
        let operations = vec![
            proto::OperationStatus {
                id: 7,
                kind: "move".into(),
                phase: "copying".into(),
                topic: "orders".into(),
                partition: 2,
                from_node: 1,
                to_node: 4,
                bytes_copied: 1024,
                bytes_total: 4096,
                ..Default::default()
            },
            proto::OperationStatus {
                id: 8,
                kind: "decommission".into(),
                phase: "copying".into(),
                node_id: 2,
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        write_operations(&operations, OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("orders/2 node 1 -> 4"), "{text}");
        assert!(text.contains("1.0 KiB / 4.0 KiB"), "{text}");
        assert!(text.contains("node 2"), "{text}");
    }
}
