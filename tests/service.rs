//! The public API's answers at its edges, on real node processes: a request at the end of
//! its forwarding hops, producers and subscriptions meeting a replica that lags, appends
//! that span partitions, pipelined appends after an idle spell.

mod harness;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions, proto};
use cairn_server::forward::{HOPS_HEADER, HOPS_MAX, LEADER_HEADER, NOT_LEADER_HEADER};
use harness::latency_proxy::LatencyProxy;
use harness::{Cluster, FAST_RAFT, Member, Node};
use tonic::Code;

/// Well under the 10 s a node waits for a leader before it gives up.
const AT_ONCE: Duration = Duration::from_secs(3);

async fn clients(cluster: &Cluster) -> Vec<CairnClient> {
    let mut clients = Vec::new();
    for node in &cluster.nodes {
        clients.push(CairnClient::connect(&node.address).await.expect("connect"));
    }
    clients
}

fn record(value: &str) -> proto::Record {
    proto::Record { key: None, headers: vec![], value: Bytes::from(value.to_owned()) }
}

/// `message` as if forwarded `hops` times already.
fn forwarded<T>(message: T, hops: u32) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(HOPS_HEADER, hops.into());
    request
}

/// Asserts `status` says "not leader, nothing proposed" and returns the leader it names.
fn not_leader(status: &tonic::Status) -> Option<String> {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.metadata().get(NOT_LEADER_HEADER).is_some(), "marked as not proposed: {status:?}");
    status.metadata().get(LEADER_HEADER).map(|v| v.to_str().expect("ascii").to_owned())
}

/// A request on its last hop cannot be forwarded again. A node that knows the leader names
/// it at once; a node without a replica says so at once: neither waits 10 s for a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_hop_answers_at_once_naming_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let clients = clients(&cluster).await;
    let mut options = CreateTopicOptions::new("hops", 1);
    options.replication_factor = 2;
    let partition = clients[0].create_topic(options).await.expect("create").partitions[0].clone();
    // The preferred replica leads once it has taken over (soon after creation).
    let leader = partition.replicas[0];
    wait_for_leader(&clients[leader as usize - 1], "hops", 0, leader).await;
    let follower = *partition.replicas.iter().find(|&&r| r != leader).expect("a follower");
    let outsider = (1..=3).find(|n| !partition.replicas.contains(n)).expect("a node without a replica");
    wait_for_leader(&clients[follower as usize - 1], "hops", 0, leader).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients[outsider as usize - 1].describe_topic("hops").await.is_err() {
        assert!(Instant::now() < deadline, "node {outsider} does not learn of the topic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let address = |node: u64| cluster.nodes[node as usize - 1].address.clone();
    let append = proto::AppendRequest {
        topic: "hops".into(),
        partition: Some(0),
        records: vec![record("last hop")],
        producer_id: None,
        sequence: None,
    };

    // A follower on the last hop names the leader.
    let started = Instant::now();
    let answer = clients[follower as usize - 1].proto_client().append(forwarded(append.clone(), HOPS_MAX)).await;
    let status = answer.expect_err("the follower cannot forward any more");
    assert!(started.elapsed() < AT_ONCE, "answered after {:?}: {status:?}", started.elapsed());
    assert_eq!(not_leader(&status), Some(address(leader)), "names the leader: {status:?}");

    // A node without a replica on the last hop says so.
    let started = Instant::now();
    let answer = clients[outsider as usize - 1].proto_client().append(forwarded(append.clone(), HOPS_MAX)).await;
    let status = answer.expect_err("a node without a replica cannot forward any more");
    assert!(started.elapsed() < AT_ONCE, "answered after {:?}: {status:?}", started.elapsed());
    not_leader(&status);

    // A controller follower on the last hop names the controller leader.
    let status = clients[0].cluster_status().await.expect("status");
    let controller = status.groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader).expect("controller leader");
    let controller_follower = (1..=3).find(|&n| n != controller).expect("a controller follower");
    let started = Instant::now();
    let create =
        proto::CreateTopicRequest { name: "late".into(), partitions: 1, replication_factor: 1, ..Default::default() };
    let answer =
        clients[controller_follower as usize - 1].proto_client().create_topic(forwarded(create, HOPS_MAX)).await;
    let status = answer.expect_err("the controller follower cannot forward any more");
    assert!(started.elapsed() < AT_ONCE, "answered after {:?}: {status:?}", started.elapsed());
    assert_eq!(not_leader(&status), Some(address(controller)), "names the controller leader: {status:?}");

    // Without the hop counter at its end, both are forwarded as usual.
    for node in [follower, outsider] {
        clients[node as usize - 1].proto_client().append(append.clone()).await.expect("forwarded append");
    }
    // The leader applied both before answering.
    let read = harness::read_partition(&clients[leader as usize - 1], "hops", 0).await;
    assert_eq!(read.len(), 2, "the refused last hops wrote nothing");
}

