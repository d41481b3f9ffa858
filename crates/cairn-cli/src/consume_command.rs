use std::io::{BufWriter, Stdout};

use anyhow::{Context as _, bail};
use cairn_client::{CairnClient, Code, Consistency, proto};
use cairn_types::{Offset, PartitionId};
use tokio_stream::{StreamExt as _, StreamMap};

use crate::read_token::ReadToken;
use crate::record_printer::RecordPrinter;
use crate::start_from::StartFrom;
use crate::{OutputFormat, is_broken_pipe};

/// Times a read from `earliest` re-learns the log start offset after retention moved it.
const EARLIEST_RETRIES_MAX: u32 = 3;

/// Read records from a topic: each partition up to its high watermark, or with --follow
/// as they are committed until --max records or Ctrl-C.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeCommand {
    /// Topic name.
    pub topic: String,
    /// Read only this partition (default: all of them).
    #[arg(long)]
    pub partition: Option<PartitionId>,
    /// Where to start: earliest, latest (the high watermark), an offset, or
    /// @UNIX_MS for the first record at or after that time.
    #[arg(long, default_value = "earliest", value_name = "earliest|latest|OFFSET|@UNIX_MS")]
    pub from: StartFrom,
    /// Stop after this many records in total.
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Keep waiting for new records instead of stopping at the high watermark.
    #[arg(long)]
    pub follow: bool,
    /// Output format: json prints one object per record per line.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// How fresh reads must be: local (what the replica asked has applied),
    /// read-your-writes (at least the appends of --token), linearizable (every append
    /// acknowledged before the read).
    #[arg(long, value_enum, default_value_t)]
    pub consistency: ConsistencyArg,
    /// A read-your-writes token from `cairn produce --print-token`; implies
    /// --consistency read-your-writes.
    #[arg(long, value_name = "P:INDEX,...")]
    pub token: Option<ReadToken>,
    /// Consume as a member of this consumer group: the group shares the topic's
    /// partitions among its members and keeps their positions (--from applies to
    /// partitions it has no position for). Positions are committed after each printed
    /// batch; without --follow it stops once nothing came for two seconds.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

pub(crate) type Printer = RecordPrinter<BufWriter<Stdout>>;

impl ConsumeCommand {
    pub async fn run(self, client: &CairnClient) -> anyhow::Result<()> {
        if self.consistency == ConsistencyArg::ReadYourWrites && self.token.is_none() {
            bail!("--consistency read-your-writes needs --token (printed by `cairn produce --print-token`)");
        }
        let mut printer = RecordPrinter::new(self.output, BufWriter::new(std::io::stdout()));
        let mut remaining = self.max;
        if let Some(group) = &self.group {
            if self.partition.is_some() || self.token.is_some() {
                bail!("--group consumes the partitions the group assigns: drop --partition and --token");
            }
            let result = crate::group_consume::consume(client, group, &self, &mut printer, &mut remaining).await;
            return match result.and_then(|()| Ok(printer.flush()?)) {
                Err(error) if is_broken_pipe(&error) => Ok(()),
                result => result,
            };
        }
        let topic = client.describe_topic(&self.topic).await?;
        let partitions = self.selected_partitions(&topic)?;
        let result = if self.follow {
            self.follow(client, &partitions, &mut printer, &mut remaining).await
        } else {
            self.read_to_high_watermarks(client, &partitions, &mut printer, &mut remaining).await
        };
        match result.and_then(|()| Ok(printer.flush()?)) {
            Err(error) if is_broken_pipe(&error) => Ok(()),
            result => result,
        }
    }

    /// The consistency of reads of `partition`: a token makes them read-your-writes.
    fn consistency_for(&self, partition: PartitionId) -> Consistency {
        match (self.consistency, &self.token) {
            (ConsistencyArg::Linearizable, _) => Consistency::Linearizable,
            (_, Some(token)) => Consistency::ReadYourWrites(token.applied_index(partition)),
            (_, None) => Consistency::Local,
        }
    }

    fn selected_partitions(&self, topic: &proto::TopicDescription) -> anyhow::Result<Vec<proto::PartitionDescription>> {
        let mut partitions = topic.partitions.clone();
        partitions.sort_by_key(|partition| partition.partition);
        match self.partition {
            None => Ok(partitions),
            Some(wanted) => match partitions.into_iter().find(|partition| partition.partition == wanted) {
                Some(partition) => Ok(vec![partition]),
                None => bail!("topic '{}' has no partition {wanted} (it has {})", topic.name, topic.partitions.len()),
            },
        }
    }

