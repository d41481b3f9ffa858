//! Forwarding: any node accepts any request and passes what it cannot serve to a node
//! that can (a write to the group's leader, a read to a replica, an admin request to the
//! controller leader), over that node's public API.
//!
//! A forwarded request carries its hop count; a node forwards a request at most
//! `HOPS_MAX` (`forwarding_bounds.rs`) times in all, so two nodes with stale leader views cannot bounce it forever.
//! A node that is not the leader answers "not leader" (`NotLeader`, with the leader's
//! address when known): that answer is retried, because the write was then certainly not
//! proposed. An append with a producer sequence is also retried when the peer did not
//! answer (`ErrorCode::is_no_answer`): a retry of it is never applied twice. Any other
//! failure goes back to the client as is (`RemoteError`). How a call reaches the other
//! node is the front door's business: `Forward` is implemented by the gRPC adapter.

use std::time::Duration;

use cairn_types::NodeId;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::api::{
    AlterTopicRequest, AppendAnswer, AppendRequest, AppendToStreamsRequest, ChangeStreamRequest, CreateTopicRequest,
    GroupAnswer, GroupRequest, GroupSummary, JoinRequest, MovePartitionRequest, OffsetForTimestampRequest, OffsetFound,
    QueryEventsRead, QueryEventsRequest, ReadBatch, ReadRequest, ReadStreamRequest, RebalanceAnswer, RemoteError,
    RemoveNodeRequest, StreamChangedAnswer, StreamEventsRead, StreamInfo, StreamInfoRequest, StreamsAppended,
    SubscribeBatch, SubscribeRequest, TopicDescription, TransferLeaderRequest,
};

/// The answer of another node, or why there is none.
pub type Forwarded<'a, T> = BoxFuture<'a, Result<T, RemoteError>>;

/// Calls to another node's public API at `address`, as one hop further than `hops`, each
/// with the forwarding deadline.
pub trait Forward: Send + Sync {
    /// A consumer group call, answered within `within`.
    fn group<'a>(
        &'a self,
        address: String,
        request: GroupRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, GroupAnswer>;
    /// The groups of one coordinator partition, from the replica at `address`.
    fn list_groups<'a>(&'a self, address: String, partition: u32, hops: u32) -> Forwarded<'a, Vec<GroupSummary>>;
    /// An append, answered within `within` (at most the forwarding deadline).
    fn append<'a>(
        &'a self,
        address: String,
        request: AppendRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, AppendAnswer>;
    fn read<'a>(&'a self, address: String, request: ReadRequest, hops: u32) -> Forwarded<'a, ReadBatch>;
    /// An event append, answered within `within` (at most the forwarding deadline).
    fn append_to_streams<'a>(
        &'a self,
        address: String,
        request: AppendToStreamsRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, StreamsAppended>;
    /// A stream deletion or metadata change, answered within `within`.
    fn change_stream<'a>(
        &'a self,
        address: String,
        request: ChangeStreamRequest,
        hops: u32,
        within: Duration,
    ) -> Forwarded<'a, StreamChangedAnswer>;
    fn stream_info<'a>(&'a self, address: String, request: StreamInfoRequest, hops: u32) -> Forwarded<'a, StreamInfo>;
    fn read_stream<'a>(
        &'a self,
        address: String,
        request: ReadStreamRequest,
        hops: u32,
    ) -> Forwarded<'a, StreamEventsRead>;
    fn query_events<'a>(
        &'a self,
        address: String,
        request: QueryEventsRequest,
        hops: u32,
    ) -> Forwarded<'a, QueryEventsRead>;
    /// A subscription relayed from `address`: the deadline covers its start only.
    fn subscribe<'a>(
        &'a self,
        address: String,
        request: SubscribeRequest,
        hops: u32,
    ) -> Forwarded<'a, BoxStream<'static, Result<SubscribeBatch, RemoteError>>>;
    fn offset_for_timestamp<'a>(
        &'a self,
        address: String,
        request: OffsetForTimestampRequest,
        hops: u32,
    ) -> Forwarded<'a, OffsetFound>;
    fn init_producer<'a>(&'a self, address: String, hops: u32) -> Forwarded<'a, u64>;
    fn create_topic<'a>(
        &'a self,
        address: String,
        request: CreateTopicRequest,
        hops: u32,
    ) -> Forwarded<'a, TopicDescription>;
    fn alter_topic<'a>(
        &'a self,
        address: String,
        request: AlterTopicRequest,
        hops: u32,
    ) -> Forwarded<'a, TopicDescription>;
    fn delete_topic<'a>(&'a self, address: String, name: String, hops: u32) -> Forwarded<'a, ()>;
    /// Answers the node that leads now.
    fn transfer_leader<'a>(
        &'a self,
        address: String,
        request: TransferLeaderRequest,
        hops: u32,
    ) -> Forwarded<'a, NodeId>;
    /// Answers how many replicas the node still held.
    fn remove_node<'a>(&'a self, address: String, request: RemoveNodeRequest, hops: u32) -> Forwarded<'a, u32>;
    /// Answers the operation ids.
    fn move_partition<'a>(
        &'a self,
        address: String,
        request: MovePartitionRequest,
        hops: u32,
    ) -> Forwarded<'a, Vec<u64>>;
    /// A rebalance (not a dry run: that is answered anywhere).
    fn rebalance<'a>(&'a self, address: String, hops: u32) -> Forwarded<'a, RebalanceAnswer>;
    /// Answers the operation ids.
    fn decommission_node<'a>(&'a self, address: String, node_id: NodeId, hops: u32) -> Forwarded<'a, Vec<u64>>;
    /// Answers the cluster's identity.
    fn join_cluster<'a>(&'a self, address: String, request: JoinRequest, hops: u32) -> Forwarded<'a, String>;
}
