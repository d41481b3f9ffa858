//! Node-to-node Raft traffic over gRPC.
//!
//! Client side, `GrpcTransport`: the node's peer channel per address (`peers`). The small messages of
//! every group (AppendEntries up to `STREAM_PAYLOAD_MAX`, votes, heartbeats, read indexes)
//! share one long-lived `Exchange` stream per peer: a writer task sends whatever callers
//! queued since its previous frame as one frame, and a reader task hands each reply back to
//! its caller by id. Under load an append's messages to a follower, of all groups, travel
//! together instead of as one unary call each (TiKV batches Raft messages the same way).
//! Snapshots and large AppendEntries take unary calls.
//!
//! Server side, `RaftTransportService`: serves both, through a `RaftHandler` (the `Host`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::v1::raft_transport_client::RaftTransportClient;
use cairn_proto::v1::raft_transport_server::RaftTransport;
use cairn_proto::v1::{RaftEnvelope, RaftFrame, RaftKind, RaftMessage};
use cairn_raft::network::BoxFuture;
use cairn_raft::{Host, HostError, RpcKind, Transport, TransportError};
use cairn_types::{GroupId, NodeId};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster_identity::ClusterIdentity;
use crate::heartbeat_lane::HeartbeatLane;
use crate::peers::Peers;

/// Raft messages carry batches: allow up to this much per message.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Larger payloads take a unary call of their own rather than hold up a shared frame.
pub const STREAM_PAYLOAD_MAX: usize = 1024 * 1024;
/// A frame is closed at this many envelopes or bytes of payload (it may pass the byte
/// budget by one payload of at most `STREAM_PAYLOAD_MAX`).
const FRAME_ENVELOPES_MAX: usize = 256;
const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Requests queued for a peer's writer, and their payload bytes (a caller waits for room:
/// 4096 requests of up to `STREAM_PAYLOAD_MAX` would be 4 GiB).
const PEER_QUEUE_MAX: usize = 4096;
const PEER_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Requests sent on a peer's stream and not yet answered; the writer waits beyond this.
const PEER_PENDING_MAX: usize = 4096;
/// Frames handed to gRPC and not yet written.
const FRAMES_QUEUED_MAX: usize = 16;
/// Requests of one stream being served at once on the receiving node; it stops reading
/// the stream beyond this.
const SERVED_PER_STREAM_MAX: usize = 4096;
/// How long opening a stream (connecting included) may take.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames and envelopes this node has sent on its streams, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub frames: AtomicU64,
    pub envelopes: AtomicU64,
}

pub struct GrpcTransport {
    node_id: NodeId,
    cluster: ClusterIdentity,
    channels: Arc<Peers>,
    /// Each peer's writer queue, and the payload bytes it may still take.
    peers: Mutex<HashMap<String, PeerQueue>>,
    counters: Arc<StreamCounters>,
    /// `NodeHeartbeat`s travel apart from the data, on connections of their own.
    heartbeats: HeartbeatLane,
}

/// A peer's writer queue and the payload bytes it may still take (`PEER_QUEUE_BYTES_MAX`).
type PeerQueue = (mpsc::Sender<Queued>, Arc<Semaphore>);

