//! The event store on real nodes over gRPC: optimistic concurrency checked in Raft under
//! concurrent writers and leader kills (checked from the recorded history), event-id
//! idempotence across a failover, and the API's answers (every violation listed, streams of
//! several partitions refused, hash tags, backwards and "as of" reads, followers answering
//! as the leader, stream and query reads alike). Query conditions: `event_queries.rs`.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_client::{
    CairnClient, ClientError, Code, Consistency, CreateTopicOptions, ExpectedRevision, ReadStreamOptions,
    RecordedEvent, StreamWrite, json_event,
};
use harness::workload::connect;
use harness::{Cluster, FAST_RAFT, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "ledger";

/// What one writer saw of one append.
#[derive(Debug, Clone)]
enum Outcome {
    /// Acknowledged at this revision and offset (`retried`: after an attempt without an
    /// answer; `duplicate`: the server recognised it as stored already).
    Acknowledged { revision: u64, offset: u64, retried: bool, duplicate: bool },
    /// Refused for its expected revision: certainly not written.
    Refused,
    /// No answer (the leader died): written at most once.
    Indeterminate,
}

#[derive(Debug, Clone)]
struct Attempt {
    stream: String,
    /// The revision the writer expected the stream to be at (`None`: no stream).
    expected: Option<u64>,
    event_id: [u8; 16],
    outcome: Outcome,
}

async fn create_topic(client: &CairnClient, partitions: u32, replication_factor: u32) {
    let mut options = CreateTopicOptions::new(TOPIC, partitions);
    options.replication_factor = replication_factor;
    client.create_topic(options).await.expect("create topic");
}

/// The revision of `stream`'s last event, as `client`'s node serves it.
async fn current_revision(client: &CairnClient, stream: &str) -> Result<Option<u64>, ClientError> {
    let options = ReadStreamOptions { backwards: true, max_events: 1, ..ReadStreamOptions::default() };
    Ok(client.read_stream(TOPIC, stream, options).await?.events.first().map(|e| e.stream_revision))
}

/// Writers append to a few streams through every node, each append expecting the revision
/// it last read, while a nemesis kills partition leaders. Checked from the history: each
/// stored event landed right after the revision it expected (so two appends expecting one
/// revision never both won), streams are dense, every acknowledged event is stored once at
/// its acknowledged position, refused ones never, indeterminate ones at most once, and a
/// retry of an indeterminate append is either recognised (same position) or refused only
/// when the first try was not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_revisions_hold_under_concurrent_writers_and_leader_kills() {
    const STREAMS: usize = 4;
    const WRITERS: usize = 6;
    const KILLS: usize = 4;
    let seed = harness::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    create_topic(&connect(&addresses[0]).await, 2, 3).await;

    let history = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (address, history, stop) = (addresses[writer % 3].clone(), Arc::clone(&history), Arc::clone(&stop));
        let mut rng = StdRng::seed_from_u64(seed ^ writer as u64);
        tasks.push(tokio::spawn(async move {
            let client = connect(&address).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let stream = format!("account-{}", rng.random_range(0..STREAMS));
                let Ok(expected) = current_revision(&client, &stream).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let event = json_event("Deposited", format!("{{\"writer\":{writer}}}"));
                let write = StreamWrite {
                    stream: stream.clone(),
                    expected: expected.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact),
                    events: vec![event.clone()],
                };
                // An append without an answer is sent again, the same, up to three times.
                let mut outcome = Outcome::Indeterminate;
                for attempt in 0..3 {
                    match client.append_to_streams(TOPIC, vec![write.clone()], Vec::new()).await {
                        Ok(appended) => {
                            let (offset, revision) = appended.positions[0];
                            let (retried, duplicate) = (attempt > 0, appended.duplicate);
                            outcome = Outcome::Acknowledged { revision, offset, retried, duplicate };
                            break;
                        }
                        Err(ClientError::ConditionFailed { .. }) => {
                            outcome = Outcome::Refused;
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                let attempt = Attempt { stream, expected, event_id: event.event_id, outcome };
                history.lock().expect("history").push(attempt);
            }
        }));
    }

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        let status = connect(&addresses[rng.random_range(0..3)]).await.cluster_status().await.expect("status");
        let partition = rng.random_range(0..2);
        let leader = status.groups.iter().find(|g| g.topic == TOPIC && g.partition == partition).and_then(|g| g.leader);
        let Some(victim) = leader else { continue };
        let victim = victim as usize - 1;
        tokio::task::block_in_place(|| cluster.nodes[victim].kill());
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
        tokio::task::block_in_place(|| cluster.nodes[victim].restart());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("writer");
    }
    let history = history.lock().expect("history").clone();

    // Every node serves the same streams (once caught up).
    let clients = [connect(&addresses[0]).await, connect(&addresses[1]).await, connect(&addresses[2]).await];
    let deadline = Instant::now() + Duration::from_secs(60);
    let streams = loop {
        let mut replicas = Vec::new();
        for client in &clients {
            let mut streams = BTreeMap::new();
            for s in 0..STREAMS {
                let stream = format!("account-{s}");
                let events = client.read_whole_stream(TOPIC, &stream, None, Consistency::Local).await;
                streams.insert(stream, events.unwrap_or_default());
            }
            replicas.push(streams);
        }
        if replicas.windows(2).all(|w| w[0] == w[1]) {
            break replicas.swap_remove(0);
        }
        assert!(Instant::now() < deadline, "replicas still differ after 60 s (seed {seed})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let attempts: BTreeMap<[u8; 16], &Attempt> = history.iter().map(|a| (a.event_id, a)).collect();
    let mut stored_ids = BTreeSet::new();
    for (stream, events) in &streams {
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.stream_revision, i as u64, "{stream} is dense from 0 (seed {seed})");
            assert!(stored_ids.insert(event.event_id), "event {} stored twice (seed {seed})", event.event_id_string());
            let attempt = attempts.get(&event.event_id).unwrap_or_else(|| panic!("unknown event stored (seed {seed})"));
            assert_eq!(&attempt.stream, stream);
            // The optimistic concurrency check: it landed right after what it expected.
            assert_eq!(
                attempt.expected.map_or(0, |e| e + 1),
                event.stream_revision,
                "an append expecting {:?} landed at revision {} of {stream} (seed {seed})",
                attempt.expected,
                event.stream_revision
            );
            match attempt.outcome {
                Outcome::Acknowledged { revision, offset, .. } => {
                    assert_eq!((revision, offset), (event.stream_revision, event.offset), "moved (seed {seed})")
                }
                Outcome::Refused => panic!("a refused append was stored (seed {seed}): {attempt:?}"),
                Outcome::Indeterminate => {}
            }
        }
        for pair in events.windows(2) {
            assert!(pair[0].offset < pair[1].offset, "offsets grow with revisions (seed {seed})");
        }
    }
    let count = |f: fn(&Outcome) -> bool| history.iter().filter(|a| f(&a.outcome)).count();
    let acknowledged = count(|o| matches!(o, Outcome::Acknowledged { .. }));
    let refused = count(|o| matches!(o, Outcome::Refused));
    let indeterminate = count(|o| matches!(o, Outcome::Indeterminate));
    let retried = count(|o| matches!(o, Outcome::Acknowledged { retried: true, .. }));
    let recognised = count(|o| matches!(o, Outcome::Acknowledged { duplicate: true, .. }));
    for attempt in history.iter().filter(|a| matches!(a.outcome, Outcome::Acknowledged { .. })) {
        assert!(stored_ids.contains(&attempt.event_id), "an acknowledged append was lost (seed {seed}): {attempt:?}");
    }
    eprintln!(
        "seed {seed}: {} attempts: acknowledged {acknowledged} ({retried} after a try without an answer, \
         {recognised} recognised as stored already), refused {refused} (expected revision), indeterminate \
         {indeterminate}; {} events stored",
        history.len(),
        stored_ids.len()
    );
    assert!(acknowledged > 50, "the writers made progress (seed {seed})");
    assert!(refused > 0, "writers raced for the same revisions (seed {seed})");
}

