//! Forwarding: any node accepts any write and passes it to the group's leader.
//!
//! A forwarded request carries `x-cairn-hops`; a node forwards a request at most
//! `HOPS_MAX` times in all, so two nodes with stale leader views cannot bounce it forever.
//! A node that is not the leader answers `UNAVAILABLE` with `x-cairn-not-leader` (and the
//! leader's address when known): only that answer is retried, because the write was then
//! certainly not proposed; any other failure goes back to the client as is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use cairn_proto::v1 as pb;
use cairn_proto::v1::cairn_client::CairnClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

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

/// Whether `status` says the write was not proposed, and the leader's address if given.
pub fn is_not_leader(status: &Status) -> Option<Option<String>> {
    status.metadata().get(NOT_LEADER_HEADER)?;
    Some(status.metadata().get(LEADER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned))
}

/// Reused channels to the other nodes' public API.
#[derive(Default)]
pub struct Forwarder {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Forwarder {
    pub fn client(&self, address: &str) -> Result<CairnClient<Channel>, Status> {
        let channel = {
            let mut channels = self.channels.lock().map_err(|_| Status::internal("forwarding pool poisoned"))?;
            match channels.get(address) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = Endpoint::from_shared(format!("http://{address}"))
                        .map_err(|err| Status::internal(format!("bad node address {address}: {err}")))?
                        .connect_timeout(Duration::from_secs(2))
                        .tcp_nodelay(true)
                        .connect_lazy();
                    channels.insert(address.to_owned(), channel.clone());
                    channel
                }
            }
        };
        Ok(CairnClient::new(channel)
            .max_decoding_message_size(FORWARD_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(FORWARD_MESSAGE_BYTES_MAX))
    }

    /// `message` as a request one hop further than `hops`.
    pub fn request<T>(message: T, hops: u32) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(HOPS_HEADER, MetadataValue::from(hops + 1));
        request
    }

    pub async fn append(
        &self,
        address: &str,
        request: pb::AppendRequest,
        hops: u32,
    ) -> Result<pb::AppendResponse, Status> {
        Ok(self.client(address)?.append(Self::request(request, hops)).await?.into_inner())
    }
}