/// A request waiting for its peer's writer.
struct Queued {
    target: NodeId,
    envelope: RaftEnvelope,
    reply: oneshot::Sender<Result<Bytes, TransportError>>,
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

fn rpc_kind(kind: i32) -> Option<RpcKind> {
    Some(match RaftKind::try_from(kind).ok()? {
        RaftKind::AppendEntries => RpcKind::AppendEntries,
        RaftKind::Vote => RpcKind::Vote,
        RaftKind::PreVote => RpcKind::PreVote,
        RaftKind::ReadIndex => RpcKind::ReadIndex,
        RaftKind::TransferLeader => RpcKind::TransferLeader,
        RaftKind::ControllerWrite => RpcKind::ControllerWrite,
        RaftKind::NodeHeartbeat => RpcKind::NodeHeartbeat,
        RaftKind::Membership => RpcKind::Membership,
        RaftKind::Unspecified => return None,
    })
}

/// A failed call as openraft's network sees it: `Unavailable` means the peer is down or
/// not serving (openraft backs off), anything else is an error of that one message.
/// A Raft request from `from` to `target`, stamped with the sender's cluster.
pub(crate) fn request_message(
    from: NodeId,
    cluster: &ClusterIdentity,
    target: NodeId,
    group: GroupId,
    payload: Vec<u8>,
) -> RaftMessage {
    RaftMessage { group_id: group, from_node: from, to_node: target, payload: payload.into(), cluster: cluster.get() }
}

pub(crate) fn failure(target: NodeId, address: &str, code: tonic::Code, message: &str) -> TransportError {
    if code == tonic::Code::Unavailable {
        TransportError::Unreachable { node: target, address: address.to_owned(), detail: message.to_owned() }
    } else {
        TransportError::Failed { node: target, detail: message.to_owned() }
    }
}

/// A client of a peer's Raft service, with the message size limit of Raft messages.
pub(crate) fn raft_client(channel: Channel) -> RaftTransportClient<Channel> {
    RaftTransportClient::new(channel)
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer of one peer's stream: opens a stream when there is something to send, and a
/// new one after the old one ends.
struct PeerStream {
    address: String,
    channel: Channel,
    node_id: NodeId,
    cluster: ClusterIdentity,
    counters: Arc<StreamCounters>,
    /// One permit per request sent and not yet answered.
    pending_slots: Arc<Semaphore>,
    next_id: u64,
}

impl PeerStream {
    async fn run(mut self, mut queue: mpsc::Receiver<Queued>) {
        while let Some(first) = queue.recv().await {
            let waiting = Arc::new(Waiting::new(self.address.clone()));
            let (frames, frames_out) = mpsc::channel(FRAMES_QUEUED_MAX);
            // The first frame is queued before the call, so opening the stream sends it.
            let frame = self.frame(first, &mut queue, &waiting).await;
            if frames.try_send(frame).is_err() {
                waiting.close("the stream's frame queue refused its first frame");
                continue;
            }
            let mut client = raft_client(self.channel.clone());
            let opened = tokio::time::timeout(
                STREAM_OPEN_TIMEOUT,
                client.exchange(tokio_stream::wrappers::ReceiverStream::new(frames_out)),
            )
            .await;
            let replies = match opened {
                Ok(Ok(replies)) => replies.into_inner(),
                Ok(Err(status)) => {
                    waiting.close(&format!("cannot open a stream: {}", status.message()));
                    continue;
                }
                Err(_) => {
                    waiting.close(&format!("no stream within {STREAM_OPEN_TIMEOUT:?}"));
                    continue;
                }
            };
            let mut reader = tokio::spawn(read_replies(replies, Arc::clone(&waiting)));
            loop {
                let next = tokio::select! {
                    biased;
                    _ = &mut reader => break,
                    next = queue.recv() => next,
                };
                let Some(next) = next else {
                    reader.abort();
                    waiting.close("this node's transport stopped");
                    return;
                };
                let sent = tokio::select! {
                    _ = &mut reader => false,
                    sent = async {
                        let frame = self.frame(next, &mut queue, &waiting).await;
                        frames.send(frame).await.is_ok()
                    } => sent,
                };
                if !sent {
                    break;
                }
            }
            reader.abort();
            waiting.close("the stream ended");
        }
    }

    /// `first` and whatever else is queued, up to a frame's limits, registered as waiting.
    async fn frame(&mut self, first: Queued, queue: &mut mpsc::Receiver<Queued>, waiting: &Waiting) -> RaftFrame {
        let mut envelopes = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(Queued { target, mut envelope, reply, .. }) = next.take() {
            let slot = match Arc::clone(&self.pending_slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    // Callers that gave up (timed out) still hold slots until the peer
                    // answers: free those before waiting for a reply.
                    waiting.forget_abandoned();
                    Arc::clone(&self.pending_slots).acquire_owned().await.ok()
                }
            };
            let Some(slot) = slot else {
                let _ = reply.send(Err(TransportError::Failed { node: target, detail: "transport closed".into() }));
                break;
            };
            self.next_id += 1;
            envelope.id = self.next_id;
            bytes += envelope.payload.len();
            if waiting.insert(envelope.id, Waiter { target, reply, _slot: slot }) {
                envelopes.push(envelope);
            }
            if envelopes.len() >= FRAME_ENVELOPES_MAX || bytes >= FRAME_BYTES_MAX {
                break;
            }
            next = queue.try_recv().ok();
        }
        self.counters.frames.fetch_add(1, Ordering::Relaxed);
        self.counters.envelopes.fetch_add(envelopes.len() as u64, Ordering::Relaxed);
        RaftFrame { cluster: self.cluster.get(), from_node: self.node_id, envelopes }
    }
}

/// Hands the replies of one stream to their callers; when the stream ends, fails the rest.
async fn read_replies(mut replies: Streaming<RaftFrame>, waiting: Arc<Waiting>) {
    let ended = loop {
        match replies.message().await {
            Ok(Some(frame)) => {
                for envelope in frame.envelopes {
                    waiting.answer(envelope);
                }
            }
            Ok(None) => break "the peer closed the stream".to_owned(),
            Err(status) => break format!("the stream failed: {}", status.message()),
        }
    };
    waiting.close(&ended);
}

struct Waiter {
    target: NodeId,
    reply: oneshot::Sender<Result<Bytes, TransportError>>,
    _slot: OwnedSemaphorePermit,
}

/// The requests of one stream waiting for replies; `None` once the stream ended, so a late
/// request fails at once instead of waiting for a reply that cannot come.
struct Waiting {
    waiters: Mutex<Option<HashMap<u64, Waiter>>>,
    address: String,
}

impl Waiting {
    fn new(address: String) -> Waiting {
        Waiting { waiters: Mutex::new(Some(HashMap::new())), address }
    }

