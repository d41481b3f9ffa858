//! One run of a mix (a workload under a set of nemeses), Jepsen's phases in order: set the
//! cluster up, run the clients while the nemesis injects faults, heal everything, check
//! that the cluster takes writes again within a bound and that every replica converged,
//! read everything back, check the history, write the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::checker::{CheckResult, Validity};
use crate::history::{self, Kind, Recorder};
use crate::hosts::{Cluster, ClusterConfig};
use crate::leader_monitor::LeaderMonitor;
use crate::nemesis::{self, NemesisKind, Schedule};
use crate::report::{self, Summary};
use crate::workload::{self, Context, Members, WorkloadKind};
use crate::{convergence, recovery};

/// Everything that defines a run; the same options and seed replay the same schedule of
/// operations and faults.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
    pub time: Duration,
    pub seed: u64,
    pub nodes: usize,
    pub partitions: u32,
    /// Client processes running at once.
    pub workers: u32,
    /// Pause between one process's operations.
    pub pause: Duration,
    /// Quiet time between faults, and how long each fault stays.
    pub schedule: Schedule,
    pub binary: PathBuf,
    pub faultfs_binary: PathBuf,
    /// Runs are written to `<out>/<workload>-<nemeses>-<seed>/`.
    pub out: PathBuf,
    /// Acknowledged operations below which the run tells nothing (vacuous).
    pub ok_operations_min: u64,
}

impl RunOptions {
    pub fn name(&self) -> String {
        let nemeses: Vec<&str> = self.nemeses.iter().map(|kind| kind.name()).collect();
        // Short: the power fault's control socket lives below the run directory, and a Unix
        // socket's path has at most 107 bytes.
        let nemeses = match nemeses.len() {
            0 => "none".to_owned(),
            n if n == NemesisKind::ALL.len() => "all".to_owned(),
            _ => nemeses.join("+"),
        };
        format!("{}-{}-{}", self.workload.name(), nemeses, self.seed)
    }
}

/// A finished run: where its files are and what the checkers said.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub summary: Summary,
    pub results: Vec<CheckResult>,
}

impl RunOutcome {
    pub fn validity(&self) -> Validity {
        crate::checker::overall(&self.results)
    }
}

/// Nemeses whose faults must move some leader; a run of them with no leader change is
/// vacuous.
fn expects_leader_changes(kind: NemesisKind) -> bool {
    matches!(kind, NemesisKind::Kill | NemesisKind::Pause | NemesisKind::Partition | NemesisKind::Power)
}

pub async fn run(options: &RunOptions) -> anyhow::Result<RunOutcome> {
    let dir = options.out.join(options.name());
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("run {} (seed {}): {}", options.name(), options.seed, dir.display());
    let recorder = Recorder::new(Some(&dir.join("history.jsonl")))?;
    let mut config = ClusterConfig::new(&options.binary, dir.join("nodes"));
    config.faultfs_binary = Some(options.faultfs_binary.clone());
    config.nodes = options.nodes;
    config.spare_nodes = if options.nemeses.contains(&NemesisKind::Membership) { 2 } else { 0 };
    config.clock = options.nemeses.contains(&NemesisKind::Clock);
    config.disk_bytes = Some(DISK_BYTES);
    config.power = options.nemeses.contains(&NemesisKind::Power);
    let cluster = Cluster::start(config).await?;
    let members = Members::new(cluster.member_addresses());
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let outcome = run_on(options, &dir, &recorder, &cluster, &members).await;
    let mut cluster = cluster.lock().await;
    if let Err(error) = cluster.copy_logs(&dir.join("logs")) {
        eprintln!("copying the node logs failed: {error:#}");
    }
    if let Err(error) = cluster.teardown() {
        eprintln!("tearing the hosts down failed: {error:#}");
    }
    outcome
}

/// Each node's data file system (a tmpfs: the disk nemesis fills it).
const DISK_BYTES: u64 = 512 * 1024 * 1024;

