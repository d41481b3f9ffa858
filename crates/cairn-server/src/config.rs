//! Configuration: defaults (named constants) < TOML file (`--config`) < `CAIRN_*`
//! environment variables < flags. Validated once into an immutable `ServerConfig`.
//!
//! Each setting is declared once, in `ServeArgs` (and `LimitArgs` for the `[limits]`
//! table): its doc comment is its `--help` text, its field name is both the flag
//! (`--heartbeat-interval-ms`) and the TOML key, and its `env` the variable. clap reads flags
//! and variables (a flag beats its variable); figment lays what they set over the file and
//! extracts the result into `ServerConfig`, whose `Default` holds the defaults. The file's
//! keys are checked (`deny_unknown_fields`), and a test checks that `ServerConfig`, the flags
//! and `deploy/cairn.example.toml` name the same settings.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};
use cairn_types::{Limits, NodeId};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const DEFAULT_NODE_ID: NodeId = 1;
pub const DEFAULT_DATA_DIR: &str = "./cairn-data";
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7070);
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 200;
pub const DEFAULT_ELECTION_TIMEOUT_MIN_MS: u64 = 600;
pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 900;
pub const DEFAULT_RETENTION_CHECK_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_COMPACTION_CHECK_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_SNAPSHOT_LOG_ENTRIES: u64 = 10_000;
pub const DEFAULT_AUTO_BALANCE: bool = true;
pub const DEFAULT_MOVES_ACTIVE_MAX: u32 = 2;
pub const DEFAULT_MOVE_BYTES_PER_SEC: u64 = 100 * 1024 * 1024;
pub const DEFAULT_WRITE_BUFFER_BYTES: u64 = 32 * 1024 * 1024;
/// Without `--http-listen`, the HTTP listener takes the gRPC port plus this (7070: 8070).
pub const HTTP_PORT_OFFSET: u16 = 1000;
/// The `--http-listen` value that turns the HTTP listener off.
pub const HTTP_LISTEN_OFF: &str = "off";
pub const DEFAULT_METRICS_PER_PARTITION: bool = false;
/// Protobuf framing a request message may add to its records' bytes (`request_bytes_max`):
/// a few bytes of tags and lengths per record, at most `records_per_request_max` records.
pub const DECODING_OVERHEAD_BYTES: usize = 1024 * 1024;

/// Start a Cairn node. With no flags: a single-node cluster, node id 1, data in
/// ./cairn-data, gRPC on 127.0.0.1:7070. Every setting may also be given as the
/// `CAIRN_*` variable shown, or as the key of the same name in the --config file
/// (limits in its `[limits]` table); a flag beats its variable, which beats the file.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct ServeArgs {
    /// TOML configuration file; flags and CAIRN_* variables override it.
    #[arg(long, env = "CAIRN_CONFIG")]
    #[serde(skip)]
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
    /// How often leaders look for events that a stream's deletion or metadata hides, to
    /// remove them from the store (compaction), in milliseconds.
    #[arg(long, env = "CAIRN_COMPACTION_CHECK_INTERVAL_MS")]
    pub compaction_check_interval_ms: Option<u64>,
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
    /// Size of one RocksDB memtable per column family (5 of them), in bytes: most of a
    /// busy node's memory. Smaller saves memory, at the cost of more flushes.
    #[arg(long, env = "CAIRN_WRITE_BUFFER_BYTES")]
    pub write_buffer_bytes: Option<u64>,
    /// Address of the HTTP listener (/health/live, /health/ready, /metrics, /api/status and
    /// the status page at /), or "off". Default: the gRPC host and port + 1000 (7070 gives
    /// 8070; port 0 gives a free port).
    #[arg(long, env = "CAIRN_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Also export per-partition series on /metrics (labels topic and partition), besides
    /// the node-wide aggregates: a few series per partition replica (true or false).
    #[arg(long, env = "CAIRN_METRICS_PER_PARTITION")]
    pub metrics_per_partition: Option<bool>,
    /// Log format on stderr: text or json (one object per line). The filter is CAIRN_LOG.
    #[arg(long, env = "CAIRN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// How a node writes its log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[limits]` table of the config file (`cairn_types::Limits`), as flags.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
