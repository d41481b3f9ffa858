//! Node-to-node Raft traffic over gRPC: the client side (`GrpcTransport`, one reused
//! channel per peer address) and the server side (`RaftTransportService`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_proto::v1::RaftMessage;
use cairn_proto::v1::raft_transport_client::RaftTransportClient;
use cairn_proto::v1::raft_transport_server::RaftTransport;
use cairn_raft::network::BoxFuture;
use cairn_raft::{Host, HostError, RpcKind, Transport, TransportError};
use cairn_types::{GroupId, NodeId};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::cluster_identity::ClusterIdentity;

/// Raft messages carry batches: allow up to this much per message.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub struct GrpcTransport {
    node_id: NodeId,
    cluster: ClusterIdentity,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcTransport {
    pub fn new(node_id: NodeId, cluster: ClusterIdentity) -> GrpcTransport {
        GrpcTransport { node_id, cluster, channels: Mutex::new(HashMap::new()) }
    }

    fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().map_err(|_| "channel pool poisoned".to_string())?;
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|err| err.to_string())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
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
    ) -> BoxFuture<Result<Vec<u8>, TransportError>> {
        let channel = self.channel(&address);
        let message = RaftMessage {
            group_id: group,
            from_node: self.node_id,
            to_node: target,
            payload: payload.into(),
            cluster: self.cluster.get(),
        };
        Box::pin(async move {
            let channel = channel.map_err(|detail| TransportError::Unreachable {
                node: target,
                address: address.clone(),
                detail,
            })?;
            let mut client = RaftTransportClient::new(channel)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
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
            };
            match reply {
                Ok(reply) => Ok(reply.into_inner().payload.to_vec()),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    Err(TransportError::Unreachable { node: target, address, detail: status.message().to_owned() })
                }
                Err(status) => Err(TransportError::Failed { node: target, detail: status.message().to_owned() }),
            }
        })
    }
}

pub struct RaftTransportService {
    pub host: Arc<Host>,
    pub cluster: ClusterIdentity,
}

impl RaftTransportService {
    async fn serve(&self, request: Request<RaftMessage>, kind: RpcKind) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        if !self.cluster.admits(&message.cluster) {
            return Err(Status::failed_precondition(format!(
                "raft message from node {} of cluster [{}] refused: node {} belongs to cluster [{}]; \
                 a node of another cluster is using this address (check its --initial-cluster or --join)",
                message.from_node,
                message.cluster,
                self.host.node_id(),
                self.cluster.get()
            )));
        }
        let payload =
            self.host.handle_rpc(message.group_id, message.to_node, kind, &message.payload).await.map_err(|err| {
                match err {
                    HostError::Storage(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                        Status::invalid_argument(format!("malformed raft message: {err}"))
                    }
                    err => crate::status::from_host(err),
                }
            })?;
        Ok(Response::new(RaftMessage {
            group_id: message.group_id,
            from_node: self.host.node_id(),
            to_node: message.from_node,
            payload: payload.into(),
            // Replies are not checked: they answer a request this node stamped.
            cluster: String::new(),
        }))
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
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
}
