use std::io::Write;

use cairn_client::CairnClient;

use crate::TopicPartition;
use crate::operation_command::wait_for_operations;

/// Partition replicas.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PartitionCommand {
    /// Move a partition's replica from one node to another while it keeps serving: the
    /// target catches up as a learner, then replaces the source among the voters, and only
    /// then does the source delete its copy. Returns once queued, unless --wait.
    Move {
        /// The partition, as TOPIC/PARTITION.
        #[arg(value_name = "TOPIC/PARTITION")]
        partition: TopicPartition,
        /// The node that holds the replica now.
        #[arg(long)]
        from: u64,
        /// The node to move it to.
        #[arg(long)]
        to: u64,
        /// Wait until the move is done.
        #[arg(long)]
        wait: bool,
    },
}

impl PartitionCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let PartitionCommand::Move { partition, from, to, wait } = self;
        let id = client.move_partition(&partition.topic, partition.partition, from, to).await?;
        writeln!(
            out,
            "operation {id}: moving {}/{} from node {from} to node {to} (cairn operation list)",
            partition.topic, partition.partition
        )?;
        if wait {
            wait_for_operations(client, &[id], out).await?;
        }
        Ok(())
    }
}
