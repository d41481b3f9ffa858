//! Replica moves, rebalancing and decommissioning on real node processes: scale out from 3
//! to 5 nodes under a checked write load and decommission one; moves that survive SIGKILL
//! of the partition leader, the target and the controller leader; and bad requests.
//!
//! Over 600 lines on purpose: the scenarios share one write load and its checks; split by
//! scenario when it grows further.

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions, StartPosition, proto};
use cairn_types::Record;
use futures::StreamExt as _;
use harness::workload::{self, connect};
use harness::{Cluster, FAST_RAFT, Node};

const TOPIC: &str = "scale";
const PARTITIONS: u32 = 12;
const WRITERS: usize = 3;

/// Starts a node that joins the cluster through `via`.
fn join(dir: &std::path::Path, id: u64, via: &str, extra: &[&str]) -> Node {
    let mut args: Vec<String> = vec!["--node-id".into(), id.to_string(), "--join".into(), via.into()];
    args.extend(FAST_RAFT.iter().chain(extra).map(|a| a.to_string()));
    Node::start_with(&dir.join(format!("node{id}")), args)
}

/// Replicas per node of `topic` as `client`'s node describes it, and leaders per node as
/// each of `nodes` reports the groups it leads.
async fn placement(client: &CairnClient, nodes: &[&CairnClient]) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let described = client.describe_topic(TOPIC).await.expect("describe");
    let mut replicas = BTreeMap::new();
    for p in &described.partitions {
        for r in &p.replicas {
            *replicas.entry(*r).or_default() += 1;
        }
    }
    let mut leaders = BTreeMap::new();
    for node in nodes {
        if let Ok(status) = node.cluster_status().await {
            let led = status.groups.iter().filter(|g| g.topic == TOPIC && g.state == "leader").count();
            leaders.insert(status.node_id, led);
        }
    }
    (replicas, leaders)
}

fn within_one(counts: &BTreeMap<u64, usize>, nodes: &[u64]) -> bool {
    let values: Vec<usize> = nodes.iter().map(|n| counts.get(n).copied().unwrap_or(0)).collect();
    values.iter().max().zip(values.iter().min()).is_some_and(|(max, min)| max - min <= 1)
}

