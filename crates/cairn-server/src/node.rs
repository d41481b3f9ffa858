//! A Cairn node's life: check the data directory, open the store, start the Raft host,
//! serve gRPC (and HTTP: health, metrics, status page) until SIGINT or SIGTERM, shut down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_proto::v1::cairn_server::CairnServer;
use cairn_proto::v1::raft_transport_server::RaftTransportServer;
use cairn_raft::{Host, HostConfig};
use cairn_storage::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::api::{CairnApi, LEADER_WAIT};
use crate::cluster_identity::ClusterIdentity;
use crate::config::ServerConfig;
use crate::grpc::forward::Forwarder;
use crate::grpc::service::CairnService;
use crate::join::Joiner;
use crate::metrics::{GrpcMetricsLayer, NodeCollector, NodeMetrics};
use crate::node_identity::check_identity;
use crate::peers::{PeerSettings, Peers};
use crate::raft_transport::{GrpcTransport, HostHandler, RAFT_MESSAGE_BYTES_MAX, RaftTransportService};
use crate::request_limits::{InFlightLimits, RequestLimits, RequestLimitsLayer};

pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let cluster = check_identity(&config.data_dir, config.node_id, &config.initial_members, config.join.is_some())?;
    let store_path = config.data_dir.join("db");
    let store_options =
        StoreOptions { write_buffer_bytes: config.write_buffer_bytes as usize, ..StoreOptions::default() };
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path, &store_options))
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
        compaction_check_interval_ms: config.compaction_check_interval_ms,
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
    let host = Host::start(host_config, Arc::clone(&store), transport.clone()).await.context("starting raft")?;

    // Room for a full request plus protobuf framing; our own checks answer first.
    let request_bytes_max = config.limits.request_bytes_max + crate::config::DECODING_OVERHEAD_BYTES;
    let api = Arc::new(CairnApi::new(
        Arc::clone(&host),
        transport.clone(),
        Arc::new(Forwarder::new(peers)),
        identity.clone(),
    ));
    tokio::spawn(crate::api::run_group_expiry(Arc::clone(&host), api.group_sessions()));
    let cairn = CairnServer::new(CairnService::new(Arc::clone(&api)))
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

    let request_limits = RequestLimits::new(InFlightLimits::from_limits(&config.limits));
    let (metrics, grpc_metrics) = NodeMetrics::new(NodeCollector {
        host: Arc::clone(&host),
        api: Arc::clone(&api),
        store,
        transport,
        request_limits: Arc::clone(&request_limits),
        per_partition: config.metrics_per_partition,
    });
    if let Some(http_address) = config.http_address()? {
        let http_listener =
            TcpListener::bind(http_address).await.with_context(|| format!("binding {http_address} (--http-listen)"))?;
        let http_bound = http_listener.local_addr()?;
        tracing::info!(%http_bound, "serving HTTP: /health/live, /health/ready, /metrics, /api/status, /");
        // Before the gRPC line below: scripts and tests read both, in this order.
        println!("cairn node {} serving HTTP on {http_bound}", config.node_id);
        let (api, stopping) = (Arc::clone(&api), stopping.clone());
        tokio::spawn(async move {
            if let Err(err) = crate::http::serve(http_listener, api, Arc::new(metrics), stopping).await {
                tracing::error!(error = %err, "the HTTP listener failed");
            }
        });
    }
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
    tonic::transport::Server::builder()
        .max_concurrent_streams(config.limits.connection_streams_max)
        .layer(GrpcMetricsLayer::new(grpc_metrics))
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
