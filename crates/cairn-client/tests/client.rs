//! `CairnClient` against an in-memory fake server: conversions, errors and retries.

mod fake_cairn;

use bytes::Bytes;
use cairn_client::proto::subscribe_request::Start;
use cairn_client::{CairnClient, ClientError, Code, CreateTopicOptions, RetryPolicy, StartPosition};
use cairn_types::Record;
use fake_cairn::FakeCairn;
use futures::StreamExt as _;

fn quick_retries() -> RetryPolicy {
    RetryPolicy { retry_total_ms: 3_000, backoff_initial_ms: 5, backoff_max_ms: 20 }
}

async fn started() -> (FakeCairn, CairnClient) {
    let fake = FakeCairn::default();
    let address = fake.start().await;
    let client = CairnClient::connect_with(&address.to_string(), quick_retries()).await.expect("connect");
    (fake, client)
}

async fn with_topic(partitions: u32) -> (FakeCairn, CairnClient) {
    let (fake, client) = started().await;
    client.create_topic(CreateTopicOptions::new("orders", partitions)).await.expect("create topic");
    (fake, client)
}

fn record(key: Option<&'static str>, value: &'static str) -> Record {
    Record {
        key: key.map(|key| Bytes::from_static(key.as_bytes())),
        headers: vec![("trace".to_string(), Bytes::from_static(b"t-1"))],
        value: Bytes::from_static(value.as_bytes()),
    }
}

fn values(records: &[cairn_types::StoredRecord]) -> Vec<&str> {
    records.iter().map(|record| std::str::from_utf8(&record.value).expect("utf8 value")).collect()
}

#[tokio::test]
async fn append_then_read_round_trips_every_field() {
    let (_fake, client) = with_topic(2).await;
    let positions = client
        .append("orders", Some(1), vec![record(Some("k"), "a"), record(None, "b"), record(None, "c")])
        .await
        .expect("append");
    assert_eq!(positions, vec![(1, 0), (1, 1), (1, 2)]);

    let result = client.read("orders", 1, 1, 0, 0, 0).await.expect("read");
    assert_eq!(values(&result.records), vec!["b", "c"]);
    assert_eq!((result.high_watermark, result.log_start_offset, result.next_offset), (3, 0, 3));
    let first = client.read("orders", 1, 0, 1, 0, 0).await.expect("read one");
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].key, Some(Bytes::from_static(b"k")));
    assert_eq!(first.records[0].headers, vec![("trace".to_string(), Bytes::from_static(b"t-1"))]);
    assert_eq!(first.records[0].timestamp_ms, 1_000);
    assert_eq!(first.next_offset, 1);
}

#[tokio::test]
async fn admin_calls_and_errors_keep_the_code_and_message() {
    let (_fake, client) = with_topic(3).await;
    let topics = client.list_topics().await.expect("list");
    assert_eq!(
        topics.iter().map(|topic| (topic.name.as_str(), topic.partitions)).collect::<Vec<_>>(),
        vec![("orders", 3)]
    );
    assert_eq!(client.describe_topic("orders").await.expect("describe").partitions.len(), 3);
    assert_eq!(client.cluster_status().await.expect("status").node_id, 1);

    let error = client.create_topic(CreateTopicOptions::new("orders", 3)).await.expect_err("exists");
    assert_eq!(error.code(), Some(Code::AlreadyExists));

    client.delete_topic("orders").await.expect("delete");
    let error = client.describe_topic("orders").await.expect_err("deleted");
    assert_eq!(error, ClientError::Status { code: Code::NotFound, message: "topic 'orders' not found".to_string() });
    assert_eq!(error.to_string(), "topic 'orders' not found (NotFound)");
    let error = client.read("orders", 0, 0, 0, 0, 0).await.expect_err("deleted");
    assert_eq!(error.code(), Some(Code::NotFound));
}

#[tokio::test]
async fn idempotent_calls_are_retried_on_unavailable() {
    let (fake, client) = with_topic(1).await;
    fake.state().unavailable_calls.insert("list_topics", 2);
    fake.state().unavailable_calls.insert("read", 3);
    assert_eq!(client.list_topics().await.expect("list after retries").len(), 1);
    client.read("orders", 0, 0, 0, 0, 0).await.expect("read after retries");
    let state = fake.state();
    assert_eq!(state.calls["list_topics"], 3);
    assert_eq!(state.calls["read"], 4);
}

