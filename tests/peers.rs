//! Node-to-node connections under the faults a crash does not show: a paused peer (SIGSTOP:
//! its kernel still acknowledges, so its connections stay open) and a network partition
//! (nftables drops packets) that heals after three minutes.
//!
//! The partition test needs root and `nft`; it fails, rather than passes, without them.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions, IdempotentProducer};
use cairn_types::Record;
use harness::workload::connect;
use harness::{Cluster, FAST_RAFT, Node};

fn record(value: &str) -> Record {
    Record { key: None, headers: vec![], value: Bytes::from(value.to_owned()) }
}

/// (leader, replicas) of `topic`/0 once it has a leader.
async fn leader_and_replicas(client: &CairnClient, topic: &str) -> (u64, Vec<u64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A node whose view of the controller lags may not know the topic yet.
        if let Ok(described) = client.describe_topic(topic).await
            && let Some(leader) = described.partitions[0].leader
        {
            return (leader, described.partitions[0].replicas.clone());
        }
        assert!(Instant::now() < deadline, "{topic}/0 has no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resumes a paused node when dropped, so that a failing test leaves no process stopped.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
    }
}

/// A producer appends through a node without a replica while the partition's leader is
/// paused for 5 s. The node forwarding the append must notice the silent leader (an
/// unanswered HTTP/2 ping) and retry at the leader the other replicas elect: the append
/// takes about a failover, not the pause (nor, were the pause longer, the client's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_through_a_node_without_a_replica_outlasts_a_paused_leader_by_a_failover_only() {
    const PAUSE: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 5, &FAST_RAFT));
    let admin = connect(&cluster.nodes[0].address).await;
    let mut options = CreateTopicOptions::new("paused", 1);
    options.replication_factor = 3;
    admin.create_topic(options).await.expect("create topic");
    let (leader, replicas) = leader_and_replicas(&admin, "paused").await;
    let outsider = (1..=5u64).find(|n| !replicas.contains(n)).expect("a node without a replica");
    let through = connect(&cluster.nodes[outsider as usize - 1].address).await;
    let mut producer = IdempotentProducer::new(&through, "paused").await.expect("producer");
    producer.append(0, vec![record("before")]).await.expect("an append before the pause");

    let paused: &Node = &cluster.nodes[leader as usize - 1];
    paused.signal("STOP");
    let resume = Resume(paused.pid());
    let pid = paused.pid();
    let resumer = std::thread::spawn(move || {
        std::thread::sleep(PAUSE);
        drop(Resume(pid));
    });
    let started = Instant::now();
    let appended = producer.append(0, vec![record("during")]).await;
    let took = started.elapsed();
    eprintln!("leader {leader} paused; the append through node {outsider} took {took:?}");
    resumer.join().expect("resumer");
    drop(resume);
    let appended = appended.expect("an append while the leader is paused");
    assert!(
        took < Duration::from_secs(4),
        "the append waited {took:?}, about the whole pause ({PAUSE:?}), not a failover"
    );
    let follower = replicas.iter().find(|r| **r != leader).expect("another replica");
    let follower = connect(&cluster.nodes[*follower as usize - 1].address).await;
    let (new_leader, _) = leader_and_replicas(&follower, "paused").await;
    assert_ne!(new_leader, leader, "the replicas elected another leader during the pause");
    assert_eq!(appended.base_offset, 1);
}

/// Drops the packets between two nodes (matched by their addresses and ports) in a table of
/// its own, and deletes the table when dropped, whatever the test's outcome. Packets are
/// dropped on the way in (the input hook), silently, as a network loses them: a packet
/// dropped on the way out (the output hook) fails the sender's write at once (EPERM), so
/// connections fail fast and the cut proves nothing.
struct Cut {
    table: String,
}

impl Cut {
    fn between(a: (&str, u16), b: (&str, u16)) -> Cut {
        assert!(
            Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success()),
            "this test needs nftables (`nft`)"
        );
        let table = format!("cairn_test_cut_{}", std::process::id());
        let cut = Cut { table };
        let rule = |from: (&str, u16), to: (&str, u16)| {
            format!(
                "add rule inet {table} input ip saddr {} ip daddr {} tcp dport {} drop\n\
                 add rule inet {table} input ip saddr {} ip daddr {} tcp sport {} drop\n",
                from.0,
                to.0,
                to.1,
                to.0,
                from.0,
                to.1,
                table = cut.table
            )
        };
        let script = format!(
            "add table inet {table}\n\
             add chain inet {table} input {{ type filter hook input priority 0; policy accept; }}\n{}{}",
            rule(a, b),
            rule(b, a),
            table = cut.table
        );
        cut.nft(&script);
        cut
    }

    fn nft(&self, script: &str) {
        let mut child = Command::new("nft")
            .arg("-f")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run nft (this test needs root)");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write the nft script");
        let output = child.wait_with_output().expect("nft");
        assert!(
            output.status.success(),
            "nft failed (this test needs root): {}\n{script}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.table]).status();
    }
}

/// Whether `client`'s node hears from `node`, as its cluster status says.
async fn hears(client: &CairnClient, node: u64) -> bool {
    client.cluster_status().await.is_ok_and(|s| s.nodes.iter().any(|n| n.node_id == node && n.live))
}

/// Two nodes lose every packet between them for three minutes, then the network heals.
/// Their connections must not wait for TCP's retransmissions, backed off to two minutes by
/// then: pings find the dead connections, and new ones get through as soon as the network
/// does. Both nodes hear from each other again within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_cut_off_for_three_minutes_hear_each_other_within_two_seconds_of_healing() {
    let cut_for: Duration = std::env::var("CAIRN_CUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(180), Duration::from_secs);
    // Each node on a loopback address of its own: node-to-node connections leave from the
    // address a node listens on, so the rules can tell the nodes apart.
    let ips = ["127.0.73.1", "127.0.73.2", "127.0.73.3"];
    let ports: Vec<u16> = ips
        .iter()
        .map(|ip| std::net::TcpListener::bind((*ip, 0)).expect("bind").local_addr().expect("address").port())
        .collect();
    let members: Vec<harness::Member> = (0..3)
        .map(|i| {
            let address = format!("{}:{}", ips[i], ports[i]);
            harness::Member { listen: address.clone(), address }
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster =
        tokio::task::block_in_place(|| Cluster::start_members(dir.path(), &members, &FAST_RAFT, |_| Vec::new()));
    let nodes = &cluster.nodes;
    let (first, second) = (connect(&nodes[0].address).await, connect(&nodes[1].address).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(hears(&first, 2).await && hears(&second, 1).await) {
        assert!(Instant::now() < deadline, "nodes 1 and 2 never heard from each other");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cut = Cut::between((ips[0], ports[0]), (ips[1], ports[1]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while hears(&first, 2).await || hears(&second, 1).await {
        assert!(Instant::now() < deadline, "the cut did not separate nodes 1 and 2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hears(&first, 3).await && hears(&second, 3).await, "both still hear node 3");
    // The fault itself lasts a fixed time: long enough for TCP's retransmissions to back off.
    tokio::time::sleep(cut_for).await;
    assert!(!hears(&first, 2).await && !hears(&second, 1).await, "the cut held");

    drop(cut);
    let healed = Instant::now();
    while !(hears(&first, 2).await && hears(&second, 1).await) {
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "nodes 1 and 2 still do not hear from each other 60 s after the network healed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = healed.elapsed();
    eprintln!("nodes 1 and 2 heard from each other {took:?} after the network healed (cut for {cut_for:?})");
    assert!(took < Duration::from_secs(2), "recovery took {took:?}");
}
