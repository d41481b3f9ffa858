//! Forwarding over gRPC: `api::Forward` on the node's peer channels (`peers`), each call
//! one hop further (`x-cairn-hops`) and with the forwarding deadline. A failure comes back
//! as the other node answered it (`status::remote_error`).

use std::sync::Arc;
use std::time::Duration;

use cairn_proto::v1 as pb;
use cairn_proto::v1::cairn_client::CairnClient;
use cairn_types::NodeId;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::api::{
    AlterTopicRequest, AppendAnswer, AppendRequest, AppendToStreamsRequest, ChangeStreamRequest, CreateTopicRequest,
    ErrorCode, Forward, Forwarded, GroupAnswer, GroupRequest, GroupSummary, JoinRequest, MovePartitionRequest,
    OffsetForTimestampRequest, OffsetFound, QueryEventsRead, QueryEventsRequest, ReadBatch, ReadRequest,
    ReadStreamRequest, RebalanceAnswer, RemoteError, RemoveNodeRequest, StreamChangedAnswer, StreamEventsRead,
    StreamInfo, StreamInfoRequest, StreamsAppended, SubscribeBatch, SubscribeRequest, TopicDescription,
    TransferLeaderRequest,
};
pub use crate::api::{HOPS_MAX, LEADER_WAIT};
use crate::grpc::convert::topic_description;
use crate::grpc::status::remote_error;
pub use crate::grpc::status::{LEADER_HEADER, NOT_LEADER_HEADER};
use crate::grpc::stream_convert::ChangeStreamMessage;
use crate::peers::Peers;

