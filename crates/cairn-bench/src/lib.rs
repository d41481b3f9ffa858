//! `cairn-bench`: load generators (and the group rebalance timer) built on the public client, so their figures are what
//! users get. Each prints a progress line per second on stderr, then a report (a table,
//! or with `--output json` one JSON object).
//!
//! A crate and binary of its own (not a `cairn` subcommand), so that the server binary
//! does not carry the load generator's dependencies (hdrhistogram, cpu-time, humantime).

mod consume;
mod e2e;
mod group;
mod produce;
mod stats;
mod streams;

use cairn_cli::{OutputFormat, ServerArg};
use cairn_client::{CairnClient, Code, CreateTopicOptions};

pub use consume::ConsumeBench;
pub use e2e::E2eBench;
pub use group::GroupBench;
pub use produce::{ProduceBench, batch_of};
pub use stats::{ProgressLine, Report, Stats};
pub use streams::{StreamsBench, StreamsReport};

/// cairn-bench: load generators for a running Cairn cluster.
#[derive(Debug, clap::Parser)]
#[command(name = "cairn-bench", version)]
pub struct Cli {
    #[command(flatten)]
    pub server: ServerArg,
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// Measure the cluster: produce, consume, or both at once (end-to-end latency).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Append load: records/s, MB/s and append latency.
    Produce {
        #[command(flatten)]
        bench: ProduceBench,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Read a topic's backlog: records/s and MB/s.
    Consume {
        #[command(flatten)]
        bench: ConsumeBench,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Produce and subscribe at once: latency from append to delivery.
    E2e {
        #[command(flatten)]
        bench: E2eBench,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Consumer groups: how long a rebalance takes, a member joining and leaving.
    Group {
        #[command(flatten)]
        bench: GroupBench,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// The event store: appends with expected revisions (and plain ones to compare),
    /// stream reads under load, the nodes' memory.
    Streams {
        #[command(flatten)]
        bench: StreamsBench,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// The topic a load goes to, created when missing.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicArgs {
    /// Topic to load (created when missing).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Partitions, when the topic is created.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Replication factor, when the topic is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u32,
}

/// Creates the topic when missing; returns its partition count.
async fn ensure_topic(server: &str, args: &TopicArgs) -> anyhow::Result<u32> {
    let client = CairnClient::connect(server).await?;
    match client.describe_topic(&args.topic).await {
        Ok(topic) => Ok(topic.partitions.len() as u32),
        Err(err) if err.code() == Some(Code::NotFound) => {
            let mut options = CreateTopicOptions::new(&args.topic, args.partitions);
            options.replication_factor = args.replication_factor;
            Ok(client.create_topic(options).await?.partitions.len() as u32)
        }
        Err(err) => Err(err.into()),
    }
}

impl BenchCommand {
    pub async fn run(self, server: &str, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        let (report, output) = match self {
            BenchCommand::Streams { bench, output } => return bench.run(server).await?.print(output, out),
            BenchCommand::Produce { bench, output } => (bench.run(server).await?, output),
            BenchCommand::Consume { bench, output } => (bench.run(server).await?, output),
            BenchCommand::E2e { bench, output } => (bench.run(server).await?, output),
            BenchCommand::Group { bench, output } => (bench.run(server).await?, output),
        };
        report.print(output, out)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairn-bench").chain(args.iter().copied()))
    }

    #[test]
    fn command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_takes_the_documented_options() {
        let cli = parse(&[
            "produce",
            "--topic",
            "T",
            "--record-size",
            "1024",
            "--batch",
            "100",
            "--in-flight",
            "64",
            "--duration",
            "30s",
            "--rate",
            "5000",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--output",
            "json",
        ])
        .expect("parses");
        let BenchCommand::Produce { bench, output } = cli.command else { panic!("wrong command: {:?}", cli.command) };
        assert_eq!(output, OutputFormat::Json);
        assert_eq!((bench.topic.topic.as_str(), bench.topic.partitions, bench.producers), ("T", 4, 2));
        assert_eq!((bench.record_size, bench.batch, bench.in_flight, bench.rate), (1024, 100, 64, Some(5000)));
        assert_eq!(std::time::Duration::from(bench.duration), std::time::Duration::from_secs(30));
        let cli = parse(&["consume", "--topic", "T", "--consistency", "linearizable"]).expect("parses");
        assert!(matches!(cli.command, BenchCommand::Consume { .. }));
        assert!(parse(&["e2e", "--duration", "2m"]).is_ok());
        assert!(parse(&["group", "--members", "3", "--rounds", "5", "--assignor", "range"]).is_ok());
        let cli = parse(&["streams", "--streams", "1000", "--compare", "--server-pids", "1,2,3"]).expect("parses");
        let BenchCommand::Streams { bench, .. } = cli.command else { panic!("wrong command: {:?}", cli.command) };
        assert_eq!((bench.streams, bench.events_per_stream, bench.compare), (1000, 10, true));
        assert_eq!(bench.server_pids, [1, 2, 3]);
        assert!(parse(&["produce", "--duration", "soon"]).is_err());
    }
}
