//! Configuration: defaults (named constants) < TOML file (`--config`) < `CAIRN_*`
//! environment variables < flags. Validated once into an immutable `ServerConfig`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cairn_types::{Limits, NodeId};
use serde::Deserialize;

pub const DEFAULT_NODE_ID: NodeId = 1;
pub const DEFAULT_DATA_DIR: &str = "./cairn-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 200;
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 600;
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 900;
pub const DEFAULT_RETENTION_CHECK_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_SNAPSHOT_LOG_ENTRIES: u64 = 10_000;
pub const DEFAULT_AUTO_BALANCE: bool = true;
pub const DEFAULT_MOVES_ACTIVE_MAX: u32 = 2;
pub const DEFAULT_MOVE_BYTES_PER_SEC: u64 = 100 * 1024 * 1024;
/// Protobuf framing a request message may add to its records' bytes (`request_bytes_max`):
/// a few bytes of tags and lengths per record, at most `records_per_request_max` records.
pub const DECODING_OVERHEAD_BYTES: usize = 1024 * 1024;

/// Start a Cairn node. With no flags: a single-node cluster, node id 1, data in
/// ./cairn-data, gRPC on 127.0.0.1:7070.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and CAIRN_* variables override it.
    #[arg(long, env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id: unique in the cluster, fixed for the life of the data directory.
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// Where this node keeps its data.
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve gRPC on (port 0 picks a free port).
    #[arg(long, env = "CAIRN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address other nodes and clients use to reach this node (default: the bound address).
    #[arg(long, env = "CAIRN_ADVERTISE")]
    pub advertise: Option<String>,
    /// Form a multi-node cluster: every initial member as ID=HOST:PORT, comma-separated,
    /// the same on every node (e.g. 1=127.0.0.1:7071,2=127.0.0.1:7072,3=127.0.0.1:7073).
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Join an existing cluster through any of its members (HOST:PORT) instead of forming
    /// one; the node then holds replicas of new topics.
    #[arg(long, env = "CAIRN_JOIN", conflicts_with = "initial_cluster")]
    pub join: Option<String>,
    /// How often a node tells the others it is alive (and the controller leader heartbeats),
    /// in milliseconds. Partition groups send no heartbeats of their own.
    #[arg(long, env = "CAIRN_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Failure detection, in milliseconds: a node not heard from this long counts as down,
    /// and the replicas of the partitions it led elect a new leader. At least 3 heartbeat
    /// intervals. Also the shortest election timeout of the controller.
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Longest Raft election timeout, in milliseconds; replicas wait a random part of
    /// (max - min) before standing for election, so that they do not split the vote.
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// How often leaders check partitions for records past their retention, in milliseconds.
    #[arg(long, env = "CAIRN_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Raft log entries per group between snapshots (older entries are then purged).
    #[arg(long, env = "CAIRN_SNAPSHOT_LOG_ENTRIES")]
    pub snapshot_log_entries: Option<u64>,
    /// Rebalance by itself when nodes join or leave, and keep each partition led by its
    /// preferred replica (true or false).
    #[arg(long, env = "CAIRN_AUTO_BALANCE")]
    pub auto_balance: Option<bool>,
    /// Replica moves copying at once, cluster-wide (set by the node that queues moves).
    #[arg(long, env = "CAIRN_MOVES_ACTIVE_MAX")]
    pub moves_active_max: Option<u32>,
    /// Bytes per second this node streams to replicas that catch up (moves); 0: no limit.
    #[arg(long, env = "CAIRN_MOVE_BYTES_PER_SEC")]
    pub move_bytes_per_sec: Option<u64>,
    /// Largest record value, in bytes.
    #[arg(long, env = "CAIRN_RECORD_VALUE_BYTES_MAX")]
    pub record_value_bytes_max: Option<usize>,
    /// Largest append request, in bytes.
    #[arg(long, env = "CAIRN_REQUEST_BYTES_MAX")]
    pub request_bytes_max: Option<usize>,
    /// Most records in one append request.
    #[arg(long, env = "CAIRN_RECORDS_PER_REQUEST_MAX")]
    pub records_per_request_max: Option<usize>,
    /// Most partitions in one topic.
    #[arg(long, env = "CAIRN_PARTITIONS_PER_TOPIC_MAX")]
    pub partitions_per_topic_max: Option<u32>,
    /// Cap on the bytes one read returns.
    #[arg(long, env = "CAIRN_READ_BYTES_MAX")]
    pub read_bytes_max: Option<usize>,
    /// Most public API requests this node serves at once; more are refused
    /// (RESOURCE_EXHAUSTED).
    #[arg(long, env = "CAIRN_REQUESTS_IN_FLIGHT_MAX")]
    pub requests_in_flight_max: Option<usize>,
    /// Most bytes of request messages this node holds at once; a request that would pass
    /// it is refused (RESOURCE_EXHAUSTED) before it is read.
    #[arg(long, env = "CAIRN_REQUEST_BYTES_IN_FLIGHT_MAX")]
    pub request_bytes_in_flight_max: Option<usize>,
    /// The same per client connection (at least --request-bytes-max).
    #[arg(long, env = "CAIRN_CONNECTION_REQUEST_BYTES_IN_FLIGHT_MAX")]
    pub connection_request_bytes_in_flight_max: Option<usize>,
    /// Most requests at once on one connection (HTTP/2 streams); a client's further
    /// requests wait.
    #[arg(long, env = "CAIRN_CONNECTION_STREAMS_MAX")]
    pub connection_streams_max: Option<u32>,
}