/// A subscription resumed past the replica's high watermark (a replica that lags, as a new
/// leader may just after a failover) waits for the replica to get there, as a read does,
/// and gives up with OUT_OF_RANGE after `read_wait_ms_max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_past_the_high_watermark_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("cairn.toml");
    std::fs::write(&config, "[limits]\nread_wait_ms_max = 2000\n").expect("write config");
    let mut args = FAST_RAFT.to_vec();
    let config = config.to_str().expect("utf-8 path").to_owned();
    args.extend(["--config", &config]);
    let node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &args));
    let client = CairnClient::connect(&node.address).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("ahead", 1)).await.expect("create");
    let append = |values: &[&str]| proto::AppendRequest {
        topic: "ahead".into(),
        partition: Some(0),
        records: values.iter().map(|v| record(v)).collect(),
        producer_id: None,
        sequence: None,
    };
    client.proto_client().append(append(&["r0", "r1"])).await.expect("append");
    let subscribe = |offset: u64| proto::SubscribeRequest {
        topic: "ahead".into(),
        partition: 0,
        start: Some(proto::subscribe_request::Start::Offset(offset)),
        ..Default::default()
    };

    // Offset 4, two past the high watermark: the stream opens and waits.
    let mut stream = client
        .proto_client()
        .subscribe(subscribe(4))
        .await
        .expect("a start past the high watermark is waited for, not refused")
        .into_inner();
    client.proto_client().append(append(&["r2", "r3", "r4", "r5"])).await.expect("append");
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("records in time")
        .expect("a message")
        .expect("not the end");
    let offsets: Vec<u64> = first.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets.first(), Some(&4), "starts at the offset asked for: {offsets:?}");
    assert_eq!(first.records[0].value, Bytes::from("r4"));

    // Never reached within read_wait_ms_max (2 s): OUT_OF_RANGE.
    let started = Instant::now();
    let mut stream = client.proto_client().subscribe(subscribe(100)).await.expect("opens").into_inner();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("an answer in time");
    let status = end.expect_err("the stream ends with an error");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited read_wait_ms_max: {:?}", started.elapsed());
}

/// An append whose records go to several partitions is not atomic. When one partition
/// cannot be written, the error says which records were stored and where, so that the
/// client sends only the others again instead of duplicating the stored ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_written_append_says_which_records_were_stored() {
    use cairn_client::ClientError;
    use cairn_types::Record;
    use cairn_types::partitioner::partition_for_key;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let clients = clients(&cluster).await;
    // One replica per partition: a partition whose node is down cannot be written.
    let topic = clients[0].create_topic(CreateTopicOptions::new("spread", 3)).await.expect("create");
    let on_node = |node: u64| topic.partitions.iter().find(|p| p.replicas == [node]).map(|p| p.partition);
    let here = on_node(1).expect("a partition on node 1");
    let (down, gone) = (2..=3).find_map(|node| Some((node, on_node(node)?))).expect("a partition elsewhere");
    let key_for = |partition: u32| {
        (0..).map(|i| format!("key-{i}")).find(|key| partition_for_key(key.as_bytes(), 3) == partition).expect("a key")
    };
    let (key_here, key_gone) = (key_for(here), key_for(gone));
    let keyed = |key: &str, value: &str| Record {
        key: Some(Bytes::from(key.to_owned())),
        headers: vec![],
        value: Bytes::from(value.to_owned()),
    };
    tokio::task::block_in_place(|| cluster.nodes[down as usize - 1].kill());

    let records = vec![keyed(&key_here, "a"), keyed(&key_gone, "b"), keyed(&key_here, "c")];
    let error = clients[0].append("spread", None, records).await.expect_err("a partition is down");
    let ClientError::PartlyWritten { written, unwritten, .. } = error else {
        panic!("the error must say what was written: {error:?}");
    };
    assert_eq!(unwritten, [1], "the record for the partition that is down");
    let stored = harness::read_partition(&clients[0], "spread", here).await;
    let stored: Vec<(u64, Bytes)> = stored.into_iter().map(|r| (r.offset, r.value)).collect();
    assert_eq!(stored, [(0, Bytes::from("a")), (1, Bytes::from("c"))], "both records for node 1 were written");
    assert_eq!(written, [(0, here, 0), (2, here, 1)], "and reported where");
}

