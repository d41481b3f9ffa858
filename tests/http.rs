//! The nodes' HTTP listener, over real TCP against real node processes: health checks,
//! `/metrics` (parsed, with plausible values after appends and reads) and `/api/status`.
//! The status page in a browser is `status_page.rs`.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::http::{get, parse_prometheus};
use harness::{Cluster, FAST_RAFT, Node, wait_until};
use serde_json::Value;

fn http(node: &Node) -> &str {
    node.http_address.as_deref().expect("the node serves HTTP")
}

fn ready(node: &Node) -> bool {
    get(http(node), "/health/ready").is_ok_and(|response| response.status == 200)
}

fn samples(node: &Node) -> Vec<(String, String, f64)> {
    let response = get(http(node), "/metrics").expect("GET /metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    parse_prometheus(&response.body)
}

/// The value of the one sample `name{labels}` (labels as the exposition writes them).
fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
    let found: Vec<f64> = samples.iter().filter(|(n, l, _)| n == name && l == labels).map(|(_, _, v)| *v).collect();
    assert_eq!(found.len(), 1, "one sample {name}{{{labels}}}, found {found:?}");
    found[0]
}

fn status(node: &Node) -> Value {
    let response = get(http(node), "/api/status").expect("GET /api/status");
    assert_eq!(response.status, 200, "{}", response.body);
    serde_json::from_str(&response.body).expect("status JSON")
}

#[test]
fn health_metrics_and_status_of_a_three_node_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--metrics-per-partition", "true"]);
    let cluster = Cluster::start(dir.path(), 3, &args);
    for node in &cluster.nodes {
        let live = get(http(node), "/health/live").expect("GET /health/live");
        assert_eq!((live.status, live.body.as_str()), (200, "live\n"));
        wait_until("the node is ready", Duration::from_secs(30), || ready(node));
    }

    let first = &cluster.nodes[0];
    first.cli_ok(&["topic", "create", "orders", "--partitions", "6", "--replication-factor", "3"]);
    let lines: String = (0..100).map(|i| format!("record-{i}\n")).collect();
    let output = first.cli_with_stdin(&["produce", "orders"], Some(lines.as_bytes()));
    harness::assert_success(&["produce", "orders"], &output);
    let consumed = first.cli_ok(&["consume", "orders", "--output", "json"]);
    assert_eq!(consumed.lines().count(), 100, "{consumed}");

    // The node the appends and reads reached counted them.
    let metrics = samples(first);
    let names: BTreeSet<&str> = metrics.iter().map(|(name, _, _)| name.as_str()).collect();
    for expected in [
        "cairn_node_info",
        "cairn_storage_wal_sync_duration_seconds_bucket",
        "cairn_raft_apply_duration_seconds_count",
        "cairn_raft_leader_changes_total",
        "cairn_raft_controller_term",
        "cairn_raft_partition_groups",
        "cairn_partition_log_bytes",
        "cairn_api_append_duration_seconds_sum",
        "cairn_grpc_requests_total",
        "cairn_grpc_request_duration_seconds_bucket",
        "cairn_transport_queued_bytes",
        "cairn_partition_replica_high_watermark",
        "cairn_raft_replica_is_leader",
    ] {
        assert!(names.contains(expected), "{expected} is missing from /metrics: {names:?}");
    }
    assert!(value(&metrics, "cairn_storage_wal_sync_duration_seconds_count", "") > 0.0);
    assert!(value(&metrics, "cairn_raft_apply_duration_seconds_count", "") > 0.0);
    assert!(value(&metrics, "cairn_api_append_duration_seconds_count", "") >= 1.0);
    assert_eq!(value(&metrics, "cairn_api_records_appended_total", ""), 100.0);
    assert!(value(&metrics, "cairn_api_bytes_appended_total", "") >= 100.0 * "record-0".len() as f64);
    assert_eq!(value(&metrics, "cairn_api_records_read_total", ""), 100.0);
    assert!(value(&metrics, "cairn_grpc_requests_total", "method=\"Cairn/Append\",code=\"Ok\"") >= 1.0);
    assert!(value(&metrics, "cairn_raft_controller_term", "") >= 1.0);
    assert_eq!(value(&metrics, "cairn_cluster_nodes_live", ""), 3.0);
    let inf = value(&metrics, "cairn_api_append_duration_seconds_bucket", "le=\"+Inf\"");
    assert_eq!(inf, value(&metrics, "cairn_api_append_duration_seconds_count", ""), "+Inf bucket is the count");

    // Every replica applied the 100 records: the per-partition high watermarks add up to
    // 100 on each node, and the groups lead where the per-partition series say.
    for node in &cluster.nodes {
        wait_until("every replica applied the records", Duration::from_secs(30), || {
            let metrics = samples(node);
            let watermarks: f64 = metrics
                .iter()
                .filter(|(n, _, _)| n == "cairn_partition_replica_high_watermark")
                .map(|(_, _, v)| v)
                .sum();
            watermarks == 100.0 && value(&metrics, "cairn_partition_records", "") == 100.0
        });
        let metrics = samples(node);
        let replicas = metrics.iter().filter(|(n, _, _)| n == "cairn_raft_replica_is_leader").count();
        assert_eq!(replicas, 6, "one series per partition replica on the node");
        let led: f64 = metrics.iter().filter(|(n, _, _)| n == "cairn_raft_replica_is_leader").map(|(_, _, v)| v).sum();
        assert_eq!(led, value(&metrics, "cairn_raft_partition_groups", "role=\"leader\""));
    }
    let leaders: f64 =
        cluster.nodes.iter().map(|node| value(&samples(node), "cairn_raft_partition_groups", "role=\"leader\"")).sum();
    assert_eq!(leaders, 6.0, "each partition has one leader");

    // /api/status: the nodes, and every partition with its leader, from any node.
    for node in &cluster.nodes {
        wait_until("the status names every partition's leader", Duration::from_secs(30), || {
            let status = status(node);
            status["topics"][0]["partitions"]
                .as_array()
                .is_some_and(|partitions| partitions.len() == 6 && partitions.iter().all(|p| p["leader"].is_u64()))
        });
        let status = status(node);
        assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3));
        assert!(status["nodes"].as_array().expect("nodes").iter().all(|n| n["live"] == true));
        assert_eq!(status["topics"][0]["name"], "orders");
        for partition in status["topics"][0]["partitions"].as_array().expect("partitions") {
            let leader = partition["leader"].as_u64().expect("a leader");
            assert!((1..=3).contains(&leader), "{partition}");
            assert_eq!(partition["replicas"].as_array().map(Vec::len), Some(3));
            assert_eq!(partition["under_replicated"], false);
            assert!(partition["high_watermark"].as_u64().is_some(), "every node has a replica");
        }
    }
    let page = get(http(first), "/").expect("GET /");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("\"name\":\"orders\""), "the page embeds the status");
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "the page loads nothing from elsewhere");
    assert_eq!(get(http(first), "/no/such/page").expect("GET").status, 404);
}

