use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Context as _;
use bytes::Bytes;
use cairn_client::{CairnClient, IdempotentProducer};
use cairn_types::{PartitionId, Record};
use serde::Serialize;

use crate::header_arg::HeaderArg;
use crate::progress::Progress;
use crate::read_token::ReadToken;
use crate::record_batcher::RecordBatcher;
use crate::stdin_lines::stdin_lines;
use crate::{OutputFormat, is_broken_pipe};

/// Append records to a topic: the --value, or else one record per stdin line.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceCommand {
    /// Topic name.
    pub topic: String,
    /// Key of every record (records go to hash(key) % partitions unless --partition).
    #[arg(long)]
    pub key: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    pub partition: Option<PartitionId>,
    /// A header on every record, as NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<HeaderArg>,
    /// Produce this one record instead of reading stdin. Stdin lines are sent in
    /// batches of up to 1000 records or 1 MiB, in order, without their trailing newline.
    #[arg(long)]
    pub value: Option<String>,
    /// Output format: json prints {"partition":P,"offset":O} per record; table a summary.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
    /// At the end, print a read-your-writes token on stderr (`token: P:INDEX,...`):
    /// `cairn consume --token TOKEN` through any node then sees these records.
    #[arg(long)]
    pub print_token: bool,
}

impl ProduceCommand {
    pub async fn run(self, client: &CairnClient) -> anyhow::Result<()> {
        let key = self.key.clone().map(Bytes::from);
        let headers: Vec<(String, Bytes)> = self.headers.iter().cloned().map(HeaderArg::into_header).collect();
        let make_record = |value: Bytes| Record { key: key.clone(), headers: headers.clone(), value };
        let mut producer = Producer::new(client, &self);
        let result = match &self.value {
            Some(value) => producer.send(vec![make_record(Bytes::from(value.clone()))]).await,
            None => produce_stdin_lines(&mut producer, make_record).await,
        };
        producer.progress.finish();
        match result {
            Err(error) if is_broken_pipe(&error) => Ok(()),
            Err(error) => {
                producer.print_summary_if_any();
                Err(error)
            }
            Ok(()) => producer.finish(),
        }
    }
}

/// Sends stdin's lines in order: whatever stdin has ready goes in one request (up to the
/// batch limits), so batches are full under load and nothing waits when lines trickle in.
async fn produce_stdin_lines(producer: &mut Producer<'_>, make_record: impl Fn(Bytes) -> Record) -> anyhow::Result<()> {
    let mut lines = stdin_lines();
    let mut batcher = RecordBatcher::default();
    while let Some(line) = lines.recv().await {
        let mut next = Some(line);
        while let Some(line) = next {
            if let Some(batch) = batcher.push(make_record(line.context("reading stdin")?)) {
                producer.send(batch).await?;
            }
            next = if batcher.is_full() { None } else { lines.try_recv().ok() };
        }
        producer.send(batcher.take()).await?;
    }
    Ok(())
}

#[derive(Serialize)]
struct PositionJson {
    partition: PartitionId,
    offset: u64,
}

/// Sends batches one at a time, in order, and reports where records went.
struct Producer<'a> {
    client: &'a CairnClient,
    topic: &'a str,
    partition: Option<PartitionId>,
    output: OutputFormat,
    out: std::io::BufWriter<std::io::Stdout>,
    records_produced: u64,
    partitions_written: BTreeSet<PartitionId>,
    progress: Progress,
    /// Made on the first send: every append is idempotent, so the retries inside
    /// `IdempotentProducer::append` (leader changes, timeouts) never duplicate a record.
    idempotent: Option<IdempotentProducer>,
    token: ReadToken,
    print_token: bool,
}

impl<'a> Producer<'a> {
    fn new(client: &'a CairnClient, command: &'a ProduceCommand) -> Self {
        Producer {
            client,
            topic: &command.topic,
            partition: command.partition,
            output: command.output,
            out: std::io::BufWriter::new(std::io::stdout()),
            records_produced: 0,
            partitions_written: BTreeSet::new(),
            progress: Progress::new(command.output == OutputFormat::Table),
            idempotent: None,
            token: ReadToken::default(),
            print_token: command.print_token,
        }
    }

    async fn send(&mut self, batch: Vec<Record>) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let producer = match &mut self.idempotent {
            Some(producer) => producer,
            None => self.idempotent.insert(IdempotentProducer::new(self.client, self.topic).await?),
        };
        // Partition on the client (the server's murmur2 for keys; unkeyed records of one
        // batch stick to one round-robin partition), then one idempotent append each.
        let sticky = producer.partition_for(self.partition, None);
        let mut by_partition: std::collections::BTreeMap<PartitionId, Vec<(usize, Record)>> = Default::default();
        let record_count = batch.len();
        for (i, record) in batch.into_iter().enumerate() {
            let partition = match (self.partition, &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => producer.partition_for(None, Some(key)),
                (None, None) => sticky,
            };
            by_partition.entry(partition).or_default().push((i, record));
        }
        let mut positions = vec![(0, 0); record_count];
        for (partition, records) in by_partition {
            let (indexes, records): (Vec<usize>, Vec<Record>) = records.into_iter().unzip();
            let produced = producer.append(partition, records).await?;
            self.token.advance(partition, produced.applied_index);
            for (n, i) in indexes.into_iter().enumerate() {
                positions[i] = (partition, produced.base_offset + n as u64);
            }
        }
        for &(partition, offset) in &positions {
            self.partitions_written.insert(partition);
            if self.output == OutputFormat::Json {
                writeln!(self.out, "{}", serde_json::to_string(&PositionJson { partition, offset })?)?;
            }
        }
        self.out.flush()?;
        self.records_produced += positions.len() as u64;
        self.progress.update(self.records_produced);
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.output == OutputFormat::Table {
            writeln!(self.out, "{}", self.summary())?;
        }
        self.out.flush()?;
        if self.print_token && !self.token.is_empty() {
            eprintln!("token: {}", self.token);
        }
        Ok(())
    }

    /// After a failure, tells a person how much did get through.
    fn print_summary_if_any(&mut self) {
        if self.output == OutputFormat::Table && self.records_produced > 0 {
            let _ = writeln!(self.out, "{} before the error", self.summary());
            let _ = self.out.flush();
        }
    }

    fn summary(&self) -> String {
        let partitions: Vec<String> = self.partitions_written.iter().map(u32::to_string).collect();
        let noun = if self.records_produced == 1 { "record" } else { "records" };
        match partitions.as_slice() {
            [] => format!("produced {} {noun} to topic '{}'", self.records_produced, self.topic),
            [partition] => {
                format!("produced {} {noun} to topic '{}', partition {partition}", self.records_produced, self.topic)
            }
            _ => format!(
                "produced {} {noun} to topic '{}', partitions {}",
                self.records_produced,
                self.topic,
                partitions.join(",")
            ),
        }
    }
}