#[command(next_help_heading = "Limits (the [limits] table of the --config file)")]
pub struct LimitArgs {
    /// Largest record value, in bytes.
    #[arg(long, env = "CAIRN_RECORD_VALUE_BYTES_MAX")]
    pub record_value_bytes_max: Option<usize>,
    /// Largest record key, in bytes.
    #[arg(long, env = "CAIRN_RECORD_KEY_BYTES_MAX")]
    pub record_key_bytes_max: Option<usize>,
    /// Most headers on one record.
    #[arg(long, env = "CAIRN_RECORD_HEADERS_MAX")]
    pub record_headers_max: Option<usize>,
    /// Largest append request, in bytes.
    #[arg(long, env = "CAIRN_REQUEST_BYTES_MAX")]
    pub request_bytes_max: Option<usize>,
    /// Most records in one append request.
    #[arg(long, env = "CAIRN_RECORDS_PER_REQUEST_MAX")]
    pub records_per_request_max: Option<usize>,
    /// Most partitions in one topic.
    #[arg(long, env = "CAIRN_PARTITIONS_PER_TOPIC_MAX")]
    pub partitions_per_topic_max: Option<u32>,
    /// Most topics in the cluster.
    #[arg(long, env = "CAIRN_TOPICS_MAX")]
    pub topics_max: Option<usize>,
    /// Cap on the bytes one read returns.
    #[arg(long, env = "CAIRN_READ_BYTES_MAX")]
    pub read_bytes_max: Option<usize>,
    /// Cap on the records one read returns.
    #[arg(long, env = "CAIRN_READ_RECORDS_MAX")]
    pub read_records_max: Option<usize>,
    /// Longest a read may wait for new data, in milliseconds.
    #[arg(long, env = "CAIRN_READ_WAIT_MS_MAX")]
    pub read_wait_ms_max: Option<u64>,
    /// Most concurrent subscriptions served by one node.
    #[arg(long, env = "CAIRN_SUBSCRIPTIONS_MAX")]
    pub subscriptions_max: Option<usize>,
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

/// The settings of `ServeArgs` that a flag or variable set, as a figment provider: unset
/// ones are left out, so that they do not hide the file's.
struct SetArgs<'a>(&'a ServeArgs);

impl Provider for SetArgs<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("flags and CAIRN_* variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let data = Serialized::defaults(self.0).data()?;
        Ok(data.into_iter().map(|(profile, dict)| (profile, without_unset(dict))).collect())
    }
}

fn without_unset(dict: Dict) -> Dict {
    dict.into_iter()
        .filter_map(|(key, value)| match value {
            Value::Empty(..) => None,
            Value::Dict(tag, dict) => Some((key, Value::Dict(tag, without_unset(dict)))),
            value => Some((key, value)),
        })
        .collect()
}

/// A node's settings, resolved and validated. Deserialized (figment) from the file and
/// the flags over `ServerConfig::default()`, under the keys of `ServeArgs`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    /// `--initial-cluster`, parsed.
    #[serde(rename = "initial_cluster", deserialize_with = "initial_members", serialize_with = "initial_cluster")]
    pub initial_members: BTreeMap<NodeId, String>,
    /// A member to join through, for a node that joins an existing cluster.
    pub join: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub retention_check_interval_ms: u64,
    pub compaction_check_interval_ms: u64,
    pub snapshot_log_entries: u64,
    pub auto_balance: bool,
    pub moves_active_max: u32,
    pub move_bytes_per_sec: u64,
    pub write_buffer_bytes: u64,
    /// `--http-listen` as given: `None` for the default (see `http_address`).
    pub http_listen: Option<String>,
    pub metrics_per_partition: bool,
    pub log_format: LogFormat,
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            node_id: DEFAULT_NODE_ID,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN,
            advertise: None,
            initial_members: BTreeMap::new(),
            join: None,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            election_timeout_min_ms: DEFAULT_ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            retention_check_interval_ms: DEFAULT_RETENTION_CHECK_INTERVAL_MS,
            compaction_check_interval_ms: DEFAULT_COMPACTION_CHECK_INTERVAL_MS,
            snapshot_log_entries: DEFAULT_SNAPSHOT_LOG_ENTRIES,
            auto_balance: DEFAULT_AUTO_BALANCE,
            moves_active_max: DEFAULT_MOVES_ACTIVE_MAX,
            move_bytes_per_sec: DEFAULT_MOVE_BYTES_PER_SEC,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
            http_listen: None,
            metrics_per_partition: DEFAULT_METRICS_PER_PARTITION,
            log_format: LogFormat::Text,
            limits: Limits::default(),
        }
    }
}

