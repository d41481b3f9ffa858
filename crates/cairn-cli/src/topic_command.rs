use std::io::{self, Write};

use cairn_client::{CairnClient, CreateTopicOptions, proto};
use serde::Serialize;

use crate::OutputFormat;
use crate::table::{Table, id_list, optional_number};

/// Create, list, describe and delete topics.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long)]
        partitions: u32,
        /// Replicas per partition (the server's default when omitted).
        #[arg(long)]
        replication_factor: Option<u32>,
        /// Keep records for this many milliseconds (the server's default when omitted).
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Keep at most this many bytes per partition (the server's default when omitted).
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    /// List all topics.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a topic's configuration and, per partition, replicas, leader and offsets.
    Describe {
        /// Topic name.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Grow a topic's partition count. Existing partitions keep their records and
    /// offsets; keyed records of existing keys may go to other partitions from then on.
    Alter {
        /// Topic name.
        name: String,
        /// The new number of partitions (more than now).
        #[arg(long)]
        partitions: u32,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

impl TopicCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        match self {
            TopicCommand::Create { name, partitions, replication_factor, retention_ms, retention_bytes } => {
                let options = CreateTopicOptions {
                    name,
                    partitions,
                    replication_factor: replication_factor.unwrap_or(0),
                    retention_ms,
                    retention_bytes,
                };
                let topic = client.create_topic(options).await?;
                writeln!(
                    out,
                    "created topic '{}' with {} partitions, replication factor {}",
                    topic.name,
                    topic.partitions.len(),
                    topic.replication_factor
                )?;
            }
            TopicCommand::List { output } => {
                let topics = client.list_topics().await?;
                write_topic_list(&topics, output, out)?;
            }
            TopicCommand::Describe { name, output } => {
                let topic = client.describe_topic(&name).await?;
                write_topic_description(&topic, output, out)?;
            }
            TopicCommand::Alter { name, partitions } => {
                let before = client.describe_topic(&name).await?.partitions.len();
                let topic = client.alter_topic_partitions(&name, partitions).await?;
                writeln!(out, "topic '{name}' now has {} partitions (was {before})", topic.partitions.len())?;
                eprintln!(
                    "warning: records with a key now map to hash(key) % {}: keys written before may go to \
                     another partition from now on, so their order across the change is not kept",
                    topic.partitions.len()
                );
            }
            TopicCommand::Delete { name } => {
                client.delete_topic(&name).await?;
                writeln!(out, "deleted topic '{name}'")?;
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct TopicSummaryJson<'a> {
    name: &'a str,
    partitions: u32,
    replication_factor: u32,
}

/// JSON: one array of `{"name","partitions","replication_factor"}`.
pub fn write_topic_list(topics: &[proto::TopicSummary], output: OutputFormat, out: &mut impl Write) -> io::Result<()> {
    match output {
        OutputFormat::Json => {
            let json: Vec<TopicSummaryJson<'_>> = topics
                .iter()
                .map(|topic| TopicSummaryJson {
                    name: &topic.name,
                    partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string(&json).map_err(io::Error::other)?)
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["NAME", "PARTITIONS", "REPLICATION FACTOR"]);
            for topic in topics {
                table.row(vec![topic.name.clone(), topic.partitions.to_string(), topic.replication_factor.to_string()]);
            }
            table.write(out)
        }
    }
}

#[derive(Serialize)]
struct TopicDescriptionJson<'a> {
    name: &'a str,
    partitions: Vec<PartitionDescriptionJson<'a>>,
}

#[derive(Serialize)]
struct PartitionDescriptionJson<'a> {
    partition: u32,
    replicas: &'a [u64],
    leader: Option<u64>,
    high_watermark: u64,
    log_start_offset: u64,
}

/// JSON: one object
/// `{"name","partitions":[{"partition","replicas","leader","high_watermark","log_start_offset"}]}`.
pub fn write_topic_description(
    topic: &proto::TopicDescription,
    output: OutputFormat,
    out: &mut impl Write,
) -> io::Result<()> {
    match output {
        OutputFormat::Json => {
            let json = TopicDescriptionJson {
                name: &topic.name,
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionDescriptionJson {
                        partition: partition.partition,
                        replicas: &partition.replicas,
                        leader: partition.leader,
                        high_watermark: partition.high_watermark,
                        log_start_offset: partition.log_start_offset,
                    })
                    .collect(),
            };
            writeln!(out, "{}", serde_json::to_string(&json).map_err(io::Error::other)?)
        }
        OutputFormat::Table => {
            writeln!(
                out,
                "topic {}  replication factor {}  retention ms {}  retention bytes {}\n",
                topic.name,
                topic.replication_factor,
                optional_number(topic.retention_ms),
                optional_number(topic.retention_bytes)
            )?;
            let mut table =
                Table::new(&["PARTITION", "GROUP", "LEADER", "REPLICAS", "LOG START OFFSET", "HIGH WATERMARK"]);
            for partition in &topic.partitions {
                table.row(vec![
                    partition.partition.to_string(),
                    partition.group_id.to_string(),
                    optional_number(partition.leader),
                    id_list(&partition.replicas),
                    partition.log_start_offset.to_string(),
                    partition.high_watermark.to_string(),
                ]);
            }
            table.write(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn description() -> proto::TopicDescription {
        proto::TopicDescription {
            name: "orders".to_string(),
            replication_factor: 3,
            retention_ms: Some(60_000),
            retention_bytes: None,
            partitions: vec![
                proto::PartitionDescription {
                    partition: 0,
                    group_id: 7,
                    replicas: vec![1, 2, 3],
                    leader: Some(2),
                    high_watermark: 10,
                    log_start_offset: 4,
                },
                proto::PartitionDescription {
                    partition: 1,
                    group_id: 8,
                    replicas: vec![2, 3, 1],
                    leader: None,
                    high_watermark: 0,
                    log_start_offset: 0,
                },
            ],
        }
    }

    fn written(output: OutputFormat) -> String {
        let mut out = Vec::new();
        write_topic_description(&description(), output, &mut out).expect("write");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn describe_json_is_one_object_with_the_documented_keys() {
        let text = written(OutputFormat::Json);
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            value,
            json!({"name": "orders", "partitions": [
                {"partition": 0, "replicas": [1, 2, 3], "leader": 2, "high_watermark": 10, "log_start_offset": 4},
                {"partition": 1, "replicas": [2, 3, 1], "leader": null, "high_watermark": 0, "log_start_offset": 0},
            ]})
        );
    }

    #[test]
    fn describe_table_shows_every_partition() {
        let text = written(OutputFormat::Table);
        assert!(text.starts_with("topic orders  replication factor 3  retention ms 60000  retention bytes -"));
        assert!(text.contains("0          7      2       1,2,3"), "{text}");
        assert!(text.contains("1          8      -       2,3,1"), "{text}");
    }

    #[test]
    fn list_json_is_an_array() {
        let topics = vec![proto::TopicSummary { name: "a".to_string(), partitions: 2, replication_factor: 1 }];
        let mut out = Vec::new();
        write_topic_list(&topics, OutputFormat::Json, &mut out).expect("write");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(value, json!([{"name": "a", "partitions": 2, "replication_factor": 1}]));
    }
}
