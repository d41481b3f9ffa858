//! `cairn-bench consume`: reads a topic's backlog (everything up to the high watermarks
//! seen at the start), one reader per partition, through the public client.

use std::sync::Arc;
use std::time::Duration;

use cairn_client::{CairnClient, Consistency};
use tokio::time::Instant;

use crate::stats::{ProgressLine, Report, Stats};
use cairn_cli::ConsistencyArg;

/// Read throughput: drain a topic's backlog.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeBench {
    /// Topic to read (it must exist; fill it with `cairn-bench produce`).
    #[arg(long)]
    pub topic: String,
    /// local reads what the replica asked has applied; linearizable asks the leader for a
    /// read index per read.
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
    /// Stop after this long even if the backlog is not read yet, e.g. 30s.
    #[arg(long, default_value = "10m")]
    pub duration: humantime::Duration,
    /// Most bytes per read request (the server caps it too).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_bytes_per_read: u32,
}

impl ConsumeBench {
    pub async fn run(&self, server: &str) -> anyhow::Result<Report> {
        let consistency = match self.consistency {
            ConsistencyArg::Local => Consistency::Local,
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::ReadYourWrites => anyhow::bail!("bench consume takes local or linearizable"),
        };
        let client = CairnClient::connect(server).await?;
        let topic = client.describe_topic(&self.topic).await?;
        let stats = Arc::new(Stats::new());
        let progress = ProgressLine::start(&stats, "consume");
        let deadline = Instant::now() + Duration::from(self.duration);
        let mut tasks = Vec::new();
        for partition in topic.partitions {
            let (client, stats, name) = (client.clone(), Arc::clone(&stats), self.topic.clone());
            let max_bytes = self.max_bytes_per_read;
            tasks.push(tokio::spawn(async move {
                let (mut position, end) = (partition.log_start_offset, partition.high_watermark);
                while position < end && Instant::now() < deadline {
                    let asked = Instant::now();
                    let read = client
                        .read_consistent(&name, partition.partition, position, u32::MAX, max_bytes, 0, consistency)
                        .await;
                    match read {
                        Ok(read) if !read.records.is_empty() => {
                            let bytes: usize = read.records.iter().map(|r| r.value.len()).sum();
                            stats.record(read.records.len() as u64, bytes as u64, asked.elapsed());
                            position = read.next_offset.max(position + 1);
                        }
                        // Retention moved the log start past this position.
                        Ok(read) => position = read.next_offset.max(read.log_start_offset).max(position + 1),
                        Err(_) => {
                            stats.error();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await?;
        }
        progress.finish().await;
        Ok(stats.report("consume"))
    }
}
