//! End to end through the real binary: `cairn serve` plus the CLI, with a SIGKILL and a
//! restart in the middle.

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_types::partitioner::partition_for_key;
use harness::{FAST_RAFT, Node, wait_until};
use serde_json::Value;

const PARTITIONS: u32 = 4;
const UNKEYED: usize = 19_000;
const KEYS: usize = 5;
const PER_KEY: usize = 200;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn position(line: &Value) -> (u64, u64) {
    (line["partition"].as_u64().expect("partition"), line["offset"].as_u64().expect("offset"))
}

#[test]
fn produce_kill_restart_consume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&dir.path().join("node1"), &FAST_RAFT);
    node.cli_ok(&["topic", "create", "events", "--partitions", &PARTITIONS.to_string()]);

    // 19,000 unkeyed records, then 200 records for each of 5 keys: 20,000 in all.
    let mut expected: HashMap<(u64, u64), (Option<String>, String)> = HashMap::new();
    let unkeyed: String = (0..UNKEYED).map(|i| format!("value-{i}\n")).collect();
    let output = node.cli_with_stdin(&["produce", "events", "--output", "json"], Some(unkeyed.as_bytes()));
    harness::assert_success(&["produce"], &output);
    let lines = json_lines(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(lines.len(), UNKEYED, "one position per record");
    for (i, line) in lines.iter().enumerate() {
        assert!(expected.insert(position(line), (None, format!("value-{i}"))).is_none(), "offset reused");
    }
    for k in 0..KEYS {
        let key = format!("customer-{k}");
        let values: String = (0..PER_KEY).map(|i| format!("{key}-event-{i}\n")).collect();
        let output =
            node.cli_with_stdin(&["produce", "events", "--key", &key, "--output", "json"], Some(values.as_bytes()));
        harness::assert_success(&["produce", "--key"], &output);
        let lines = json_lines(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(lines.len(), PER_KEY);
        for (i, line) in lines.iter().enumerate() {
            let (partition, offset) = position(line);
            assert_eq!(
                partition,
                u64::from(partition_for_key(key.as_bytes(), PARTITIONS)),
                "key {key} in its hash partition"
            );
            expected.insert((partition, offset), (Some(key.clone()), format!("{key}-event-{i}")));
        }
    }
    assert_eq!(expected.len(), UNKEYED + KEYS * PER_KEY);

    // Kill without warning; everything acknowledged must survive.
    node.restart();

    let consumed = json_lines(&node.cli_ok(&["consume", "events", "--output", "json"]));
    assert_eq!(consumed.len(), expected.len(), "every record, once");
    let mut per_partition: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for record in &consumed {
        let at = position(record);
        let (key, value) = expected.get(&at).unwrap_or_else(|| panic!("unexpected record at {at:?}: {record}"));
        assert_eq!(record["value"].as_str(), Some(value.as_str()), "value at {at:?}");
        assert_eq!(record["key"].as_str(), key.as_deref(), "key at {at:?}");
        assert!(record["timestamp"].as_u64().is_some_and(|t| t > 0));
        per_partition.entry(at.0).or_default().push(at.1);
    }
    for (partition, mut offsets) in per_partition {
        offsets.sort_unstable();
        assert!(offsets.iter().enumerate().all(|(i, &o)| o == i as u64), "partition {partition}: offsets dense from 0");
    }
    assert_eq!(
        node.cli_ok(&["consume", "events", "--partition", "2", "--max", "5", "--output", "json"]).lines().count(),
        5,
        "--max"
    );
}

#[test]
fn consume_from_timestamp_and_follow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node1"), &FAST_RAFT);
    node.cli_ok(&["topic", "create", "clock", "--partitions", "1"]);
    node.cli_ok(&["produce", "clock", "--value", "before"]);
    let first = json_lines(&node.cli_ok(&["consume", "clock", "--output", "json"]));
    let before_ts = first[0]["timestamp"].as_u64().expect("timestamp");

    // Produce until a record is stamped later than the first one (observable, no sleep).
    let mut after_offset = None;
    wait_until("a later timestamp", Duration::from_secs(10), || {
        let line = node.cli_ok(&["produce", "clock", "--value", "after", "--output", "json"]);
        let offset = position(&json_lines(&line)[0]).1;
        let record = json_lines(&node.cli_ok(&["consume", "clock", "--from", &offset.to_string(), "--output", "json"]));
        if record[0]["timestamp"].as_u64().expect("timestamp") > before_ts {
            after_offset = Some(offset);
            return true;
        }
        false
    });
    let after_offset = after_offset.expect("found");
    let from_time =
        json_lines(&node.cli_ok(&["consume", "clock", "--from", &format!("@{}", before_ts + 1), "--output", "json"]));
    assert_eq!(position(&from_time[0]).1, after_offset, "--from @time starts at the first record at or after it");
    let from_start =
        json_lines(&node.cli_ok(&["consume", "clock", "--from", &format!("@{before_ts}"), "--output", "json"]));
    assert_eq!(position(&from_start[0]).1, 0);

    // Follow from the current end, then produce: the follower sees exactly the new records.
    let describe: Value =
        serde_json::from_str(&node.cli_ok(&["topic", "describe", "clock", "--output", "json"])).expect("json");
    let end = describe["partitions"][0]["high_watermark"].as_u64().expect("high watermark");
    let mut follower = Command::new(harness::BINARY)
        .args(["consume", "clock", "--follow", "--from", &end.to_string(), "--max", "3", "--output", "json"])
        .env("CAIRN_SERVER", &node.address)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn follower");
    for value in ["live-1", "live-2", "live-3"] {
        node.cli_ok(&["produce", "clock", "--value", value]);
    }
    let stdout = follower.stdout.take().expect("stdout");
    let lines: Vec<Value> =
        BufReader::new(stdout).lines().map(|l| serde_json::from_str(&l.expect("line")).expect("json")).collect();
    assert!(follower.wait().expect("follower exits after --max").success());
    let values: Vec<&str> = lines.iter().map(|l| l["value"].as_str().expect("value")).collect();
    assert_eq!(values, ["live-1", "live-2", "live-3"]);
    assert_eq!(position(&lines[0]).1, end);
}

