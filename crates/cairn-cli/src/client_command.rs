use cairn_client::CairnClient;

use crate::{
    ClusterCommand, ConsumeCommand, GroupCommand, LeaderCommand, NodeCommand, OperationCommand, PartitionCommand,
    ProduceCommand, RebalanceCommand, StreamCommand, TopicCommand,
};

/// The commands that talk to a Cairn cluster.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Append records to a topic: --value, or one record per stdin line.
    Produce(ProduceCommand),
    /// Read records from a topic, to the high watermark or (--follow) as they come;
    /// --group consumes as a member of a consumer group.
    Consume(ConsumeCommand),
    /// Consumer groups: list, describe (positions and lag), reset positions, delete.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Event streams: append with an expected revision, read, show a stream's revision.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The cluster's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Partition leadership.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Partition replicas: move one to another node.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Even out replicas and leaders per node (--dry-run prints the plan).
    Rebalance(RebalanceCommand),
    /// Replica moves and decommissions under way.
    #[command(subcommand)]
    Operation(OperationCommand),
}

/// Runs `command` against the node at `server` (`host:port` or `http://host:port`).
/// A gRPC error comes back as the error, its message the server's.
pub async fn run(command: ClientCommand, server: &str) -> anyhow::Result<()> {
    let client = CairnClient::connect(server).await?;
    let mut stdout = std::io::stdout();
    match command {
        ClientCommand::Topic(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Produce(command) => command.run(&client).await,
        ClientCommand::Consume(command) => command.run(&client).await,
        ClientCommand::Group(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Stream(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Cluster(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Node(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Leader(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Partition(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Rebalance(command) => command.run(&client, &mut stdout).await,
        ClientCommand::Operation(command) => command.run(&client, &mut stdout).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{OutputFormat, ServerArg, StartFrom};

    /// What the `cairn` binary does with these types.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArg,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
    }

    #[test]
    fn run_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let command = ClientCommand::Topic(TopicCommand::List { output: OutputFormat::Table });
        assert_send(&run(command, "127.0.0.1:1"));
    }

    #[test]
    fn command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn topic_create_takes_every_option() {
        let cli = parse(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--retention-ms",
            "1000",
            "--retention-bytes",
            "5",
            "--server",
            "h:1",
        ])
        .expect("parses");
        assert_eq!(cli.server.server, "h:1");
        let ClientCommand::Topic(TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            retention_ms,
            retention_bytes,
        }) = cli.command
        else {
            panic!("wrong command: {:?}", cli.command);
        };
        assert_eq!(
            (name.as_str(), partitions, replication_factor, retention_ms, retention_bytes),
            ("orders", 3, Some(2), Some(1000), Some(5))
        );
    }

    #[test]
    fn produce_collects_repeated_headers() {
        let cli = parse(&[
            "produce",
            "t",
            "--key",
            "k",
            "--partition",
            "1",
            "--header",
            "a=1",
            "--header",
            "b=x=y",
            "--value",
            "v",
            "--output",
            "json",
        ])
        .expect("parses");
        let ClientCommand::Produce(produce) = cli.command else { panic!("wrong command") };
        assert_eq!(produce.headers.len(), 2);
        assert_eq!(produce.headers[1].value, "x=y");
        assert_eq!(produce.output, OutputFormat::Json);
        assert_eq!(produce.partition, Some(1));
    }

    #[test]
    fn consume_defaults_and_options() {
        let cli = parse(&["consume", "t"]).expect("parses");
        let ClientCommand::Consume(consume) = cli.command else { panic!("wrong command") };
        assert_eq!(consume.from, StartFrom::Earliest);
        assert_eq!(consume.output, OutputFormat::Table);
        assert!(!consume.follow && consume.max.is_none() && consume.partition.is_none());

        let cli =
            parse(&["consume", "t", "--from", "@17", "--max", "5", "--follow", "--partition", "2"]).expect("parses");
        let ClientCommand::Consume(consume) = cli.command else { panic!("wrong command") };
        assert_eq!(consume.from, StartFrom::Timestamp(17));
        assert_eq!((consume.max, consume.follow, consume.partition), (Some(5), true, Some(2)));
    }

    #[test]
    fn bad_values_fail_with_a_clear_message() {
        let error = parse(&["produce", "t", "--header", "foo"]).expect_err("no '='");
        assert!(error.to_string().contains("NAME=VALUE"), "{error}");
        let error = parse(&["consume", "t", "--from", "abc"]).expect_err("bad --from");
        assert!(error.to_string().contains("expected 'earliest'"), "{error}");
        assert!(parse(&["topic", "create", "t"]).is_err(), "--partitions is required");
        assert!(parse(&["topic", "describe", "t", "--output", "yaml"]).is_err());
    }

    #[test]
    fn stream_commands_parse_under_the_cairn_binary() {
        let cli =
            parse(&["stream", "append", "bank", "account-1", "--type", "Deposited", "--expect", "3"]).expect("parses");
        let ClientCommand::Stream(StreamCommand::Append(append)) = cli.command else { panic!("wrong command") };
        assert_eq!(append.expect, cairn_client::ExpectedRevision::Exact(3));
        let cli = parse(&["stream", "info", "bank", "account-1", "--server", "h:1"]).expect("parses");
        assert_eq!(cli.server.server, "h:1");
        assert!(matches!(cli.command, ClientCommand::Stream(StreamCommand::Info { .. })));
        let error = parse(&["stream", "read", "bank", "account-1", "--as-of", "last week"]).expect_err("bad time");
        assert!(error.to_string().contains("RFC 3339"), "{error}");
    }

    #[test]
    fn node_remove_and_tokens_parse() {
        let cli = parse(&["node", "remove", "4", "--force"]).expect("parses");
        assert!(matches!(cli.command, ClientCommand::Node(NodeCommand::Remove { id: 4, force: true })));
        let cli = parse(&["consume", "t", "--token", "0:12,3:9"]).expect("parses");
        let ClientCommand::Consume(consume) = cli.command else { panic!("wrong command") };
        assert_eq!(consume.token.map(|t| t.applied_index(3)), Some(9));
        let error = parse(&["consume", "t", "--token", "12"]).expect_err("no partition");
        assert!(error.to_string().contains("PARTITION:INDEX"), "{error}");
    }

    #[test]
    fn describe_and_cluster_take_output() {
        let cli = parse(&["topic", "describe", "t", "--output", "json"]).expect("parses");
        assert!(matches!(cli.command, ClientCommand::Topic(TopicCommand::Describe { output: OutputFormat::Json, .. })));
        let cli = parse(&["cluster", "status", "--output", "json"]).expect("parses");
        assert!(matches!(cli.command, ClientCommand::Cluster(ClusterCommand::Status { output: OutputFormat::Json })));
    }
}