/// Three nodes that listen on every loopback address but are known to each other at
/// 127.0.0.1: a test can reach a node at 127.0.0.2 while a `Firewall` cuts it off from its peers.
fn start_reachable_on_any_loopback(dir: &std::path::Path) -> Cluster {
    let members: Vec<harness::Member> = harness::free_ports(3)
        .into_iter()
        .map(|port| harness::Member { address: format!("127.0.0.1:{port}"), listen: format!("0.0.0.0:{port}") })
        .collect();
    Cluster::start_members(dir, &members, &FAST_RAFT, |_| Vec::new())
}

/// nftables rules of a test's own table, in force while this lives.
struct Firewall {
    table: String,
}

impl Firewall {
    /// `rules`: the body of an output hook chain (loopback packets pass it once).
    fn new(name: &str, rules: &str) -> Firewall {
        let table = format!("cairn_service_test_{name}");
        let script = format!(
            "table inet {table} {{\n chain out {{\n type filter hook output priority 0; policy accept;\n {rules}\n }}\n}}\n"
        );
        nft(&["-f", "-"], Some(&script));
        Firewall { table }
    }

    /// The node serving on `port` hears nothing from its peers: every packet between
    /// 127.0.0.1 (where the peers reach it) and that port is dropped, both ways. It still
    /// reaches them, and clients still reach it at another loopback address.
    fn deaf(port: u16) -> Firewall {
        Firewall::new(
            &format!("deaf_{port}"),
            &format!("ip daddr 127.0.0.1 tcp dport {port} drop; ip saddr 127.0.0.1 tcp sport {port} drop;"),
        )
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        nft(&["delete", "table", "inet", &self.table], None);
    }
}

fn nft(args: &[&str], stdin: Option<&str>) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft (nftables) must be installed, and the tests run as root");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default().as_bytes()).expect("write nft rules");
    drop(input);
    let status = child.wait().expect("nft");
    assert!(status.success(), "nft {args:?} failed");
}

/// A partition leader whose view of the controller lags does not know a freshly
/// allocated producer id yet. It answers UNAVAILABLE, which producers retry, not
/// FAILED_PRECONDITION, which stops them for good; once it catches up, the append goes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_controller_view_lags_lets_producers_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| start_reachable_on_any_loopback(dir.path()));
    let clients = clients(&cluster).await;
    let topic = clients[0].create_topic(CreateTopicOptions::new("lag", 3)).await.expect("create");
    let status = clients[0].cluster_status().await.expect("status");
    let controller = status.groups.iter().find(|g| g.group_id == 0).and_then(|g| g.leader).expect("controller leader");
    // A node that does not lead the controller, and its partition (one replica: it leads
    // it alone, whatever it hears).
    let lagging = (1..=3).find(|&n| n != controller).expect("a controller follower");
    let partition = topic.partitions.iter().find(|p| p.replicas == [lagging]).expect("a partition on it").partition;
    let port = port(&cluster.nodes[lagging as usize - 1]);
    let lagging_client = CairnClient::connect(&format!("127.0.0.2:{port}")).await.expect("connect at 127.0.0.2");
    wait_for_leader(&lagging_client, "lag", partition, lagging).await;

    let deaf = tokio::task::block_in_place(|| Firewall::deaf(port));
    let producer_id = clients[controller as usize - 1].init_producer().await.expect("producer id");
    let append = proto::AppendRequest {
        topic: "lag".into(),
        partition: Some(partition),
        records: vec![record("first")],
        producer_id: Some(producer_id),
        sequence: Some(0),
    };
    let refused =
        lagging_client.proto_client().append(append.clone()).await.expect_err("the id is not known there yet");
    assert_eq!(refused.code(), Code::Unavailable, "retryable: {refused:?}");

    // Once it hears from the controller again, the same append (same sequence) goes in.
    drop(deaf);
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        match lagging_client.proto_client().append(append.clone()).await {
            Ok(answer) => break answer.into_inner(),
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("the append was not accepted once the node caught up: {status:?}"),
        }
    };
    assert_eq!(answer.positions[0].offset, 0);
    assert!(!answer.duplicate);
}

