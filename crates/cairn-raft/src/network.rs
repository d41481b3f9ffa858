//! openraft's network for one group, over a `Transport` the server implements (gRPC).
//! cairn-raft does not know gRPC: a message is a group id, a kind and bincode bytes.
//!
//! A full snapshot of a partition is sent in two steps: first its record batches, in
//! chunks of at most `SNAPSHOT_CHUNK_BYTES` read straight from RocksDB (never the whole
//! partition in memory), then the small state that installs them. Every chunk names the
//! leader's vote and the snapshot, and the receiver checks them and the completeness of
//! what it imported before installing (`snapshot_receiver.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_storage::PartitionLog;
use cairn_types::{GroupId, NodeId, Offset};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::{Deserialize, Serialize};

use crate::node_addresses::NodeAddresses;
use crate::partition::{PartitionView, Snapshot, SnapshotChunk, StateSnapshot};
use crate::type_config::{TypeConfig, Vote};
use crate::{decode, encode};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Largest chunk of record batches in one snapshot message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Largest batch of Raft entries in one AppendEntries message (estimated).
pub const APPEND_ENTRIES_BYTES_MAX: usize = 32 * 1024 * 1024;
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
    /// The leader's read index of a partition group: `()` → `u64`.
    ReadIndex,
    /// The leader asks the target to take over leadership now (openraft's TransferLeader).
    TransferLeader,
    /// A node asks the controller leader to propose a `ControllerCommand` (move progress
    /// reported by a partition leader): `ControllerCommand` → `CommandResponse`.
    ControllerWrite,
    /// A node tells another that it is alive and which partition groups it leads
    /// (`liveness::NodeHeartbeat` → `()`).
    NodeHeartbeat,
    /// A replica leaving a group asks another replica for the group's committed membership
    /// (`()` → `Option<departure::KnownMembership>`, `None` when it holds no replica).
    Membership,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("node {node} at {address} is unreachable: {detail}")]
    Unreachable { node: NodeId, address: String, detail: String },
    #[error("request to node {node} failed: {detail}")]
    Failed { node: NodeId, detail: String },
}

/// Roughly how many bytes an entry takes on the wire.
fn entry_size_estimate(entry: &crate::type_config::Entry) -> usize {
    use crate::command::{Command, PartitionCommand};
    match &entry.payload {
        openraft::EntryPayload::Normal(Command::Partition(PartitionCommand::Append { records, .. })) => {
            64 + records.iter().map(cairn_types::Record::encoded_len).sum::<usize>()
        }
        openraft::EntryPayload::Normal(Command::Partition(PartitionCommand::AppendEvents(append))) => {
            64 + append
                .writes
                .iter()
                .map(|write| 16 + write.stream.len() + write.events.iter().map(|e| e.size_bytes()).sum::<usize>())
                .sum::<usize>()
        }
        _ => 256,
    }
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
    ) -> BoxFuture<Result<bytes::Bytes, TransportError>>;
}

/// Creates the per-target clients of one group.
#[derive(Clone)]
pub struct GroupNetworkFactory {
    pub group: GroupId,
    pub transport: Arc<dyn Transport>,
    /// The partition's records, for snapshots; `None` for the controller.
    pub partition_log: Option<PartitionLog>,
    /// The partition's applied state: its log start tells a hole retention made from one
    /// it did not.
    pub partition_view: Option<tokio::sync::watch::Receiver<PartitionView>>,
    /// Bytes of record batches streamed to each target (move progress).
    pub streamed: Arc<StreamedBytes>,
    /// The node-wide limit on snapshot streaming (replica moves and catch-up).
    pub throttle: Arc<Throttle>,
    /// Where the members are now (the membership's addresses may be stale).
    pub addresses: Arc<NodeAddresses>,
}

/// Bytes of record batches a group has streamed to each target in snapshots.
#[derive(Debug, Default)]
pub struct StreamedBytes(std::sync::Mutex<std::collections::BTreeMap<NodeId, u64>>);

impl StreamedBytes {
    fn add(&self, target: NodeId, bytes: u64) {
        if let Ok(mut streamed) = self.0.lock() {
            *streamed.entry(target).or_default() += bytes;
        }
    }

    pub fn get(&self, target: NodeId) -> u64 {
        self.0.lock().map(|streamed| streamed.get(&target).copied().unwrap_or(0)).unwrap_or(0)
    }
}