/// How many times a request was forwarded already.
pub const HOPS_HEADER: &str = "x-cairn-hops";
/// Messages between nodes carry whole append requests.
const FORWARD_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How many times a request has been forwarded already.
pub fn hops<T>(request: &Request<T>) -> u32 {
    request.metadata().get(HOPS_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Calls to the other nodes' public API, on the node's peer channels.
pub struct Forwarder {
    peers: Arc<Peers>,
}

impl Forwarder {
    pub fn new(peers: Arc<Peers>) -> Forwarder {
        Forwarder { peers }
    }

    fn client(&self, address: &str) -> Result<CairnClient<Channel>, RemoteError> {
        let channel =
            self.peers.channel(address).map_err(|err| RemoteError::local(ErrorCode::Internal, err.to_string()))?;
        Ok(CairnClient::new(channel)
            .max_decoding_message_size(FORWARD_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(FORWARD_MESSAGE_BYTES_MAX))
    }

    /// `message` as a request one hop further than `hops`, with the forwarding deadline
    /// (until its answer starts: a relayed subscription streams on past it).
    fn request<T>(&self, message: T, hops: u32) -> Request<T> {
        self.request_within(message, hops, self.peers.settings().forward_timeout)
    }

    /// Like `request`, with a deadline of at most `within`.
    fn request_within<T>(&self, message: T, hops: u32, within: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(HOPS_HEADER, MetadataValue::from(hops + 1));
        request.set_timeout(within.min(self.peers.settings().forward_timeout));
        request
    }
}

/// Sends `$message` with `$method` to `$address` and maps its answer with `$answer`.
macro_rules! forward_call {
    ($self:ident, $address:ident, $method:ident, $request:expr, |$response:ident| $answer:expr) => {
        Box::pin(async move {
            let request = $request;
            let $response = $self.client(&$address)?.$method(request).await.map_err(remote_error)?.into_inner();
            Ok::<_, RemoteError>($answer)
        })
    };
}

impl Forward for Forwarder {
    fn group<'a>(
        &'a self,
        address: String,
        request: GroupRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, GroupAnswer> {
        let request = self.request_within(pb::GroupRequest::from(request), hops, within);
        forward_call!(self, address, group, request, |r| GroupAnswer::from(r))
    }

    fn list_groups<'a>(&'a self, address: String, partition: u32, hops: u32) -> Forwarded<'a, Vec<GroupSummary>> {
        let request = self.request(pb::ListGroupsRequest { partition: Some(partition) }, hops);
        forward_call!(self, address, list_groups, request, |r| r.groups.into_iter().map(GroupSummary::from).collect())
    }

    fn append<'a>(
        &'a self,
        address: String,
        request: AppendRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, AppendAnswer> {
        forward_call!(self, address, append, self.request_within(pb::AppendRequest::from(request), hops, within), |r| {
            AppendAnswer::from(r)
        })
    }

    fn read<'a>(&'a self, address: String, request: ReadRequest, hops: u32) -> Forwarded<'a, ReadBatch> {
        forward_call!(self, address, read, self.request(pb::ReadRequest::from(request), hops), |r| ReadBatch::from(r))
    }

    fn append_to_streams<'a>(
        &'a self,
        address: String,
        request: AppendToStreamsRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, StreamsAppended> {
        let request = self.request_within(pb::AppendToStreamsRequest::from(request), hops, within);
        forward_call!(self, address, append_to_streams, request, |r| StreamsAppended::from(r))
    }

    fn change_stream<'a>(
        &'a self,
        address: String,
        request: ChangeStreamRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, StreamChangedAnswer> {
        match ChangeStreamMessage::from(request) {
            ChangeStreamMessage::Delete(message) => {
                let request = self.request_within(message, hops, within);
                forward_call!(self, address, delete_stream, request, |r| StreamChangedAnswer::from(r))
            }
            ChangeStreamMessage::SetMetadata(message) => {
                let request = self.request_within(message, hops, within);
                forward_call!(self, address, set_stream_metadata, request, |r| StreamChangedAnswer::from(r))
            }
        }
    }

    fn stream_info<'a>(&'a self, address: String, request: StreamInfoRequest, hops: u32) -> Forwarded<'a, StreamInfo> {
        let request = self.request(pb::GetStreamInfoRequest::from(request), hops);
        forward_call!(self, address, get_stream_info, request, |r| StreamInfo::from(r))
    }

    fn read_stream<'a>(
        &'a self,
        address: String,
        request: ReadStreamRequest,
        hops: u32,
    ) -> Forwarded<'a, StreamEventsRead> {
        let request = self.request(pb::ReadStreamRequest::from(request), hops);
        forward_call!(self, address, read_stream, request, |r| StreamEventsRead::from(r))
    }

    fn query_events<'a>(
        &'a self,
        address: String,
        request: QueryEventsRequest,
        hops: u32,
    ) -> Forwarded<'a, QueryEventsRead> {
        let request = self.request(pb::QueryEventsRequest::from(request), hops);
        forward_call!(self, address, query_events, request, |r| QueryEventsRead::from(r))
    }

    fn subscribe<'a>(
        &'a self,
        address: String,
        request: SubscribeRequest,
        hops: u32,
    ) -> Forwarded<'a, BoxStream<'static, Result<SubscribeBatch, RemoteError>>> {
        forward_call!(self, address, subscribe, self.request(pb::SubscribeRequest::from(request), hops), |stream| {
            stream.map(|message| message.map(SubscribeBatch::from).map_err(remote_error)).boxed()
        })
    }

    fn offset_for_timestamp<'a>(
        &'a self,
        address: String,
        request: OffsetForTimestampRequest,
        hops: u32,
    ) -> Forwarded<'a, OffsetFound> {
        let request = self.request(pb::OffsetForTimestampRequest::from(request), hops);
        forward_call!(self, address, offset_for_timestamp, request, |r| OffsetFound {
            offset: r.offset,
            found: r.found
        })
    }

    fn init_producer<'a>(&'a self, address: String, hops: u32) -> Forwarded<'a, u64> {
        forward_call!(self, address, init_producer, self.request(pb::InitProducerRequest {}, hops), |r| r.producer_id)
    }

    fn create_topic<'a>(
        &'a self,
        address: String,
        request: CreateTopicRequest,
        hops: u32,
    ) -> Forwarded<'a, TopicDescription> {
        let request = self.request(pb::CreateTopicRequest::from(request), hops);
        forward_call!(self, address, create_topic, request, |r| topic_description(r.topic))
    }

    fn alter_topic<'a>(
        &'a self,
        address: String,
        request: AlterTopicRequest,
        hops: u32,
    ) -> Forwarded<'a, TopicDescription> {
        let request = self.request(pb::AlterTopicRequest { name: request.name, partitions: request.partitions }, hops);
        forward_call!(self, address, alter_topic, request, |r| topic_description(r.topic))
    }

    fn delete_topic<'a>(&'a self, address: String, name: String, hops: u32) -> Forwarded<'a, ()> {
        forward_call!(self, address, delete_topic, self.request(pb::DeleteTopicRequest { name }, hops), |_r| ())
    }

    fn transfer_leader<'a>(
        &'a self,
        address: String,
        request: TransferLeaderRequest,
        hops: u32,
    ) -> Forwarded<'a, NodeId> {
        let request =
            pb::TransferLeaderRequest { topic: request.topic, partition: request.partition, to_node: request.to_node };
        forward_call!(self, address, transfer_leader, self.request(request, hops), |r| r.leader)
    }

    fn remove_node<'a>(&'a self, address: String, request: RemoveNodeRequest, hops: u32) -> Forwarded<'a, u32> {
        let request = pb::RemoveNodeRequest { node_id: request.node_id, force: request.force };
        forward_call!(self, address, remove_node, self.request(request, hops), |r| r.replicas_left)
    }

    fn move_partition<'a>(
        &'a self,
        address: String,
        request: MovePartitionRequest,
        hops: u32,
    ) -> Forwarded<'a, Vec<u64>> {
        let request = self.request(pb::MovePartitionRequest::from(request), hops);
        forward_call!(self, address, move_partition, request, |r| r.operation_ids)
    }

    fn rebalance<'a>(&'a self, address: String, hops: u32) -> Forwarded<'a, RebalanceAnswer> {
        let request = self.request(pb::RebalanceRequest { dry_run: false }, hops);
        forward_call!(self, address, rebalance, request, |r| RebalanceAnswer::from(r))
    }

    fn decommission_node<'a>(&'a self, address: String, node_id: NodeId, hops: u32) -> Forwarded<'a, Vec<u64>> {
        let request = self.request(pb::DecommissionNodeRequest { node_id }, hops);
        forward_call!(self, address, decommission_node, request, |r| r.operation_ids)
    }

    fn join_cluster<'a>(&'a self, address: String, request: JoinRequest, hops: u32) -> Forwarded<'a, String> {
        let request =
            pb::JoinClusterRequest { node_id: request.node_id, address: request.address, cluster: request.cluster };
        forward_call!(self, address, join_cluster, self.request(request, hops), |r| r.cluster)
    }
}
