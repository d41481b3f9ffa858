//! The transport-neutral core every front door shares: appends (routing, forwarding,
//! retries), reads and subscriptions at a consistency, admin requests (at the controller
//! leader), and the cluster status model. It takes and returns domain types and answers
//! failures with one error enum per API (`AppendError`, `ReadError`, `AdminError`), each
//! with a stable `ErrorCode`. Nothing here knows gRPC: the gRPC adapter (`grpc/`) maps
//! these types to proto messages and statuses, and implements `Forward`, the calls to
//! other nodes.

mod admin_error;
mod append;
mod append_error;
mod append_outcomes;
mod cairn_api;
mod cluster_status;
mod controller_leader;
mod error_code;
mod forward;
mod forwarding_bounds;
mod locate;
mod nodes;
mod producers;
mod read;
mod read_consistency;
mod read_error;
mod record_limits;
mod remote_error;
mod replica_moves;
mod subscribe;
mod topic_lookup;
mod topics;
mod underlying;

pub use admin_error::AdminError;
pub use append::AppendRequest;
pub use append_error::{AppendError, PartitionWrite, PartlyWritten, Written};
pub use append_outcomes::{AppendAnswer, PartitionToken, RecordPosition};
pub use cairn_api::CairnApi;
pub use cluster_status::{ClusterStatus, GroupStatus, NodeStatus, ReplicaLag};
pub use error_code::{ApiError, ErrorCode, NotLeader};
pub use forward::{Forward, Forwarded};
pub use forwarding_bounds::{HOPS_MAX, LEADER_WAIT};
pub use nodes::{JoinRequest, RemoveNodeRequest};
pub use read::{OffsetForTimestampRequest, OffsetFound, ReadBatch, ReadRequest};
pub use read_consistency::Consistency;
pub use read_error::ReadError;
pub use record_limits::RecordLimitError;
pub use remote_error::RemoteError;
pub use replica_moves::{MovePartitionRequest, PlannedLeader, PlannedMove, RebalanceAnswer, TransferLeaderRequest};
pub use subscribe::{StartPosition, SubscribeBatch, SubscribeRequest, Subscription};
pub use topic_lookup::TopicLookupError;
pub use topics::{AlterTopicRequest, CreateTopicRequest, PartitionDescription, TopicDescription};
pub use underlying::{host_error_code, host_error_message, host_not_leader, storage_error_code, storage_error_message};
