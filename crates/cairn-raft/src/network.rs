//! openraft's network for one group, over a `Transport` the server implements (gRPC).
//! cairn-raft does not know gRPC: a message is a group id, a kind and bincode bytes.
//!
//! A full snapshot of a partition is sent in two steps: first its record batches, in
//! chunks of at most `SNAPSHOT_CHUNK_BYTES` read straight from RocksDB (never the whole
//! partition in memory), then the small state that installs them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_storage::PartitionLog;
use cairn_types::{GroupId, NodeId, Offset};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::{Deserialize, Serialize};

use crate::partition_sm::{PartitionSmState, Snapshot, StateSnapshot};
use crate::type_config::{TypeConfig, Vote};
use crate::{decode, encode};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Largest chunk of record batches in one snapshot message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// How long one snapshot chunk may take.
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcKind {
    AppendEntries,
    Vote,
    PreVote,
    /// Record batches of a partition snapshot: `SnapshotChunk`.
    SnapshotChunk,
    /// The final snapshot message: `(Vote, Snapshot)`.
    InstallSnapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("node {node} at {address} is unreachable: {detail}")]
    Unreachable { node: NodeId, address: String, detail: String },
    #[error("request to node {node} failed: {detail}")]
    Failed { node: NodeId, detail: String },
}

/// Carries one Raft message to `target` and returns its reply payload.
pub trait Transport: Send + Sync + 'static {
    fn call(
        &self,
        target: NodeId,
        address: String,
        group: GroupId,
        kind: RpcKind,
        payload: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, TransportError>>;
}

/// Part of a partition's records, sent ahead of its snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub batches: Vec<(Offset, Vec<u8>)>,
}

/// Creates the per-target clients of one group.
#[derive(Clone)]
pub struct GroupNetworkFactory {
    pub group: GroupId,
    pub transport: Arc<dyn Transport>,
    /// The partition's records, for snapshots; `None` for the controller.
    pub partition_log: Option<PartitionLog>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GroupNetwork { factory: self.clone(), target, address: node.addr.clone() }
    }
}

pub struct GroupNetwork {
    factory: GroupNetworkFactory,
    target: NodeId,
    address: String,
}

impl GroupNetwork {
    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: RpcKind,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let payload = encode(request).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        let call = self.factory.transport.call(self.target, self.address.clone(), self.factory.group, kind, payload);
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
            Ok(Err(err @ TransportError::Unreachable { .. })) => return Err(RPCError::Unreachable(Unreachable::new(&err))),
            Ok(Err(err)) => return Err(RPCError::Network(NetworkError::new(&err))),
            Ok(Ok(reply)) => reply,
        };
        // The remote side sends `Result<Resp, String>`: a Raft-level error is reported as text.
        let result: Result<Resp, String> = decode(&reply).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        result.map_err(|message| RPCError::Network(NetworkError::new(&std::io::Error::other(message))))
    }
}

impl RaftNetworkV2<TypeConfig> for GroupNetwork {
    type SnapshotData = StateSnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::Vote, &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::PreVote, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = async {
            if let Some(log) = &self.factory.partition_log {
                let state: PartitionSmState = decode(&snapshot.snapshot.0)
                    .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?;
                let mut from = state.log.log_start_offset;
                while from < state.log.next_offset {
                    let batches = log
                        .raw_batches(from, SNAPSHOT_CHUNK_BYTES)
                        .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?;
                    let chunk: Vec<(Offset, Vec<u8>)> = batches
                        .into_iter()
                        .filter(|(base, _)| *base < state.log.next_offset)
                        .map(|(base, bytes)| (base, bytes.to_vec()))
                        .collect();
                    let Some(last) = chunk.last() else { break };
                    let next = cairn_types::batch::decode_header(&last.1)
                        .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?
                        .next_offset();
                    let () = self
                        .call(RpcKind::SnapshotChunk, &SnapshotChunk { batches: chunk }, SNAPSHOT_CHUNK_TIMEOUT)
                        .await?;
                    from = next;
                }
            }
            let response: SnapshotResponse<TypeConfig> =
                self.call(RpcKind::InstallSnapshot, &(vote, snapshot), SNAPSHOT_CHUNK_TIMEOUT).await?;
            Ok(response)
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result,
        }
    }
}