/// Waits until `client`'s node sees `leader` lead `topic`/`partition`.
async fn wait_for_leader(client: &CairnClient, topic: &str, partition: u32, leader: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // The node may not know the topic yet (its view of the controller lags a little).
    while client.describe_topic(topic).await.map_or(true, |t| t.partitions[partition as usize].leader != Some(leader)) {
        assert!(Instant::now() < deadline, "node {leader} does not lead {topic}/{partition}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pipelining producer's appends after idle spells: the leader renews its lease (a
/// heartbeat round) before proposing each burst, and every batch overtook the ones before
/// it on the way. The leader proposes them in sequence order: none is refused as a gap.
/// (On an idle loopback cluster, where a heartbeat round is quick. The slow round is the
/// next test; an earlier batch held up longer than the wait for it and a proposal refused
/// for a lapsed lease are `host::proposal_order`'s unit tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_after_an_idle_spell_are_not_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    append_pipelined_after_idle_spells(&clients(&cluster).await).await;
}

/// The same over slow links: every node behind a proxy that delays each direction by
/// 80 ms, so renewing the lease takes a 160 ms round trip (and each batch's own trip as
/// long), at the default timing (a 600 ms failure detection time; openraft's RPCs time out
/// after the 200 ms heartbeat interval, which bounds the round trip this test can use). The
/// leader must wait for the batches ahead of each one as long as the renewal takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_appends_after_an_idle_spell_over_slow_links_are_not_refused() {
    const LINK_DELAY: Duration = Duration::from_millis(80);
    let listens: Vec<String> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").to_string())
        .collect();
    let mut proxies = Vec::new();
    for listen in &listens {
        proxies.push(LatencyProxy::start(listen.clone(), LINK_DELAY).await);
    }
    let members: Vec<Member> = listens
        .iter()
        .zip(&proxies)
        .map(|(listen, proxy)| Member { address: proxy.address.clone(), listen: listen.clone() })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start_members(dir.path(), &members, &[], |_| Vec::new()));
    append_pipelined_after_idle_spells(&clients(&cluster).await).await;
}

/// Appends to a new one-partition topic as a pipelining idempotent producer would after idle
/// spells longer than the lease: bursts of batches sent last first, a few milliseconds apart.
/// None may be refused, and each lands at its sequence's offset.
async fn append_pipelined_after_idle_spells(clients: &[CairnClient]) {
    const ROUNDS: u64 = 3;
    const IN_FLIGHT: u64 = 5;
    let mut options = CreateTopicOptions::new("pipelined", 1);
    options.replication_factor = 3;
    // Over slow links the controller may still be electing its first leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let topic = loop {
        match clients[0].create_topic(options.clone()).await {
            Err(cairn_client::ClientError::Status { code: Code::Unavailable, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            created => break created.expect("create"),
        }
    };
    // The preferred leader takes over soon after creation: a new term, whose leader knows
    // no order of the producer's batches yet. Start once it leads.
    let leader = topic.partitions[0].replicas[0];
    wait_for_leader(&clients[0], "pipelined", 0, leader).await;
    let leader_client = clients[leader as usize - 1].clone();
    let producer_id = leader_client.init_producer().await.expect("producer id");
    let append = |sequence: u64| {
        let mut client = leader_client.proto_client();
        async move {
            let request = proto::AppendRequest {
                topic: "pipelined".into(),
                partition: Some(0),
                records: vec![record(&format!("seq-{sequence}"))],
                producer_id: Some(producer_id),
                sequence: Some(sequence),
            };
            client.append(request).await
        }
    };
    append(0).await.expect("first append");
    let mut refused = Vec::new();
    let mut offsets = Vec::new();
    for round in 0..ROUNDS {
        // Idle for longer than the lease (the failure detection time: 300 ms with
        // FAST_RAFT, 600 ms by default).
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Sent last first, a few milliseconds apart: each overtakes the ones before it.
        let first = 1 + round * IN_FLIGHT;
        let mut sent = Vec::new();
        for sequence in (first..first + IN_FLIGHT).rev() {
            sent.push((sequence, tokio::spawn(append(sequence))));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (sequence, answer) in sent {
            match answer.await.expect("task") {
                Ok(answer) => offsets.push((sequence, answer.into_inner().positions[0].offset)),
                Err(status) => refused.push((sequence, status.code(), status.message().to_owned())),
            }
        }
    }
    assert!(refused.is_empty(), "refused: {refused:#?}");
    offsets.sort_unstable();
    let expected: Vec<(u64, u64)> = (1..=ROUNDS * IN_FLIGHT).map(|s| (s, s)).collect();
    assert_eq!(offsets, expected, "written in sequence order");
}

fn port(node: &Node) -> u16 {
    node.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port")
}
