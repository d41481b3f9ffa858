//! What the host tests share: their prerequisites (checked loudly: these tests fail, never
//! skip, without root, iproute2 or nftables), the binaries, and small client helpers.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions};
use cairn_types::Record;

/// Panics, saying what is missing, unless this runs as root with `ip` and `nft`.
pub fn require_root_tools() {
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        uid.as_deref().unwrap_or("?"),
        "0",
        "THE HOST TESTS NEED ROOT (network namespaces, nftables, mounts): run them as root"
    );
    for (tool, arg, package) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
        let found = Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
        assert!(found, "THE HOST TESTS NEED `{tool}` (install {package})");
    }
}

/// The target directory's `debug/`: this test binary is in `<target>/debug/deps/`.
fn target_debug_dir() -> PathBuf {
    let me = std::env::current_exe().expect("test executable path");
    me.parent().and_then(std::path::Path::parent).expect("target/debug").to_owned()
}

/// `CAIRN_BINARY`, else `cairn` in this build's target directory (the workspace's test
/// build makes it).
pub fn cairn_binary() -> PathBuf {
    binary("CAIRN_BINARY", "cairn")
}

/// `CAIRN_FAULTFS_BINARY`, else `cairn-faultfs` in this build's target directory.
pub fn faultfs_binary() -> PathBuf {
    binary("CAIRN_FAULTFS_BINARY", "cairn-faultfs")
}

fn binary(variable: &str, name: &str) -> PathBuf {
    let binary = std::env::var(variable).map(PathBuf::from).unwrap_or_else(|_| target_debug_dir().join(name));
    assert!(
        binary.exists(),
        "NO {name} BINARY at {} (cargo test --workspace --no-run builds it, or set {variable})",
        binary.display()
    );
    binary
}

/// A run directory (short: faultfs's control socket path must fit 108 bytes).
pub fn run_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("cj-").tempdir_in("/tmp").expect("run directory")
}

pub async fn connect(address: &str) -> CairnClient {
    CairnClient::connect(address).await.unwrap_or_else(|error| panic!("connect to {address}: {error}"))
}

pub async fn create_topic(client: &CairnClient, name: &str, partitions: u32) {
    let mut options = CreateTopicOptions::new(name, partitions);
    options.replication_factor = 3;
    client.create_topic(options).await.expect("create topic");
}

pub fn record(value: &str) -> Record {
    Record { value: Bytes::from(value.to_string()), ..Record::default() }
}

/// Appends `value` to `topic`/`partition` through `client`, retrying failures (an
/// election under way) for up to 30 s; its offset.
pub async fn append_until_ok(client: &CairnClient, topic: &str, partition: u32, value: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.append(topic, Some(partition), vec![record(value)]).await {
            Ok(positions) => return positions[0].1,
            Err(error) => {
                assert!(Instant::now() < deadline, "append of {value} to {topic}/{partition} failed: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Milliseconds since the epoch, by this (unskewed) host.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The namespaces whose names start with `prefix`.
pub fn namespaces(prefix: &str) -> Vec<String> {
    let listed = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}
