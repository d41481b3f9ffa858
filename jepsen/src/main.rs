//! `cairn-jepsen`: runs one mix (a workload under some nemeses) or a whole profile against
//! real `cairn` nodes in network namespaces, writes each run's history, node logs and
//! report, and exits non-zero when a checker finds a violation. Needs root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_jepsen::checker::Validity;
use cairn_jepsen::nemesis::{NemesisKind, Schedule};
use cairn_jepsen::profile::Profile;
use cairn_jepsen::runner::{self, RunOptions, RunOutcome};
use cairn_jepsen::workload::WorkloadKind;
use clap::Parser;

/// Fault-injection runs against real Cairn nodes (Jepsen's design, in Rust).
#[derive(Parser, Debug)]
struct Args {
    /// Run every mix of this profile instead of one mix.
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// The workload of a single run.
    #[arg(long, value_enum, default_value = "queue")]
    workload: WorkloadKind,
    /// Nemeses, comma-separated: kill, pause, partition, loss, clock, disk, power,
    /// membership, or all; "none" for a run without faults.
    #[arg(long, default_value = "kill")]
    nemesis: String,
    /// How long clients run (with faults) before the final phase.
    #[arg(long, value_parser = humantime::parse_duration)]
    time: Option<Duration>,
    /// Seed of the operation and fault schedule (default: fresh, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Initial cluster members.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Partitions of the workload's topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Client processes running at once.
    #[arg(long, default_value_t = 6)]
    workers: u32,
    /// Pause between one process's operations.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10ms")]
    pause: Duration,
    /// Quiet time between faults.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4s")]
    interval: Duration,
    /// How long each fault stays before it heals.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "6s")]
    fault_time: Duration,
    /// The `cairn` binary (default: next to this one).
    #[arg(long, env = "CAIRN_BINARY")]
    binary: Option<PathBuf>,
    /// The `cairn-faultfs` binary (default: next to this one).
    #[arg(long, env = "CAIRN_FAULTFS_BINARY")]
    faultfs_binary: Option<PathBuf>,
    /// Where runs are written (one directory per run).
    #[arg(long, default_value = "jepsen/store")]
    out: PathBuf,
}

/// The nemesis list of `--nemesis`; "none" for a run without faults.
fn parse_nemeses(list: &str) -> anyhow::Result<Vec<NemesisKind>> {
    if list == "none" { Ok(Vec::new()) } else { NemesisKind::parse_list(list) }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locate this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    Ok(dir.join(name))
}

fn main() -> ExitCode {
    match run_args(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_args(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("seed: {seed} (replay with --seed {seed})");
    let binary = match args.binary.clone() {
        Some(binary) => binary,
        None => sibling("cairn")?,
    };
    let faultfs_binary = match args.faultfs_binary.clone() {
        Some(binary) => binary,
        None => sibling("cairn-faultfs")?,
    };
    let base = RunOptions {
        workload: args.workload,
        nemeses: parse_nemeses(&args.nemesis)?,
        time: args.time.unwrap_or(Duration::from_secs(60)),
        seed,
        nodes: args.nodes,
        partitions: args.partitions,
        workers: args.workers,
        pause: args.pause,
        schedule: Schedule { interval: args.interval, fault_time: args.fault_time },
        binary,
        faultfs_binary,
        out: args.out.clone(),
        ok_operations_min: 100,
    };
    let runs: Vec<RunOptions> = match args.profile {
        None => vec![base],
        Some(profile) => profile
            .mixes()
            .into_iter()
            .enumerate()
            .map(|(at, mix)| RunOptions {
                workload: mix.workload,
                nemeses: mix.nemeses,
                time: args.time.unwrap_or(profile.time()),
                seed: seed.wrapping_add(at as u64),
                ..base.clone()
            })
            .collect(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // On Ctrl-C or SIGTERM the runs are dropped, and with them the clusters, whose
    // teardown stops the nodes and removes namespaces, rules and mounts.
    let outcomes = runtime.block_on(async {
        tokio::select! {
            outcomes = run_all(&runs) => outcomes,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}: hosts torn down")),
        }
    });
    drop(runtime);
    let outcomes = outcomes?;
    println!("{}", results_table(&outcomes));
    let invalid: Vec<&RunOutcome> = outcomes.iter().filter(|o| o.validity() != Validity::Valid).collect();
    for outcome in &invalid {
        eprintln!(
            "{:?}: {} (seed {}); history: {}",
            outcome.validity(),
            outcome.dir.display(),
            outcome.summary.seed,
            outcome.dir.join("history.jsonl").display()
        );
    }
    anyhow::ensure!(invalid.is_empty(), "{} of {} runs did not pass", invalid.len(), outcomes.len());
    Ok(())
}

/// Waits for SIGINT or SIGTERM; names it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        },
        // Without handlers the default actions stand; never resolve.
        _ => std::future::pending().await,
    }
}

async fn run_all(runs: &[RunOptions]) -> anyhow::Result<Vec<RunOutcome>> {
    let mut outcomes = Vec::new();
    for options in runs {
        let outcome = runner::run(options).await.with_context(|| format!("run {}", options.name()))?;
        eprintln!("{}: {:?}", options.name(), outcome.validity());
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The Markdown table of `jepsen/README.md`'s results.
fn results_table(outcomes: &[RunOutcome]) -> String {
    let mut table = String::from(
        "| workload | nemeses | seed | s | ok | fail | info | faults | leader changes | verdict |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for outcome in outcomes {
        let summary = &outcome.summary;
        let faults: Vec<String> = summary.faults.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        table.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:?} |\n",
            summary.workload,
            summary.nemeses.join(", "),
            summary.seed,
            summary.duration_s,
            summary.operations_ok,
            summary.operations_fail,
            summary.operations_info,
            faults.join(", "),
            summary.leader_changes,
            outcome.validity(),
        ));
    }
    table
}
