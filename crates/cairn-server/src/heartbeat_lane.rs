//! Node heartbeats on a lane of their own.
//!
//! Failover hangs on `NodeHeartbeat`s: a node that hears none from a peer within the
//! failure detection time (600 ms with the fast settings) elects new leaders for that peer's
//! groups. On the shared per-peer `Exchange` stream a heartbeat waits behind whatever was
//! queued before it (thousands of AppendEntries of up to 1 MiB, and the frames already handed
//! to gRPC), and on the peer's data connection behind the bytes of large unary
//! AppendEntries and snapshot chunks (TCP and HTTP/2 flow control are per connection). Under
//! replication load that is longer than the detection time, and idle groups fail over for
//! no reason.
//!
//! So heartbeats take neither: each peer gets a second connection that carries nothing but
//! heartbeats, one small unary call each. Data traffic can fill the other connection as it
//! likes; what a heartbeat waits for is the peer's CPU, which is exactly what liveness
//! should measure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use cairn_raft::TransportError;
use cairn_raft::network::BoxFuture;
use cairn_types::{GroupId, NodeId};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::cluster_identity::ClusterIdentity;
use crate::peers::Peers;
use crate::raft_transport::{failure, raft_client, request_message};

/// Heartbeats to one peer awaiting their answer; another one beyond this fails at once (the
/// peer is not answering anyway, and the caller's timeout is the signal).
pub const HEARTBEATS_IN_FLIGHT_MAX: usize = 16;

/// The heartbeat connections of a node, one per peer address.
pub struct HeartbeatLane {
    node_id: NodeId,
    cluster: ClusterIdentity,
    /// Builds the endpoints (keepalive, timeouts): the lane's connections are its own, but
    /// built like every other node-to-node connection.
    endpoints: Arc<Peers>,
    peers: Mutex<HashMap<String, Peer>>,
}

#[derive(Clone)]
struct Peer {
    channel: Channel,
    in_flight: Arc<Semaphore>,
}

impl HeartbeatLane {
    pub fn new(node_id: NodeId, cluster: ClusterIdentity, endpoints: Arc<Peers>) -> HeartbeatLane {
        HeartbeatLane { node_id, cluster, endpoints, peers: Mutex::new(HashMap::new()) }
    }

    /// The heartbeat connection to `address`: made on first use, its own TCP connection.
    fn peer(&self, address: &str) -> Result<Peer, String> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.get(address) {
            return Ok(peer.clone());
        }
        let channel = self.endpoints.settings().endpoint(address).map_err(|err| err.to_string())?.connect_lazy();
        let peer = Peer { channel, in_flight: Arc::new(Semaphore::new(HEARTBEATS_IN_FLIGHT_MAX)) };
        peers.insert(address.to_owned(), peer.clone());
        Ok(peer)
    }

    /// Sends one `NodeHeartbeat` to `target` and returns its answer.
    pub fn call(
        &self,
        target: NodeId,
        address: String,
        group: GroupId,
        payload: Vec<u8>,
    ) -> BoxFuture<Result<Bytes, TransportError>> {
        let peer = self.peer(&address);
        let message = request_message(self.node_id, &self.cluster, target, group, payload);
        Box::pin(async move {
            let unreachable =
                |detail: String| TransportError::Unreachable { node: target, address: address.clone(), detail };
            let peer = peer.map_err(unreachable)?;
            let Ok(_slot) = peer.in_flight.try_acquire() else {
                return Err(unreachable(format!("{HEARTBEATS_IN_FLIGHT_MAX} heartbeats await an answer")));
            };
            match raft_client(peer.channel).node_heartbeat(message).await {
                Ok(reply) => Ok(reply.into_inner().payload),
                Err(status) => Err(failure(target, &address, status.code(), status.message())),
            }
        })
    }
}