#[test]
fn topic_admin_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--retention-check-interval-ms", "200"]);
    let node = Node::start(&dir.path().join("node1"), &args);
    node.cli_ok(&["topic", "create", "short-lived", "--partitions", "2", "--retention-ms", "1"]);
    node.cli_ok(&["topic", "create", "kept", "--partitions", "3"]);
    let listed = node.cli_ok(&["topic", "list"]);
    assert!(listed.contains("short-lived") && listed.contains("kept"), "{listed}");

    node.cli_ok(&["produce", "short-lived", "--partition", "0", "--value", "gone soon"]);
    // The leader's retention task deletes the batch through Raft: the log start moves.
    wait_until("retention to delete the prefix", Duration::from_secs(20), || {
        let describe: Value =
            serde_json::from_str(&node.cli_ok(&["topic", "describe", "short-lived", "--output", "json"]))
                .expect("json");
        describe["partitions"][0]["log_start_offset"].as_u64() == Some(1)
    });
    let read_deleted = node.cli(&["consume", "short-lived", "--partition", "0", "--from", "0"]);
    assert!(!read_deleted.status.success(), "offset 0 is below the log start now");

    let describe: Value =
        serde_json::from_str(&node.cli_ok(&["topic", "describe", "kept", "--output", "json"])).expect("json");
    let partitions = describe["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3);
    for p in partitions {
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["leader"], serde_json::json!(1));
    }
    node.cli_ok(&["topic", "delete", "kept"]);
    assert!(!node.cli_ok(&["topic", "list"]).contains("kept"));
    let status: Value = serde_json::from_str(&node.cli_ok(&["cluster", "status", "--output", "json"])).expect("json");
    assert_eq!(status["node_id"], 1);
    let described = node.cli(&["topic", "describe", "kept"]);
    assert!(!described.status.success(), "deleted topic is gone");
}

/// Many concurrent sends through one `BatchingProducer`: every send gets its own offsets,
/// the partition holds each record exactly once, at the offset its send was told, and
/// records of one send stay contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_producer_answers_every_send_with_its_offsets() {
    use bytes::Bytes;
    use cairn_client::{BatchingConfig, BatchingProducer, CairnClient, CreateTopicOptions};
    use cairn_types::Record;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &FAST_RAFT));
    let client = CairnClient::connect(&node.address).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("batched", 2)).await.expect("create");
    let config = BatchingConfig { batch_records_max: 50, ..BatchingConfig::default() };
    let producer = std::sync::Arc::new(BatchingProducer::new(&client, "batched", config).await.expect("producer"));
    let sends: Vec<_> = (0..400u32)
        .map(|n| {
            let producer = std::sync::Arc::clone(&producer);
            tokio::spawn(async move {
                let partition = n % 2;
                let records: Vec<Record> = (0..1 + n % 3)
                    .map(|i| Record { key: None, headers: vec![], value: Bytes::from(format!("s{n}-r{i}")) })
                    .collect();
                let count = records.len() as u64;
                let base = producer.send(partition, records).await.expect("send acknowledged");
                (n, partition, base, count)
            })
        })
        .collect();
    let mut expected = BTreeMap::new();
    for send in sends {
        let (n, partition, base, count) = send.await.expect("task");
        for i in 0..count {
            assert!(expected.insert((partition, base + i), format!("s{n}-r{i}")).is_none(), "offset given twice");
        }
    }
    let mut stored = BTreeMap::new();
    for partition in 0..2 {
        for record in harness::read_partition(&client, "batched", partition).await {
            stored.insert((partition, record.offset), String::from_utf8_lossy(&record.value).into_owned());
        }
    }
    assert_eq!(stored, expected, "each record once, at the offset its send was told");
    let total: u64 = (0..400u64).map(|n| 1 + n % 3).sum();
    assert_eq!(stored.len() as u64, total);
    let bad = producer.send(7, vec![Record { key: None, headers: vec![], value: Bytes::from_static(b"x") }]).await;
    assert_eq!(bad.expect_err("no partition 7").code(), Some(tonic::Code::NotFound));
}
