use std::io::{self, Write};

use cairn_client::{CairnClient, proto};
use serde::Serialize;

use crate::OutputFormat;
use crate::operation_command::wait_for_operations;
use crate::table::Table;

/// Even out replicas per node (within one), then preferred leaders per node (within one),
/// moving as few replicas as it can.
#[derive(Debug, Clone, clap::Args)]
pub struct RebalanceCommand {
    /// Print the plan without applying it.
    #[arg(long)]
    dry_run: bool,
    /// Wait until the moves are done.
    #[arg(long, conflicts_with = "dry_run")]
    wait: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Serialize)]
struct PlanJson<'a> {
    moves: Vec<MoveJson<'a>>,
    leaders: Vec<MoveJson<'a>>,
    operation_ids: &'a [u64],
}

#[derive(Serialize)]
struct MoveJson<'a> {
    topic: &'a str,
    partition: u32,
    from_node: u64,
    to_node: u64,
}

impl RebalanceCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let plan = client.rebalance(self.dry_run).await?;
        write_plan(&plan, self.output, out)?;
        if self.wait && !plan.operation_ids.is_empty() {
            wait_for_operations(client, &plan.operation_ids, out).await?;
        }
        Ok(())
    }
}

fn write_plan(plan: &proto::RebalanceResponse, output: OutputFormat, out: &mut impl Write) -> io::Result<()> {
    match output {
        OutputFormat::Json => {
            let json = PlanJson {
                moves: plan
                    .moves
                    .iter()
                    .map(|m| MoveJson {
                        topic: &m.topic,
                        partition: m.partition,
                        from_node: m.from_node,
                        to_node: m.to_node,
                    })
                    .collect(),
                leaders: plan
                    .leaders
                    .iter()
                    .map(|l| MoveJson {
                        topic: &l.topic,
                        partition: l.partition,
                        from_node: l.from_node,
                        to_node: l.to_node,
                    })
                    .collect(),
                operation_ids: &plan.operation_ids,
            };
            writeln!(out, "{}", serde_json::to_string(&json).map_err(io::Error::other)?)
        }
        OutputFormat::Table => {
            if plan.moves.is_empty() && plan.leaders.is_empty() {
                return writeln!(out, "the cluster is balanced: nothing to do");
            }
            let mut table = Table::new(&["ACTION", "PARTITION", "FROM", "TO", "OPERATION"]);
            for (n, m) in plan.moves.iter().enumerate() {
                let mut action = "move replica".to_string();
                if let Some(leader) = m.leader {
                    action.push_str(&format!(" (then node {leader} leads)"));
                }
                let operation = plan.operation_ids.get(n).map_or_else(|| "-".to_string(), u64::to_string);
                table.row(vec![
                    action,
                    format!("{}/{}", m.topic, m.partition),
                    m.from_node.to_string(),
                    m.to_node.to_string(),
                    operation,
                ]);
            }
            for l in &plan.leaders {
                table.row(vec![
                    "move leader".to_string(),
                    format!("{}/{}", l.topic, l.partition),
                    l.from_node.to_string(),
                    l.to_node.to_string(),
                    "-".to_string(),
                ]);
            }
            table.write(out)?;
            if plan.operation_ids.is_empty() {
                writeln!(out, "\n(dry run: nothing was changed)")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_table_lists_moves_then_leaders() {
        let plan = proto::RebalanceResponse {
            moves: vec![proto::PlannedMove {
                topic: "orders".into(),
                partition: 1,
                from_node: 1,
                to_node: 4,
                leader: Some(4),
            }],
            leaders: vec![proto::PlannedLeader { topic: "orders".into(), partition: 2, from_node: 2, to_node: 5 }],
            operation_ids: vec![],
        };
        let mut out = Vec::new();
        write_plan(&plan, OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("move replica (then node 4 leads)"), "{text}");
        assert!(text.contains("move leader"), "{text}");
        assert!(text.contains("dry run"), "{text}");
    }
}