/// An append retried through another node after its leader died is recognised by its event
/// ids: the original positions, nothing written twice. The same ids with other content are
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_make_a_retry_after_failover_safe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let client = connect(&addresses[0]).await;
    create_topic(&client, 1, 3).await;
    let events = vec![json_event("Opened", "{}"), json_event("Deposited", "{\"amount\":10}")];
    let first = client.append_to_stream(TOPIC, "account-1", ExpectedRevision::NoStream, events.clone()).await;
    let first = first.expect("append");
    assert!(!first.duplicate);

    let status = client.cluster_status().await.expect("status");
    let leader = status.groups.iter().find(|g| g.topic == TOPIC).and_then(|g| g.leader).expect("leader");
    let victim = leader as usize - 1;
    tokio::task::block_in_place(|| cluster.nodes[victim].kill());
    let survivor = connect(&addresses[(victim + 1) % 3]).await;
    // The same append (its expected revision no longer holds): answered as the original.
    let retry = survivor.append_to_stream(TOPIC, "account-1", ExpectedRevision::NoStream, events.clone()).await;
    let retry = retry.expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.positions, first.positions);

    let mut changed = events[1].clone();
    changed.data = "{\"amount\":11}".into();
    let refused = survivor.append_to_stream(TOPIC, "account-1", ExpectedRevision::Any, vec![changed]).await;
    let err = refused.expect_err("same id, other content");
    assert_eq!(err.code(), Some(Code::AlreadyExists), "{err}");
    assert!(err.to_string().contains("already stored"), "{err}");

    let stream = survivor.read_whole_stream(TOPIC, "account-1", None, Consistency::Linearizable).await;
    let types: Vec<String> = stream.expect("read").into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["Opened", "Deposited"]);
}