    /// Whether `waiter` was registered; if the stream already ended it is failed instead.
    fn insert(&self, id: u64, waiter: Waiter) -> bool {
        let mut waiters = lock(&self.waiters);
        match waiters.as_mut() {
            Some(waiters) => {
                waiters.insert(id, waiter);
                true
            }
            None => {
                let _ = waiter.reply.send(Err(TransportError::Unreachable {
                    node: waiter.target,
                    address: self.address.clone(),
                    detail: "the stream ended".into(),
                }));
                false
            }
        }
    }

    fn answer(&self, envelope: RaftEnvelope) {
        let waiter = lock(&self.waiters).as_mut().and_then(|waiters| waiters.remove(&envelope.id));
        // A reply nobody waits for answered a caller that gave up: drop it.
        let Some(waiter) = waiter else { return };
        let result = if envelope.code == tonic::Code::Ok as i32 {
            Ok(envelope.payload)
        } else {
            Err(failure(waiter.target, &self.address, tonic::Code::from(envelope.code), &envelope.error))
        };
        let _ = waiter.reply.send(result);
    }

    fn forget_abandoned(&self) {
        if let Some(waiters) = lock(&self.waiters).as_mut() {
            waiters.retain(|_, waiter| !waiter.reply.is_closed());
        }
    }

    /// Ends the stream's bookkeeping: every request still waiting fails as unreachable.
    fn close(&self, detail: &str) {
        let Some(waiters) = lock(&self.waiters).take() else { return };
        for waiter in waiters.into_values() {
            let _ = waiter.reply.send(Err(TransportError::Unreachable {
                node: waiter.target,
                address: self.address.clone(),
                detail: detail.to_owned(),
            }));
        }
    }
}

/// What serves Raft messages on this node.
pub trait RaftHandler: Send + Sync + 'static {
    fn node_id(&self) -> NodeId;

    fn handle(&self, group: GroupId, to: NodeId, kind: RpcKind, payload: Bytes) -> BoxFuture<Result<Vec<u8>, Status>>;