/// Paces snapshot streaming to at most `bytes_per_sec` (0: unlimited) over all groups of a
/// node, so replica moves leave bandwidth and disk to producers.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    next_free: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Throttle {
        Throttle { bytes_per_sec, next_free: tokio::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    /// The largest snapshot chunk to send: at most a quarter second's worth under a limit,
    /// so the pace is smooth, and never more than `SNAPSHOT_CHUNK_BYTES`.
    pub fn chunk_bytes(&self) -> usize {
        const CHUNK_BYTES_MIN: u64 = 64 * 1024;
        if self.bytes_per_sec == 0 {
            return SNAPSHOT_CHUNK_BYTES;
        }
        (self.bytes_per_sec / 4).clamp(CHUNK_BYTES_MIN, SNAPSHOT_CHUNK_BYTES as u64) as usize
    }

    /// Waits until `bytes` more may be sent.
    pub async fn acquire(&self, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let start = {
            let mut next_free = self.next_free.lock().await;
            let start = (*next_free).max(tokio::time::Instant::now());
            *next_free = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
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
        let address = self.factory.addresses.resolve(self.target, &self.address);
        let call = self.factory.transport.call(self.target, address, self.factory.group, kind, payload);
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(elapsed) => return Err(RPCError::Unreachable(Unreachable::new(&elapsed))),
            Ok(Err(err @ TransportError::Unreachable { .. })) => {
                return Err(RPCError::Unreachable(Unreachable::new(&err)));
            }
            Ok(Err(err)) => return Err(RPCError::Network(NetworkError::new(&err))),
            Ok(Ok(reply)) => reply,
        };
        // The remote side sends `Result<Resp, String>`: a Raft-level error is reported as text.
        let result: Result<Resp, String> = decode(&reply).map_err(|err| RPCError::Network(NetworkError::new(&err)))?;
        result.map_err(|message| RPCError::Network(NetworkError::new(&std::io::Error::other(message))))
    }
}

impl GroupNetwork {
    /// Stored batches are missing from `from` to `to`: only retention may have removed them,
    /// so the partition's log start must be at `to` or later. Anything else is a hole in the
    /// store, and the snapshot is not sent.
    fn check_deleted_by_retention(&self, from: Offset, to: Offset) -> Result<(), StreamingError<TypeConfig>> {
        let log_start_offset = self.factory.partition_view.as_ref().map(|view| view.borrow().log.log_start_offset);
        if log_start_offset.is_some_and(|start| start >= to) {
            return Ok(());
        }
        let err = std::io::Error::other(format!(
            "group {}: stored batches [{from}, {to}) are missing but the log starts at {log_start_offset:?}; \
             snapshot not sent",
            self.factory.group
        ));
        tracing::error!(group = self.factory.group, error = %err, "snapshot source has a hole");
        Err(StreamingError::Network(NetworkError::new(&err)))
    }
}

