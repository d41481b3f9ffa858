//! The simulated hosts on this machine: namespaces that reach each other and the control
//! host, partitions and packet loss that cut exactly what they should, and real `cairn`
//! nodes in the namespaces surviving a leader kill, a skewed clock and a power cut.
//! Needs root, iproute2 and nftables (panics without them), and for the cluster tests the
//! cairn binary (`CAIRN_BINARY`) and cairn-faultfs (`CAIRN_FAULTFS_BINARY`). The tests
//! share namespace names: run them with `--test-threads=1`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::Consistency;
use cairn_jepsen::hosts::{CACHE_SECONDS, Cluster, ClusterConfig, Network, NetworkConfig};
use support::*;

/// A stand-in server (Python's HTTP server) in a node's namespace, killed on drop.
struct StandIn(Child);

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stand_in(namespace: &str, address: &str) -> StandIn {
    let child = Command::new("ip")
        .args(["netns", "exec", namespace, "python3", "-m", "http.server", "--bind", address, "7000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server (is python3 installed?)");
    let server = StandIn(child);
    let target: SocketAddr = format!("{address}:7000").parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_err() {
        assert!(Instant::now() < deadline, "the stand-in server in {namespace} never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// Whether a TCP connection from inside `namespace` to `ip:port` succeeds within a second.
fn connects_from(namespace: &str, ip: &str, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "1", "bash", "-c", &script])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn namespaces_reach_each_other_and_partitions_cut_only_node_links() {
    require_root_tools();
    let network = Network::create(NetworkConfig { max_nodes: 3, ..NetworkConfig::default() }).expect("network");
    let control = TcpListener::bind("10.77.0.254:0").expect("listen on the control host");
    let control_port = control.local_addr().expect("address").port();
    let _server = stand_in("cj-n2", "10.77.0.2");

    assert!(connects_from("cj-n1", "10.77.0.2", 7000), "node 1 reaches node 2");
    assert!(connects_from("cj-n1", "10.77.0.254", control_port), "node 1 reaches the control host");
    assert!(connects_from("cj-n2", "10.77.0.2", 7000), "node 2 reaches itself");

    let cut = BTreeMap::from([(1, BTreeSet::from([2])), (2, BTreeSet::from([1]))]);
    network.partition(&cut).expect("partition");
    assert!(!connects_from("cj-n1", "10.77.0.2", 7000), "the partition cuts node 1 from node 2");
    assert!(connects_from("cj-n1", "10.77.0.254", control_port), "node 1 still reaches the control host");
    assert!(connects_from("cj-n3", "10.77.0.2", 7000), "node 3 still reaches node 2");
    let target: SocketAddr = "10.77.0.2:7000".parse().expect("address");
    assert!(TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok(), "the control host reaches node 2");
    network.heal_partitions().expect("heal");
    assert!(connects_from("cj-n1", "10.77.0.2", 7000), "healed: node 1 reaches node 2 again");
    assert!(!network.ruleset(1).expect("ruleset").contains("cj_partition"), "the partition table is gone");

    network.lose_packets(1, 100, true).expect("loss");
    assert!(!connects_from("cj-n1", "10.77.0.2", 7000), "100% loss cuts node 1 from node 2");
    assert!(connects_from("cj-n1", "10.77.0.254", control_port), "loss spares the control host");
    network.heal_packet_loss().expect("heal loss");
    assert!(connects_from("cj-n1", "10.77.0.2", 7000), "healed: node 1 reaches node 2 again");

    // A network replaces what a crashed run left with the same names (a crash releases the
    // run's lock, but not its namespaces).
    drop(network);
    for leftover in [["netns", "add", "cj-n1"], ["netns", "add", "cj-hub"]] {
        assert!(Command::new("ip").args(leftover).status().expect("ip").success(), "ip {leftover:?}");
    }
    let mut network = Network::create(NetworkConfig { max_nodes: 3, ..NetworkConfig::default() }).expect("again");
    network.teardown().expect("teardown");
    assert_eq!(namespaces("cj-"), Vec::<String>::new(), "teardown leaves no namespace");
    let link = Command::new("ip").args(["link", "show", "cjctl0"]).stderr(Stdio::null()).status().expect("ip");
    assert!(!link.success(), "teardown removes the control link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_in_namespaces_fails_over_when_its_leader_is_killed() {
    require_root_tools();
    let dir = run_dir();
    let mut cluster = Cluster::start(ClusterConfig::new(cairn_binary(), dir.path())).await.expect("start cluster");
    for id in cluster.node_ids() {
        let pid = cluster.node(id).and_then(|node| node.pid()).expect("pid");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe of the node's pid");
        assert_eq!(exe.file_name().and_then(|n| n.to_str()), Some("cairn"), "pid {pid} is the node itself: {exe:?}");
    }
    let client = connect("10.77.0.1:7000").await;
    create_topic(&client, "failover", 2).await;
    assert_eq!(append_until_ok(&client, "failover", 0, "before").await, 0);

    let leader = cluster.leader_of("failover", 0).await.expect("a leader of failover/0");
    cluster.node_mut(leader).expect("leader node").kill().expect("kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        if let Some(new) = cluster.leader_of("failover", 0).await.filter(|new| *new != leader) {
            break new;
        }
        assert!(Instant::now() < deadline, "no new leader of failover/0 after killing node {leader}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("killed node {leader}; node {new_leader} leads failover/0 now");
    let survivor = connect(&cluster.address(new_leader)).await;
    assert_eq!(append_until_ok(&survivor, "failover", 0, "after").await, 1);

    cluster.node_mut(leader).expect("node").start().await.expect("restart");
    let restarted = connect(&cluster.address(leader)).await;
    wait_for_records(&restarted, "failover", 0, 2).await;
    cluster.teardown().expect("teardown");
    assert_eq!(namespaces("cj-"), Vec::<String>::new());
}

/// Waits until `client`'s node serves `count` records of `topic`/`partition` locally.
async fn wait_for_records(client: &cairn_client::CairnClient, topic: &str, partition: u32, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = client.read(topic, partition, 0, 0, 0, 0).await;
        if read.as_ref().is_ok_and(|read| read.records.len() >= count) {
            return;
        }
        assert!(Instant::now() < deadline, "the node never served {count} records of {topic}/{partition}: {read:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_shows_in_the_timestamps_its_node_assigns() {
    require_root_tools();
    let dir = run_dir();
    let mut config = ClusterConfig::new(cairn_binary(), dir.path());
    config.clock = true;
    let cluster = Cluster::start(config).await.expect("start cluster");
    let admin = connect("10.77.0.1:7000").await;
    create_topic(&admin, "clock", 3).await;
    let skewed = 2;
    let hour_ms = 3_600_000;
    cluster.clock(skewed).expect("clock file").set_offset(3600).expect("skew");
    tokio::time::sleep(Duration::from_secs(CACHE_SECONDS + 1)).await;

    // A partition the skewed node leads (moved there if it leads none) and one it does not.
    let mut leaders = BTreeMap::new();
    for partition in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(leader) = cluster.leader_of("clock", partition).await {
                leaders.insert(partition, leader);
                break;
            }
            assert!(Instant::now() < deadline, "no leader of clock/{partition}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let led = match leaders.iter().find(|(_, leader)| **leader == skewed) {
        Some((partition, _)) => *partition,
        None => {
            admin.transfer_leader("clock", 0, skewed).await.expect("transfer to the skewed node");
            leaders.insert(0, skewed);
            0
        }
    };
    let other = (0..3).find(|p| leaders[p] != skewed);

    let node = connect(&cluster.address(skewed)).await;
    let offset = append_until_ok(&node, "clock", led, "skewed").await;
    let read = node.read_consistent("clock", led, offset, 1, 0, 0, Consistency::Linearizable).await.expect("read back");
    let stamped = read.records[0].timestamp_ms;
    let ahead = stamped as i64 - now_ms() as i64;
    eprintln!("node {skewed} (+3600 s) stamped {stamped}, {ahead} ms ahead of real time");
    assert!((ahead - hour_ms).abs() < 60_000, "the skewed leader's timestamp is an hour ahead: {ahead} ms");
    if let Some(other) = other {
        let offset = append_until_ok(&node, "clock", other, "unskewed").await;
        // The skewed node follows `other`: a local read there may not have applied the append yet.
        let read =
            node.read_consistent("clock", other, offset, 1, 0, 0, Consistency::Linearizable).await.expect("read back");
        let ahead = read.records[0].timestamp_ms as i64 - now_ms() as i64;
        assert!(ahead.abs() < 60_000, "another leader's timestamp is real time: {ahead} ms");
    }
    // The node still works: it answers, appends go on, a controller leader exists.
    for value in ["still", "working"] {
        append_until_ok(&node, "clock", led, value).await;
    }
    assert!(cluster.controller_leader().await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_power_was_cut_restarts_and_rejoins() {
    require_root_tools();
    let dir = run_dir();
    let mut config = ClusterConfig::new(cairn_binary(), dir.path());
    config.power = true;
    config.faultfs_binary = Some(faultfs_binary());
    config.disk_bytes = Some(256 << 20);
    let mut cluster = Cluster::start(config).await.expect("start cluster");
    let client = connect("10.77.0.1:7000").await;
    create_topic(&client, "power", 1).await;
    for i in 0..20 {
        append_until_ok(&client, "power", 0, &format!("v{i}")).await;
    }
    let cut = 3;
    cluster.node_mut(cut).expect("node").kill().expect("kill");
    let answer = cluster.disk(cut).expect("disk").drop_unsynced().expect("drop");
    eprintln!("power cut node {cut}: {answer}");
    assert!(answer.starts_with("dropped"), "{answer}");
    cluster.node_mut(cut).expect("node").start().await.expect("restart after the power cut");
    for i in 20..30 {
        append_until_ok(&client, "power", 0, &format!("v{i}")).await;
    }
    let restarted = connect(&cluster.address(cut)).await;
    wait_for_records(&restarted, "power", 0, 30).await;
    let status = restarted.cluster_status().await.expect("status");
    let group = status.groups.iter().find(|g| g.topic == "power").expect("the partition's group on the node");
    assert!(group.leader.is_some(), "the restarted node knows the leader: {group:?}");
}
