//! The one core behind every front door: what a node does for a client request, whatever
//! protocol it came in by.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize};

use cairn_raft::{Host, Transport};

use crate::api::{Forward, GroupSessions};
use crate::cluster_identity::ClusterIdentity;

/// A node's public operations (appends, reads, subscriptions, admin, cluster status), on
/// domain types. The gRPC service (`grpc/`) is a thin adapter over it; a Kafka listener
/// or a status page would be another.
pub struct CairnApi {
    pub(crate) host: Arc<Host>,
    /// The cluster this node's data directory belongs to.
    pub(crate) cluster: ClusterIdentity,
    /// For `ReadIndex` calls to a partition's leader (linearizable reads on a follower).
    pub(crate) transport: Arc<dyn Transport>,
    /// Spreads unkeyed appends over partitions, and forwarded reads over replicas.
    pub(crate) round_robin: AtomicU32,
    /// Subscriptions served (or relayed) now.
    pub(crate) subscriptions: Arc<AtomicUsize>,
    /// Calls to the other nodes' public API, for requests this node cannot serve.
    pub(crate) forward: Arc<dyn Forward>,
    /// When the consumer groups this node coordinates last heard from their members.
    pub(crate) group_sessions: Arc<GroupSessions>,
    /// What requests this node served amounted to, for `/metrics`.
    pub(crate) stats: crate::api::ApiStats,
}

impl CairnApi {
    pub fn new(
        host: Arc<Host>,
        transport: Arc<dyn Transport>,
        forward: Arc<dyn Forward>,
        cluster: ClusterIdentity,
    ) -> CairnApi {
        CairnApi {
            host,
            cluster,
            transport,
            round_robin: AtomicU32::new(0),
            subscriptions: Arc::new(AtomicUsize::new(0)),
            forward,
            group_sessions: Arc::default(),
            stats: crate::api::ApiStats::default(),
        }
    }

    /// The consumer group sessions, for the loop that expires lapsed members
    /// (`run_group_expiry`).
    pub fn group_sessions(&self) -> Arc<GroupSessions> {
        Arc::clone(&self.group_sessions)
    }

    pub fn node_id(&self) -> cairn_types::NodeId {
        self.host.node_id()
    }
}
