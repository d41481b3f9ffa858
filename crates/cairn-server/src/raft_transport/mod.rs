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
//!
//! Files: `client.rs` (`GrpcTransport`), `stream.rs` (a peer's shared stream: its writer
//! and the callers waiting for replies), `server.rs` (`RaftTransportService`).

use std::sync::{Mutex, MutexGuard, PoisonError};

use cairn_proto::v1::RaftMessage;
use cairn_proto::v1::raft_transport_client::RaftTransportClient;
use cairn_raft::TransportError;
use cairn_types::{GroupId, NodeId};
use tonic::transport::Channel;

use crate::cluster_identity::ClusterIdentity;

mod client;
mod server;
mod stream;
#[cfg(test)]
mod tests;

pub use client::GrpcTransport;
pub use server::{HostHandler, RaftHandler, RaftTransportService};
pub use stream::StreamCounters;

/// Raft messages carry batches: allow up to this much per message.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Larger payloads take a unary call of their own rather than hold up a shared frame.
pub const STREAM_PAYLOAD_MAX: usize = 1024 * 1024;
/// A frame is closed at this many envelopes or bytes of payload (it may pass the byte
/// budget by one payload of at most `STREAM_PAYLOAD_MAX`).
const FRAME_ENVELOPES_MAX: usize = 256;
const FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;

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

/// A failed call as openraft's network sees it: `Unavailable` means the peer is down or
/// not serving (openraft backs off), anything else is an error of that one message.
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