    /// A message of this cluster came from `node`: it is alive.
    fn heard_from(&self, _node: NodeId) {}
}

/// The node's `Host` serves its Raft groups' messages.
pub struct HostHandler(pub Arc<Host>);

impl RaftHandler for HostHandler {
    fn node_id(&self) -> NodeId {
        self.0.node_id()
    }

    fn heard_from(&self, node: NodeId) {
        self.0.heard_from(node);
    }

    fn handle(&self, group: GroupId, to: NodeId, kind: RpcKind, payload: Bytes) -> BoxFuture<Result<Vec<u8>, Status>> {
        let host = Arc::clone(&self.0);
        Box::pin(async move {
            host.handle_rpc(group, to, kind, &payload).await.map_err(|err| match err {
                HostError::Storage(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                    Status::invalid_argument(format!("malformed raft message: {err}"))
                }
                err => crate::status::from_host(err),
            })
        })
    }
}

pub struct RaftTransportService<H: RaftHandler = HostHandler> {
    pub handler: Arc<H>,
    pub cluster: ClusterIdentity,
    /// Cancelled when the node begins to shut down: open streams end, so that the server's
    /// graceful shutdown does not wait for peers that never hang up.
    pub stopping: CancellationToken,
}

/// Why a message stamped with `sender`'s cluster is refused here, if it is.
fn refusal(cluster: &ClusterIdentity, me: NodeId, from_node: NodeId, sender: &str) -> Option<Status> {
    (!cluster.admits(sender)).then(|| {
        Status::failed_precondition(format!(
            "raft message from node {from_node} of cluster [{sender}] refused: node {me} belongs to cluster [{}]; \
             a node of another cluster is using this address (check its --initial-cluster or --join)",
            cluster.get()
        ))
    })
}

impl<H: RaftHandler> RaftTransportService<H> {
    async fn serve(&self, request: Request<RaftMessage>, kind: RpcKind) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        if let Some(refused) = refusal(&self.cluster, self.handler.node_id(), message.from_node, &message.cluster) {
            return Err(refused);
        }
        self.handler.heard_from(message.from_node);
        let payload = self.handler.handle(message.group_id, message.to_node, kind, message.payload).await?;
        Ok(Response::new(RaftMessage {
            group_id: message.group_id,
            from_node: self.handler.node_id(),
            to_node: message.from_node,
            payload: payload.into(),
            // Replies are not checked: they answer a request this node stamped.
            cluster: String::new(),
        }))
    }
}

/// Reads a stream's frames and serves each envelope in a task of its own (as unary calls
/// are served), at most `SERVED_PER_STREAM_MAX` at once.
async fn serve_frames<H: RaftHandler>(
    handler: Arc<H>,
    cluster: ClusterIdentity,
    mut frames: Streaming<RaftFrame>,
    replies: mpsc::Sender<RaftEnvelope>,
    stopping: CancellationToken,
) {
    let serving = Arc::new(Semaphore::new(SERVED_PER_STREAM_MAX));
    loop {
        let frame = tokio::select! {
            _ = stopping.cancelled() => return,
            frame = frames.message() => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(%status, "raft stream ended");
                return;
            }
        };
        let refused = refusal(&cluster, handler.node_id(), frame.from_node, &frame.cluster);
        if refused.is_none() {
            handler.heard_from(frame.from_node);
        }
        for envelope in frame.envelopes {
            let slot = tokio::select! {
                _ = stopping.cancelled() => return,
                slot = Arc::clone(&serving).acquire_owned() => slot,
            };
            let Ok(slot) = slot else { return };
            let (handler, replies, refused) = (Arc::clone(&handler), replies.clone(), refused.clone());
            tokio::spawn(async move {
                let RaftEnvelope { id, kind, group_id, to_node, payload, .. } = envelope;
                let outcome = match (refused, rpc_kind(kind)) {
                    (Some(refused), _) => Err(refused),
                    (None, None) => Err(Status::invalid_argument(format!("unknown raft message kind {kind}"))),
                    (None, Some(rpc)) => handler.handle(group_id, to_node, rpc, payload).await,
                };
                let (payload, code, error) = match outcome {
                    Ok(payload) => (payload.into(), 0, String::new()),
                    Err(status) => (Bytes::new(), status.code() as i32, status.message().to_owned()),
                };
                let reply = RaftEnvelope { id, kind, group_id, to_node: 0, payload, code, error };
                // The stream may be gone: its caller will learn that from the stream.
                let _ = replies.send(reply).await;
                drop(slot);
            });
        }
    }
}