/// The API's answers on a 3-node cluster: every violation listed in the error, streams of
/// two partitions refused by name, hash tags putting streams together, reads backwards and
/// "as of" a time, and a follower answering exactly as the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_api_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let client = connect(&addresses[0]).await;
    create_topic(&client, 8, 3).await;

    // Three deposits, each stamped later than the one before.
    let mut stamps = Vec::new();
    for (i, amount) in [10, 20, 30].into_iter().enumerate() {
        let expected = if i == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Exact(i as u64 - 1) };
        let event = json_event("Deposited", format!("{{\"amount\":{amount}}}"));
        let appended = client.append_to_stream(TOPIC, "{acct-7}/ledger", expected, vec![event]).await.expect("append");
        assert_eq!(appended.last_revision(), Some(i as u64));
        stamps.push(appended.timestamp_ms);
        // The next append gets a later timestamp.
        while cairn_types::now_ms() <= appended.timestamp_ms {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // All violations at once: the written stream and a checked one.
    let write = StreamWrite {
        stream: "{acct-7}/ledger".into(),
        expected: ExpectedRevision::Exact(0),
        events: vec![json_event("Withdrawn", "{\"amount\":5}")],
    };
    let checks = vec![("{acct-7}/limits".to_string(), ExpectedRevision::Exists)];
    let err = client.append_to_streams(TOPIC, vec![write.clone()], checks).await.expect_err("conflict");
    let ClientError::ConditionFailed { violations, message, .. } = err else { panic!("{err:?}") };
    assert_eq!(violations.len(), 2, "{message}");
    assert_eq!((violations[0].stream.as_str(), violations[0].actual), ("{acct-7}/ledger", Some(2)));
    assert_eq!((violations[1].stream.as_str(), violations[1].actual), ("{acct-7}/limits", None));

    // Hash-tagged streams share a partition: one atomic append to both.
    let limits = StreamWrite {
        stream: "{acct-7}/limits".into(),
        expected: ExpectedRevision::NoStream,
        events: vec![json_event("LimitSet", "{\"max\":100}")],
    };
    let write = StreamWrite { expected: ExpectedRevision::Exact(2), ..write };
    let both = client.append_to_streams(TOPIC, vec![write, limits], Vec::new()).await.expect("atomic append");
    assert_eq!(both.positions.iter().map(|p| p.1).collect::<Vec<_>>(), [3, 0]);
    assert_eq!(both.positions[1].0, both.positions[0].0 + 1, "one batch");

    // Streams of two partitions: refused, naming them.
    let (a, b) = two_streams_in_different_partitions(8);
    let writes = [a.clone(), b.clone()].map(|stream| StreamWrite {
        stream,
        expected: ExpectedRevision::Any,
        events: vec![json_event("E", "{}")],
    });
    let err = client.append_to_streams(TOPIC, writes.to_vec(), Vec::new()).await.expect_err("two partitions");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    assert!(err.to_string().contains(&a) && err.to_string().contains("hash tag"), "{err}");

    // Backwards, limited, and as of the second deposit.
    // Node 1 may be a follower: read what the last append wrote, at least.
    let consistency = Consistency::ReadYourWrites(both.applied_index);
    let backwards = ReadStreamOptions { backwards: true, max_events: 2, consistency, ..ReadStreamOptions::default() };
    let slice = client.read_stream(TOPIC, "{acct-7}/ledger", backwards).await.expect("read");
    assert_eq!(slice.events.iter().map(|e| e.stream_revision).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(slice.next_revision, Some(1));
    let as_of = ReadStreamOptions { as_of_ms: Some(stamps[1]), consistency, ..ReadStreamOptions::default() };
    let then = client.read_stream(TOPIC, "{acct-7}/ledger", as_of).await.expect("read as of");
    let data: Vec<String> = then.events.iter().map(|e| String::from_utf8_lossy(&e.data).into_owned()).collect();
    assert_eq!(data, ["{\"amount\":10}", "{\"amount\":20}"]);

    // Every node answers the same (followers serve reads once they applied the append).
    let leader_view: Vec<RecordedEvent> =
        client.read_whole_stream(TOPIC, "{acct-7}/ledger", None, Consistency::Linearizable).await.expect("read");
    for address in &addresses[1..] {
        let other = connect(address).await;
        let seen = other
            .read_whole_stream(TOPIC, "{acct-7}/ledger", None, Consistency::ReadYourWrites(both.applied_index))
            .await
            .expect("read");
        assert_eq!(seen, leader_view, "node at {address}");
    }

    // A malformed event id, an empty event type.
    let mut bad = json_event("E", "{}");
    bad.event_type.clear();
    let err = client.append_to_stream(TOPIC, "x", ExpectedRevision::Any, vec![bad]).await.expect_err("no type");
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    let mut raw = client.proto_client();
    let request = cairn_client::proto::AppendToStreamsRequest {
        topic: TOPIC.into(),
        writes: vec![cairn_client::proto::StreamWrite {
            stream: "x".into(),
            expected: None,
            events: vec![cairn_client::proto::Event {
                event_id: "not-a-uuid".into(),
                event_type: "E".into(),
                ..Default::default()
            }],
        }],
        checks: Vec::new(),
        condition: None,
    };
    let status = raw.append_to_streams(request).await.expect_err("bad id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not a UUID"), "{}", status.message());
}