#[tokio::test]
async fn retries_stop_at_the_policy_deadline() {
    let fake = FakeCairn::default();
    let address = fake.start().await;
    let policy = RetryPolicy { retry_total_ms: 100, backoff_initial_ms: 5, backoff_max_ms: 10 };
    let client = CairnClient::connect_with(&address.to_string(), policy).await.expect("connect");
    fake.state().unavailable_calls.insert("cluster_status", u32::MAX);
    let error = client.cluster_status().await.expect_err("always unavailable");
    assert_eq!(error.code(), Some(Code::Unavailable));
    assert!(error.to_string().contains("no leader yet"), "{error}");
    assert!(fake.state().calls["cluster_status"] > 1);
}

#[tokio::test]
async fn append_is_never_retried() {
    let (fake, client) = with_topic(1).await;
    fake.state().unavailable_calls.insert("append", 1);
    let error = client.append("orders", None, vec![record(None, "a")]).await.expect_err("unavailable");
    assert_eq!(error.code(), Some(Code::Unavailable));
    let state = fake.state();
    assert_eq!(state.calls["append"], 1);
    assert!(state.topics["orders"][0].is_empty());
}

#[tokio::test]
async fn create_whose_answer_was_lost_succeeds_on_retry() {
    let (fake, client) = started().await;
    fake.state().lose_next_create_answer = true;
    let topic = client.create_topic(CreateTopicOptions::new("orders", 4)).await.expect("create");
    assert_eq!(topic.partitions.len(), 4);
    assert_eq!(fake.state().calls["create_topic"], 2);

    // A different shape is a real conflict, not a lost answer.
    client.delete_topic("orders").await.expect("delete");
    fake.state().topics.insert("other".to_string(), vec![Vec::new(); 2]);
    fake.state().unavailable_calls.insert("create_topic", 1);
    let error = client.create_topic(CreateTopicOptions::new("other", 3)).await.expect_err("conflict");
    assert_eq!(error.code(), Some(Code::AlreadyExists));
}

#[tokio::test]
async fn subscription_resumes_after_the_last_delivered_record() {
    let (fake, client) = with_topic(1).await;
    let records = ["a", "b", "c", "d", "e"].map(|value| record(None, value)).to_vec();
    client.append("orders", Some(0), records).await.expect("append");
    fake.state().break_next_subscription_after = Some(1);

    let batches: Vec<_> = client.subscribe("orders", 0, StartPosition::Earliest).collect().await;
    let mut delivered = Vec::new();
    for batch in batches {
        delivered.extend(batch.expect("no error reaches the caller"));
    }
    assert_eq!(values(&delivered), vec!["a", "b", "c", "d", "e"]);
    assert_eq!(delivered.iter().map(|record| record.offset).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let starts: Vec<_> = fake.state().subscribe_requests.iter().map(|request| request.start).collect();
    assert_eq!(starts, vec![Some(Start::Earliest(true)), Some(Start::Offset(2))]);
}

#[tokio::test]
async fn subscription_reports_errors_and_ends() {
    let (_fake, client) = with_topic(1).await;
    let mut stream = Box::pin(client.subscribe("missing", 0, StartPosition::Latest));
    let error = stream.next().await.expect("one item").expect_err("no such topic");
    assert_eq!(error.code(), Some(Code::NotFound));
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn offset_for_timestamp_distinguishes_none() {
    let (_fake, client) = with_topic(1).await;
    client.append("orders", Some(0), vec![record(None, "a"), record(None, "b")]).await.expect("append");
    assert_eq!(client.offset_for_timestamp("orders", 0, 1_001).await.expect("lookup"), Some(1));
    assert_eq!(client.offset_for_timestamp("orders", 0, 0).await.expect("lookup"), Some(0));
    assert_eq!(client.offset_for_timestamp("orders", 0, 5_000).await.expect("lookup"), None);
}

#[tokio::test]
async fn connect_accepts_a_scheme_and_reports_refusals() {
    let fake = FakeCairn::default();
    let address = fake.start().await;
    let client = CairnClient::connect_with(&format!("http://{address}"), quick_retries()).await.expect("connect");
    client.list_topics().await.expect("list");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let policy = RetryPolicy { retry_total_ms: 50, backoff_initial_ms: 5, backoff_max_ms: 10 };
    let error = CairnClient::connect_with(&closed.to_string(), policy).await.expect_err("nothing listens");
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with(&format!("could not connect to {closed}: ")), "{message}");
    assert_eq!(message.matches("could not connect").count(), 1, "{message}");
    eprintln!("connect error reads: {message}");

    let error = CairnClient::connect_with("not a uri", policy).await.expect_err("bad address");
    assert!(matches!(error, ClientError::InvalidAddress { .. }), "{error:?}");
}
