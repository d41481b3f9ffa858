//! Why an admin request (topics, producer ids, nodes, replica moves) was refused or failed.

use cairn_raft::{ControllerError, HostError};
use cairn_types::{NodeId, PartitionId, TopicError};

use crate::api::underlying::topic_error_code;
use crate::api::underlying::{controller_error_code, host_error_code, host_error_message, host_not_leader};
use crate::api::{ApiError, ErrorCode, NotLeader, RemoteError, TopicLookupError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Topic(#[from] TopicLookupError),
    /// A topic name or configuration the request gave is not valid.
    #[error(transparent)]
    TopicConfig(TopicError),
    /// The controller refused the command (decided at apply time).
    #[error(transparent)]
    Controller(ControllerError),
    #[error("{}", host_error_message(.0))]
    Host(HostError),
    #[error("the controller has no reachable leader; retry shortly")]
    NoControllerLeader,
    /// The consumer groups' topic: deleting it would delete every group.
    #[error("topic {0:?} holds the consumer groups and cannot be deleted; delete groups with `cairn group delete`")]
    InternalTopic(String),
    #[error("unexpected controller outcome {0}")]
    UnexpectedOutcome(String),
    #[error("node ids start at 1")]
    NodeIdZero,
    #[error("--from and --to name the same node: nothing to move")]
    MoveToSameNode,
    #[error("node {node} holds no replica of {topic}/{partition} (replicas: {replicas:?}): only a replica can lead")]
    LeaderNotAReplica { node: NodeId, topic: String, partition: PartitionId, replicas: Vec<NodeId> },
    #[error("the partition's leader moved while the request was forwarded; retry")]
    LeaderMoved,
    #[error("no replica of the partition is reachable; retry")]
    NoReplicaReachable,
    #[error("a joining node needs a node id of at least 1 and an address")]
    JoinWithoutIdentity,
    #[error("node {0} is still joining the cluster itself; join through another member or retry shortly")]
    StillJoining(NodeId),
    #[error(
        "node {node}'s data directory belongs to cluster [{theirs}], not this cluster [{ours}]: start it with a new \
         --data-dir"
    )]
    OtherCluster { node: NodeId, theirs: String, ours: String },
    #[error(
        "node id {0} was removed from the cluster and ids are never reused: start the node with a new --node-id \
         and an empty --data-dir"
    )]
    NodeRemoved(NodeId),
    #[error("node id {node} is already a voter at {address}; pick another --node-id")]
    NodeIdTaken { node: NodeId, address: String },
    #[error(transparent)]
    Remote(RemoteError),
}

impl ApiError for AdminError {
    fn code(&self) -> ErrorCode {
        match self {
            AdminError::Topic(err) => err.code(),
            AdminError::TopicConfig(err) => topic_error_code(err),
            AdminError::Controller(err) => controller_error_code(err),
            AdminError::Host(err) => host_error_code(err),
            AdminError::NoControllerLeader
            | AdminError::LeaderMoved
            | AdminError::NoReplicaReachable
            | AdminError::StillJoining(_) => ErrorCode::Unavailable,
            AdminError::UnexpectedOutcome(_) => ErrorCode::Internal,
            AdminError::NodeIdZero | AdminError::MoveToSameNode | AdminError::JoinWithoutIdentity => {
                ErrorCode::InvalidArgument
            }
            AdminError::LeaderNotAReplica { .. }
            | AdminError::InternalTopic(_)
            | AdminError::OtherCluster { .. }
            | AdminError::NodeRemoved(_)
            | AdminError::NodeIdTaken { .. } => ErrorCode::FailedPrecondition,
            AdminError::Remote(err) => err.code,
        }
    }

    fn not_leader(&self) -> Option<NotLeader> {
        match self {
            AdminError::Host(err) => host_not_leader(err),
            AdminError::NoControllerLeader => Some(NotLeader { leader_address: None }),
            AdminError::Remote(err) => err.not_leader.clone(),
            _ => None,
        }
    }
}
