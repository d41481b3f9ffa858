//! Every kind of bad input gets a precise gRPC status, and the server keeps running with its
//! data intact.

mod harness;

use bytes::Bytes;
use cairn_client::{CairnClient, ClientError, CreateTopicOptions, proto};
use cairn_types::Record;
use harness::{FAST_RAFT, Node};
use tonic::Code;

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (Code, String) {
    let err = result.expect_err("the call must fail");
    (err.code().unwrap_or(Code::Unknown), err.to_string())
}

fn value(len: usize) -> Record {
    Record { key: None, headers: vec![], value: Bytes::from(vec![b'v'; len]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend([
        "--records-per-request-max",
        "100",
        "--request-bytes-max",
        "2000000",
        "--partitions-per-topic-max",
        "50",
    ]);
    let mut node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &args));
    let client = CairnClient::connect(&node.address).await.expect("connect");

    // Topic creation.
    let (c, message) = code(client.create_topic(CreateTopicOptions::new("bad/name", 1)).await);
    assert_eq!(c, Code::InvalidArgument, "{message}");
    assert!(message.contains('/'), "names the bad character: {message}");
    assert_eq!(code(client.create_topic(CreateTopicOptions::new("", 1)).await).0, Code::InvalidArgument);
    assert_eq!(code(client.create_topic(CreateTopicOptions::new("x".repeat(250), 1)).await).0, Code::InvalidArgument);
    assert_eq!(code(client.create_topic(CreateTopicOptions::new("zero", 0)).await).0, Code::InvalidArgument);
    let (c, message) = code(client.create_topic(CreateTopicOptions::new("wide", 51)).await);
    assert_eq!(c, Code::ResourceExhausted, "{message}");
    assert!(message.contains("50"), "names the limit: {message}");
    let mut replicated = CreateTopicOptions::new("replicated", 1);
    replicated.replication_factor = 3;
    assert_eq!(code(client.create_topic(replicated).await).0, Code::FailedPrecondition);
    let mut zero_retention = CreateTopicOptions::new("zero-retention", 1);
    zero_retention.retention_ms = Some(0);
    assert_eq!(code(client.create_topic(zero_retention).await).0, Code::InvalidArgument);
    client.create_topic(CreateTopicOptions::new("t", 2)).await.expect("create t");
    assert_eq!(code(client.create_topic(CreateTopicOptions::new("t", 2)).await).0, Code::AlreadyExists);
    // Growing a topic: only up, within the partition limit, of a topic that exists.
    let (c, message) = code(client.alter_topic_partitions("t", 2).await);
    assert_eq!(c, Code::InvalidArgument, "{message}");
    assert!(message.contains("can only grow"), "{message}");
    assert_eq!(code(client.alter_topic_partitions("t", 51).await).0, Code::ResourceExhausted);
    assert_eq!(code(client.alter_topic_partitions("nope", 3).await).0, Code::NotFound);

    // Appends.
    let stored = client.append("t", Some(0), vec![value(10), value(20)]).await.expect("good append");
    assert_eq!(stored, vec![(0, 0), (0, 1)]);
    assert_eq!(code(client.append("nope", None, vec![value(1)]).await).0, Code::NotFound);
    let (c, message) = code(client.append("t", Some(9), vec![value(1)]).await);
    assert_eq!(c, Code::NotFound, "{message}");
    assert_eq!(code(client.append("t", None, vec![]).await).0, Code::InvalidArgument);
    let (c, message) = code(client.append("t", None, (0..101).map(|_| value(1)).collect()).await);
    assert_eq!(c, Code::ResourceExhausted, "{message}");
    assert!(message.contains("100"), "{message}");
    let (c, message) = code(client.append("t", None, vec![value(1024 * 1024 + 1)]).await);
    assert_eq!(c, Code::ResourceExhausted, "{message}");
    assert_eq!(
        code(client.append("t", None, vec![value(1024 * 1024), value(1024 * 1024)]).await).0,
        Code::ResourceExhausted
    );
    // Idempotent producers: a retry returns the original offsets and writes nothing; gaps,
    // unknown producers and missing partitions are refused.
    let mut raw = client.proto_client();
    let producer_id = client.init_producer().await.expect("producer id");
    let idempotent = |producer_id: u64, partition: Option<u32>, sequence: u64| proto::AppendRequest {
        topic: "t".into(),
        partition,
        records: vec![
            proto::Record { key: None, headers: vec![], value: Bytes::from_static(b"x") },
            proto::Record { key: None, headers: vec![], value: Bytes::from_static(b"y") },
        ],
        producer_id: Some(producer_id),
        sequence: Some(sequence),
    };
    let first = raw.append(idempotent(producer_id, Some(0), 0)).await.expect("first").into_inner();
    assert!(!first.duplicate);
    let retry = raw.append(idempotent(producer_id, Some(0), 0)).await.expect("retry").into_inner();
    assert!(retry.duplicate, "the retry is recognised");
    assert_eq!(retry.positions, first.positions, "same offsets");
    let high_watermark = client.read("t", 0, 0, 0, 0, 0).await.expect("read").high_watermark;
    assert_eq!(high_watermark, first.positions[1].offset + 1, "the retry wrote nothing");
    let gap = raw.append(idempotent(producer_id, Some(0), 5)).await.expect_err("gap");
    assert_eq!(gap.code(), Code::FailedPrecondition, "{}", gap.message());
    assert!(gap.message().contains("next sequence there is 2"), "{}", gap.message());
    let next = raw.append(idempotent(producer_id, Some(0), 2)).await.expect("next in order").into_inner();
    assert_eq!(next.positions[0].offset, first.positions[1].offset + 1);
    // An id above those this node knows may come from a controller leader it lags behind:
    // retryable. Id 0 is never handed out.
    let unknown = raw.append(idempotent(999_999, Some(0), 0)).await.expect_err("unknown producer");
    assert_eq!(unknown.code(), Code::Unavailable, "{}", unknown.message());
    assert!(unknown.message().contains("not known on this node yet"), "{}", unknown.message());
    let zero = raw.append(idempotent(0, Some(0), 0)).await.expect_err("producer id 0");
    assert_eq!(zero.code(), Code::FailedPrecondition, "{}", zero.message());
    let unrouted = raw.append(idempotent(producer_id, None, 4)).await.expect_err("no partition");
    assert_eq!(unrouted.code(), Code::InvalidArgument);

    // Reads.
    let (c, message) = code(client.read("t", 0, 99, 0, 0, 0).await);
    assert_eq!(c, Code::OutOfRange, "{message}");
    assert_eq!(code(client.read("t", 5, 0, 0, 0, 0).await).0, Code::NotFound);
    assert_eq!(code(client.read("nope", 0, 0, 0, 0, 0).await).0, Code::NotFound);
    assert_eq!(code(client.describe_topic("nope").await).0, Code::NotFound);
    assert_eq!(code(client.delete_topic("nope").await).0, Code::NotFound);
    let subscribe = raw
        .subscribe(proto::SubscribeRequest {
            topic: "t".into(),
            partition: 0,
            start: Some(proto::subscribe_request::Start::Offset(99)),
            max_bytes_per_message: 0,
            consistency: 0,
            min_applied_index: 0,
        })
        .await
        .expect("beyond the high watermark: waited for (see tests/service.rs), not refused");
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), subscribe.into_inner().message()).await;
    assert!(waiting.is_err(), "the subscription waits for offset 99: {waiting:?}");
    let limited = client.read("t", 0, 0, 1, 0, 0).await.expect("max_records");
    assert_eq!(limited.records.len(), 1);
    let odd_consistency = raw
        .read(proto::ReadRequest { topic: "t".into(), consistency: 7, ..Default::default() })
        .await
        .expect_err("unknown consistency");
    assert_eq!(odd_consistency.code(), Code::InvalidArgument, "{}", odd_consistency.message());

    // Node removal: unknown nodes, the last controller voter (forced or not). Nodes that
    // hold replicas: see tests/cluster.rs.
    let (c, message) = code(client.remove_node(42, false).await);
    assert_eq!(c, Code::NotFound, "{message}");
    for force in [false, true] {
        let (c, message) = code(client.remove_node(1, force).await);
        assert_eq!(c, Code::FailedPrecondition, "{message}");
        assert!(message.contains("only voter"), "{message}");
    }

    // Raft traffic: another cluster's messages, misrouted ones and garbage are refused.
    raft_messages_from_strangers_are_refused(&node.address, group_of(&client, "t", 0).await).await;

    // A corrupted stored batch is detected, reported as DATA_LOSS, and the server keeps going.
    let group = group_of(&client, "t", 0).await;
    tokio::task::block_in_place(|| node.kill());
    corrupt_first_batch(&node.data_dir.join("db"), group);
    tokio::task::block_in_place(|| node.restart());
    let client = CairnClient::connect(&node.address).await.expect("reconnect");
    let (c, message) = code(client.read("t", 0, 0, 0, 0, 0).await);
    assert_eq!(c, Code::DataLoss, "{message}");
    // After the restart partition 1 elects its leader again; then it takes writes.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while client.describe_topic("t").await.expect("describe").partitions[1].leader.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "partition 1 has no leader after restart");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    client.append("t", Some(1), vec![value(5)]).await.expect("other partitions still take writes");
    let topics = client.list_topics().await.expect("server still serving");
    assert_eq!(topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t"]);
}

