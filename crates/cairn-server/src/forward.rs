//! Forwarding: any node accepts any write and passes it to the group's leader.
//!
//! A forwarded request carries `x-cairn-hops`; a node forwards a request at most
//! `HOPS_MAX` times in all, so two nodes with stale leader views cannot bounce it forever.
//! A node that is not the leader answers `UNAVAILABLE` with `x-cairn-not-leader` (and the
//! leader's address when known): that answer is retried, because the write was then
//! certainly not proposed. An append with a producer sequence is also retried when the
//! peer did not answer (`peer_failed`): a retry of it is never applied twice. Any other
//! failure goes back to the client as is. Forwarded calls use the node's peer channels
//! (`peers`), with a deadline.

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::v1 as pb;
use cairn_proto::v1::cairn_client::CairnClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::peers::Peers;

pub const HOPS_HEADER: &str = "x-cairn-hops";
pub const NOT_LEADER_HEADER: &str = "x-cairn-not-leader";
pub const LEADER_HEADER: &str = "x-cairn-leader";
/// Most times one client request is passed between nodes.
pub const HOPS_MAX: u32 = 2;
/// How long a write waits for a leader (elections, forwarding) before UNAVAILABLE.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
/// Messages between nodes carry whole append requests.
const FORWARD_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How many times a request has been forwarded already.
pub fn hops<T>(request: &Request<T>) -> u32 {
    request.metadata().get(HOPS_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Marks a status as "not the leader, nothing proposed", with the leader's address.
pub fn not_leader(mut status: Status, leader_address: Option<&str>) -> Status {
    status.metadata_mut().insert(NOT_LEADER_HEADER, MetadataValue::from_static("1"));
    if let Some(address) = leader_address.and_then(|a| a.parse().ok()) {
        status.metadata_mut().insert(LEADER_HEADER, address);
    }
    status
}

/// Whether a forwarded call failed for want of an answer (the peer's connection broke, or
/// no answer came in time) or a passing refusal: its outcome is unknown, or it was not
/// applied.
pub fn peer_failed(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    )
}

/// Whether `status` says the write was not proposed, and the leader's address if given.
pub fn is_not_leader(status: &Status) -> Option<Option<String>> {
    status.metadata().get(NOT_LEADER_HEADER)?;
    Some(status.metadata().get(LEADER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned))
}

/// Calls to the other nodes' public API, on the node's peer channels (`peers`), each with
/// the forwarding deadline.
pub struct Forwarder {
    peers: Arc<Peers>,
}

impl Forwarder {
    pub fn new(peers: Arc<Peers>) -> Forwarder {
        Forwarder { peers }
    }

    pub fn client(&self, address: &str) -> Result<CairnClient<Channel>, Status> {
        let channel = self.peers.channel(address).map_err(|err| Status::internal(err.to_string()))?;
        Ok(CairnClient::new(channel)
            .max_decoding_message_size(FORWARD_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(FORWARD_MESSAGE_BYTES_MAX))
    }

    /// `message` as a request one hop further than `hops`, with the forwarding deadline
    /// (until its answer starts: a relayed subscription streams on past it).
    pub fn request<T>(&self, message: T, hops: u32) -> Request<T> {
        self.request_within(message, hops, self.peers.settings().forward_timeout)
    }

    /// Like `request`, with a deadline of at most `within`.
    pub fn request_within<T>(&self, message: T, hops: u32, within: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(HOPS_HEADER, MetadataValue::from(hops + 1));
        request.set_timeout(within.min(self.peers.settings().forward_timeout));
        request
    }

    /// Forwards an append, answered within `within`.
    pub async fn append(
        &self,
        address: &str,
        request: pb::AppendRequest,
        hops: u32,
        within: Duration,
    ) -> Result<pb::AppendResponse, Status> {
        Ok(self.client(address)?.append(self.request_within(request, hops, within)).await?.into_inner())
    }
}
