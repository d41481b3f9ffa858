use std::io::{self, Write};

use cairn_client::{CairnClient, proto};
use serde::Serialize;

use crate::OutputFormat;
use crate::operation_command::{OperationJson, operation_json, write_operations};
use crate::table::{Table, id_list, optional_number};

/// Inspect the cluster.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the answering node's view: nodes, and every Raft group with its leader,
    /// term, voters and indexes.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

impl ClusterCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        match self {
            ClusterCommand::Status { output } => {
                let status = client.cluster_status().await?;
                write_cluster_status(&status, output, out)?;
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct ClusterStatusJson<'a> {
    node_id: u64,
    cluster: &'a str,
    nodes: Vec<NodeStatusJson<'a>>,
    groups: Vec<GroupStatusJson<'a>>,
    operations: Vec<OperationJson<'a>>,
}

#[derive(Serialize)]
struct NodeStatusJson<'a> {
    node_id: u64,
    address: &'a str,
}

#[derive(Serialize)]
struct GroupStatusJson<'a> {
    group_id: u64,
    topic: &'a str,
    partition: u32,
    leader: Option<u64>,
    term: u64,
    voters: &'a [u64],
    committed_index: Option<u64>,
    applied_index: Option<u64>,
    high_watermark: u64,
    state: &'a str,
    replica_lag: Vec<ReplicaLagJson>,
}

#[derive(Serialize)]
struct ReplicaLagJson {
    node_id: u64,
    matched_index: Option<u64>,
    lag_entries: u64,
}

/// JSON: the `ClusterStatusResponse`, field for field.
pub fn write_cluster_status(
    status: &proto::ClusterStatusResponse,
    output: OutputFormat,
    out: &mut impl Write,
) -> io::Result<()> {
    match output {
        OutputFormat::Json => {
            let json = ClusterStatusJson {
                node_id: status.node_id,
                cluster: &status.cluster,
                nodes: status
                    .nodes
                    .iter()
                    .map(|node| NodeStatusJson { node_id: node.node_id, address: &node.address })
                    .collect(),
                groups: status
                    .groups
                    .iter()
                    .map(|group| GroupStatusJson {
                        group_id: group.group_id,
                        topic: &group.topic,
                        partition: group.partition,
                        leader: group.leader,
                        term: group.term,
                        voters: &group.voters,
                        committed_index: group.committed_index,
                        applied_index: group.applied_index,
                        high_watermark: group.high_watermark,
                        state: &group.state,
                        replica_lag: group
                            .replica_lag
                            .iter()
                            .map(|lag| ReplicaLagJson {
                                node_id: lag.node_id,
                                matched_index: lag.matched_index,
                                lag_entries: lag.lag_entries,
                            })
                            .collect(),
                    })
                    .collect(),
                operations: status.operations.iter().map(operation_json).collect(),
            };
            writeln!(out, "{}", serde_json::to_string(&json).map_err(io::Error::other)?)
        }
        OutputFormat::Table => {
            writeln!(out, "answered by node {} of cluster [{}]\n", status.node_id, status.cluster)?;
            let mut nodes = Table::new(&["NODE", "ADDRESS"]);
            for node in &status.nodes {
                nodes.row(vec![node.node_id.to_string(), node.address.clone()]);
            }
            nodes.write(out)?;
            writeln!(out)?;
            let mut groups = Table::new(&[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "STATE",
                "LEADER",
                "TERM",
                "VOTERS",
                "COMMITTED",
                "APPLIED",
                "HIGH WATERMARK",
                "LAG (NODE:ENTRIES)",
            ]);
            for group in &status.groups {
                let (topic, partition) = if group.topic.is_empty() {
                    ("(controller)".to_string(), "-".to_string())
                } else {
                    (group.topic.clone(), group.partition.to_string())
                };
                groups.row(vec![
                    group.group_id.to_string(),
                    topic,
                    partition,
                    group.state.clone(),
                    optional_number(group.leader),
                    group.term.to_string(),
                    id_list(&group.voters),
                    optional_number(group.committed_index),
                    optional_number(group.applied_index),
                    group.high_watermark.to_string(),
                    lag_list(&group.replica_lag),
                ]);
            }
            groups.write(out)?;
            if !status.operations.is_empty() {
                writeln!(out, "\noperations under way:")?;
                write_operations(&status.operations, OutputFormat::Table, out)?;
            }
            Ok(())
        }
    }
}

