//! The server side: `RaftTransportService` serves unary calls and shared streams through a
//! `RaftHandler` (the node's `Host`), refusing messages of another cluster.

use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::v1::raft_transport_server::RaftTransport;
use cairn_proto::v1::{RaftEnvelope, RaftFrame, RaftKind, RaftMessage};
use cairn_raft::network::BoxFuture;
use cairn_raft::{Host, RpcKind};
use cairn_types::{GroupId, NodeId};
use futures::Stream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::{FRAME_BYTES_MAX, FRAME_ENVELOPES_MAX};
use crate::cluster_identity::ClusterIdentity;

/// Requests of one stream being served at once on the receiving node; it stops reading
/// the stream beyond this.
const SERVED_PER_STREAM_MAX: usize = 4096;

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
        Box::pin(
            async move { host.handle_rpc(group, to, kind, &payload).await.map_err(crate::status::from_raft_message) },
        )
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
    (!cluster.admits(sender)).then(|| crate::status::foreign_cluster(from_node, sender, me, &cluster.get()))
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
                    (None, None) => Err(crate::status::unknown_raft_kind(kind)),
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