/// Two stream names whose partitions differ, for a topic of `partitions` partitions.
fn two_streams_in_different_partitions(partitions: u32) -> (String, String) {
    let partition = |s: &str| cairn_types::partitioner::partition_for_key(s.as_bytes(), partitions);
    let first = "order-1".to_string();
    let second = (2..).map(|i| format!("order-{i}")).find(|s| partition(s) != partition(&first)).expect("some differ");
    (first, second)
}

/// The bank-account example against a real node: concurrent withdrawals never overdraw
/// (exactly as many succeed as the balance allows), and the `cairn stream` commands append
/// on a condition, refuse a stale one, and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_example_never_overdraws_and_the_cli_appends_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &FAST_RAFT));
    let client = connect(&node.address).await;
    bank_account::ensure_topic(&client).await.expect("topic");
    let deposit = bank_account::AccountEvent::Deposited { amount: 100 }.to_event_data().expect("event");
    let stream = bank_account::stream_name("42");
    client.append_to_stream(bank_account::TOPIC, &stream, ExpectedRevision::Any, vec![deposit]).await.expect("deposit");
    let outcome = bank_account::race(&client, "42", 10, 30).await.expect("race");
    assert_eq!((outcome.succeeded, outcome.refused, outcome.failed), (3, 7, 0), "{outcome:?}");
    assert_eq!(outcome.balance_after, 10, "{outcome:?}");
    assert!(outcome.conflicts > 0, "the withdrawals raced: {outcome:?}");

    let cli = |args: &[&str]| tokio::task::block_in_place(|| node.cli(args));
    let append = |expect: &str| {
        cli(&[
            "stream",
            "append",
            "bank",
            "account-cli",
            "--type",
            "Opened",
            "--data",
            "{\"owner\":\"ana\"}",
            "--expect",
            expect,
        ])
    };
    let first = append("no-stream");
    harness::assert_success(&["stream", "append"], &first);
    let stale = append("no-stream");
    assert!(!stale.status.success(), "a stale expected revision is refused");
    let message = String::from_utf8_lossy(&stale.stderr);
    assert!(message.contains("account-cli") && message.contains("revision 0"), "{message}");
    let read =
        tokio::task::block_in_place(|| node.cli_ok(&["stream", "read", "bank", "account-cli", "--output", "json"]));
    let events: Vec<serde_json::Value> =
        read.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    assert_eq!(events.len(), 1, "{read}");
    assert_eq!(events[0]["event_type"], "Opened");
    assert_eq!(events[0]["revision"], 0);
    assert_eq!(events[0]["data"]["owner"], "ana");

    // Metadata, info and a tombstone through the CLI.
    let cli_ok = |args: &[&str]| tokio::task::block_in_place(|| node.cli_ok(args));
    cli_ok(&["stream", "metadata", "bank", "account-cli", "--max-count", "1", "--expect", "0"]);
    let info = cli_ok(&["stream", "info", "bank", "account-cli", "--output", "json"]);
    let info: serde_json::Value = serde_json::from_str(info.trim()).expect("one JSON object");
    assert_eq!((info["revision"].as_u64(), info["max_count"].as_u64()), (Some(0), Some(1)), "{info}");
    cli_ok(&["stream", "tombstone", "bank", "account-cli"]);
    let after = append("any");
    assert!(!after.status.success(), "a tombstoned stream takes no more events");
    let info = cli_ok(&["stream", "info", "bank", "account-cli", "--output", "json"]);
    assert!(info.contains("\"tombstoned\":true"), "{info}");
}

