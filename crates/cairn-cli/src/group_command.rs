//! `cairn group`: consumer groups as an operator sees them: list, describe (members,
//! owners, committed positions and lag per partition), reset positions, delete.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use cairn_client::{CairnClient, proto};
use serde::Serialize;

use crate::OutputFormat;
use crate::start_from::StartFrom;
use crate::table::Table;

/// Consumer groups: list, describe, reset positions, delete.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GroupCommand {
    /// List every consumer group.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// A group's members, and per partition its owner, committed position and lag.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Set a group's positions in a topic (the next offset each partition's consumer
    /// reads). Refused while the group has members: stop its consumers first.
    ResetOffsets {
        group: String,
        /// The topic whose positions to set.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: every partition of the topic).
        #[arg(long)]
        partition: Option<u32>,
        /// The new position: earliest, latest (the high watermark), an offset, or
        /// @UNIX_MS for the first record at or after that time.
        #[arg(long, value_name = "earliest|latest|OFFSET|@UNIX_MS")]
        to: StartFrom,
    },
    /// Delete a group and its positions. Refused while it has members.
    Delete { group: String },
}

impl GroupCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        match self {
            GroupCommand::List { output } => {
                let groups = client.list_groups().await?;
                match output {
                    OutputFormat::Json => {
                        let groups: Vec<GroupSummaryJson<'_>> = groups.iter().map(GroupSummaryJson::from).collect();
                        writeln!(out, "{}", serde_json::to_string(&groups)?)?;
                    }
                    OutputFormat::Table => {
                        let mut table = Table::new(&["GROUP", "MEMBERS", "GENERATION", "ASSIGNOR", "POSITIONS"]);
                        for group in &groups {
                            table.row(vec![
                                group.group.clone(),
                                group.members.to_string(),
                                group.generation.to_string(),
                                group.assignor.clone(),
                                group.positions.to_string(),
                            ]);
                        }
                        table.write(out)?;
                    }
                }
            }
            GroupCommand::Describe { group, output } => {
                let description = client.describe_group(&group).await?;
                let ends = high_watermarks(client, &description).await?;
                write_description(&group, &description, &ends, output, out)?;
            }
            GroupCommand::ResetOffsets { group, topic, partition, to } => {
                let description = client.describe_topic(&topic).await?;
                let mut positions = Vec::new();
                for p in &description.partitions {
                    if partition.is_some_and(|wanted| wanted != p.partition) {
                        continue;
                    }
                    let offset = match to {
                        StartFrom::Earliest => p.log_start_offset,
                        StartFrom::Latest => p.high_watermark,
                        StartFrom::Offset(offset) => offset,
                        StartFrom::Timestamp(ms) => {
                            client.offset_for_timestamp(&topic, p.partition, ms).await?.unwrap_or(p.high_watermark)
                        }
                    };
                    positions.push(proto::GroupPosition {
                        topic: topic.clone(),
                        partition: p.partition,
                        offset,
                        metadata: String::new(),
                        committed_at_ms: 0,
                    });
                }
                if positions.is_empty() {
                    bail!("topic '{topic}' has no partition {}", partition.unwrap_or_default());
                }
                let count = positions.len();
                client.reset_group_positions(&group, positions).await?;
                writeln!(out, "group '{group}': positions of {count} partition(s) of '{topic}' set")?;
            }
            GroupCommand::Delete { group } => {
                client.delete_group(&group).await?;
                writeln!(out, "deleted group '{group}'")?;
            }
        }
        Ok(())
    }
}

/// Each partition's high watermark, per topic the group has partitions of.
async fn high_watermarks(
    client: &CairnClient,
    description: &proto::GroupDescription,
) -> anyhow::Result<BTreeMap<(String, u32), u64>> {
    let mut ends = BTreeMap::new();
    let mut topics: Vec<&str> = description.partitions.iter().map(|p| p.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        // A topic deleted since: its partitions show no end.
        let Ok(topic) = client.describe_topic(topic).await else { continue };
        for p in topic.partitions {
            ends.insert((topic.name.clone(), p.partition), p.high_watermark);
        }
    }
    Ok(ends)
}

