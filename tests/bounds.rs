//! Nothing grows on the server because clients asked: a flood of large appends is served
//! within the in-flight limits, the rest refused with RESOURCE_EXHAUSTED, and the node's
//! memory stays bounded.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions, proto};
use cairn_types::Record;
use harness::{FAST_RAFT, Node};
use prost::Message;

/// Concurrent appends in the flood, and the bytes of each.
const APPENDS: usize = 500;
const RECORDS_PER_APPEND: usize = 16;
const RECORD_VALUE_BYTES: usize = 1024 * 1024 - 1024;
/// Client connections the appends are spread over.
const CONNECTIONS: usize = 8;
/// The node's resident memory must stay under this (the 2 GiB memory cgroup).
const RSS_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;

/// The node's resident set, in bytes, from /proc.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One gRPC Append, framed (flag, length, message), shared by every request of the flood:
/// the client holds one copy of it, however many requests are in flight.
fn append_message(partition: u32) -> Bytes {
    let value = Bytes::from(vec![b'x'; RECORD_VALUE_BYTES]);
    let request = proto::AppendRequest {
        topic: "flood".into(),
        partition: Some(partition),
        records: (0..RECORDS_PER_APPEND)
            .map(|_| proto::Record { key: None, headers: Vec::new(), value: value.clone() })
            .collect(),
        producer_id: None,
        sequence: None,
    };
    let encoded = request.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + encoded.len());
    framed.push(0);
    framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    framed.extend_from_slice(&encoded);
    Bytes::from(framed)
}

/// Sends one framed Append on `connection` and returns its grpc-status (or why none came).
async fn append(mut connection: h2::client::SendRequest<Bytes>, address: &str, message: Bytes) -> Result<i32, String> {
    connection = connection.ready().await.map_err(|err| format!("connection: {err}"))?;
    let request = http::Request::post(format!("http://{address}/cairn.v1.Cairn/Append"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|err| err.to_string())?;
    let (response, mut send) = connection.send_request(request, false).map_err(|err| format!("send: {err}"))?;
    // A refused request's stream is reset by the server before all of it is sent.
    let _ = send.send_data(message, true);
    let response = response.await.map_err(|err| format!("response: {err}"))?;
    let status_of = |headers: &http::HeaderMap| {
        headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok())
    };
    if let Some(code) = status_of(response.headers()) {
        return Ok(code);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.map_err(|err| format!("body: {err}"))?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.map_err(|err| format!("trailers: {err}"))?;
    trailers.as_ref().and_then(status_of).ok_or_else(|| "no grpc-status".to_owned())
}

/// 500 concurrent 16 MiB appends against one node with the default limits: every one is
/// answered, either appended or refused with RESOURCE_EXHAUSTED; the node's memory stays
/// under 2 GiB; afterwards it serves as before. Without the limits the node decoded every
/// request at once (and was killed here when its memory passed the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_appends_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &FAST_RAFT));
    let client = CairnClient::connect(&node.address).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("flood", 4)).await.expect("create topic");

    // Watch the node's memory; past the bound, stop it (the test then fails).
    let pid = node.pid();
    let watching = Arc::new(AtomicBool::new(true));
    let rss_max = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (watching, rss_max) = (Arc::clone(&watching), Arc::clone(&rss_max));
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let Some(rss) = rss_bytes(pid) else { return };
                rss_max.fetch_max(rss, Ordering::Relaxed);
                if rss > RSS_BYTES_MAX {
                    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let messages: Vec<Bytes> = (0..4).map(append_message).collect();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let tcp = tokio::net::TcpStream::connect(&node.address).await.expect("tcp");
        tcp.set_nodelay(true).expect("nodelay");
        let (send, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(connection);
        connections.push(send);
    }
    let started = std::time::Instant::now();
    let appends = (0..APPENDS).map(|i| {
        let connection = connections[i % CONNECTIONS].clone();
        let message = messages[i % messages.len()].clone();
        let address = node.address.clone();
        tokio::spawn(async move { append(connection, &address, message).await })
    });
    let results = futures::future::join_all(appends).await;
    let elapsed = started.elapsed();
    watching.store(false, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let rss_max = rss_max.load(Ordering::Relaxed);

    let (mut appended, mut refused, mut other) = (0, 0, Vec::new());
    for result in results {
        match result.expect("task") {
            Ok(0) => appended += 1,
            Ok(8) => refused += 1,
            outcome => other.push(outcome),
        }
    }
    println!(
        "{APPENDS} appends of {} MiB: {appended} appended, {refused} refused, {} other, in {elapsed:?}; node RSS \
         peaked at {} MiB",
        RECORDS_PER_APPEND * RECORD_VALUE_BYTES / (1024 * 1024),
        other.len(),
        rss_max / (1024 * 1024)
    );
    assert!(rss_max <= RSS_BYTES_MAX, "node RSS peaked at {rss_max} bytes, over {RSS_BYTES_MAX}");
    assert!(other.is_empty(), "every append is answered OK or RESOURCE_EXHAUSTED: {:?}", &other[..other.len().min(5)]);
    assert!(appended > 0, "some appends are served");
    assert!(refused > 0, "what passes the limits is refused");

    // The node still serves: a small append and a read of it.
    let small = Record { key: None, headers: Vec::new(), value: Bytes::from_static(b"after") };
    let appended_at = client.append("flood", Some(0), vec![small]).await.expect("append after the flood");
    let read = client.read("flood", 0, appended_at[0].1, 0, 0, 0).await.expect("read");
    assert_eq!(read.records.first().map(|r| r.value.clone()), Some(Bytes::from_static(b"after")));
}