/// The `--config` file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<NodeId>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    initial_cluster: Option<String>,
    heartbeat_interval_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    retention_check_interval_ms: Option<u64>,
    snapshot_log_entries: Option<u64>,
    auto_balance: Option<bool>,
    moves_active_max: Option<u32>,
    move_bytes_per_sec: Option<u64>,
    #[serde(default)]
    limits: Option<Limits>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub initial_members: BTreeMap<NodeId, String>,
    /// A member to join through, for a node that joins an existing cluster.
    pub join: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub retention_check_interval_ms: u64,
    pub snapshot_log_entries: u64,
    pub auto_balance: bool,
    pub moves_active_max: u32,
    pub move_bytes_per_sec: u64,
    pub limits: Limits,
}

impl ServerConfig {
    pub fn load(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut limits = file.limits.unwrap_or_default();
        override_with(&mut limits.record_value_bytes_max, args.record_value_bytes_max);
        override_with(&mut limits.request_bytes_max, args.request_bytes_max);
        override_with(&mut limits.records_per_request_max, args.records_per_request_max);
        override_with(&mut limits.partitions_per_topic_max, args.partitions_per_topic_max);
        override_with(&mut limits.read_bytes_max, args.read_bytes_max);
        override_with(&mut limits.requests_in_flight_max, args.requests_in_flight_max);
        override_with(&mut limits.request_bytes_in_flight_max, args.request_bytes_in_flight_max);
        override_with(&mut limits.connection_request_bytes_in_flight_max, args.connection_request_bytes_in_flight_max);
        override_with(&mut limits.connection_streams_max, args.connection_streams_max);
        let listen = match args.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let node_id = args.node_id.or(file.node_id).unwrap_or(DEFAULT_NODE_ID);
        let initial_members = match args.initial_cluster.as_ref().or(file.initial_cluster.as_ref()) {
            Some(spec) => parse_initial_cluster(spec)?,
            None => BTreeMap::new(),
        };
        if !initial_members.is_empty() && !initial_members.contains_key(&node_id) {
            bail!("--initial-cluster does not list this node (--node-id {node_id}); list every initial member");
        }
        // A member's own entry says where the others reach it.
        let advertise = args.advertise.clone().or(file.advertise).or_else(|| initial_members.get(&node_id).cloned());
        let config = ServerConfig {
            node_id,
            data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            advertise,
            initial_members,
            join: args.join.clone(),
            heartbeat_interval_ms: args
                .heartbeat_interval_ms
                .or(file.heartbeat_interval_ms)
                .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS),
            election_timeout_min_ms: args
                .election_timeout_min_ms
                .or(file.election_timeout_min_ms)
                .unwrap_or(DEFAULT_ELECTION_TIMEOUT_MIN_MS),
            election_timeout_max_ms: args
                .election_timeout_max_ms
                .or(file.election_timeout_max_ms)
                .unwrap_or(DEFAULT_ELECTION_TIMEOUT_MAX_MS),
            retention_check_interval_ms: args
                .retention_check_interval_ms
                .or(file.retention_check_interval_ms)
                .unwrap_or(DEFAULT_RETENTION_CHECK_INTERVAL_MS),
            snapshot_log_entries: args
                .snapshot_log_entries
                .or(file.snapshot_log_entries)
                .unwrap_or(DEFAULT_SNAPSHOT_LOG_ENTRIES),
            auto_balance: args.auto_balance.or(file.auto_balance).unwrap_or(DEFAULT_AUTO_BALANCE),
            moves_active_max: args.moves_active_max.or(file.moves_active_max).unwrap_or(DEFAULT_MOVES_ACTIVE_MAX),
            move_bytes_per_sec: args
                .move_bytes_per_sec
                .or(file.move_bytes_per_sec)
                .unwrap_or(DEFAULT_MOVE_BYTES_PER_SEC),
            limits,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.node_id == 0 {
            bail!("--node-id must be at least 1");
        }
        if self.heartbeat_interval_ms == 0 || self.election_timeout_min_ms < 3 * self.heartbeat_interval_ms {
            bail!(
                "--election-timeout-min-ms ({} ms) must be at least 3 heartbeat intervals ({} ms): a node counts \
                 as down after that long without its heartbeats",
                self.election_timeout_min_ms,
                self.heartbeat_interval_ms
            );
        }
        if self.moves_active_max == 0 {
            bail!("--moves-active-max must be at least 1");
        }
        if self.snapshot_log_entries == 0 {
            bail!("--snapshot-log-entries must be at least 1");
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            bail!(
                "--election-timeout-max-ms ({}) must exceed --election-timeout-min-ms ({})",
                self.election_timeout_max_ms,
                self.election_timeout_min_ms
            );
        }
        let limits = &self.limits;
        if limits.record_value_bytes_max == 0 || limits.request_bytes_max < limits.record_value_bytes_max {
            bail!("the request limit must be at least the record value limit");
        }
        if limits.records_per_request_max == 0
            || limits.partitions_per_topic_max == 0
            || limits.read_bytes_max == 0
            || limits.read_records_max == 0
            || limits.topics_max == 0
            || limits.subscriptions_max == 0
            || limits.requests_in_flight_max == 0
            || limits.connection_streams_max == 0
        {
            bail!("limits must be positive");
        }
        // A request of the largest size must fit, or it could never be served.
        let largest_message = limits.request_bytes_max + DECODING_OVERHEAD_BYTES;
        if limits.connection_request_bytes_in_flight_max < largest_message
            || limits.request_bytes_in_flight_max < limits.connection_request_bytes_in_flight_max
        {
            bail!(
                "--connection-request-bytes-in-flight-max ({}) must be at least --request-bytes-max plus {} bytes of \
                 framing ({largest_message}), and --request-bytes-in-flight-max ({}) at least that",
                limits.connection_request_bytes_in_flight_max,
                DECODING_OVERHEAD_BYTES,
                limits.request_bytes_in_flight_max
            );
        }
        Ok(())
    }
}