    async fn read_to_high_watermarks(
        &self,
        client: &CairnClient,
        partitions: &[proto::PartitionDescription],
        printer: &mut Printer,
        remaining: &mut Option<u64>,
    ) -> anyhow::Result<()> {
        for partition in partitions {
            if *remaining == Some(0) {
                break;
            }
            let start = match self.from {
                StartFrom::Earliest => Some(partition.log_start_offset),
                // The start is the high watermark, which is also where reading stops.
                StartFrom::Latest => None,
                StartFrom::Offset(offset) => Some(offset),
                StartFrom::Timestamp(timestamp_ms) => {
                    client.offset_for_timestamp(&self.topic, partition.partition, timestamp_ms).await?
                }
            };
            if let Some(start) = start {
                self.read_partition(client, partition.partition, start, printer, remaining).await?;
            }
        }
        Ok(())
    }

    /// Reads one partition from `position` up to the high watermark its first read saw.
    async fn read_partition(
        &self,
        client: &CairnClient,
        partition: PartitionId,
        mut position: Offset,
        printer: &mut Printer,
        remaining: &mut Option<u64>,
    ) -> anyhow::Result<()> {
        let mut end: Option<Offset> = None;
        let mut earliest_retries = 0;
        loop {
            let max_records = remaining.map_or(0, |remaining| u32::try_from(remaining).unwrap_or(u32::MAX));
            let result = match client
                .read_consistent(&self.topic, partition, position, max_records, 0, 0, self.consistency_for(partition))
                .await
            {
                Ok(result) => result,
                Err(error)
                    if self.from == StartFrom::Earliest
                        && end.is_none()
                        && error.code() == Some(Code::OutOfRange)
                        && earliest_retries < EARLIEST_RETRIES_MAX =>
                {
                    // Retention removed records since the topic was described.
                    earliest_retries += 1;
                    position = self.log_start_offset(client, partition).await?;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let end = *end.get_or_insert(result.high_watermark);
            let mut next = position.max(result.next_offset);
            for record in &result.records {
                if record.offset >= end || *remaining == Some(0) {
                    return Ok(());
                }
                printer.print(partition, record)?;
                *remaining = remaining.map(|remaining| remaining - 1);
                next = next.max(record.offset.saturating_add(1));
            }
            printer.flush()?;
            if next >= end || next == position || *remaining == Some(0) {
                return Ok(());
            }
            position = next;
        }
    }

    async fn log_start_offset(&self, client: &CairnClient, partition: PartitionId) -> anyhow::Result<Offset> {
        let topic = client.describe_topic(&self.topic).await?;
        topic
            .partitions
            .iter()
            .find(|description| description.partition == partition)
            .map(|description| description.log_start_offset)
            .with_context(|| format!("partition {partition} of topic '{}' disappeared", self.topic))
    }

    /// Subscribes to every partition and prints records as they come, merged.
    async fn follow(
        &self,
        client: &CairnClient,
        partitions: &[proto::PartitionDescription],
        printer: &mut Printer,
        remaining: &mut Option<u64>,
    ) -> anyhow::Result<()> {
        let start = self.from.to_start_position();
        let mut streams = StreamMap::new();
        for partition in partitions {
            let consistency = self.consistency_for(partition.partition);
            let stream = client.subscribe_consistent(&self.topic, partition.partition, start, consistency);
            streams.insert(partition.partition, Box::pin(stream));
        }
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        while *remaining != Some(0) {
            tokio::select! {
                signal = &mut ctrl_c => {
                    signal.context("listening for Ctrl-C")?;
                    return Ok(());
                }
                item = streams.next() => {
                    let Some((partition, records)) = item else { return Ok(()) };
                    for record in &records? {
                        if *remaining == Some(0) {
                            break;
                        }
                        printer.print(partition, record)?;
                        *remaining = remaining.map(|remaining| remaining - 1);
                    }
                    printer.flush()?;
                }
            }
        }
        Ok(())
    }
}

/// `--consistency` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsistencyArg {
    #[default]
    Local,
    ReadYourWrites,
    Linearizable,
}