async fn run_on(
    options: &RunOptions,
    dir: &std::path::Path,
    recorder: &Recorder,
    cluster: &Arc<tokio::sync::Mutex<Cluster>>,
    members: &Members,
) -> anyhow::Result<RunOutcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let context = Context {
        recorder: recorder.clone(),
        members: members.clone(),
        partitions: options.partitions,
        seed: options.seed,
        stop: Arc::clone(&stop),
        pause: options.pause,
    };
    workload::setup(&context).await?;
    let monitor = LeaderMonitor::start(members.clone());
    let refresher = tokio::spawn(refresh_members(Arc::clone(cluster), members.clone(), Arc::clone(&stop)));

    // The client phase, with the nemesis.
    let workers: Vec<_> = (0..options.workers)
        .map(|worker| tokio::spawn(workload::run_worker(options.workload, context.clone(), worker, options.workers)))
        .collect();
    let nemesis_stop = tokio_util::sync::CancellationToken::new();
    let nemesis = {
        let (cluster, kinds, recorder) = (Arc::clone(cluster), options.nemeses.clone(), recorder.clone());
        let (schedule, seed, stop) = (options.schedule, options.seed, nemesis_stop.clone());
        let topics = vec![(workload::TOPIC.to_owned(), options.partitions)];
        tokio::spawn(async move { nemesis::run(cluster, &kinds, schedule, seed, recorder, topics, stop).await })
    };
    tokio::time::sleep(options.time).await;

    // Heal, then stop the clients.
    nemesis_stop.cancel();
    let nemesis_report = nemesis.await?;
    nemesis::heal_all(cluster).await?;
    stop.store(true, Ordering::Release);
    for worker in workers {
        let abort = worker.abort_handle();
        if tokio::time::timeout(WORKER_STOP_TIME, worker).await.is_err() {
            abort.abort();
        }
    }
    let _ = refresher.await;
    members.set(cluster.lock().await.member_addresses());
    let leader_changes = monitor.stop().await;

    // The final phase.
    let mut results = vec![recovery::check(&context).await];
    let dump = convergence::wait_and_dump(members).await;
    results.push(crate::checker::replicas::check(&dump.replicas));
    results.push(dump.converged);
    // A cluster that cannot be read back whole has lost availability for good (or worse):
    // that is a finding too, reported with the rest rather than instead of it.
    let final_state = workload::final_reads(options.workload, &context).await;
    let entries = recorder.entries();
    let operations = history::operations(&entries);
    match final_state {
        Ok(final_state) => results.extend(workload::check(options.workload, &operations, &final_state)),
        Err(error) => {
            results.push(CheckResult::from_reasons("final-reads", vec![format!("{error:#}")], Validity::Invalid))
        }
    }

    // Did enough happen for the verdicts to mean something?
    let clients: Vec<&history::Operation> =
        operations.iter().filter(|op| op.process != history::NEMESIS && op.process != workload::FINAL).collect();
    let count = |kind: Kind| clients.iter().filter(|op| op.kind == kind).count() as u64;
    let faults: u64 = nemesis_report.faults.values().sum();
    let mut reasons = Vec::new();
    if count(Kind::Ok) < options.ok_operations_min {
        reasons.push(format!(
            "{} acknowledged operations (at least {} wanted)",
            count(Kind::Ok),
            options.ok_operations_min
        ));
    }
    if !options.nemeses.is_empty() && faults == 0 {
        reasons.push("no fault was injected".to_owned());
    }
    if options.nemeses.iter().any(|kind| expects_leader_changes(*kind)) && leader_changes == 0 {
        reasons.push("no leader changed".to_owned());
    }
    results.push(CheckResult::from_reasons(crate::checker::ENOUGH_HAPPENED, reasons, Validity::Vacuous));

    let summary = Summary {
        workload: options.workload.name().to_owned(),
        nemeses: options.nemeses.iter().map(|kind| kind.name().to_owned()).collect(),
        seed: options.seed,
        duration_s: options.time.as_secs_f64(),
        nodes: options.nodes,
        operations_ok: count(Kind::Ok),
        operations_fail: count(Kind::Fail),
        operations_info: count(Kind::Info),
        faults: nemesis_report.faults.clone(),
        leader_changes,
        verdict: crate::checker::overall(&results),
        notes: nemesis_report.failures.clone(),
    };
    report::write(dir, &options.name(), &summary, &entries, &results)?;
    Ok(RunOutcome { dir: dir.to_owned(), summary, results })
}

/// How long clients get to finish their operation once the run stops (an idempotent
/// producer may be inside a 30 s retry).
const WORKER_STOP_TIME: Duration = Duration::from_secs(40);

/// Keeps the clients' member list in step with joins and decommissions.
async fn refresh_members(cluster: Arc<tokio::sync::Mutex<Cluster>>, members: Members, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        if let Ok(cluster) = cluster.try_lock() {
            let addresses: BTreeMap<u64, String> = cluster.member_addresses();
            members.set(addresses);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