/// A stream's lifecycle through the API: metadata hides events at once (truncate before,
/// max count), a read that starts among hidden events says so, a soft delete lets appends
/// resume at the next revision, a tombstone refuses every later append and makes reads
/// NOT_FOUND; every change checks its expected revision; a follower answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metadata_deletion_and_tombstones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let client = connect(&addresses[0]).await;
    create_topic(&client, 2, 3).await;
    let events: Vec<_> = (0..5).map(|i| json_event("Counted", format!("{{\"n\":{i}}}"))).collect();
    client.append_to_stream(TOPIC, "counter", ExpectedRevision::NoStream, events).await.expect("append");
    let revisions = |events: &[RecordedEvent]| events.iter().map(|e| e.stream_revision).collect::<Vec<_>>();
    let whole = |client: &CairnClient| {
        let client = client.clone();
        async move { client.read_whole_stream(TOPIC, "counter", None, Consistency::Linearizable).await }
    };

    // Metadata: truncate before 1 and keep at most 3: revisions 2..=4 remain visible.
    let metadata = cairn_client::StreamMetadata { max_count: Some(3), truncate_before: Some(1), max_age_ms: None };
    let stale = client.set_stream_metadata(TOPIC, "counter", ExpectedRevision::Exact(3), metadata).await;
    assert!(matches!(stale, Err(ClientError::ConditionFailed { .. })), "{stale:?}");
    let changed = client.set_stream_metadata(TOPIC, "counter", ExpectedRevision::Exact(4), metadata).await;
    assert_eq!(changed.expect("metadata").first_visible_revision, 2);
    assert_eq!(revisions(&whole(&client).await.expect("read")), [2, 3, 4]);
    let options = ReadStreamOptions {
        from_revision: Some(0),
        consistency: Consistency::Linearizable,
        ..ReadStreamOptions::default()
    };
    let err = client.read_stream(TOPIC, "counter", options).await.expect_err("hidden revision");
    assert_eq!(err.code(), Some(Code::OutOfRange), "{err}");
    assert!(err.to_string().contains("first readable revision is 2"), "{err}");
    let info = client.stream_info(TOPIC, "counter", Consistency::Linearizable).await.expect("info");
    assert_eq!((info.current_revision, info.first_visible_revision, info.tombstoned), (Some(4), 2, false));

    // A soft delete: nothing visible, the stream counts as no stream, revisions go on.
    client.delete_stream(TOPIC, "counter", ExpectedRevision::Exact(4), false).await.expect("delete");
    assert!(whole(&client).await.expect("read").is_empty());
    let again = json_event("Counted", "{\"n\":5}");
    let appended = client.append_to_stream(TOPIC, "counter", ExpectedRevision::NoStream, vec![again]).await;
    assert_eq!(appended.expect("append after a soft delete").last_revision(), Some(5));
    assert_eq!(revisions(&whole(&client).await.expect("read")), [5]);

    // A tombstone: for good.
    let tombstoned = client.delete_stream(TOPIC, "counter", ExpectedRevision::Exists, true).await.expect("tombstone");
    client.delete_stream(TOPIC, "counter", ExpectedRevision::Any, true).await.expect("a tombstone again is a retry");
    let refused = client.append_to_stream(TOPIC, "counter", ExpectedRevision::Any, vec![json_event("E", "{}")]).await;
    let err = refused.expect_err("tombstoned");
    assert_eq!(err.code(), Some(Code::FailedPrecondition), "{err}");
    assert!(err.to_string().contains("deleted for good"), "{err}");
    for address in &addresses {
        let other = connect(address).await;
        let err = other
            .read_whole_stream(TOPIC, "counter", None, Consistency::ReadYourWrites(tombstoned.applied_index))
            .await
            .expect_err("tombstoned reads");
        assert_eq!(err.code(), Some(Code::NotFound), "node at {address}: {err}");
        let info = other.stream_info(TOPIC, "counter", Consistency::Linearizable).await.expect("info");
        assert!(info.tombstoned && info.current_revision == Some(5), "node at {address}: {info:?}");
    }
}