/// Waits until no operation runs and replicas and leaders per node are within one.
async fn wait_balanced(client: &CairnClient, clients: &[&CairnClient], nodes: &[u64], timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let operations =
            client.list_operations(false).await.unwrap_or_else(|_| vec![proto::OperationStatus::default()]);
        let (replicas, leaders) = placement(client, clients).await;
        let total_leaders: usize = leaders.values().sum();
        if operations.is_empty()
            && within_one(&replicas, nodes)
            && total_leaders == PARTITIONS as usize
            && within_one(&leaders, nodes)
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "not balanced over nodes {nodes:?} after {timeout:?}: replicas {replicas:?}, leaders {leaders:?}, \
             operations {operations:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three nodes with `TOPIC` created (replication factor 3); their addresses and a client of
/// node 1.
async fn three_nodes_with_topic(dir: &std::path::Path) -> (Cluster, Vec<String>, CairnClient) {
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir, 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let admin = connect(&addresses[0]).await;
    let mut options = CreateTopicOptions::new(TOPIC, PARTITIONS);
    options.replication_factor = 3;
    admin.create_topic(options).await.expect("create topic");
    (cluster, addresses, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_under_load_then_decommission_loses_nothing() {
    let seed = harness::seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cluster, addresses, admin) = three_nodes_with_topic(dir.path()).await;

    // Load: idempotent writers through nodes 1-3, and a consumer of partition 0.
    let writers = workload::Writers::start(&addresses[..WRITERS], TOPIC, PARTITIONS, seed);
    let consumer = Consumer::start(connect(&addresses[0]).await, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = writers.acknowledged();

    // Scale out: nodes 4 and 5 join; automatic balancing spreads replicas and leaders.
    let (fourth, fifth) = tokio::task::block_in_place(|| {
        (join(dir.path(), 4, &addresses[1], &[]), join(dir.path(), 5, &addresses[2], &[]))
    });
    let mut node_clients = Vec::new();
    for address in addresses.iter().chain([&fourth.address, &fifth.address]) {
        node_clients.push(connect(address).await);
    }
    let all: Vec<&CairnClient> = node_clients.iter().collect();
    let took = wait_balanced(&admin, &all, &[1, 2, 3, 4, 5], Duration::from_secs(120)).await;
    let (replicas, leaders) = placement(&admin, &all).await;
    eprintln!("balanced over 5 nodes in {took:?}: replicas {replicas:?}, leaders {leaders:?}");
    let dry_run = cluster.nodes[0].cli_ok(&["rebalance", "--dry-run"]);
    assert!(dry_run.contains("balanced"), "nothing left to do: {dry_run}");
    let moved: Vec<proto::OperationStatus> = admin.list_operations(true).await.expect("operations");
    assert!(moved.iter().any(|op| op.kind == "move" && op.phase == "done"), "{moved:?}");

    // Decommission node 2: its replicas move away, then it leaves the cluster.
    let started = cluster.nodes[2].cli_ok(&["node", "decommission", "2"]);
    assert!(started.contains("decommissioning node 2"), "{started}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let nodes = admin.cluster_status().await.expect("status").nodes;
        let (replicas, _) = placement(&admin, &[]).await;
        if !nodes.iter().any(|n| n.node_id == 2) && !replicas.contains_key(&2) {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 still listed or holding replicas: {replicas:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let remaining: Vec<&CairnClient> = [0, 2, 3, 4].iter().map(|i| &node_clients[*i]).collect();
    let took = wait_balanced(&admin, &remaining, &[1, 3, 4, 5], Duration::from_secs(120)).await;
    eprintln!("balanced over nodes 1, 3, 4, 5 in {took:?} after decommissioning node 2");
    let second = connect(&addresses[1]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while second.cluster_status().await.is_ok_and(|s| s.groups.iter().any(|g| g.topic == TOPIC)) {
        assert!(Instant::now() < deadline, "node 2 still runs partition replicas");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let history = writers.stop().await;
    assert!(history.acknowledged.len() > before + 100, "appends went on while replicas moved");

    // Every replica of every partition holds the same records; together they match the history.
    let clients: BTreeMap<u64, CairnClient> = [
        (1, connect(&addresses[0]).await),
        (3, connect(&addresses[2]).await),
        (4, connect(&fourth.address).await),
        (5, connect(&fifth.address).await),
    ]
    .into_iter()
    .collect();
    let described = admin.describe_topic(TOPIC).await.expect("describe");
    let mut log = BTreeMap::new();
    for p in &described.partitions {
        let deadline = Instant::now() + Duration::from_secs(60);
        let copies = loop {
            let mut copies = Vec::new();
            for replica in &p.replicas {
                copies.push(workload::read_values(&clients[replica], TOPIC, p.partition).await);
            }
            if copies.windows(2).all(|w| w[0] == w[1]) {
                break copies;
            }
            assert!(Instant::now() < deadline, "replicas of partition {} differ (seed {seed})", p.partition);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        log.extend(copies[0].iter().map(|(offset, (_, value))| ((p.partition, *offset), value.clone())));
    }
    let verdict = workload::check(&log, &history, PARTITIONS);
    eprintln!("seed {seed}: acknowledged {}, {verdict:?}", history.acknowledged.len());
    assert_eq!(verdict.gaps, 0, "offsets not dense (seed {seed})");
    assert_eq!(verdict.lost, 0, "acknowledged appends lost or moved (seed {seed})");
    assert_eq!(verdict.duplicated, 0, "values stored twice (seed {seed})");

    // The consumer read all of partition 0, in order, once, as stored.
    let stored: Vec<(u64, String)> =
        log.iter().filter(|((p, _), _)| *p == 0).map(|((_, o), v)| (*o, v.clone())).collect();
    let (consumed, errors) = consumer.until(stored.len(), Duration::from_secs(60)).await;
    eprintln!(
        "the consumer read {} records; its subscription failed {} times: {errors:?}",
        consumed.len(),
        errors.len()
    );
    assert_eq!(consumed, stored, "the consumer read partition 0 to its end, as stored (seed {seed})");
}

/// A subscriber of one partition, as an application runs one: after an error or the end of
/// a subscription it subscribes again from the next offset it needs. Records the errors.
struct Consumer {
    consumed: Arc<Mutex<Vec<(u64, String)>>>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    fn start(client: CairnClient, partition: u32) -> Consumer {
        let consumed = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (consumed, errors) = (Arc::clone(&consumed), Arc::clone(&errors));
            tokio::spawn(async move {
                loop {
                    let next = consumed.lock().expect("consumed").last().map_or(0, |(offset, _)| offset + 1);
                    let mut stream = Box::pin(client.subscribe(TOPIC, partition, StartPosition::Offset(next)));
                    while let Some(batch) = stream.next().await {
                        match batch {
                            Ok(batch) => consumed.lock().expect("consumed").extend(
                                batch.into_iter().map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned())),
                            ),
                            Err(err) => {
                                errors.lock().expect("errors").push(err.to_string());
                                break;
                            }
                        }
                    }
                    // Back off before subscribing again (the partition may be electing).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Consumer { consumed, errors, task }
    }

    /// Waits until `records` were consumed (or `timeout` passed), stops, and returns what
    /// was consumed and the subscription errors.
    async fn until(self, records: usize, timeout: Duration) -> (Vec<(u64, String)>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        while self.consumed.lock().expect("consumed").len() < records && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.task.abort();
        let consumed = std::mem::take(&mut *self.consumed.lock().expect("consumed"));
        let errors = std::mem::take(&mut *self.errors.lock().expect("errors"));
        (consumed, errors)
    }
}

/// Nodes started together (a scale-out script, a StatefulSet with parallel pods) join at
/// once: the controller admits one membership change at a time, and the others must wait
/// their turn instead of giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_joining_at_once_under_load_all_take_replicas() {
    let seed = harness::seed();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_cluster, addresses, admin) = three_nodes_with_topic(dir.path()).await;
    let writers = workload::Writers::start(&addresses[..WRITERS], TOPIC, PARTITIONS, seed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = writers.acknowledged();

    // Nodes 4, 5 and 6 start at the same moment, each joining through another member.
    let mut joiners: Vec<Node> = tokio::task::block_in_place(|| {
        let started: Vec<_> = (4..=6u64)
            .map(|id| {
                let (dir, via) = (dir.path().to_owned(), addresses[(id as usize) % 3].clone());
                std::thread::spawn(move || join(&dir, id, &via, &[]))
            })
            .collect();
        started.into_iter().map(|s| s.join().expect("node started")).collect()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for joiner in &mut joiners {
            if let Some(status) = joiner.exited() {
                panic!("a joining node gave up ({status}); its log:\n{}", joiner.log());
            }
        }
        let listed = admin.cluster_status().await.map(|s| s.nodes.len()).unwrap_or(0);
        if listed == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "{listed} nodes listed after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut node_clients = Vec::new();
    for address in addresses.iter().chain(joiners.iter().map(|n| &n.address)) {
        node_clients.push(connect(address).await);
    }
    // Automatic balancing spreads the replicas over all six.
    let all: Vec<&CairnClient> = node_clients.iter().collect();
    let nodes = [1, 2, 3, 4, 5, 6];
    let started = Instant::now();
    loop {
        let operations = admin.list_operations(false).await.unwrap_or_else(|_| vec![proto::OperationStatus::default()]);
        let (replicas, leaders) = placement(&admin, &all).await;
        if operations.is_empty() && within_one(&replicas, &nodes) && nodes.iter().all(|n| replicas.contains_key(n)) {
            eprintln!("replicas spread over 6 nodes in {:?}: {replicas:?}, leaders {leaders:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "replicas not spread over all six nodes: {replicas:?}, operations {operations:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let history = writers.stop().await;
    assert!(history.acknowledged.len() > before, "appends went on while the nodes joined");
}

/// The operation with `id`, as the cluster lists it.
async fn operation(client: &CairnClient, id: u64) -> Option<proto::OperationStatus> {
    client.list_operations(true).await.ok()?.into_iter().find(|op| op.id == id)
}

/// The leader of `group` as some live node sees it.
async fn leader_of(clients: &[&CairnClient], group: u64) -> Option<u64> {
    for client in clients {
        if let Ok(status) = client.cluster_status().await
            && let Some(leader) = status.groups.iter().find(|g| g.group_id == group).and_then(|g| g.leader)
        {
            return Some(leader);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_complete_after_kills_of_the_leader_the_target_and_the_controller_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Snapshots every 20 entries, so a new replica catches up by a streamed snapshot, paced
    // to 300 kB/s, so that a move of ~1.5 MB takes long enough to be interrupted.
    let extra: Vec<&str> = FAST_RAFT
        .iter()
        .copied()
        .chain(["--snapshot-log-entries", "20", "--move-bytes-per-sec", "300000", "--auto-balance", "false"])
        .collect();
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 4, &extra));
    let admin = connect(&cluster.nodes[0].address).await;
    let mut options = CreateTopicOptions::new("moving", 3);
    options.replication_factor = 3;
    let topic = admin.create_topic(options).await.expect("create topic");
    const APPENDS: u64 = 300;
    for p in 0..3 {
        for n in 0..APPENDS {
            let records = (0..5)
                .map(|i| Record {
                    key: None,
                    headers: vec![],
                    value: Bytes::from(format!("{p}-{n}-{i}-{}", "x".repeat(1000))),
                })
                .collect();
            admin.append("moving", Some(p), records).await.expect("append");
        }
    }

    for (scenario, description) in topic.partitions.iter().zip(["partition leader", "target", "controller leader"]) {
        let partition = scenario.partition;
        let group = scenario.group_id;
        let from = scenario.replicas[1];
        let to = (1..=4).find(|n| !scenario.replicas.contains(n)).expect("a node without a replica");
        let moved = cluster.nodes[0].cli_ok(&[
            "partition",
            "move",
            &format!("moving/{partition}"),
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ]);
        let id: u64 = moved
            .split_whitespace()
            .nth(1)
            .and_then(|id| id.trim_end_matches(':').parse().ok())
            .unwrap_or_else(|| panic!("an operation id in {moved:?}"));
        // Interrupt it while it copies.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let op = operation(&admin, id).await;
            if op.as_ref().is_some_and(|op| op.phase == "copying" && op.bytes_copied > 0) {
                break;
            }
            assert!(op.as_ref().is_none_or(|op| op.phase != "done"), "move {id} finished before it was interrupted");
            assert!(Instant::now() < deadline, "move {id} never reported progress: {op:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let clients: Vec<CairnClient> = {
            let mut clients = Vec::new();
            for node in &cluster.nodes {
                clients.push(connect(&node.address).await);
            }
            clients
        };
        let client_refs: Vec<&CairnClient> = clients.iter().collect();
        let victim = match description {
            "partition leader" => leader_of(&client_refs, group).await.expect("partition leader"),
            "target" => to,
            _ => leader_of(&client_refs, 0).await.expect("controller leader"),
        };
        eprintln!("move {id} of moving/{partition} {from} -> {to}: killing the {description}, node {victim}");
        tokio::task::block_in_place(|| cluster.nodes[victim as usize - 1].restart());

        let observer = connect(&cluster.nodes[(victim as usize) % 4].address).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let op = operation(&observer, id).await;
            if op.as_ref().is_some_and(|op| op.phase == "done") {
                break;
            }
            assert!(Instant::now() < deadline, "move {id} did not finish after the {description} was killed: {op:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let described = observer.describe_topic("moving").await.expect("describe");
        let mut replicas = described.partitions[partition as usize].replicas.clone();
        replicas.sort_unstable();
        let mut expected: Vec<u64> = scenario.replicas.iter().copied().filter(|n| *n != from).chain([to]).collect();
        expected.sort_unstable();
        assert_eq!(replicas, expected, "the target replaced the source");
        // Every replica, the new one included, serves all the records; the source deleted its copy.
        for node in &expected {
            let client = connect(&cluster.nodes[*node as usize - 1].address).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while harness::read_partition(&client, "moving", partition).await.len() as u64 != APPENDS * 5 {
                assert!(Instant::now() < deadline, "node {node} does not serve all of moving/{partition}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let source = connect(&cluster.nodes[from as usize - 1].address).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while source.cluster_status().await.is_ok_and(|s| s.groups.iter().any(|g| g.group_id == group)) {
            assert!(Instant::now() < deadline, "node {from} still holds moving/{partition}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The replica list of partition t/0, as `cairn topic describe` prints it.
fn replicas_of_t0(node: &Node) -> Vec<u64> {
    let described: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["topic", "describe", "t", "--output", "json"])).expect("json");
    described["partitions"][0]["replicas"].as_array().expect("replicas").iter().filter_map(|r| r.as_u64()).collect()
}

#[test]
fn bad_moves_get_clear_errors_and_a_removed_target_cancels_its_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--auto-balance", "false"]);
    let mut cluster = Cluster::start(dir.path(), 4, &args);
    let node = &cluster.nodes[0];
    node.cli_ok(&["topic", "create", "t", "--partitions", "1", "--replication-factor", "3"]);
    let replicas = replicas_of_t0(node);
    let outsider = (1..=4).find(|n| !replicas.contains(n)).expect("a node without a replica");
    let (from, other) = (replicas[0].to_string(), replicas[1].to_string());
    let refused = |args: &[&str], expected: &str| {
        let output = cluster.nodes[0].cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in: {stderr}");
    };
    refused(&["partition", "move", "t/0", "--from", &from, "--to", "9"], "node 9 is not part of the cluster");
    refused(&["partition", "move", "t/0", "--from", &from, "--to", &other], "already holds a replica");
    refused(&["partition", "move", "t/0", "--from", &from, "--to", &from], "the same node");
    refused(&["partition", "move", "t/7", "--from", &from, "--to", &outsider.to_string()], "has no partition 7");
    refused(&["partition", "move", "nope/0", "--from", &from, "--to", &outsider.to_string()], "does not exist");
    // A topic with a replica on each of the four nodes: no node can be decommissioned.
    node.cli_ok(&["topic", "create", "wide", "--partitions", "1", "--replication-factor", "4"]);
    refused(&["node", "decommission", "1"], "cannot be decommissioned");

    // A move to a node that is down stays in its copying phase; a second move of the same
    // partition is refused; removing the target cancels the move and restores the voters.
    cluster.nodes[outsider as usize - 1].kill();
    let node = &cluster.nodes[if outsider == 1 { 1 } else { 0 }];
    let moved = node.cli_ok(&["partition", "move", "t/0", "--from", &from, "--to", &outsider.to_string()]);
    assert!(moved.starts_with("operation "), "{moved}");
    let conflicting = node.cli(&["partition", "move", "t/0", "--from", &other, "--to", &outsider.to_string()]);
    assert!(!conflicting.status.success());
    assert!(String::from_utf8_lossy(&conflicting.stderr).contains("already being moved"), "{conflicting:?}");
    node.cli_ok(&["node", "remove", &outsider.to_string(), "--force"]);
    harness::wait_until("the move to be cancelled", Duration::from_secs(60), || {
        let listed: serde_json::Value =
            serde_json::from_str(&node.cli_ok(&["operation", "list", "--all", "--output", "json"])).expect("json");
        listed.as_array().is_some_and(|ops| ops.iter().any(|op| op["phase"] == "cancelled"))
    });
    let after = replicas_of_t0(node);
    assert_eq!(after, replicas, "the cancelled move left the replicas as they were");
    let produced = node.cli_with_stdin(&["produce", "t"], Some(b"still writable\n"));
    harness::assert_success(&["produce after the cancelled move"], &produced);
}

/// One record per append, its value naming it.
fn record(value: String) -> Vec<Record> {
    vec![Record { key: None, headers: vec![], value: Bytes::from(value) }]
}

/// Appends `values` to t/0 through `client`, one acknowledged record each. A failed append
/// (a leader change under way) is sent again; it may then be stored twice.
async fn append_acknowledged(
    client: &CairnClient,
    values: impl Iterator<Item = String>,
    acknowledged: &mut Vec<String>,
) {
    for value in values {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(err) = client.append("t", Some(0), record(value.clone())).await {
            assert!(Instant::now() < deadline, "append {value}: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acknowledged.push(value);
    }
}

/// The voters of `group` as its leader reports them, once some node leads it.
async fn leader_voters(clients: &[CairnClient], group: u64) -> Option<Vec<u64>> {
    for client in clients {
        if let Ok(status) = client.cluster_status().await
            && let Some(led) = status.groups.iter().find(|g| g.group_id == group && g.state == "leader")
        {
            let mut voters = led.voters.clone();
            voters.sort_unstable();
            return Some(voters);
        }
    }
    None
}

/// A move of t/0 (replication factor `rf`) whose target is removed from the cluster with
/// `--force` after the move's membership change committed, before the leader reports it
/// done (held by the mover's test hook): the target is a voter then, and with replication
/// factor 1 the only one holding the writes acknowledged since. The cancel must restore the
/// old voters before the target drops its copy: every acknowledged record is still served
/// by every replica, and the partition takes writes.
async fn cancel_raced_against_the_promotion(rf: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("hold-promoted-moves");
    std::fs::write(&gate, b"").expect("create the gate");
    let gate_path = gate.to_str().expect("utf-8 path").to_owned();
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--auto-balance", "false"]);
    let env = [("CAIRN_TEST_HOLD_PROMOTED_MOVES", gate_path.as_str())];
    let cluster = tokio::task::block_in_place(|| Cluster::start_with_env(dir.path(), 3, &args, &env));
    let mut clients = Vec::new();
    for node in &cluster.nodes {
        clients.push(connect(&node.address).await);
    }
    let mut options = CreateTopicOptions::new("t", 1);
    options.replication_factor = rf;
    let topic = clients[0].create_topic(options).await.expect("create topic");
    let assignment = &topic.partitions[0];
    let group = assignment.group_id;
    let from = assignment.replicas[0];
    let to = (1..=3).find(|n| !assignment.replicas.contains(n)).expect("a node without a replica");
    // Writes go through a node that is neither the target nor the source.
    let writer = &clients[(1..=3).find(|n| *n != from && *n != to).expect("a third node") as usize - 1];
    let mut acknowledged = Vec::new();
    append_acknowledged(writer, (0..20).map(|n| format!("before-{n}")), &mut acknowledged).await;

    let moved =
        cluster.nodes[0].cli_ok(&["partition", "move", "t/0", "--from", &from.to_string(), "--to", &to.to_string()]);
    let id: u64 = moved
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("an operation id in {moved:?}"));
    let mut promoted: Vec<u64> = assignment.replicas.iter().copied().filter(|n| *n != from).chain([to]).collect();
    promoted.sort_unstable();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let op = operation(&clients[0], id).await;
        if op.as_ref().is_some_and(|op| op.phase == "promoting")
            && leader_voters(&clients, group).await.as_ref() == Some(&promoted)
        {
            break;
        }
        assert!(Instant::now() < deadline, "move {id} never promoted its target to voter: {op:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("move {id} of t/0 {from} -> {to}: voters now {promoted:?}, held before FinishOperation");
    // Acknowledged by the new voters only: the source left the group.
    append_acknowledged(writer, (0..5).map(|n| format!("promoted-{n}")), &mut acknowledged).await;

    cluster.nodes[(from as usize) - 1].cli_ok(&["node", "remove", &to.to_string(), "--force"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let op = operation(&clients[0], id).await;
        if op.as_ref().is_some_and(|op| op.phase == "cancelled") {
            break;
        }
        assert!(Instant::now() < deadline, "the cancelled move {id} never restored the old voters: {op:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let described = clients[0].describe_topic("t").await.expect("describe");
    assert_eq!(described.partitions[0].replicas, assignment.replicas, "the replicas are as before the move");

    // The partition takes writes again, and every replica serves every acknowledged record.
    append_acknowledged(writer, ["after".to_owned()].into_iter(), &mut acknowledged).await;
    for replica in &assignment.replicas {
        let client = &clients[*replica as usize - 1];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let served: Vec<String> = harness::read_partition(client, "t", 0)
                .await
                .into_iter()
                .map(|r| String::from_utf8_lossy(&r.value).into_owned())
                .collect();
            // The append retried until it succeeded may be stored more than once.
            if acknowledged.iter().all(|value| served.contains(value)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {replica} serves {} of {} acknowledged records: {served:?}",
                served.len(),
                acknowledged.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// With one replica the source is the group's only voter: it leads the promotion that
/// removes it, and the cancel reaches it while openraft still has it lead (see the mover's
/// `proposes_membership`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_raced_against_the_promotion_loses_nothing_with_one_replica() {
    cancel_raced_against_the_promotion(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_raced_against_the_promotion_loses_nothing_with_two_replicas() {
    cancel_raced_against_the_promotion(2).await;
}
