use std::io::Write;
use std::str::FromStr;

use cairn_client::CairnClient;

/// Partition leadership.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LeaderCommand {
    /// Move a partition's leadership to another of its replicas; returns once it leads.
    Transfer {
        /// The partition, as TOPIC/PARTITION.
        #[arg(value_name = "TOPIC/PARTITION")]
        partition: TopicPartition,
        /// The node to lead it (one of its replicas).
        #[arg(long)]
        to: u64,
    },
}

impl LeaderCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let LeaderCommand::Transfer { partition, to } = self;
        let leader = client.transfer_leader(&partition.topic, partition.partition, to).await?;
        writeln!(out, "node {leader} now leads {}/{}", partition.topic, partition.partition)?;
        Ok(())
    }
}

/// `TOPIC/PARTITION`, as operator commands name a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl FromStr for TopicPartition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected TOPIC/PARTITION, e.g. orders/3";
        let (topic, partition) = text.rsplit_once('/').ok_or_else(|| format!("'{text}': {expected}"))?;
        if topic.is_empty() {
            return Err(format!("'{text}' names no topic; {expected}"));
        }
        let partition =
            partition.parse().map_err(|_| format!("'{partition}' is not a partition number; {expected}"))?;
        Ok(TopicPartition { topic: topic.to_owned(), partition })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topic_slash_partition() {
        assert_eq!("orders/3".parse(), Ok(TopicPartition { topic: "orders".into(), partition: 3 }));
        assert!("orders".parse::<TopicPartition>().is_err());
        assert!("/3".parse::<TopicPartition>().is_err());
        assert!("orders/x".parse::<TopicPartition>().is_err());
    }
}
