//! Crash safety: a writer appends batches while the server is SIGKILLed at random points.
//! After each restart, every acknowledged batch is there, whole, at the offsets it was
//! acknowledged with; an unacknowledged batch is either entirely there or entirely absent.

mod harness;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions};
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
        let mut from = 0;
        loop {
            let result = client.read("crash", partition, from, 0, 0, 0).await.expect("read after restart");
            for record in &result.records {
                let value = String::from_utf8(record.value.to_vec()).expect("utf-8 value");
                let previous = seen.insert(value.clone(), (partition, record.offset));
                assert!(previous.is_none(), "{value} stored twice: {previous:?} and {:?}", (partition, record.offset));
            }
            if result.next_offset >= result.high_watermark {
                assert_eq!(result.next_offset, result.high_watermark);
                break;
            }
            assert!(result.next_offset > from, "reads make progress");
            from = result.next_offset;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let seed = harness::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &FAST_RAFT));
    let client = CairnClient::connect(&node.address).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("crash", PARTITIONS)).await.expect("create topic");

    let mut outcomes: HashMap<(usize, usize), Outcome> = HashMap::new();
    let (mut acked, mut unknown) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let client = CairnClient::connect(&node.address).await.expect("connect");
        let writer = tokio::spawn(async move {
            let mut results = Vec::new();
            for batch in 0.. {
                let records = batch_values(round, batch)
                    .into_iter()
                    .map(|v| Record { key: None, headers: vec![], value: Bytes::from(v) })
                    .collect();
                match client.append("crash", Some(batch as u32 % PARTITIONS), records).await {
                    Ok(positions) => results.push((batch, Outcome::Acked(positions))),
                    Err(_) => {
                        results.push((batch, Outcome::Unknown));
                        break;
                    }
                }
            }
            results
        });
        // A random kill point, drawn from the seed.
        let kill_after = Duration::from_millis(rng.random_range(100..800));
        tokio::time::sleep(kill_after).await;
        tokio::task::block_in_place(|| node.kill());
        let results =
            tokio::time::timeout(Duration::from_secs(30), writer).await.expect("writer stops").expect("writer");
        for (batch, outcome) in results {
            match outcome {
                Outcome::Acked(_) => acked += 1,
                Outcome::Unknown => unknown += 1,
            }
            outcomes.insert((round, batch), outcome);
        }
        tokio::task::block_in_place(|| node.restart());

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
}
