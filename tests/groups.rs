//! Consumer groups on real node processes: members join, leave and die while records are
//! appended and the group's coordinator is killed; every acknowledged record is processed,
//! committed positions never move backwards, and a commit of a stale generation is refused.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::proto::group_request::Call;
use cairn_client::{CairnClient, ClientError, CreateTopicOptions, GroupConsumer, GroupConsumerConfig, proto};
use cairn_types::Record;
use harness::http::{get, parse_prometheus};
use harness::workload::connect;
use harness::{Cluster, FAST_RAFT};

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 6;
const GROUP: &str = "billing";

type Processed = Arc<Mutex<BTreeSet<(u32, u64)>>>;

fn config(name: &str) -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(GROUP, vec![TOPIC.to_string()]);
    config.client_id = name.to_string();
    config.session_timeout = Duration::from_secs(3);
    config.heartbeat_interval = Duration::from_millis(300);
    config.rebalance_timeout = Duration::from_secs(10);
    config
}

/// A member that processes (records) what it polls and commits after each batch, until
/// `stop`; then it leaves, or (`die`) just stops, like a killed process.
struct Member {
    stop: Arc<AtomicBool>,
    die: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    owned: Arc<Mutex<Vec<(String, u32)>>>,
}

async fn member(client: CairnClient, name: &str, processed: Processed) -> Member {
    let mut consumer = GroupConsumer::join(client, config(name)).await.expect("join");
    let (stop, die) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let owned = Arc::new(Mutex::new(consumer.assignment()));
    let (stop_flag, die_flag, owned_now) = (Arc::clone(&stop), Arc::clone(&die), Arc::clone(&owned));
    let name = name.to_string();
    let task = tokio::spawn(async move {
        while !stop_flag.load(Ordering::SeqCst) {
            match consumer.poll(Duration::from_millis(200)).await {
                Ok(Some(batch)) => {
                    let mut processed = processed.lock().expect("processed");
                    processed.extend(batch.records.iter().map(|r| (batch.partition, r.offset)));
                }
                Ok(None) => {}
                Err(err) => {
                    eprintln!("{name}: poll failed (polling again): {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if let Err(err) = consumer.commit().await {
                // The coordinator may be electing: the next commit covers it.
                eprintln!("{name}: commit failed (retried with the next batch): {err}");
            }
            *owned_now.lock().expect("owned") = consumer.assignment();
        }
        if die_flag.load(Ordering::SeqCst) {
            drop(consumer);
        } else {
            consumer.leave().await.expect("leave");
        }
    });
    Member { stop, die, task, owned }
}

impl Member {
    async fn leave(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("member task");
    }

    async fn die(self) {
        self.die.store(true, Ordering::SeqCst);
        self.leave().await;
    }

    fn owns_something(&self) -> bool {
        !self.owned.lock().expect("owned").is_empty()
    }
}

/// Appends until `stop`, one record per call; returns what was acknowledged.
fn producer(client: CairnClient, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<BTreeSet<(u32, u64)>> {
    tokio::spawn(async move {
        let mut acknowledged = BTreeSet::new();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            i += 1;
            let record = Record {
                key: Some(Bytes::from(format!("k{}", i % 97))),
                headers: Vec::new(),
                value: Bytes::from(i.to_string()),
            };
            if let Ok(positions) = client.append(TOPIC, None, vec![record]).await {
                acknowledged.extend(positions);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        acknowledged
    })
}

/// Watches the group's committed positions until `stop`; fails on a position that moved
/// backwards. Returns how many descriptions it saw.
fn position_monitor(client: CairnClient, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut last: BTreeMap<(String, u32), u64> = BTreeMap::new();
        let mut seen = 0;
        while !stop.load(Ordering::SeqCst) {
            if let Ok(description) = client.describe_group(GROUP).await {
                seen += 1;
                for p in description.partitions.iter().filter(|p| p.has_position) {
                    let offset = p.position.as_ref().map_or(0, |position| position.offset);
                    let before = last.insert((p.topic.clone(), p.partition), offset);
                    assert!(
                        before.is_none_or(|before| before <= offset),
                        "the committed position of {}/{} moved back from {before:?} to {offset}",
                        p.topic,
                        p.partition
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

async fn wait_for(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_processes_everything_while_members_come_and_go_and_its_coordinator_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3, &FAST_RAFT);
    let client = connect(&cluster.nodes[0].address).await;
    client
        .create_topic(CreateTopicOptions {
            name: TOPIC.into(),
            partitions: PARTITIONS,
            replication_factor: 3,
            ..Default::default()
        })
        .await
        .expect("create topic");
    let processed: Processed = Arc::default();
    let stop_producing = Arc::new(AtomicBool::new(false));
    let appended = producer(client.clone(), Arc::clone(&stop_producing));

    let mut members = Vec::new();
    for name in ["a", "b", "c"] {
        members.push(member(connect(&cluster.nodes[0].address).await, name, Arc::clone(&processed)).await);
    }
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = position_monitor(client.clone(), Arc::clone(&stop_monitor));
    wait_for("three members to own partitions", Duration::from_secs(20), async || {
        members.iter().all(Member::owns_something)
    })
    .await;

    // The coordinator must not be node 1 (the members' node), so killing it is a failover
    // the members see only through forwarding.
    let description = client.describe_group(GROUP).await.expect("describe");
    let coordinator = description.coordinator_partition;
    if description.coordinator_node == 1 {
        client.transfer_leader("__groups", coordinator, 2).await.expect("move the coordinator");
    }

    // A fourth member joins; b leaves; c dies.
    members.push(member(connect(&cluster.nodes[0].address).await, "d", Arc::clone(&processed)).await);
    let c = members.remove(2);
    let b = members.remove(1);
    b.leave().await;
    c.die().await;

    // The coordinator's node dies and comes back.
    let coordinator_node = client.describe_group(GROUP).await.expect("describe").coordinator_node;
    assert_ne!(coordinator_node, 1);
    let killed = (coordinator_node - 1) as usize;
    cluster.nodes[killed].kill();
    members.push(member(connect(&cluster.nodes[0].address).await, "e", Arc::clone(&processed)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[killed].restart();

    // c's session lapses: the group settles on a, d and e.
    wait_for("the group to settle on three members that own partitions", Duration::from_secs(30), async || {
        let Ok(description) = client.describe_group(GROUP).await else { return false };
        let settled = description.partitions.iter().all(|p| !p.owner.is_empty() && p.owner == p.target);
        description.members.len() == 3 && settled && members.iter().all(Member::owns_something)
    })
    .await;

    stop_producing.store(true, Ordering::SeqCst);
    let appended = appended.await.expect("producer");
    assert!(appended.len() > 100, "the producer appended only {} records", appended.len());
    wait_for("every acknowledged record to be processed", Duration::from_secs(60), async || {
        let processed = processed.lock().expect("processed");
        appended.is_subset(&processed)
    })
    .await;

    // Once the members commit what they processed, the positions reach the ends.
    let ends: BTreeMap<u32, u64> = client
        .describe_topic(TOPIC)
        .await
        .expect("describe topic")
        .partitions
        .iter()
        .map(|p| (p.partition, p.high_watermark))
        .collect();
    wait_for("committed positions to reach every partition's end", Duration::from_secs(30), async || {
        let Ok(description) = client.describe_group(GROUP).await else { return false };
        let positions: BTreeMap<u32, u64> = description
            .partitions
            .iter()
            .filter(|p| p.has_position)
            .map(|p| (p.partition, p.position.as_ref().map_or(0, |position| position.offset)))
            .collect();
        positions == ends
    })
    .await;
    stop_monitor.store(true, Ordering::SeqCst);
    let descriptions = monitor.await.expect("position monitor");
    assert!(descriptions > 10, "the monitor saw only {descriptions} descriptions");
    for member in members {
        member.leave().await;
    }
    let description = client.describe_group(GROUP).await.expect("describe");
    assert!(description.members.is_empty(), "everybody left: {:?}", description.members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_of_a_stale_generation_or_a_partition_not_owned_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 3, &FAST_RAFT);
    // Through a node that is (most likely) not the coordinator: refusals come back through
    // forwarding intact.
    let client = connect(&cluster.nodes[2].address).await;
    client
        .create_topic(CreateTopicOptions {
            name: TOPIC.into(),
            partitions: 2,
            replication_factor: 3,
            ..Default::default()
        })
        .await
        .expect("create topic");
    let join = |member: &str| {
        Call::Join(proto::JoinGroup {
            member_id: member.to_string(),
            client_id: "test".to_string(),
            topics: vec![TOPIC.to_string()],
            assignor: "range".to_string(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
        })
    };
    let commit = |member: &str, generation: u64, partition: u32, offset: u64| {
        Call::Commit(proto::CommitPositions {
            member_id: member.to_string(),
            generation,
            positions: vec![proto::GroupPosition {
                topic: TOPIC.to_string(),
                partition,
                offset,
                metadata: String::new(),
                committed_at_ms: 0,
            }],
            release: Vec::new(),
        })
    };
    let zombie = client.group_call(GROUP, join("zombie")).await.expect("join");
    assert_eq!(zombie.generation, 1);
    client.group_call(GROUP, commit("zombie", 1, 0, 5)).await.expect("a commit of the current generation");
    // Another member joins: generation 2. The zombie did not hear of it.
    let other = client.group_call(GROUP, join("other")).await.expect("join");
    assert_eq!(other.generation, 2);
    let refused = client.group_call(GROUP, commit("zombie", 1, 0, 9)).await;
    let Err(ClientError::GroupRefused { code, message, .. }) = refused else { panic!("not refused: {refused:?}") };
    assert_eq!(code, proto::GroupRefusalCode::StaleGeneration, "{message}");
    assert!(message.contains("generation 2"), "the message names the current generation: {message}");
    // At the current generation it learns that partition 0 moves to "other" (range: the
    // first member by name takes partition 0 of 2): it still owns it until it releases it.
    let assignment = client
        .group_call(GROUP, Call::Heartbeat(proto::GroupHeartbeat { member_id: "zombie".into() }))
        .await
        .expect("heartbeat")
        .assignment
        .expect("assignment");
    let partitions = |list: &[proto::GroupTopicPartition]| list.iter().map(|tp| tp.partition).collect::<Vec<_>>();
    assert_eq!((partitions(&assignment.owned), partitions(&assignment.revoking)), (vec![1], vec![0]));
    let other_waits = client
        .group_call(GROUP, Call::Heartbeat(proto::GroupHeartbeat { member_id: "other".into() }))
        .await
        .expect("heartbeat")
        .assignment
        .expect("assignment");
    assert_eq!((partitions(&other_waits.owned), partitions(&other_waits.pending)), (vec![], vec![0]));
    let release = Call::Commit(proto::CommitPositions {
        member_id: "zombie".into(),
        generation: 2,
        positions: Vec::new(),
        release: vec![proto::GroupTopicPartition { topic: TOPIC.into(), partition: 0 }],
    });
    client.group_call(GROUP, release).await.expect("release");
    let not_owned = 0;
    let refused = client.group_call(GROUP, commit("zombie", 2, not_owned, 9)).await;
    let Err(ClientError::GroupRefused { code, .. }) = refused else { panic!("not refused: {refused:?}") };
    assert_eq!(code, proto::GroupRefusalCode::NotOwned);
    let description = client.describe_group(GROUP).await.expect("describe");
    let positions: Vec<(u32, u64)> = description
        .partitions
        .iter()
        .filter(|p| p.has_position)
        .map(|p| (p.partition, p.position.as_ref().map_or(0, |position| position.offset)))
        .collect();
    assert_eq!(positions, vec![(0, 5)], "only the commit of the current generation was written");
    // A group with members cannot be deleted or reset.
    let refused = client.delete_group(GROUP).await;
    assert!(
        matches!(refused, Err(ClientError::GroupRefused { code: proto::GroupRefusalCode::GroupNotEmpty, .. })),
        "{refused:?}"
    );

    // The coordinator's /metrics shows the group: 10 records on partition 0 after its
    // position 5, and 4 on partition 1, which has no position.
    for (partition, count) in [(0, 10), (1, 4)] {
        let records = (0..count)
            .map(|i| Record { key: None, headers: Vec::new(), value: Bytes::from(format!("{partition}-{i}")) })
            .collect();
        client.append(TOPIC, Some(partition), records).await.expect("append");
    }
    let node = &cluster.nodes[(description.coordinator_node - 1) as usize];
    let http = node.http_address.clone().expect("the node serves HTTP");
    let labels = format!("group=\"{GROUP}\"");
    wait_for("the coordinator's metrics to show the group's lag", Duration::from_secs(20), async || {
        let Ok(response) = get(&http, "/metrics") else { return false };
        let samples = parse_prometheus(&response.body);
        let value = |name: &str| samples.iter().find(|(n, l, _)| n == name && *l == labels).map(|(_, _, v)| *v);
        let seen = [value("cairn_group_lag_records"), value("cairn_group_members"), value("cairn_group_generation")];
        seen == [Some(9.0), Some(2.0), Some(2.0)]
    })
    .await;
}
