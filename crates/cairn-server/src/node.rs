//! A Cairn node's life: check the data directory, open the store, start the Raft host,
//! serve gRPC until SIGINT or SIGTERM, shut down.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn_proto::v1::cairn_server::CairnServer;
use cairn_proto::v1::raft_transport_server::RaftTransportServer;
use cairn_raft::{Host, HostConfig};
use cairn_storage::{Store, StoreOptions};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::api::{CairnApi, LEADER_WAIT};
use crate::cluster_identity::ClusterIdentity;
use crate::config::ServerConfig;
use crate::grpc::forward::Forwarder;
use crate::grpc::service::CairnService;
use crate::join::Joiner;
use crate::peers::{PeerSettings, Peers};
use crate::raft_transport::{GrpcTransport, HostHandler, RAFT_MESSAGE_BYTES_MAX, RaftTransportService};
use crate::request_limits::{InFlightLimits, RequestLimits, RequestLimitsLayer};

const IDENTITY_FILE: &str = "cairn-node.toml";
pub(crate) const DATA_FORMAT_VERSION: u32 = 1;

/// Written once into a new data directory; checked on every start.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NodeIdentity {
    pub node_id: u64,
    pub data_format_version: u32,
    /// The cluster this data belongs to: `single-node` or the canonical initial cluster.
    pub cluster: String,
}

/// The canonical description of the cluster a node forms or belongs to.
fn cluster_spec(initial_members: &BTreeMap<u64, String>) -> String {
    if initial_members.is_empty() {
        return "single-node".to_owned();
    }
    initial_members.iter().map(|(id, address)| format!("{id}={address}")).collect::<Vec<_>>().join(",")
}

