//! Disk faults under real node processes, each node's data directory on its own
//! `cairn-faultfs` mount (a FUSE pass-through that keeps unsynced writes in memory):
//! - power cuts: SIGKILL a node, drop what it wrote but did not fsync, restart it on the
//!   same directory, while idempotent writers append; every acknowledged append must still
//!   be there, once, at its offset, and the replicas must converge. SIGKILL alone keeps the
//!   page cache, so only this catches a missing or misplaced fsync.
//!
//! - a fail-slow disk: every fsync of a partition leader's node takes 30 s; the leader
//!   must stop claiming its groups, so that appends fail over to another replica within
//!   a few seconds instead of waiting for the disk. Storage work runs on the blocking
//!   pool, so the node keeps heartbeating while its disk hangs: without the liveness
//!   check no append is acknowledged within 60 s (seen when the check was disabled).
//!
//! Needs `/dev/fuse` and `fusermount3` (root in CI): fails, never skips, without them.

mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions};
use cairn_faultfs::{FaultFs, FaultFsOptions};
use cairn_types::Record;
use harness::workload::{self, History, Verdict, Writers, connect};
use harness::{Cluster, FAST_RAFT, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PARTITIONS: u32 = 3;
/// Appends acknowledged between two power cuts, at least.
const PROGRESS: usize = 30;

/// Mounts a fault file system at `dir/name` (the node's data directory) over `dir/name-disk`.
fn mount_disk(dir: &Path, name: &str) -> FaultFs {
    if let Err(err) = cairn_faultfs::check_fuse_available() {
        panic!("the disk fault tests need FUSE (root, /dev/fuse and the fuse3 package): {err}");
    }
    let backing = dir.join(format!("{name}-disk"));
    let mountpoint = dir.join(name);
    std::fs::create_dir_all(&backing).expect("backing directory");
    std::fs::create_dir_all(&mountpoint).expect("mountpoint");
    FaultFs::mount(&backing, &mountpoint, &FaultFsOptions::default()).expect("mount the fault file system")
}

/// Waits until the writers have `PROGRESS` more appends acknowledged than `from`.
async fn wait_progress(writers: &Writers, from: usize, seed: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let acknowledged = writers.acknowledged();
        if acknowledged >= from + PROGRESS {
            return acknowledged;
        }
        assert!(Instant::now() < deadline, "writers stuck at {acknowledged} acknowledged appends (seed {seed})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL, then the node's unsynced writes are lost, then it starts again.
fn power_cut(node: &mut Node, disk: &FaultFs) -> u64 {
    node.kill();
    let dropped = disk.control().drop_unsynced();
    eprintln!(
        "power cut {}: dropped {} unsynced bytes of {} files",
        node.data_dir.display(),
        dropped.bytes,
        dropped.files
    );
    dropped.bytes
}

/// Everything a node serves of `topic`: (partition, offset) → value.
async fn read_node(client: &CairnClient, topic: &str) -> BTreeMap<(u32, u64), String> {
    let mut records = BTreeMap::new();
    for partition in 0..PARTITIONS {
        for (offset, (_, value)) in workload::read_values(client, topic, partition).await {
            records.insert((partition, offset), value);
        }
    }
    records
}

fn assert_nothing_lost(verdict: &Verdict, history: &History, seed: u64) {
    eprintln!(
        "seed {seed}: acknowledged {}, indeterminate {} ({} present), lost {}, duplicated {}, gaps {}, records {}",
        history.acknowledged.len(),
        history.indeterminate.len(),
        verdict.indeterminate_present,
        verdict.lost,
        verdict.duplicated,
        verdict.gaps,
        verdict.records
    );
    assert_eq!(verdict.lost, 0, "acknowledged appends lost or moved by power cuts (seed {seed})");
    assert_eq!(verdict.duplicated, 0, "values stored twice (seed {seed})");
    assert_eq!(verdict.gaps, 0, "offsets not dense (seed {seed})");
}

/// The file systems saw real syncs (RocksDB's WAL is made durable with fdatasync, which
/// this file system serves; `sync_file_range` would never reach it), dropped unsynced data
/// and never wrote any back early: otherwise the power cuts proved nothing.
fn assert_disks_were_tested(disks: &[&FaultFs], dropped_bytes: u64) {
    for disk in disks {
        let stats = disk.control().stats();
        eprintln!("{}: {stats:?}", disk.mountpoint().display());
        assert!(stats.fdatasyncs + stats.fsyncs > 0, "no fsync reached {}", disk.mountpoint().display());
        assert_eq!(stats.written_back_bytes, 0, "unsynced data was written back early: raise dirty_bytes_max");
    }
    assert!(dropped_bytes > 0, "the power cuts dropped nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_lose_no_acknowledged_append_on_one_node() {
    let seed = harness::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = mount_disk(dir.path(), "node1");
    let listen = format!("127.0.0.1:{}", harness::free_ports(1)[0]);
    let mut args = FAST_RAFT.to_vec();
    args.extend(["--listen", &listen]);
    let mut node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &args));
    connect(&node.address)
        .await
        .create_topic(CreateTopicOptions::new("power", PARTITIONS))
        .await
        .expect("create topic");

    let writers = Writers::start(std::slice::from_ref(&node.address), "power", PARTITIONS, seed);
    let (mut acknowledged, mut dropped) = (0, 0);
    for _ in 0..5 {
        acknowledged = wait_progress(&writers, acknowledged, seed).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        dropped += tokio::task::block_in_place(|| {
            let dropped = power_cut(&mut node, &disk);
            node.restart();
            dropped
        });
    }
    wait_progress(&writers, acknowledged, seed).await;
    let history = writers.stop().await;

    let log = read_node(&connect(&node.address).await, "power").await;
    assert_nothing_lost(&workload::check(&log, &history, PARTITIONS), &history, seed);
    assert_disks_were_tested(&[&disk], dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_of_one_and_two_nodes_lose_no_acknowledged_append() {
    let seed = harness::seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let disks: Vec<FaultFs> = (1..=3).map(|i| mount_disk(dir.path(), &format!("node{i}"))).collect();
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let mut options = CreateTopicOptions::new("power", PARTITIONS);
    options.replication_factor = 3;
    connect(&addresses[0]).await.create_topic(options).await.expect("create topic");

    let writers = Writers::start(&addresses, "power", PARTITIONS, seed);
    let (mut acknowledged, mut dropped) = (0, 0);
    // One node at a time, then two at once (a quorum: the cluster stalls until they return).
    for victims in [1, 1, 2, 2] {
        acknowledged = wait_progress(&writers, acknowledged, seed).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        let first = rng.random_range(0..3usize);
        let chosen: Vec<usize> = (0..victims).map(|i| (first + i) % 3).collect();
        dropped += tokio::task::block_in_place(|| {
            let dropped: u64 = chosen.iter().map(|&i| power_cut(&mut cluster.nodes[i], &disks[i])).sum();
            for &i in &chosen {
                cluster.nodes[i].restart();
            }
            dropped
        });
    }
    wait_progress(&writers, acknowledged, seed).await;
    let history = writers.stop().await;

    // Heal: every replica serves the same log, and it holds every acknowledged append.
    let mut clients = Vec::new();
    for address in &addresses {
        clients.push(connect(address).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let mut replicas = Vec::new();
        for client in &clients {
            replicas.push(read_node(client, "power").await);
        }
        if replicas.windows(2).all(|w| w[0] == w[1]) {
            break replicas.swap_remove(0);
        }
        assert!(Instant::now() < deadline, "replicas still differ after 60 s (seed {seed})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_nothing_lost(&workload::check(&log, &history, PARTITIONS), &history, seed);
    assert_disks_were_tested(&disks.iter().collect::<Vec<_>>(), dropped);
}

/// The node (index) that leads `topic`'s partition 0, as `client`'s node sees it.
async fn partition_leader(client: &CairnClient, topic: &str) -> Option<usize> {
    let status = client.cluster_status().await.ok()?;
    let group = status.groups.iter().find(|g| g.topic == topic && g.partition == 0)?;
    group.leader.map(|leader| leader as usize - 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_over_from_a_leader_whose_fsync_hangs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disks: Vec<FaultFs> = (1..=3).map(|i| mount_disk(dir.path(), &format!("node{i}"))).collect();
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 3, &FAST_RAFT));
    let addresses: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let mut options = CreateTopicOptions::new("slow", 1);
    options.replication_factor = 3;
    connect(&addresses[0]).await.create_topic(options).await.expect("create topic");

    // Appends through a node that does not lead the partition.
    let observer = connect(&addresses[0]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(leader) = partition_leader(&observer, "slow").await {
            break leader;
        }
        assert!(Instant::now() < deadline, "the partition has no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let through = (leader + 1) % 3;
    let client = connect(&addresses[through]).await;
    let append = |n: u64| {
        let client = client.clone();
        async move {
            let record = Record { key: None, headers: vec![], value: Bytes::from(format!("v{n}")) };
            tokio::time::timeout(Duration::from_secs(1), client.append("slow", Some(0), vec![record])).await
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(append(0).await, Ok(Ok(_))) {
        assert!(Instant::now() < deadline, "appends fail before any fault");
    }

    disks[leader].control().delay_fsync(Duration::from_secs(30));
    let slowed = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        if matches!(append(attempts).await, Ok(Ok(_))) {
            break;
        }
        assert!(slowed.elapsed() < Duration::from_secs(60), "no append acknowledged in 60 s");
    }
    let failed_over = slowed.elapsed();
    let new_leader = partition_leader(&connect(&addresses[through]).await, "slow").await;
    eprintln!(
        "fsync of node {} delayed by 30 s: appends acknowledged again after {failed_over:?} ({attempts} attempts), leader now {:?}",
        leader + 1,
        new_leader.map(|l| l + 1)
    );
    disks[leader].control().resume();
    assert!(
        failed_over < Duration::from_secs(8),
        "appends waited {failed_over:?} for the slow disk instead of failing over"
    );
    assert_ne!(new_leader, Some(leader), "the node with the slow disk still leads the partition");
}