#[derive(Serialize)]
struct GroupSummaryJson<'a> {
    group: &'a str,
    members: u32,
    generation: u64,
    assignor: &'a str,
    positions: u32,
}

impl<'a> From<&'a proto::GroupSummary> for GroupSummaryJson<'a> {
    fn from(group: &'a proto::GroupSummary) -> Self {
        GroupSummaryJson {
            group: &group.group,
            members: group.members,
            generation: group.generation,
            assignor: &group.assignor,
            positions: group.positions,
        }
    }
}

#[derive(Serialize)]
struct PartitionJson<'a> {
    topic: &'a str,
    partition: u32,
    owner: Option<&'a str>,
    target: Option<&'a str>,
    position: Option<u64>,
    high_watermark: Option<u64>,
    lag: Option<u64>,
}

#[derive(Serialize)]
struct DescriptionJson<'a> {
    group: &'a str,
    generation: u64,
    assignor: &'a str,
    coordinator_partition: u32,
    coordinator_node: u64,
    members: Vec<MemberJson<'a>>,
    partitions: Vec<PartitionJson<'a>>,
}

#[derive(Serialize)]
struct MemberJson<'a> {
    member_id: &'a str,
    client_id: &'a str,
    topics: &'a [String],
}

fn write_description(
    group: &str,
    description: &proto::GroupDescription,
    ends: &BTreeMap<(String, u32), u64>,
    output: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let nonempty = |s: &str| (!s.is_empty()).then_some(s.to_string());
    let rows: Vec<PartitionJson<'_>> = description
        .partitions
        .iter()
        .map(|p| {
            let position = p.position.as_ref().filter(|_| p.has_position).map(|position| position.offset);
            let end = ends.get(&(p.topic.clone(), p.partition)).copied();
            PartitionJson {
                topic: &p.topic,
                partition: p.partition,
                owner: (!p.owner.is_empty()).then_some(p.owner.as_str()),
                target: (!p.target.is_empty()).then_some(p.target.as_str()),
                position,
                high_watermark: end,
                lag: end.map(|end| end.saturating_sub(position.unwrap_or(0))),
            }
        })
        .collect();
    match output {
        OutputFormat::Json => {
            let json = DescriptionJson {
                group,
                generation: description.generation,
                assignor: &description.assignor,
                coordinator_partition: description.coordinator_partition,
                coordinator_node: description.coordinator_node,
                members: description
                    .members
                    .iter()
                    .map(|m| MemberJson { member_id: &m.member_id, client_id: &m.client_id, topics: &m.topics })
                    .collect(),
                partitions: rows,
            };
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "group '{group}': generation {}, assignor {}, {} member(s), coordinated by node {} (__groups/{})",
                description.generation,
                description.assignor,
                description.members.len(),
                description.coordinator_node,
                description.coordinator_partition
            )?;
            let mut members = Table::new(&["MEMBER", "CLIENT", "TOPICS"]);
            for m in &description.members {
                members.row(vec![m.member_id.clone(), m.client_id.clone(), m.topics.join(",")]);
            }
            members.write(out)?;
            writeln!(out)?;
            let mut table = Table::new(&["TOPIC", "PARTITION", "OWNER", "POSITION", "END", "LAG"]);
            let dash = || "-".to_string();
            for row in rows {
                let owner = match (row.owner, row.target) {
                    (Some(owner), Some(target)) if owner != target => format!("{owner} -> {target}"),
                    (Some(owner), _) => owner.to_string(),
                    (None, _) => dash(),
                };
                table.row(vec![
                    row.topic.to_string(),
                    row.partition.to_string(),
                    nonempty(&owner).unwrap_or_else(dash),
                    row.position.map_or_else(dash, |p| p.to_string()),
                    row.high_watermark.map_or_else(dash, |e| e.to_string()),
                    row.lag.map_or_else(dash, |l| l.to_string()),
                ]);
            }
            table.write(out)?;
        }
    }
    Ok(())
}