#[test]
fn a_node_outside_any_cluster_is_live_but_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Joining through an address where nothing listens: the node retries, and is no member.
    let unreachable = format!("127.0.0.1:{}", harness::free_ports(1)[0]);
    let node = Node::start(&dir.path().join("node"), &["--node-id", "4", "--join", &unreachable]);
    assert_eq!(get(http(&node), "/health/live").expect("live").status, 200);
    let ready = get(http(&node), "/health/ready").expect("ready");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.starts_with("not ready: "), "{}", ready.body);
}

#[test]
fn the_http_listener_takes_the_grpc_port_plus_1000_or_is_off() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let off = Node::start(&dir.path().join("off"), &["--http-listen", "off"]);
    assert_eq!(off.http_address, None, "no HTTP line printed");
    drop(off);
    // The default, without the harness (which gives every node a free HTTP port): a gRPC
    // port whose +1000 is free too (a few draws: ports are shared with other tests).
    let port = (0..50)
        .map(|_| harness::free_ports(1)[0])
        .find(|port| *port < 64000 && std::net::TcpListener::bind(("127.0.0.1", port + 1000)).is_ok())
        .expect("a free port pair");
    let mut child = std::process::Command::new(harness::BINARY)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("default"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cairn serve");
    let stdout = child.stdout.take().expect("stdout");
    let first_line = BufReader::new(stdout).lines().next().and_then(Result::ok);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first_line, Some(format!("cairn node 1 serving HTTP on 127.0.0.1:{}", port + 1000)));
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node"), &["--log-format", "json"]);
    wait_until("the node is ready", Duration::from_secs(30), || ready(&node));
    let log = node.log();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the node logged something");
    for line in lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(object["level"].is_string() && object["fields"].is_object(), "{line}");
    }
}
