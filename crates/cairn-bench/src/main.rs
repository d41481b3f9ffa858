//! `cairn-bench`: the load generator (produce, consume, end-to-end) against a running
//! cluster at `--server`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cairn_bench::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(cli.command.run(&cli.server.server, &mut std::io::stdout()))
}