fn initial_members<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<NodeId, String>, D::Error> {
    let spec = String::deserialize(deserializer)?;
    parse_initial_cluster(&spec).map_err(|err| serde::de::Error::custom(format!("{err:#}")))
}

fn initial_cluster<S: Serializer>(members: &BTreeMap<NodeId, String>, serializer: S) -> Result<S::Ok, S::Error> {
    let spec: Vec<String> = members.iter().map(|(id, address)| format!("{id}={address}")).collect();
    serializer.serialize_str(&spec.join(","))
}

impl ServerConfig {
    pub fn load(args: &ServeArgs) -> anyhow::Result<ServerConfig> {
        let mut figment = Figment::new();
        if let Some(path) = &args.config {
            std::fs::metadata(path).with_context(|| format!("reading config file {}", path.display()))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut config: ServerConfig = figment
            .merge(SetArgs(args))
            .extract()
            .context("reading the settings (--config file, CAIRN_* variables and flags)")?;
        if !config.initial_members.is_empty() && !config.initial_members.contains_key(&config.node_id) {
            bail!(
                "--initial-cluster does not list this node (--node-id {}); list every initial member",
                config.node_id
            );
        }
        // A member's own entry says where the others reach it.
        if config.advertise.is_none() {
            config.advertise = config.initial_members.get(&config.node_id).cloned();
        }
        config.validate()?;
        Ok(config)
    }

    /// Where the HTTP listener binds: `--http-listen`, else the gRPC address with its port
    /// plus `HTTP_PORT_OFFSET` (port 0 stays 0: a free port); `None` when it is "off".
    pub fn http_address(&self) -> anyhow::Result<Option<SocketAddr>> {
        match self.http_listen.as_deref().map(str::trim) {
            Some(HTTP_LISTEN_OFF) => Ok(None),
            Some(address) => address
                .parse()
                .map(Some)
                .with_context(|| format!("--http-listen {address:?} is neither HOST:PORT (an IP address) nor \"off\"")),
            None if self.listen.port() == 0 => Ok(Some(SocketAddr::new(self.listen.ip(), 0))),
            None => match self.listen.port().checked_add(HTTP_PORT_OFFSET) {
                Some(port) => Ok(Some(SocketAddr::new(self.listen.ip(), port))),
                None => bail!(
                    "the gRPC port {} leaves no room for the HTTP listener's default (port + {HTTP_PORT_OFFSET}): \
                     set --http-listen",
                    self.listen.port()
                ),
            },
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.http_address()?;
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
        if !(1 << 20..=1 << 30).contains(&self.write_buffer_bytes) {
            bail!("--write-buffer-bytes ({}) must be between 1 MiB and 1 GiB", self.write_buffer_bytes);
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
        let tiny = ServeArgs { write_buffer_bytes: Some(4096), ..Default::default() };
        let err = ServerConfig::load(&tiny).expect_err("a 4 KiB memtable");
        assert!(err.to_string().contains("--write-buffer-bytes (4096)"), "{err}");
    }

    #[test]
    fn http_listener_defaults_next_to_grpc_and_can_be_turned_off() {
        let config = ServerConfig::load(&ServeArgs::default()).expect("load");
        assert_eq!(config.http_address().expect("address"), Some("127.0.0.1:8070".parse().expect("addr")));
        let args = ServeArgs { listen: Some("0.0.0.0:0".parse().expect("addr")), ..Default::default() };
        let config = ServerConfig::load(&args).expect("load");
        assert_eq!(config.http_address().expect("address"), Some("0.0.0.0:0".parse().expect("addr")));
        let args = ServeArgs { http_listen: Some("off".into()), ..Default::default() };
        assert_eq!(ServerConfig::load(&args).expect("load").http_address().expect("off"), None);
        let args = ServeArgs { http_listen: Some("127.0.0.1:9999".into()), ..Default::default() };
        let config = ServerConfig::load(&args).expect("load");
        assert_eq!(config.http_address().expect("address"), Some("127.0.0.1:9999".parse().expect("addr")));
        let args = ServeArgs { http_listen: Some("nowhere".into()), ..Default::default() };
        assert!(ServerConfig::load(&args).is_err(), "a bad --http-listen is refused");
        let args = ServeArgs { listen: Some("127.0.0.1:65000".parse().expect("addr")), ..Default::default() };
        let err = ServerConfig::load(&args).expect_err("no room for port + 1000");
        assert!(format!("{err:#}").contains("--http-listen"), "{err:#}");
    }

    fn example_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cairn.example.toml")
    }

    /// Every setting of `ServerConfig`, by its key in the file (`limits.` before a limit).
    fn setting_keys() -> Vec<String> {
        fn keys(prefix: &str, dict: &Dict, out: &mut Vec<String>) {
            for (key, value) in dict {
                match value {
                    Value::Dict(_, table) => keys(&format!("{prefix}{key}."), table, out),
                    _ => out.push(format!("{prefix}{key}")),
                }
            }
        }
        let data = Serialized::defaults(ServerConfig::default()).data().expect("serializes");
        let mut out = Vec::new();
        keys("", &data[&Profile::Default], &mut out);
        out
    }

    /// The settings, the flags of `cairn serve` (its --help) and the example file name the
    /// same settings: one flag per setting and one per flag, one line of the example each
    /// (commented out where a setting has no default value).
    #[test]
    fn every_setting_has_a_flag_and_a_line_in_the_example() {
        let command = <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
        let flags: Vec<String> =
            command.get_arguments().filter_map(|arg| arg.get_long()).map(|long| long.replace('-', "_")).collect();
        let settings = setting_keys();
        let names: Vec<&str> = settings.iter().map(|key| key.rsplit('.').next().unwrap_or(key)).collect();
        for flag in &flags {
            assert!(flag == "config" || names.contains(&flag.as_str()), "--{flag} sets no setting of ServerConfig");
        }
        let text = std::fs::read_to_string(example_path()).expect("example");
        let mut table = String::new();
        let mut example = Vec::new();
        for line in text.lines() {
            let line = line.trim_start_matches("# ").trim();
            if let Some(name) = line.strip_prefix('[').and_then(|line| line.strip_suffix(']')) {
                table = format!("{name}.");
            } else if let Some((key, _)) = line.split_once(" = ") {
                example.push(format!("{table}{}", key.trim()));
            }
        }
        for (key, name) in settings.iter().zip(&names) {
            assert!(flags.iter().any(|flag| flag == name), "setting {key} has no flag in `cairn serve --help`");
            assert!(example.contains(key), "setting {key} is missing from deploy/cairn.example.toml");
        }
    }

    /// The example's commented-out lines are valid settings too.
    #[test]
    fn example_config_file_is_valid_uncommented() {
        let text = std::fs::read_to_string(example_path()).expect("example");
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(setting) if setting.contains(" = ") => setting,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, uncommented).expect("write");
        let config = ServerConfig::load(&ServeArgs { config: Some(path), ..Default::default() }).expect("loads");
        assert_eq!(config.initial_members.len(), 3);
        assert_eq!(config.join.as_deref(), Some("127.0.0.1:7071"));
        assert_eq!(config.advertise.as_deref(), Some("10.0.0.1:7070"));
    }

    /// Limits that were file-only are flags now, and a flag beats the file.
    #[test]
    fn every_limit_is_a_flag_that_beats_the_file() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.toml");
        std::fs::write(&path, "[limits]\nread_records_max = 5\ntopics_max = 6\n").expect("write");
        let config_flag = format!("--config={}", path.display());
        let serve = <Serve as clap::Parser>::try_parse_from(["serve", &config_flag, "--read-records-max", "7"])
            .expect("parses");
        let config = ServerConfig::load(&serve.args).expect("load");
        assert_eq!(config.limits.read_records_max, 7, "flag beats file");
        assert_eq!(config.limits.topics_max, 6, "from the file");
        assert_eq!(config.limits.subscriptions_max, Limits::default().subscriptions_max, "default");
    }
}
