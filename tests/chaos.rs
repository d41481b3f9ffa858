//! Chaos: writers append unique values through every node with idempotent producers (one of
//! them pipelining, several appends per partition in flight) while a
//! nemesis SIGKILLs the leader of a partition (sometimes the controller's) and restarts it,
//! ten times (`CAIRN_CHAOS_KILLS`). Then every replica is read with local consistency and checked against the
//! history: each acknowledged append exactly once at its acknowledged offset, no value
//! twice, offsets dense, all replicas identical. Prints the failover times: until a live
//! node sees a new leader, and until appends to the partition are acknowledged again (p50,
//! p99, max): with `CAIRN_CHAOS_KILLS=20` this is the failover benchmark.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_client::{CairnClient, CreateTopicOptions};
use harness::workload::{self, History, connect};
use harness::{Cluster, FAST_RAFT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARTITIONS: u32 = 6;
const WRITERS: usize = 3;
/// Leader kills per run; `CAIRN_CHAOS_KILLS` overrides it (the failover benchmark uses 20).
const KILLS_DEFAULT: usize = 10;

/// Time from `killed` until the first append to `partition` acknowledged after it.
fn appends_resumed_ms(history: &History, partition: u32, killed: Instant) -> Option<u64> {
    history
        .acknowledged_at
        .iter()
        .filter(|(p, at)| *p == partition && *at > killed)
        .map(|(_, at)| at.duration_since(killed).as_millis() as u64)
        .min()
}

/// p50, p99 and max (nearest rank).
fn percentiles(mut values: Vec<u64>) -> (u64, u64, u64) {
    values.sort_unstable();
    let rank = |q: f64| values.get(((values.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
    (rank(0.5), rank(0.99), values.last().copied().unwrap_or(0))
}

/// Everything a node serves: (partition, offset) → (timestamp, value).
async fn read_node(client: &CairnClient) -> BTreeMap<(u32, u64), (u64, String)> {
    let mut records = BTreeMap::new();
    for partition in 0..PARTITIONS {
        for (offset, record) in workload::read_values(client, "chaos", partition).await {
            records.insert((partition, offset), record);
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_leader_kills_lose_and_duplicate_nothing() {
    let seed = harness::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    // CAIRN_CHAOS_TIMEOUTS=default runs the nodes with the production Raft timeouts, to
    // measure failover as users get it (slower: elections take 1.5-3 s).
    let raft_args: &[&str] =
        if std::env::var("CAIRN_CHAOS_TIMEOUTS").as_deref() == Ok("default") { &[] } else { &FAST_RAFT };
    eprintln!("raft arguments: {raft_args:?}");
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, raft_args));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let admin = connect(&addresses[0]).await;
    let mut options = CreateTopicOptions::new("chaos", PARTITIONS);
    options.replication_factor = 3;
    admin.create_topic(options).await.expect("create topic");

    let writers = workload::Writers::start(&addresses[..WRITERS], "chaos", PARTITIONS, seed);

    let mut failover_ms = Vec::new();
    // Partition-leader kills: (partition, when).
    let mut partition_kills = Vec::new();
    let mut attempts = 0usize;
    let kills: usize = std::env::var("CAIRN_CHAOS_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(KILLS_DEFAULT);
    while failover_ms.len() < kills {
        attempts += 1;
        assert!(attempts < kills * 5, "could not find leaders to kill (seed {seed})");
        let kill = attempts;
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
        // Ask a live node who leads what.
        let observer = connect(&addresses[(kill + 1) % 3]).await;
        let status = observer.cluster_status().await.expect("cluster status");
        let (group, partition, victim) = if rng.random_range(0..4) == 0 {
            (0, None, status.groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader))
        } else {
            let partition = rng.random_range(0..PARTITIONS);
            let group = status.groups.iter().find(|g| g.topic == "chaos" && g.partition == partition);
            (group.map_or(0, |g| g.group_id), Some(partition), group.and_then(|g| g.leader))
        };
        let Some(victim) = victim else { continue };
        let victim = victim as usize - 1;
        tokio::task::block_in_place(|| cluster.nodes[victim].kill());
        let killed = Instant::now();
        if let Some(partition) = partition {
            partition_kills.push((partition, killed));
        }
        // Failover: a live node sees a new leader for the group.
        let survivor = connect(&addresses[(victim + 1) % 3]).await;
        loop {
            let status = survivor.cluster_status().await;
            let leader = status.ok().and_then(|s| s.groups.iter().find(|g| g.group_id == group).and_then(|g| g.leader));
            if leader.is_some_and(|l| l as usize - 1 != victim) {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "no new leader for group {group} (seed {seed})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        failover_ms.push(killed.elapsed().as_millis() as u64);
        tokio::task::block_in_place(|| cluster.nodes[victim].restart());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let history = writers.stop().await;

    // Heal: wait until every replica serves the same log, then check it against the history.
    let clients = [connect(&addresses[0]).await, connect(&addresses[1]).await, connect(&addresses[2]).await];
    let deadline = Instant::now() + Duration::from_secs(60);
    let replicas = loop {
        let mut replicas = Vec::new();
        for client in &clients {
            replicas.push(read_node(client).await);
        }
        if replicas.windows(2).all(|w| w[0] == w[1]) {
            break replicas;
        }
        assert!(Instant::now() < deadline, "replicas still differ after 60 s (seed {seed})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log: BTreeMap<(u32, u64), String> = replicas[0].iter().map(|(k, (_, v))| (*k, v.clone())).collect();
    let verdict = workload::check(&log, &history, PARTITIONS);
    let resumed_ms: Vec<u64> = partition_kills
        .iter()
        .filter_map(|&(partition, killed)| appends_resumed_ms(&history, partition, killed))
        .collect();
    let (elected_p50, elected_p99, elected_max) = percentiles(failover_ms.clone());
    let (resumed_p50, resumed_p99, resumed_max) = percentiles(resumed_ms.clone());
    eprintln!(
        "seed {seed}: acknowledged {}, indeterminate {} ({} present), lost {}, duplicated {}, \
         diverged 0, records {}; new leader seen, ms over {} kills: p50 {elected_p50} p99 {elected_p99} max {elected_max}; \
         appends resumed, ms over {} partition-leader kills: p50 {resumed_p50} p99 {resumed_p99} max {resumed_max}",
        history.acknowledged.len(),
        history.indeterminate.len(),
        verdict.indeterminate_present,
        verdict.lost,
        verdict.duplicated,
        verdict.records,
        failover_ms.len(),
        resumed_ms.len(),
    );
    assert_eq!(verdict.gaps, 0, "offsets not dense (seed {seed})");
    assert_eq!(verdict.lost, 0, "acknowledged appends lost or moved (seed {seed})");
    assert_eq!(verdict.duplicated, 0, "values stored twice (seed {seed})");
    assert!(history.acknowledged.len() > 100, "the writers made progress");
    assert!(
        history.pipelined_failures.is_empty(),
        "pipelined sends failed (seed {seed}): {:?}",
        history.pipelined_failures
    );
    assert!(history.acknowledged.keys().any(|v| v.starts_with('p')), "the pipelining writer made progress");
    assert!(history.pipelined_appends > 0, "the pipelining writer never had two appends of a partition in flight");
    assert_eq!(failover_ms.len(), kills, "the nemesis killed {kills} leaders");
}