async fn group_of(client: &CairnClient, topic: &str, partition: usize) -> u64 {
    client.describe_topic(topic).await.expect("describe").partitions[partition].group_id
}

async fn raft_messages_from_strangers_are_refused(address: &str, group: u64) {
    let mut raft = proto::raft_transport_client::RaftTransportClient::connect(format!("http://{address}"))
        .await
        .expect("connect to the raft transport");
    let message = |cluster: &str, to_node: u64, group_id: u64, payload: &'static [u8]| proto::RaftMessage {
        group_id,
        from_node: 2,
        to_node,
        payload: Bytes::from_static(payload),
        cluster: cluster.into(),
    };
    let foreign = raft.vote(message("1=10.9.9.9:7071", 1, group, b"")).await.expect_err("another cluster");
    assert_eq!(foreign.code(), Code::FailedPrecondition, "{}", foreign.message());
    assert!(foreign.message().contains("another cluster"), "{}", foreign.message());
    let unstamped = raft.append_entries(message("", 1, group, b"")).await.expect_err("no cluster");
    assert_eq!(unstamped.code(), Code::FailedPrecondition, "{}", unstamped.message());
    let misrouted = raft.vote(message("single-node", 7, group, b"")).await.expect_err("another node id");
    assert_eq!(misrouted.code(), Code::FailedPrecondition, "{}", misrouted.message());
    assert!(misrouted.message().contains("node 7"), "{}", misrouted.message());
    let unknown_group = raft.vote(message("single-node", 1, 9_999, b"")).await.expect_err("unknown group");
    assert_eq!(unknown_group.code(), Code::NotFound, "{}", unknown_group.message());
    let garbage = raft.append_entries(message("single-node", 1, group, b"\xff\xfe")).await.expect_err("garbage");
    assert_eq!(garbage.code(), Code::InvalidArgument, "{}", garbage.message());
}

fn corrupt_first_batch(db_path: &std::path::Path, group: u64) {
    let names = ["default", "raft_log", "raft_meta", "records", "index", "sm_meta"];
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), db_path, names).expect("open db");
    let cf = db.cf_handle("records").expect("records cf");
    let mut key = group.to_be_bytes().to_vec();
    key.extend_from_slice(&0u64.to_be_bytes());
    let mut batch = db.get_cf(cf, &key).expect("get").expect("batch at offset 0");
    let middle = batch.len() / 2;
    batch[middle] ^= 0xff;
    db.put_cf(cf, &key, batch).expect("put");
    db.flush_wal(true).expect("sync");
}