/// Parses `1=host:port,2=host:port`: distinct positive ids, non-empty addresses.
pub fn parse_initial_cluster(spec: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut members = BTreeMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, address)) = entry.split_once('=') else {
            bail!("--initial-cluster entry {entry:?} is not ID=HOST:PORT");
        };
        let id: NodeId = id.trim().parse().with_context(|| format!("--initial-cluster: bad node id in {entry:?}"))?;
        let address = address.trim();
        if id == 0 || address.is_empty() || !address.contains(':') {
            bail!("--initial-cluster entry {entry:?} needs an id of at least 1 and a HOST:PORT address");
        }
        if members.insert(id, address.to_owned()).is_some() {
            bail!("--initial-cluster names node {id} twice");
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster is empty");
    }
    Ok(members)
}

fn override_with<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_flags_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "node_id = 7\nlisten = \"127.0.0.1:9000\"\n[limits]\nrecords_per_request_max = 5\n")
            .expect("write");
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:9100".parse().expect("addr")),
            ..Default::default()
        };
        let config = ServerConfig::load(&args).expect("load");
        assert_eq!(config.node_id, 7, "from the file");
        assert_eq!(config.listen.port(), 9100, "flag beats file");
        assert_eq!(config.limits.records_per_request_max, 5);
        assert_eq!(config.limits.record_value_bytes_max, cairn_types::limits::RECORD_VALUE_BYTES_MAX, "default");
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn example_config_file_is_valid() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cairn.example.toml");
        let config =
            ServerConfig::load(&ServeArgs { config: Some(path), ..Default::default() }).expect("example loads");
        assert_eq!(config.limits, Limits::default(), "the example documents the defaults");
        assert_eq!(config.heartbeat_interval_ms, DEFAULT_HEARTBEAT_INTERVAL_MS);
    }

    #[test]
    fn initial_cluster_parses_and_sets_advertise() {
        let members = parse_initial_cluster("1=127.0.0.1:7071, 2=127.0.0.1:7072,3=h3:7073").expect("parse");
        assert_eq!(members.len(), 3);
        assert_eq!(members[&3], "h3:7073");
        for bad in ["", "1", "1=", "0=a:1", "x=a:1", "1=a:1,1=b:2", "1=nohostport"] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?} must be refused");
        }
        let args = ServeArgs { node_id: Some(2), initial_cluster: Some("1=a:1,2=b:2".into()), ..Default::default() };
        assert_eq!(ServerConfig::load(&args).expect("load").advertise.as_deref(), Some("b:2"));
        let args = ServeArgs { node_id: Some(9), initial_cluster: Some("1=a:1,2=b:2".into()), ..Default::default() };
        assert!(ServerConfig::load(&args).is_err(), "a node must be in its own initial cluster");
    }

    #[test]
    fn bad_config_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "no_such_key = 1\n").expect("write");
        let err = ServerConfig::load(&ServeArgs { config: Some(path), ..Default::default() }).expect_err("unknown key");
        assert!(format!("{err:#}").contains("no_such_key"), "{err:#}");
        let err = ServerConfig::load(&ServeArgs { node_id: Some(0), ..Default::default() }).expect_err("node 0");
        assert!(err.to_string().contains("node-id"));
    }
}