/// A follower that was down while its partition's log was purged catches up from a
/// streamed snapshot, and then answers stream reads and stream info exactly as the leader:
/// revisions, deletions, a tombstone and metadata rebuilt from the records it received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restored_from_a_snapshot_answers_streams_as_the_leader() {
    const STREAMS: usize = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    // Snapshot every 50 entries: the follower can only catch up from a snapshot.
    args.extend(["--snapshot-log-entries", "50"]);
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &args));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    create_topic(&connect(&addresses[0]).await, 1, 3).await;
    let status = connect(&addresses[0]).await.cluster_status().await.expect("status");
    let leader = status.groups.iter().find(|g| g.topic == TOPIC).and_then(|g| g.leader).expect("leader") as usize;
    let lagging = leader % 3; // a follower (node ids are 1-based)
    tokio::task::block_in_place(|| cluster.nodes[lagging].kill());
    let writer = connect(&addresses[(lagging + 1) % 3]).await;
    let name = |s: usize| format!("restored-{s}");
    let append_rounds = |streams: std::ops::Range<usize>, rounds: std::ops::Range<u64>| {
        let writer = writer.clone();
        async move {
            let mut last = None;
            for round in rounds {
                for s in streams.clone() {
                    let expected = round.checked_sub(1).map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                    let event = json_event("Counted", format!("{{\"round\":{round}}}"));
                    // Tagged, so that query reads (served from the type and tag indexes a
                    // snapshot import rebuilds) are compared too.
                    let event = cairn_client::EventData { tags: vec![format!("group={}", s % 2)], ..event };
                    last = Some(writer.append_to_stream(TOPIC, &name(s), expected, vec![event]).await.expect("append"));
                }
            }
            last.expect("an append")
        }
    };
    append_rounds(0..STREAMS, 0..20).await;
    writer.delete_stream(TOPIC, &name(0), ExpectedRevision::Exact(19), false).await.expect("soft delete");
    writer.delete_stream(TOPIC, &name(1), ExpectedRevision::Any, true).await.expect("tombstone");
    let metadata = cairn_client::StreamMetadata { max_count: Some(3), ..Default::default() };
    writer.set_stream_metadata(TOPIC, &name(2), ExpectedRevision::Any, metadata).await.expect("metadata");
    // Enough entries after the changes (about 300 in all, as in cluster.rs's catch-up test)
    // that the leader purged its log past them: the follower can only catch up from a
    // snapshot, and that snapshot holds the changes.
    let mut last = append_rounds(3..STREAMS, 20..80).await;
    // The leader builds and purges in the background: if the follower still caught up
    // from the log, take it down again and write on until it needs a snapshot.
    for attempt in 1u64.. {
        tokio::task::block_in_place(|| cluster.nodes[lagging].restart());
        let restored = connect(&addresses[lagging]).await;
        let consistency = Consistency::ReadYourWrites(last.applied_index);
        for s in 0..STREAMS {
            let leader_view = writer.read_whole_stream(TOPIC, &name(s), None, Consistency::Linearizable).await;
            let restored_view = restored.read_whole_stream(TOPIC, &name(s), None, consistency).await;
            match (leader_view, restored_view) {
                (Ok(expected), Ok(seen)) => assert_eq!(seen, expected, "stream {}", name(s)),
                (Err(expected), Err(seen)) => assert_eq!(seen.code(), expected.code(), "stream {}: {seen}", name(s)),
                (expected, seen) => {
                    panic!("stream {}: the leader answers {expected:?}, the restored node {seen:?}", name(s))
                }
            }
            let expected = writer.stream_info(TOPIC, &name(s), Consistency::Linearizable).await.expect("info");
            let seen = restored.stream_info(TOPIC, &name(s), consistency).await.expect("info");
            assert_eq!(seen, expected, "stream {}", name(s));
        }
        for group in ["group=0", "group=1"] {
            let query = cairn_client::EventQuery { items: vec![cairn_client::QueryItem::new(["Counted"], [group])] };
            let partition = cairn_client::QueryPartition::Partition(0);
            let expected = writer
                .query_all_events(TOPIC, partition.clone(), query.clone(), None, Consistency::Linearizable)
                .await
                .expect("query the leader");
            let seen =
                restored.query_all_events(TOPIC, partition, query, None, consistency).await.expect("query restored");
            assert_eq!(seen.events, expected.events, "{group}");
            assert!(!seen.events.is_empty(), "{group}");
        }
        let log = std::fs::read_to_string(cluster.nodes[lagging].data_dir.with_extension("log")).expect("node log");
        if log.contains("partition snapshot installed") {
            break;
        }
        assert!(attempt < 5, "the follower never needed a snapshot to catch up");
        tokio::task::block_in_place(|| cluster.nodes[lagging].kill());
        let rounds = 80 + (attempt - 1) * 60;
        last = append_rounds(3..STREAMS, rounds..rounds + 60).await;
    }
}

