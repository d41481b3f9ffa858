//! The nemesis against a real cluster in namespaces: a full disk and its healing, and a
//! run of every fault kind under a light write load, after which `heal_all` leaves a
//! cluster that serves every partition again. Needs root, iproute2, nftables, FUSE, the
//! cairn binary and cairn-faultfs (panics without them); `--test-threads=1`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_jepsen::history::{self, Call, FaultAction, Kind, NEMESIS, Recorder};
use cairn_jepsen::hosts::{Cluster, ClusterConfig, fill};
use cairn_jepsen::nemesis::{self, NemesisKind, Schedule};
use rand::{Rng, SeedableRng};
use support::*;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "nemesis";
const PARTITIONS: u32 = 4;

fn config(dir: &std::path::Path, spare_nodes: usize) -> ClusterConfig {
    let mut config = ClusterConfig::new(cairn_binary(), dir);
    config.spare_nodes = spare_nodes;
    config.clock = true;
    config.power = true;
    config.faultfs_binary = Some(faultfs_binary());
    config.disk_bytes = Some(128 << 20);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_healed_and_its_node_serves_again() {
    require_root_tools();
    let dir = run_dir();
    let mut cluster = Cluster::start(config(dir.path(), 0)).await.expect("start cluster");
    let client = connect(&cluster.address(1)).await;
    create_topic(&client, TOPIC, 1).await;
    append_until_ok(&client, TOPIC, 0, "first").await;

    let full = 3;
    let filler = cluster.disk(full).and_then(|disk| disk.filler()).expect("a limited disk");
    let written = fill(&filler).expect("fill");
    eprintln!("filled node {full}'s disk with {} MiB", written >> 20);
    // Writes go on through node 1 for a while; node 3 must persist them too.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut appended = 1;
    while Instant::now() < deadline {
        let value = "x".repeat(4096);
        if client.append(TOPIC, Some(0), vec![record(&value)]).await.is_ok() {
            appended += 1;
        }
    }
    let running = cluster.node_mut(full).expect("node").is_running();
    let exit = cluster.node(full).and_then(|node| node.last_exit());
    eprintln!("after {appended} appends, node {full} running: {running} (exit: {exit:?})");
    eprintln!("its log ends:\n{}", cluster.node(full).expect("node").log_tail());

    let cluster = Arc::new(Mutex::new(cluster));
    let healed = nemesis::heal_all(&cluster).await.expect("heal");
    eprintln!("healed: {healed}");
    assert!(!filler.exists(), "the filler is gone");
    // Exited, or wedged with its storage failed: either way restarted.
    assert!(healed.contains(&format!("restarted {full}")), "node {full} restarted: {healed}");
    let address = cluster.lock().await.address(full);
    let restarted = connect(&address).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = restarted.read(TOPIC, 0, 0, 0, 0, 0).await;
        if read.as_ref().is_ok_and(|read| read.high_watermark >= appended) {
            break;
        }
        assert!(Instant::now() < deadline, "node {full} never caught up: {read:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_runs_heals_and_leaves_a_working_cluster() {
    require_root_tools();
    let seed = std::env::var("CAIRN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42);
    eprintln!("seed {seed}");
    let dir = run_dir();
    let cluster = Cluster::start(config(dir.path(), 2)).await.expect("start cluster");
    let addresses: Vec<String> = (1..=5).map(|id| cluster.address(id)).collect();
    create_topic(&connect(&addresses[0]).await, TOPIC, PARTITIONS).await;
    let cluster = Arc::new(Mutex::new(cluster));

    // A light load: appends to random partitions through random nodes, errors ignored.
    let stop = CancellationToken::new();
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut acknowledged = 0_u64;
            while !stop.is_cancelled() {
                let address = &addresses[rng.random_range(0..addresses.len())];
                let partition = rng.random_range(0..PARTITIONS);
                let attempt = async {
                    let client =
                        cairn_client::CairnClient::connect_with(address, cairn_client::RetryPolicy::none()).await?;
                    client.append(TOPIC, Some(partition), vec![record("load")]).await
                };
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                    acknowledged += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acknowledged
        }
    });

    let recorder = Recorder::new(Some(&dir.path().join("history.jsonl"))).expect("recorder");
    let schedule = Schedule { interval: Duration::from_millis(500), fault_time: Duration::from_secs(2) };
    let nemesis = tokio::spawn(nemesis::run(
        Arc::clone(&cluster),
        &NemesisKind::ALL,
        schedule,
        seed,
        recorder.clone(),
        vec![(TOPIC.to_string(), PARTITIONS)],
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(75)).await;
    stop.cancel();
    let report = nemesis.await.expect("nemesis task");
    let acknowledged = load.await.expect("load task");
    eprintln!("nemesis: {report:?}; {acknowledged} appends acknowledged");
    let healed = nemesis::heal_all(&cluster).await.expect("heal all");
    eprintln!("final heal: {healed}");

    // The history pairs each nemesis invocation with its completion.
    let entries = recorder.entries();
    let nemesis_entries: Vec<&history::Entry> = entries.iter().filter(|e| e.process == NEMESIS).collect();
    for pair in nemesis_entries.chunks(2) {
        assert_eq!(pair[0].kind, Kind::Invoke, "{pair:?}");
        assert!(pair.len() == 2 && pair[1].kind != Kind::Invoke, "an invocation without completion: {pair:?}");
        eprintln!("{:?} {:?}: {:?}", pair[0].call, pair[1].kind, pair[1].reply);
    }
    let heals = nemesis_entries
        .iter()
        .filter(|e| e.kind == Kind::Invoke)
        .filter(|e| {
            // A clock fault's midway jump ("clock-jump") heals with it, recorded apart.
            matches!(&e.call, Call::Fault { action: FaultAction::Heal, nemesis, .. } if !nemesis.ends_with("-jump"))
        })
        .count() as u64;
    assert_eq!(heals, report.faults.values().sum::<u64>(), "every fault healed");
    assert!(report.faults.len() >= 4, "several kinds ran: {:?}", report.faults);
    // Every fault heals. Starting one may fail for reasons of the moment (a membership
    // change asked of a controller leader that just stepped down): recorded as `Info`.
    let failed_heals: Vec<&String> = report.failures.iter().filter(|f| f.contains(" heal (")).collect();
    assert!(failed_heals.is_empty(), "heals failed: {failed_heals:#?}");
    let failed_starts: Vec<&String> = report.failures.iter().filter(|f| !f.starts_with("membership")).collect();
    assert!(failed_starts.is_empty(), "faults failed to start: {failed_starts:#?}");

    // Every partition takes appends again, through every member.
    let cluster = cluster.lock().await;
    for id in cluster.node_ids() {
        let client = connect(&cluster.address(id)).await;
        for partition in 0..PARTITIONS {
            append_until_ok(&client, TOPIC, partition, "after").await;
        }
    }
    cluster.copy_logs(&dir.path().join("logs")).expect("copy logs");
}
