//! `cairn`: the server (`cairn serve`) and the command-line client, in one binary.

use cairn_server::config::LogFormat;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Cairn: a replicated, partitioned, durable event log.
#[derive(Debug, Parser)]
#[command(name = "cairn", version)]
struct Cli {
    #[command(flatten)]
    server: cairn_cli::ServerArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Cairn node.
    Serve(Box<cairn_server::ServeArgs>),
    #[command(flatten)]
    Client(cairn_cli::ClientCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => {
            let config = cairn_server::ServerConfig::load(&args)?;
            let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
            let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
            match config.log_format {
                LogFormat::Text => logger.init(),
                LogFormat::Json => logger.json().init(),
            }
            runtime.block_on(cairn_server::run(config))
        }
        Command::Client(command) => runtime.block_on(cairn_cli::run(command, &cli.server.server)),
    }
}