/// Every event of the partition a node's replica stores, read as a consumer does (each
/// read going on from the `next_offset` the last one answered), as `(stream, revision)`.
async fn stored_events(client: &CairnClient, applied_index: u64) -> Vec<(String, u64)> {
    let (mut events, mut from) = (Vec::new(), 0);
    loop {
        let read = client
            .read_consistent(TOPIC, 0, from, 3, 0, 0, Consistency::ReadYourWrites(applied_index))
            .await
            .expect("read the partition");
        assert!(read.next_offset > from || read.next_offset == read.high_watermark, "{read:?}");
        for record in &read.records {
            let (Some(key), Some(event)) = (&record.key, &record.event) else { continue };
            if !event.event_type.starts_with('$') {
                events.push((String::from_utf8_lossy(key).into_owned(), event.stream_revision));
            }
        }
        if read.next_offset >= read.high_watermark {
            return events;
        }
        from = read.next_offset;
    }
}

/// Compaction removes the events a soft delete, a tombstone and a max count hide from
/// every replica's store (a consumer of the partition no longer receives them), leaves
/// every other event and every stream read as it was, and frees a removed event's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_events_are_compacted_away_on_every_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--compaction-check-interval-ms", "200"]);
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &args));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let client = connect(&addresses[0]).await;
    create_topic(&client, 1, 3).await;
    let five = || (0..5).map(|i| json_event("Counted", format!("{{\"n\":{i}}}"))).collect::<Vec<_>>();
    let deleted = five();
    let first_deleted_id = deleted[0].event_id;
    let mut applied_index = 0;
    for (stream, events) in [("deleted", deleted), ("tombstoned", five()), ("limited", five()), ("untouched", five())] {
        let appended = client.append_to_stream(TOPIC, stream, ExpectedRevision::NoStream, events).await;
        applied_index = appended.expect("append").applied_index;
    }
    let everything = stored_events(&client, applied_index).await;
    assert_eq!(everything.len(), 20, "{everything:?}");
    client.delete_stream(TOPIC, "deleted", ExpectedRevision::Exact(4), false).await.expect("soft delete");
    client.delete_stream(TOPIC, "tombstoned", ExpectedRevision::Exact(4), true).await.expect("tombstone");
    let metadata = cairn_client::StreamMetadata { max_count: Some(2), ..Default::default() };
    let last =
        client.set_stream_metadata(TOPIC, "limited", ExpectedRevision::Exact(4), metadata).await.expect("metadata");

    let expected: Vec<(String, u64)> = everything
        .iter()
        .filter(|(stream, revision)| stream == "untouched" || (stream == "limited" && *revision >= 3))
        .cloned()
        .collect();
    for address in &addresses {
        let node = connect(address).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stored = stored_events(&node, last.applied_index).await;
            if stored == expected {
                break;
            }
            assert!(Instant::now() < deadline, "node at {address} still stores {stored:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let limited = node.read_whole_stream(TOPIC, "limited", None, Consistency::Linearizable).await.expect("read");
        assert_eq!(limited.iter().map(|e| e.stream_revision).collect::<Vec<_>>(), [3, 4], "node at {address}");
        let untouched =
            node.read_whole_stream(TOPIC, "untouched", None, Consistency::Linearizable).await.expect("read");
        assert_eq!(untouched.len(), 5, "node at {address}");
    }
    // The soft-deleted stream goes on at revision 5, even with the id of a removed event:
    // the id is no longer stored, so the append is not taken for a retry.
    let again = cairn_client::EventData { event_id: first_deleted_id, ..json_event("Counted", "{}") };
    let appended = client.append_to_stream(TOPIC, "deleted", ExpectedRevision::NoStream, vec![again]).await;
    assert_eq!(appended.expect("append after the deletion").last_revision(), Some(5));
}

