//! Crash safety: an idempotent writer appends batches while the server is SIGKILLed at
//! random points and restarted on the same address. The writer retries the batch in flight
//! across the restart. After each round, every acknowledged batch is there exactly once,
//! whole, at the offsets it was acknowledged with; no value is stored twice.

mod harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions, IdempotentProducer};
use cairn_types::Record;
use harness::{FAST_RAFT, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 5;
const BATCH: usize = 10;
const PARTITIONS: u32 = 2;

#[derive(Debug)]
enum Outcome {
    Acked(Vec<(u32, u64)>),
    Unknown,
}

fn batch_values(round: usize, batch: usize) -> Vec<String> {
    (0..BATCH).map(|i| format!("r{round}-b{batch}-i{i}")).collect()
}

async fn read_all(client: &CairnClient) -> HashMap<String, (u32, u64)> {
    let mut seen = HashMap::new();
    for partition in 0..PARTITIONS {
        for record in harness::read_partition(client, "crash", partition).await {
            let value = String::from_utf8(record.value.to_vec()).expect("utf-8 value");
            let previous = seen.insert(value.clone(), (partition, record.offset));
            assert!(previous.is_none(), "{value} stored twice: {previous:?} and {:?}", (partition, record.offset));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let seed = harness::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", harness::free_ports(1)[0]);
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--listen", &listen]);
    let mut node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &args));
    let client = CairnClient::connect(&node.address).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("crash", PARTITIONS)).await.expect("create topic");

    let mut outcomes: HashMap<(usize, usize), Outcome> = HashMap::new();
    let (mut acked, mut unknown) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let client = CairnClient::connect(&node.address).await.expect("connect");
        let stop = Arc::new(AtomicBool::new(false));
        let acked_now = Arc::new(AtomicUsize::new(0));
        // An idempotent producer: the append in flight at the kill is retried (same
        // sequence) against the restarted node, and must not be stored twice.
        let writer = tokio::spawn({
            let (stop, acked_now) = (Arc::clone(&stop), Arc::clone(&acked_now));
            async move {
                let mut producer = IdempotentProducer::new(&client, "crash").await.expect("producer");
                let mut results = Vec::new();
                for batch in 0.. {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let records: Vec<Record> = batch_values(round, batch)
                        .into_iter()
                        .map(|v| Record { key: None, headers: vec![], value: Bytes::from(v) })
                        .collect();
                    let partition = batch as u32 % PARTITIONS;
                    match producer.append(partition, records).await {
                        Ok(produced) => {
                            let positions = (0..BATCH as u64).map(|i| (partition, produced.base_offset + i)).collect();
                            results.push((batch, Outcome::Acked(positions)));
                            acked_now.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(_) => {
                            results.push((batch, Outcome::Unknown));
                            break;
                        }
                    }
                }
                results
            }
        });
        // A random kill point, drawn from the seed; the node comes back on the same address.
        let kill_after = Duration::from_millis(rng.random_range(100..800));
        tokio::time::sleep(kill_after).await;
        tokio::task::block_in_place(|| node.restart());
        let before_restart = acked_now.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked_now.load(Ordering::Acquire) < before_restart + 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer made no progress after the restart (seed {seed})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Release);
        let results =
            tokio::time::timeout(Duration::from_secs(30), writer).await.expect("writer stops").expect("writer");
        for (batch, outcome) in results {
            match outcome {
                Outcome::Acked(_) => acked += 1,
                Outcome::Unknown => unknown += 1,
            }
            outcomes.insert((round, batch), outcome);
        }
        let client = CairnClient::connect(&node.address).await.expect("connect after restart");
        let seen = read_all(&client).await;
        for ((round, batch), outcome) in &outcomes {
            let values = batch_values(*round, *batch);
            let found: Vec<Option<&(u32, u64)>> = values.iter().map(|v| seen.get(v)).collect();
            match outcome {
                Outcome::Acked(positions) => {
                    for (value, (found, expected)) in values.iter().zip(found.iter().zip(positions)) {
                        assert_eq!(*found, Some(expected), "acknowledged {value} lost or moved (seed {seed})");
                    }
                }
                Outcome::Unknown => {
                    let present = found.iter().filter(|f| f.is_some()).count();
                    assert!(
                        present == 0 || present == BATCH,
                        "batch r{round}-b{batch} half there: {present}/{BATCH} (seed {seed})"
                    );
                    if present == BATCH {
                        let first = found[0].expect("present");
                        for (i, f) in found.iter().enumerate() {
                            assert_eq!(
                                **f.as_ref().expect("present"),
                                (first.0, first.1 + i as u64),
                                "batch contiguous"
                            );
                        }
                    }
                }
            }
        }
        eprintln!("round {round}: killed after {kill_after:?}; {acked} batches acknowledged so far, {unknown} unknown");
    }
    assert!(acked > 0, "the writer got some appends acknowledged");
    assert_eq!(unknown, 0, "every append in flight at a kill was resolved by its retry (seed {seed})");
}