/// `2:0,3:5` on a leader, `-` elsewhere.
fn lag_list(lags: &[proto::ReplicaLag]) -> String {
    if lags.is_empty() {
        return "-".to_string();
    }
    lags.iter().map(|lag| format!("{}:{}", lag.node_id, lag.lag_entries)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status() -> proto::ClusterStatusResponse {
        proto::ClusterStatusResponse {
            node_id: 1,
            cluster: "single-node".to_string(),
            nodes: vec![proto::NodeStatus { node_id: 1, address: "10.0.0.1:7070".to_string(), live: true }],
            groups: vec![
                proto::GroupStatus {
                    group_id: 0,
                    topic: String::new(),
                    partition: 0,
                    leader: Some(1),
                    term: 3,
                    voters: vec![1],
                    committed_index: Some(9),
                    applied_index: Some(9),
                    high_watermark: 0,
                    state: "Leader".to_string(),
                    replica_lag: vec![
                        proto::ReplicaLag { node_id: 1, matched_index: Some(9), lag_entries: 0 },
                        proto::ReplicaLag { node_id: 2, matched_index: None, lag_entries: 9 },
                    ],
                },
                proto::GroupStatus {
                    group_id: 5,
                    topic: "orders".to_string(),
                    partition: 2,
                    leader: None,
                    term: 1,
                    voters: vec![1, 2],
                    committed_index: None,
                    applied_index: None,
                    high_watermark: 12,
                    state: "Follower".to_string(),
                    replica_lag: vec![],
                },
            ],
            operations: vec![proto::OperationStatus {
                id: 3,
                kind: "move".to_string(),
                phase: "copying".to_string(),
                topic: "orders".to_string(),
                partition: 2,
                from_node: 1,
                to_node: 2,
                bytes_copied: 10,
                bytes_total: 20,
                created_ms: 5,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn json_has_every_field() {
        let mut out = Vec::new();
        write_cluster_status(&status(), OutputFormat::Json, &mut out).expect("write");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            value,
            json!({
                "node_id": 1,
                "cluster": "single-node",
                "nodes": [{"node_id": 1, "address": "10.0.0.1:7070"}],
                "groups": [
                    {"group_id": 0, "topic": "", "partition": 0, "leader": 1, "term": 3, "voters": [1],
                     "committed_index": 9, "applied_index": 9, "high_watermark": 0, "state": "Leader",
                     "replica_lag": [{"node_id": 1, "matched_index": 9, "lag_entries": 0},
                                     {"node_id": 2, "matched_index": null, "lag_entries": 9}]},
                    {"group_id": 5, "topic": "orders", "partition": 2, "leader": null, "term": 1, "voters": [1, 2],
                     "committed_index": null, "applied_index": null, "high_watermark": 12, "state": "Follower",
                     "replica_lag": []},
                ],
                "operations": [
                    {"id": 3, "kind": "move", "phase": "copying", "topic": "orders", "partition": 2, "from_node": 1,
                     "to_node": 2, "node_id": 0, "bytes_copied": 10, "bytes_total": 20, "created_ms": 5, "detail": ""},
                ],
            })
        );
    }

    #[test]
    fn table_names_the_controller() {
        let mut out = Vec::new();
        write_cluster_status(&status(), OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("(controller)"), "{text}");
        assert!(text.contains("orders"), "{text}");
        assert!(text.contains("1:0,2:9"), "the leader's replica lag: {text}");
        assert!(text.contains("orders/2 node 1 -> 2"), "the operations under way: {text}");
    }
}