/// With retention on, a follower restored from a snapshot knows the streams whose every
/// record retention removed: their revisions, deletions and metadata travel with the
/// snapshot (retired heads), so it answers stream info as the leader does, and would number
/// their next events alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restored_after_retention_knows_the_streams_retention_removed() {
    const STREAMS: usize = 4;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--snapshot-log-entries", "50", "--retention-check-interval-ms", "200"]);
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &args));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let mut options = CreateTopicOptions::new(TOPIC, 1);
    options.replication_factor = 3;
    options.retention_ms = Some(1);
    connect(&addresses[0]).await.create_topic(options).await.expect("create topic");
    let status = connect(&addresses[0]).await.cluster_status().await.expect("status");
    let leader = status.groups.iter().find(|g| g.topic == TOPIC).and_then(|g| g.leader).expect("leader") as usize;
    let lagging = leader % 3; // a follower (node ids are 1-based)
    tokio::task::block_in_place(|| cluster.nodes[lagging].kill());
    let writer = connect(&addresses[(lagging + 1) % 3]).await;
    let name = |s: usize| format!("expired-{s}");
    let mut next_revision = [0u64; STREAMS];
    let mut last = None;
    for round in 0..3 {
        for (s, next) in next_revision.iter_mut().enumerate() {
            let event = json_event("Counted", format!("{{\"round\":{round}}}"));
            let appended = writer.append_to_stream(TOPIC, &name(s), ExpectedRevision::Any, vec![event]).await;
            last = Some(appended.expect("append"));
            *next += 1;
        }
    }
    writer.delete_stream(TOPIC, &name(0), ExpectedRevision::Any, false).await.expect("soft delete");
    let metadata = cairn_client::StreamMetadata { max_age_ms: Some(60_000), ..Default::default() };
    writer.set_stream_metadata(TOPIC, &name(1), ExpectedRevision::Any, metadata).await.expect("metadata");
    let mut last = last.expect("an append");
    for attempt in 1u64.. {
        // Plain records push the log past the snapshot interval; retention removes them
        // and every event above.
        for i in 0..60 {
            last = writer
                .append_to_stream(TOPIC, "filler", ExpectedRevision::Any, vec![json_event("F", format!("{i}"))])
                .await
                .expect("filler");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let read = writer.read_consistent(TOPIC, 0, 0, 1, 0, 0, Consistency::Linearizable).await;
            match read {
                Err(err) if err.code() == Some(Code::OutOfRange) => break,
                Ok(read) if read.log_start_offset == read.high_watermark => break,
                other => assert!(Instant::now() < deadline, "retention never removed everything: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::task::block_in_place(|| cluster.nodes[lagging].restart());
        let restored = connect(&addresses[lagging]).await;
        let consistency = Consistency::ReadYourWrites(last.applied_index);
        for (s, next) in next_revision.iter().enumerate() {
            let expected = writer.stream_info(TOPIC, &name(s), Consistency::Linearizable).await.expect("info");
            assert_eq!(expected.current_revision, Some(next - 1), "the leader knows {}", name(s));
            let seen = restored.stream_info(TOPIC, &name(s), consistency).await.expect("info");
            assert_eq!(seen, expected, "stream {} on the restored node", name(s));
        }
        let log = std::fs::read_to_string(cluster.nodes[lagging].data_dir.with_extension("log")).expect("node log");
        if log.contains("partition snapshot installed") {
            break;
        }
        assert!(attempt < 5, "the follower never needed a snapshot to catch up");
        tokio::task::block_in_place(|| cluster.nodes[lagging].kill());
    }
}