/// Replies as frames: each frame takes every reply ready when it is made.
fn reply_frames(replies: mpsc::Receiver<RaftEnvelope>) -> impl Stream<Item = Result<RaftFrame, Status>> + Send {
    futures::stream::unfold(replies, |mut replies| async move {
        let first = replies.recv().await?;
        let mut bytes = first.payload.len();
        let mut envelopes = vec![first];
        while envelopes.len() < FRAME_ENVELOPES_MAX && bytes < FRAME_BYTES_MAX {
            let Ok(next) = replies.try_recv() else { break };
            bytes += next.payload.len();
            envelopes.push(next);
        }
        Some((Ok(RaftFrame { cluster: String::new(), from_node: 0, envelopes }), replies))
    })
}

type FrameStream = std::pin::Pin<Box<dyn Stream<Item = Result<RaftFrame, Status>> + Send>>;

#[tonic::async_trait]
impl<H: RaftHandler> RaftTransport for RaftTransportService<H> {
    type ExchangeStream = FrameStream;

    async fn exchange(&self, request: Request<Streaming<RaftFrame>>) -> Result<Response<FrameStream>, Status> {
        let (replies, replies_out) = mpsc::channel(SERVED_PER_STREAM_MAX);
        tokio::spawn(serve_frames(
            Arc::clone(&self.handler),
            self.cluster.clone(),
            request.into_inner(),
            replies,
            self.stopping.clone(),
        ));
        Ok(Response::new(Box::pin(reply_frames(replies_out))))
    }

    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::AppendEntries).await
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::Vote).await
    }

    async fn pre_vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::PreVote).await
    }

    async fn snapshot_chunk(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::SnapshotChunk).await
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::InstallSnapshot).await
    }

    async fn read_index(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::ReadIndex).await
    }

    async fn transfer_leader(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::TransferLeader).await
    }

    async fn controller_write(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::ControllerWrite).await
    }

    async fn node_heartbeat(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::NodeHeartbeat).await
    }

    async fn membership(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.serve(request, RpcKind::Membership).await
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use cairn_proto::v1::raft_transport_server::RaftTransportServer;
    use futures::future::join_all;

    use super::*;
    use crate::peers::PeerSettings;

    /// Answers with the payload reversed; group 13 is refused as not found, group 14 as
    /// unavailable, group 15 after `release` is notified.
    struct Echo {
        release: Arc<tokio::sync::Notify>,
    }

    impl RaftHandler for Echo {
        fn node_id(&self) -> NodeId {
            2
        }

        fn handle(
            &self,
            group: GroupId,
            to: NodeId,
            kind: RpcKind,
            payload: Bytes,
        ) -> BoxFuture<Result<Vec<u8>, Status>> {
            let release = Arc::clone(&self.release);
            Box::pin(async move {
                assert_eq!(to, 2);
                match group {
                    13 => Err(Status::not_found("no group 13")),
                    14 => Err(Status::unavailable("group 14 is electing")),
                    15 => {
                        release.notified().await;
                        Ok(format!("{kind:?}").into_bytes())
                    }
                    _ => Ok(payload.iter().rev().copied().collect()),
                }
            })
        }
    }

    struct Server {
        address: SocketAddr,
        stopping: CancellationToken,
        served: tokio::task::JoinHandle<()>,
        release: Arc<tokio::sync::Notify>,
    }

    async fn serve(address: SocketAddr) -> Server {
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let stopping = CancellationToken::new();
        let release = Arc::new(tokio::sync::Notify::new());
        let service = RaftTransportService {
            handler: Arc::new(Echo { release: Arc::clone(&release) }),
            cluster: ClusterIdentity::new("test-cluster".into()),
            stopping: stopping.clone(),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let shutdown = stopping.clone();
        let served = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(RaftTransportServer::new(service))
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
                .expect("serve");
        });
        Server { address, stopping, served, release }
    }

    fn peers() -> Arc<Peers> {
        let ms = Duration::from_millis;
        let loopback = "127.0.0.1".parse().expect("ip");
        Arc::new(Peers::new(PeerSettings::from_failure_detection(ms(600), ms(900), ms(10_000), loopback)))
    }

    fn call(
        transport: &GrpcTransport,
        server: &Server,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<Result<Bytes, TransportError>> {
        transport.call(2, server.address.to_string(), group, kind, payload)
    }

    #[tokio::test]
    async fn queued_messages_share_frames_and_each_reply_finds_its_caller() {
        let server = serve("127.0.0.1:0".parse().expect("address")).await;
        let transport = GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers());
        let calls =
            (0..300u64).map(|i| call(&transport, &server, 100 + i, RpcKind::AppendEntries, i.to_be_bytes().to_vec()));
        let replies = join_all(calls).await;
        for (i, reply) in (0..300u64).zip(replies) {
            let mut expected = i.to_be_bytes().to_vec();
            expected.reverse();
            assert_eq!(reply.expect("reply").to_vec(), expected, "call {i}");
        }
        let frames = transport.counters().frames.load(Ordering::Relaxed);
        let envelopes = transport.counters().envelopes.load(Ordering::Relaxed);
        assert_eq!(envelopes, 300);
        assert!(frames <= 3, "300 queued calls went out in {frames} frames (at most 256 a frame)");

        // Failures keep their meaning: unavailable means unreachable, the rest fail.
        let refused = call(&transport, &server, 13, RpcKind::Vote, vec![]).await;
        assert!(
            matches!(&refused, Err(TransportError::Failed { detail, .. }) if detail == "no group 13"),
            "{refused:?}"
        );
        let electing = call(&transport, &server, 14, RpcKind::ReadIndex, vec![]).await;
        assert!(matches!(electing, Err(TransportError::Unreachable { .. })), "{electing:?}");

        // A slow reply holds up no other: later calls are answered while it waits.
        let slow = tokio::spawn(call(&transport, &server, 15, RpcKind::ReadIndex, vec![]));
        assert_eq!(
            call(&transport, &server, 1, RpcKind::PreVote, vec![1, 2]).await.expect("reply").to_vec(),
            vec![2, 1]
        );
        server.release.notify_one();
        assert_eq!(slow.await.expect("join").expect("reply").to_vec(), b"ReadIndex");

        // Snapshots and large payloads take unary calls, with the same answers.
        let big = vec![7u8; STREAM_PAYLOAD_MAX + 1];
        assert_eq!(
            call(&transport, &server, 1, RpcKind::AppendEntries, big.clone()).await.expect("reply").to_vec(),
            big
        );
        assert_eq!(
            call(&transport, &server, 1, RpcKind::SnapshotChunk, vec![1, 2, 3]).await.expect("reply").to_vec(),
            [3, 2, 1]
        );
        assert_eq!(transport.counters().envelopes.load(Ordering::Relaxed), 304, "only the small ones streamed");
    }

    /// Heartbeats do not queue behind data: with the peer's stream full of requests it has
    /// not answered (so the writer can send nothing more on it), a heartbeat still goes
    /// through, on its own lane.
    #[tokio::test]
    async fn a_heartbeat_is_answered_while_the_data_stream_is_full() {
        let server = serve("127.0.0.1:0".parse().expect("address")).await;
        let transport = GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers());
        let stuck: Vec<_> = (0..PEER_PENDING_MAX + 8)
            .map(|_| tokio::spawn(call(&transport, &server, 15, RpcKind::AppendEntries, vec![0; 64])))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while transport.counters().envelopes.load(Ordering::Relaxed) < PEER_PENDING_MAX as u64 {
            assert!(tokio::time::Instant::now() < deadline, "the stuck calls were not sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let vote = call(&transport, &server, 1, RpcKind::Vote, vec![1, 2]);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), vote).await.is_err(),
            "the data stream is full: a vote waits"
        );
        let beat = call(&transport, &server, 1, RpcKind::NodeHeartbeat, vec![5, 6]);
        let answered = tokio::time::timeout(Duration::from_secs(5), beat).await;
        assert_eq!(answered.expect("a heartbeat does not wait behind data").expect("reply").to_vec(), [6, 5]);
        for call in stuck {
            call.abort();
        }
    }

    /// A peer that takes no messages (its stream never opens) holds at most
    /// `PEER_QUEUE_BYTES_MAX` of payloads in its queue: further callers wait. (The queue was
    /// bounded only in messages: 4096 of 1 MiB.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_stuck_peer_queues_bounded_bytes() {
        // Accepts connections and never answers: the writer waits to open its stream.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let accepted = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                connections.push(connection);
            }
        });
        let transport = Arc::new(GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers()));
        let calls = 100;
        let callers: Vec<_> = (0..calls)
            .map(|group| {
                let call =
                    transport.call(2, address.clone(), group, RpcKind::AppendEntries, vec![1; STREAM_PAYLOAD_MAX]);
                tokio::spawn(call)
            })
            .collect();
        // One thread: once every task waits, nothing moves until the stream times out.
        for _ in 0..10_000 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let peers = lock(&transport.peers);
            let (queue, _) = peers.get(&address).expect("the peer's queue");
            PEER_QUEUE_MAX - queue.capacity()
        };
        assert!(
            queued * STREAM_PAYLOAD_MAX <= PEER_QUEUE_BYTES_MAX,
            "{queued} payloads of {STREAM_PAYLOAD_MAX} bytes queued, over {PEER_QUEUE_BYTES_MAX}"
        );
        assert!(queued > 0, "the queue takes what fits");
        for caller in callers {
            caller.abort();
        }
        accepted.abort();
    }

    #[tokio::test]
    async fn another_clusters_messages_are_refused_on_the_stream() {
        let server = serve("127.0.0.1:0".parse().expect("address")).await;
        let stranger = GrpcTransport::new(1, ClusterIdentity::new("other-cluster".into()), peers());
        let refused = call(&stranger, &server, 1, RpcKind::AppendEntries, vec![1]).await;
        assert!(
            matches!(&refused, Err(TransportError::Failed { detail, .. }) if detail.contains("refused")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_stopped_peer_fails_calls_at_once_and_a_restarted_one_is_used_again() {
        let server = serve("127.0.0.1:0".parse().expect("address")).await;
        let address = server.address;
        let transport = GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers());
        assert_eq!(call(&transport, &server, 1, RpcKind::Vote, vec![1, 2]).await.expect("reply").to_vec(), [2, 1]);

        // A call waiting on the stream when the peer shuts down fails; the shutdown is
        // not held up by the open stream.
        let waiting = tokio::spawn(call(&transport, &server, 15, RpcKind::Vote, vec![]));
        tokio::task::yield_now().await;
        server.stopping.cancel();
        server.release.notify_one();
        tokio::time::timeout(Duration::from_secs(10), server.served)
            .await
            .expect("graceful shutdown ends with a peer's stream open")
            .expect("join");
        let _ = waiting.await.expect("join");
        let down = transport.call(2, address.to_string(), 1, RpcKind::Vote, vec![1]).await;
        assert!(matches!(down, Err(TransportError::Unreachable { .. })), "{down:?}");

        let restarted = serve(address).await;
        let mut answered = None;
        for _ in 0..100 {
            match call(&transport, &restarted, 1, RpcKind::Vote, vec![3, 4]).await {
                Ok(reply) => {
                    answered = Some(reply);
                    break;
                }
                // The channel may still hold the old connection's failure for a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        assert_eq!(answered.expect("the restarted peer answers").to_vec(), [4, 3]);
    }
}
