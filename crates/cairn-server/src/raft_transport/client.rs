//! The client side: `GrpcTransport`, which sends each Raft message on its peer's shared
//! stream (`stream.rs`), in a unary call of its own (snapshots, large AppendEntries), or on
//! the heartbeat lane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_proto::v1::{RaftEnvelope, RaftKind};
use cairn_raft::network::BoxFuture;
use cairn_raft::{RpcKind, Transport, TransportError};
use cairn_types::{GroupId, NodeId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

use super::stream::{PeerStream, StreamCounters};
use super::{STREAM_PAYLOAD_MAX, failure, lock, raft_client, request_message};
use crate::cluster_identity::ClusterIdentity;
use crate::heartbeat_lane::HeartbeatLane;
use crate::peers::Peers;

/// Requests queued for a peer's writer, and their payload bytes (a caller waits for room:
/// 4096 requests of up to `STREAM_PAYLOAD_MAX` would be 4 GiB).
pub(super) const PEER_QUEUE_MAX: usize = 4096;
pub(super) const PEER_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Requests sent on a peer's stream and not yet answered; the writer waits beyond this.
pub(super) const PEER_PENDING_MAX: usize = 4096;

pub struct GrpcTransport {
    node_id: NodeId,
    cluster: ClusterIdentity,
    channels: Arc<Peers>,
    /// Each peer's writer queue, and the payload bytes it may still take.
    pub(super) peers: Mutex<HashMap<String, PeerQueue>>,
    counters: Arc<StreamCounters>,
    /// `NodeHeartbeat`s travel apart from the data, on connections of their own.
    heartbeats: HeartbeatLane,
}

/// A peer's writer queue and the payload bytes it may still take (`PEER_QUEUE_BYTES_MAX`).
type PeerQueue = (mpsc::Sender<Queued>, Arc<Semaphore>);

/// A request waiting for its peer's writer.
pub(super) struct Queued {
    pub(super) target: NodeId,
    pub(super) envelope: RaftEnvelope,
    pub(super) reply: oneshot::Sender<Result<Bytes, TransportError>>,
    /// The payload's share of `PEER_QUEUE_BYTES_MAX`, given back once it is in a frame.
    _queued_bytes: OwnedSemaphorePermit,
}

impl GrpcTransport {
    pub fn new(node_id: NodeId, cluster: ClusterIdentity, channels: Arc<Peers>) -> GrpcTransport {
        GrpcTransport {
            node_id,
            heartbeats: HeartbeatLane::new(node_id, cluster.clone(), Arc::clone(&channels)),
            cluster,
            channels,
            peers: Mutex::new(HashMap::new()),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    /// Raft messages queued for the peers' stream writers: `(messages, payload bytes)`.
    pub fn queued(&self) -> (usize, usize) {
        lock(&self.peers).values().fold((0, 0), |(messages, bytes), (queue, room)| {
            let queued = queue.max_capacity() - queue.capacity();
            (messages + queued, bytes + PEER_QUEUE_BYTES_MAX.saturating_sub(room.available_permits()))
        })
    }

    fn channel(&self, address: &str) -> Result<Channel, String> {
        self.channels.channel(address).map_err(|err| err.to_string())
    }

    /// The queue of `address`'s stream writer, started on first use.
    fn peer(&self, address: &str) -> Result<PeerQueue, String> {
        let mut peers = lock(&self.peers);
        if let Some(queue) = peers.get(address).filter(|(queue, _)| !queue.is_closed()) {
            return Ok(queue.clone());
        }
        let (queue, queued) = mpsc::channel(PEER_QUEUE_MAX);
        let stream = PeerStream {
            address: address.to_owned(),
            channel: self.channel(address)?,
            node_id: self.node_id,
            cluster: self.cluster.clone(),
            counters: Arc::clone(&self.counters),
            pending_slots: Arc::new(Semaphore::new(PEER_PENDING_MAX)),
            next_id: 0,
        };
        tokio::spawn(stream.run(queued));
        let queue = (queue, Arc::new(Semaphore::new(PEER_QUEUE_BYTES_MAX)));
        peers.insert(address.to_owned(), queue.clone());
        Ok(queue)
    }

    fn call_unary(
        &self,
        target: NodeId,
        address: String,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<Result<Bytes, TransportError>> {
        let channel = self.channel(&address);
        let message = request_message(self.node_id, &self.cluster, target, group, payload);
        Box::pin(async move {
            let channel = channel.map_err(|detail| TransportError::Unreachable {
                node: target,
                address: address.clone(),
                detail,
            })?;
            let mut client = raft_client(channel);
            let reply = match kind {
                RpcKind::AppendEntries => client.append_entries(message).await,
                RpcKind::Vote => client.vote(message).await,
                RpcKind::PreVote => client.pre_vote(message).await,
                RpcKind::SnapshotChunk => client.snapshot_chunk(message).await,
                RpcKind::InstallSnapshot => client.install_snapshot(message).await,
                RpcKind::ReadIndex => client.read_index(message).await,
                RpcKind::TransferLeader => client.transfer_leader(message).await,
                RpcKind::ControllerWrite => client.controller_write(message).await,
                RpcKind::NodeHeartbeat => client.node_heartbeat(message).await,
                RpcKind::Membership => client.membership(message).await,
            };
            reply
                .map(|reply| reply.into_inner().payload)
                .map_err(|status| failure(target, &address, status.code(), status.message()))
        })
    }
}

impl Transport for GrpcTransport {
    fn call(
        &self,
        target: NodeId,
        address: String,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<Result<Bytes, TransportError>> {
        if kind == RpcKind::NodeHeartbeat {
            return self.heartbeats.call(target, address, group, payload);
        }
        let Some(streamed) = streamed_kind(kind).filter(|_| payload.len() <= STREAM_PAYLOAD_MAX) else {
            return self.call_unary(target, address, group, kind, payload);
        };
        let queue = self.peer(&address);
        let envelope = RaftEnvelope {
            id: 0,
            kind: streamed as i32,
            group_id: group,
            to_node: target,
            payload: payload.into(),
            code: 0,
            error: String::new(),
        };
        Box::pin(async move {
            let unreachable =
                |detail: String| TransportError::Unreachable { node: target, address: address.clone(), detail };
            let (queue, queue_bytes) = queue.map_err(unreachable)?;
            // At most `STREAM_PAYLOAD_MAX` (1 MiB) bytes: fits the u32 of a permit count.
            let queued_bytes = queue_bytes
                .acquire_many_owned(envelope.payload.len() as u32)
                .await
                .map_err(|_| unreachable("the stream writer stopped".to_owned()))?;
            let (reply, answer) = oneshot::channel();
            queue
                .send(Queued { target, envelope, reply, _queued_bytes: queued_bytes })
                .await
                .map_err(|_| unreachable("the stream writer stopped".to_owned()))?;
            answer.await.map_err(|_| unreachable("the stream ended before the reply".to_owned()))?
        })
    }
}

/// The kinds that may share a stream, with their wire names.
fn streamed_kind(kind: RpcKind) -> Option<RaftKind> {
    Some(match kind {
        RpcKind::AppendEntries => RaftKind::AppendEntries,
        RpcKind::Vote => RaftKind::Vote,
        RpcKind::PreVote => RaftKind::PreVote,
        RpcKind::ReadIndex => RaftKind::ReadIndex,
        RpcKind::TransferLeader => RaftKind::TransferLeader,
        RpcKind::ControllerWrite => RaftKind::ControllerWrite,
        RpcKind::NodeHeartbeat => RaftKind::NodeHeartbeat,
        RpcKind::Membership => RaftKind::Membership,
        RpcKind::SnapshotChunk | RpcKind::InstallSnapshot => return None,
    })
}