/// Checks (or writes) the data directory's identity; returns the cluster it belongs to
/// (empty for a node that has not finished joining one).
fn check_identity(
    data_dir: &Path,
    node_id: u64,
    initial_members: &BTreeMap<u64, String>,
    joining: bool,
) -> anyhow::Result<String> {
    let cluster = if joining { String::new() } else { cluster_spec(initial_members) };
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let identity: NodeIdentity =
                toml::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
            if identity.node_id != node_id {
                bail!(
                    "data directory {} belongs to node {}, not node {node_id}: use --node-id {} or another --data-dir",
                    data_dir.display(),
                    identity.node_id,
                    identity.node_id
                );
            }
            // Restarting without --initial-cluster is fine; naming another cluster is not.
            if !initial_members.is_empty() && identity.cluster != cluster {
                bail!(
                    "data directory {} belongs to cluster [{}], not [{cluster}]: starting it with another \
                     --initial-cluster could split the cluster; use a new --data-dir to form a new cluster",
                    data_dir.display(),
                    identity.cluster
                );
            }
            if identity.data_format_version != DATA_FORMAT_VERSION {
                bail!(
                    "data directory {} has format version {}; this build reads version {DATA_FORMAT_VERSION}",
                    data_dir.display(),
                    identity.data_format_version
                );
            }
            Ok(identity.cluster)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            write_identity(
                data_dir,
                &NodeIdentity { node_id, data_format_version: DATA_FORMAT_VERSION, cluster: cluster.clone() },
            )?;
            Ok(cluster)
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

pub(crate) fn write_identity(data_dir: &Path, identity: &NodeIdentity) -> anyhow::Result<()> {
    let text = toml::to_string(identity).context("encoding node identity")?;
    let temporary = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, data_dir.join(IDENTITY_FILE))?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let cluster = check_identity(&config.data_dir, config.node_id, &config.initial_members, config.join.is_some())?;
    let store_path = config.data_dir.join("db");
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path, &StoreOptions::default()))
        .await?
        .context("opening the store (is another cairn process using this data directory?)")?;

    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let bound = listener.local_addr()?;
    let advertise = config.advertise.clone().unwrap_or_else(|| bound.to_string());
    let initial_members = if config.join.is_some() {
        // Joining: the cluster's controller adds this node; nothing to initialise here.
        BTreeMap::new()
    } else if config.initial_members.is_empty() {
        // No cluster given: this node forms a single-node cluster on first start.
        BTreeMap::from([(config.node_id, advertise.clone())])
    } else {
        config.initial_members.clone()
    };
    let host_config = HostConfig {
        node_id: config.node_id,
        initial_members,
        heartbeat_interval_ms: config.heartbeat_interval_ms,
        election_timeout_min_ms: config.election_timeout_min_ms,
        election_timeout_max_ms: config.election_timeout_max_ms,
        retention_check_interval_ms: config.retention_check_interval_ms,
        snapshot_log_entries: config.snapshot_log_entries,
        limits: config.limits.clone(),
        auto_balance: config.auto_balance,
        moves_active_max: config.moves_active_max,
        move_bytes_per_sec: config.move_bytes_per_sec,
    };
    let identity = ClusterIdentity::new(cluster);
    let peer_settings = PeerSettings::from_failure_detection(
        Duration::from_millis(config.election_timeout_min_ms),
        Duration::from_millis(config.election_timeout_max_ms),
        LEADER_WAIT,
        bound.ip(),
    );
    let peers = Arc::new(Peers::new(peer_settings.clone()));
    let transport = Arc::new(GrpcTransport::new(config.node_id, identity.clone(), Arc::clone(&peers)));
    let host = Host::start(host_config, store, transport.clone()).await.context("starting raft")?;

    // Room for a full request plus protobuf framing; our own checks answer first.
    let request_bytes_max = config.limits.request_bytes_max + crate::config::DECODING_OVERHEAD_BYTES;
    let api = CairnApi::new(Arc::clone(&host), transport, Arc::new(Forwarder::new(peers)), identity.clone());
    let cairn = CairnServer::new(CairnService::new(api))
        .max_decoding_message_size(request_bytes_max)
        .max_encoding_message_size(config.limits.read_bytes_max * 2 + 1024 * 1024);
    let stopping = tokio_util::sync::CancellationToken::new();
    let raft = RaftTransportServer::new(RaftTransportService {
        handler: Arc::new(HostHandler(Arc::clone(&host))),
        cluster: identity.clone(),
        stopping: stopping.clone(),
    })
    .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
    .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);

    tracing::info!(node_id = config.node_id, %bound, %advertise, data_dir = %config.data_dir.display(), "cairn node serving");
    // A line scripts and tests can wait for.
    println!("cairn node {} listening on {bound}", config.node_id);
    if let Some(target) = config.join.clone() {
        let joiner = Joiner {
            target,
            data_dir: config.data_dir.clone(),
            node_id: config.node_id,
            address: advertise.clone(),
            identity,
            peers: peer_settings,
        };
        tokio::spawn(joiner.run());
    }
    // Nagle's algorithm must be off on accepted connections too (the builder's
    // `tcp_nodelay` does not reach a listener we bind ourselves): with it on, a response's
    // second small write waited for the client's delayed ACK, ~40 ms.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let request_limits = RequestLimits::new(InFlightLimits::from_limits(&config.limits));
    tonic::transport::Server::builder()
        .max_concurrent_streams(config.limits.connection_streams_max)
        .layer(RequestLimitsLayer::new(request_limits))
        .add_service(cairn)
        .add_service(raft)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown_signal().await;
            // Peers' Raft streams never end on their own: end them, or the graceful
            // shutdown waits for them.
            stopping.cancel();
        })
        .await
        .context("serving gRPC")?;
    tracing::info!("shutting down");
    host.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_written_then_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = BTreeMap::new();
        check_identity(dir.path(), 3, &none, false).expect("new directory");
        check_identity(dir.path(), 3, &none, false).expect("same node");
        let err = check_identity(dir.path(), 4, &none, false).expect_err("other node");
        assert!(err.to_string().contains("belongs to node 3"), "{err}");
        let cluster = BTreeMap::from([(3, "a:1".to_string())]);
        let err = check_identity(dir.path(), 3, &cluster, false).expect_err("another cluster");
        assert!(err.to_string().contains("belongs to cluster [single-node]"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let three = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string()), (3, "c:3".to_string())]);
        check_identity(dir.path(), 2, &three, false).expect("forms the cluster");
        check_identity(dir.path(), 2, &none, false).expect("restart without the flag");
        check_identity(dir.path(), 2, &three, false).expect("restart with the same flag");
        let other = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())]);
        assert!(check_identity(dir.path(), 2, &other, false).is_err(), "another --initial-cluster is refused");
    }
}
