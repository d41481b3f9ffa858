//! `cairn-bench group`: how long a consumer group takes to rebalance. Starts `--members`
//! consumers on a topic, then, `--rounds` times, lets one more member join and leave
//! again, timing each change from the call until the group has settled: every partition
//! owned by its target and every member holding its share. Members keep polling (and so
//! release revoked partitions) throughout, as real consumers do.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_client::{CairnClient, GroupConsumer, GroupConsumerConfig};
use tokio::time::Instant;

use crate::stats::{Report, Stats};
use crate::{TopicArgs, ensure_topic};

#[derive(Debug, Clone, clap::Args)]
pub struct GroupBench {
    #[command(flatten)]
    pub topic: TopicArgs,
    /// The group's members before each join.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Joins (each followed by a leave) to time.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// "cooperative-sticky" or "range".
    #[arg(long, default_value = "cooperative-sticky")]
    pub assignor: String,
    /// The members' heartbeat interval: a member learns of a rebalance from its next one.
    #[arg(long, default_value = "100ms")]
    pub heartbeat_interval: humantime::Duration,
}

struct Member {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl GroupBench {
    pub async fn run(&self, server: &str) -> anyhow::Result<Report> {
        ensure_topic(server, &self.topic).await?;
        let client = CairnClient::connect(server).await?;
        let group = format!("bench-{}", uuid::Uuid::new_v4());
        let stats = Arc::new(Stats::new());
        let mut members = Vec::new();
        for i in 0..self.members {
            members.push(self.member(&client, &group, i).await?);
        }
        wait_settled(&client, &group, self.members).await?;
        for round in 0..self.rounds {
            let started = Instant::now();
            let extra = self.member(&client, &group, self.members + round).await?;
            wait_settled(&client, &group, self.members + 1).await?;
            stats.record(1, 0, started.elapsed());
            let started = Instant::now();
            extra.stop.store(true, Ordering::SeqCst);
            extra.task.await??;
            wait_settled(&client, &group, self.members).await?;
            stats.record(1, 0, started.elapsed());
            eprintln!("round {}/{}: join and leave settled", round + 1, self.rounds);
        }
        for member in members {
            member.stop.store(true, Ordering::SeqCst);
            member.task.await??;
        }
        client.delete_group(&group).await?;
        Ok(stats.report("group rebalance"))
    }

    async fn member(&self, client: &CairnClient, group: &str, i: usize) -> anyhow::Result<Member> {
        let mut config = GroupConsumerConfig::new(group, vec![self.topic.topic.clone()]);
        config.client_id = format!("bench-{i}");
        config.assignor = self.assignor.clone();
        config.heartbeat_interval = Duration::from(self.heartbeat_interval);
        let mut consumer = GroupConsumer::join(client.clone(), config).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            while !stopping.load(Ordering::SeqCst) {
                consumer.poll(Duration::from_millis(20)).await?;
                consumer.commit().await?;
            }
            Ok(consumer.leave().await?)
        });
        Ok(Member { stop, task })
    }
}

/// Waits until the group has `members` members, each owning a share and no partition
/// waiting to move.
async fn wait_settled(client: &CairnClient, group: &str, members: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let description = client.describe_group(group).await?;
        let owners: std::collections::BTreeSet<&str> =
            description.partitions.iter().map(|p| p.owner.as_str()).filter(|o| !o.is_empty()).collect();
        let settled = description.partitions.iter().all(|p| !p.owner.is_empty() && p.owner == p.target);
        let expected_owners = members.min(description.partitions.len());
        if description.members.len() == members && settled && owners.len() == expected_owners {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "group {group} did not settle within 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
