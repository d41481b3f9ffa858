//! The transport-neutral core every front door shares: appends (routing, forwarding,
//! retries), reads and subscriptions at a consistency, admin requests (at the controller
//! leader), and the cluster status model. It takes and returns domain types and answers
//! failures with one error enum per API (`AppendError`, `ReadError`, `AdminError`), each
//! with a stable `ErrorCode`. Nothing here knows gRPC: the gRPC adapter (`grpc/`) maps
//! these types to proto messages and statuses, and implements `Forward`, the calls to
//! other nodes.

mod admin_error;
mod admin_messages;
mod api_stats;
mod append;
mod append_error;
mod append_outcomes;
mod append_request;
mod cairn_api;
mod cluster_status;
mod consistency;
mod controller_leader;
mod error_code;
mod event_limits;
mod forward;
mod forwarding_bounds;
mod group_messages;
mod group_sessions;
mod groups;
mod leader_write;
mod locate;
mod nodes;
mod producers;
mod query_read;
mod read;
mod read_consistency;
mod read_error;
mod read_messages;
mod record_limits;
mod remote_error;
mod replica_moves;
mod stream_append;
mod stream_change;
mod stream_messages;
mod stream_read;
mod subscribe;
mod topic_lookup;
mod topic_lookup_error;
mod topics;
mod underlying;

pub use admin_error::AdminError;
pub use admin_messages::{
    AlterTopicRequest, CreateTopicRequest, JoinRequest, MovePartitionRequest, PartitionDescription, PlannedLeader,
    PlannedMove, RebalanceAnswer, RemoveNodeRequest, TopicDescription, TransferLeaderRequest,
};
pub use api_stats::ApiStats;
pub use append_error::{AppendError, PartitionWrite, PartlyWritten, Written};
pub use append_outcomes::{AppendAnswer, PartitionToken, RecordPosition};
pub use append_request::AppendRequest;
pub use cairn_api::CairnApi;
pub use cluster_status::{ClusterStatus, GroupStatus, NodeStatus, PartitionStatus, ReplicaLag, TopicStatus};
pub use consistency::Consistency;
pub use error_code::{ApiError, ErrorCode, NotLeader};
pub use event_limits::EventInputError;
pub use forward::{Forward, Forwarded};
pub use forwarding_bounds::{HOPS_MAX, LEADER_WAIT};
pub use group_messages::{
    GroupAnswer, GroupCall, GroupDescription, GroupMemberInfo, GroupPartitionInfo, GroupRequest, GroupSummary,
};
pub use group_sessions::{GroupSessions, run_expiry as run_group_expiry};
pub use groups::{GROUPS_TOPIC, GroupError, REBALANCE_TIMEOUT_DEFAULT_MS, SESSION_TIMEOUT_DEFAULT_MS};
pub use read_error::ReadError;
pub use read_messages::{
    OffsetForTimestampRequest, OffsetFound, ReadBatch, ReadRequest, StartPosition, SubscribeBatch, SubscribeRequest,
};
pub use record_limits::RecordLimitError;
pub use remote_error::RemoteError;
pub use stream_messages::{
    AppendToStreamsRequest, ChangeStreamRequest, PartitionOf, QueryEventsRead, QueryEventsRequest, ReadStreamRequest,
    StreamChangedAnswer, StreamEventsRead, StreamFrom, StreamInfo, StreamInfoRequest, StreamsAppended,
};
pub use subscribe::Subscription;
pub use topic_lookup_error::TopicLookupError;
pub use underlying::{host_error_code, host_error_message, host_not_leader, storage_error_code, storage_error_message};