impl RaftNetworkV2<TypeConfig> for GroupNetwork {
    type SnapshotData = StateSnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // Keep each message under the transport's budget: send a prefix of the entries and
        // report partial success; openraft sends the rest next.
        let mut rpc = rpc;
        let mut bytes = 0usize;
        let keep = rpc
            .entries
            .iter()
            .position(|entry| {
                bytes += entry_size_estimate(entry);
                bytes > APPEND_ENTRIES_BYTES_MAX
            })
            .map_or(rpc.entries.len(), |over| over.max(1));
        let truncated_to = (keep < rpc.entries.len()).then(|| {
            rpc.entries.truncate(keep);
            rpc.entries.last().map(|e| e.log_id)
        });
        let timeout = option.hard_ttl().max(Duration::from_millis((bytes / (8 * 1024)) as u64));
        let response: AppendEntriesResponse<TypeConfig> = self.call(RpcKind::AppendEntries, &rpc, timeout).await?;
        Ok(match (response, truncated_to) {
            (AppendEntriesResponse::Success, Some(last)) => AppendEntriesResponse::PartialSuccess(last),
            (response, _) => response,
        })
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

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RpcKind::TransferLeader, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = async {
            let mut snapshot = snapshot;
            if let Some(log) = &self.factory.partition_log {
                let (mut state, groups) = crate::partition::state_machine::decode_snapshot(&snapshot.snapshot.0)
                    .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?;
                // Stream the stored batches below the snapshot's next offset. Retention may
                // delete a prefix meanwhile: track the contiguous run actually sent, and
                // install exactly that run (the receiver drops anything below it).
                // First the heads of streams retention removed, which the batches cannot
                // rebuild (see cairn_storage::retired_heads).
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let (reader, chunk_bytes, from) = (log.clone(), self.factory.throttle.chunk_bytes(), after.take());
                    let heads = crate::blocking::run(move || Ok(reader.retired_heads(from.as_deref(), chunk_bytes)?))
                        .await
                        .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?;
                    let Some((last, _)) = heads.last() else { break };
                    after = Some(last.clone());
                    let chunk_bytes: u64 = heads.iter().map(|(stream, head)| (stream.len() + head.len()) as u64).sum();
                    self.factory.throttle.acquire(chunk_bytes).await;
                    let last_log_id = snapshot.meta.last_log_id;
                    let chunk = SnapshotChunk { vote, last_log_id, batches: Vec::new(), retired_heads: heads };
                    let () = self.call(RpcKind::SnapshotChunk, &chunk, SNAPSHOT_CHUNK_TIMEOUT).await?;
                }
                let next_offset = state.log.next_offset;
                let mut run_start = state.log.log_start_offset;
                let mut run_bytes = 0u64;
                let mut from = run_start;
                while from < next_offset {
                    let (reader, chunk_bytes) = (log.clone(), self.factory.throttle.chunk_bytes());
                    let batches = crate::blocking::run(move || Ok(reader.raw_batches(from, chunk_bytes)?))
                        .await
                        .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?;
                    let mut chunk = Vec::with_capacity(batches.len());
                    for (base, bytes) in batches.into_iter().filter(|(base, _)| *base < next_offset) {
                        let header = cairn_types::batch::decode_header(&bytes)
                            .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?;
                        if header.next_offset() <= from {
                            continue;
                        }
                        if base != from {
                            // A gap: retention removed [from, base). Restart the run here.
                            self.check_deleted_by_retention(from, base)?;
                            run_start = base;
                            run_bytes = 0;
                        }
                        run_bytes += bytes.len() as u64;
                        from = header.next_offset();
                        chunk.push((base, bytes.to_vec()));
                    }
                    if chunk.is_empty() {
                        // Everything left was deleted by retention.
                        self.check_deleted_by_retention(from, next_offset)?;
                        run_start = next_offset;
                        run_bytes = 0;
                        break;
                    }
                    let chunk_bytes: u64 = chunk.iter().map(|(_, bytes)| bytes.len() as u64).sum();
                    self.factory.throttle.acquire(chunk_bytes).await;
                    let chunk = SnapshotChunk {
                        vote,
                        last_log_id: snapshot.meta.last_log_id,
                        batches: chunk,
                        retired_heads: Vec::new(),
                    };
                    let () = self.call(RpcKind::SnapshotChunk, &chunk, SNAPSHOT_CHUNK_TIMEOUT).await?;
                    self.factory.streamed.add(self.target, chunk_bytes);
                }
                state.log.log_start_offset = run_start;
                state.log.size_bytes = run_bytes;
                snapshot.snapshot = StateSnapshot(
                    crate::partition::state_machine::encode_snapshot(&state, &groups)
                        .map_err(|err| StreamingError::Network(NetworkError::new(&err)))?,
                );
            }
            let response: SnapshotResponse<TypeConfig> = self
                .call(RpcKind::InstallSnapshot, &(vote, snapshot.meta, snapshot.snapshot), SNAPSHOT_CHUNK_TIMEOUT)
                .await?;
            Ok(response)
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttle_paces_chunks_to_the_limit() {
        let throttle = Throttle::new(1_000_000);
        assert_eq!(throttle.chunk_bytes(), 250_000, "a quarter second's worth");
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            throttle.acquire(250_000).await;
        }
        // The first chunk goes at once; each next one waits for the previous one's budget.
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn no_limit_never_waits_and_sends_big_chunks() {
        let throttle = Throttle::new(0);
        assert_eq!(throttle.chunk_bytes(), SNAPSHOT_CHUNK_BYTES);
        let started = tokio::time::Instant::now();
        throttle.acquire(u64::MAX).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(Throttle::new(1).chunk_bytes(), 64 * 1024, "never below 64 KiB");
    }
}
