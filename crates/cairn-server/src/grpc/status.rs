//! The one place where errors become gRPC statuses, and where statuses other nodes
//! answered become errors again: stable codes, actionable messages.
//!
//! An api error's code (`ErrorCode`) maps one to one to a gRPC code and its message is its
//! `Display`. "Not leader, nothing proposed" travels as metadata (`x-cairn-not-leader`,
//! with the leader's address in `x-cairn-leader`), so a forwarding node or a client knows
//! it may send the request again. An append written to some partitions but not all
//! carries every partition's outcome in its details (`AppendOutcomes`), and an event append
//! refused for its conditions every violation (`ConditionsFailed`). A failure another
//! node answered goes back as it came, details included.

use cairn_proto::Message as _;
use cairn_proto::v1 as pb;
use cairn_raft::HostError;
use cairn_types::NodeId;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::api::{
    AdminError, ApiError, AppendError, ErrorCode, GroupError, NotLeader, PartlyWritten, ReadError, RemoteError,
    host_error_code, host_error_message, host_not_leader,
};

/// Marks a status "not the leader, nothing proposed".
pub const NOT_LEADER_HEADER: &str = "x-cairn-not-leader";
/// The leader's address, on a "not leader" status, when known.
pub const LEADER_HEADER: &str = "x-cairn-leader";

pub fn from_append(err: AppendError) -> Status {
    match err {
        AppendError::Remote(err) => from_remote(err),
        AppendError::PartlyWritten(partly) => from_partly_written(partly),
        AppendError::ConditionsFailed(ref violations) => {
            let details = pb::ConditionsFailed::from(violations.clone());
            Status::with_details(code(err.code()), err.to_string(), details.encode_to_vec().into())
        }
        err => from_api(&err),
    }
}

/// A request whose event ids are not all UUIDs.
pub fn from_bad_event_id(err: cairn_proto::BadEventId) -> Status {
    Status::invalid_argument(err.to_string())
}

pub fn from_read(err: ReadError) -> Status {
    match err {
        ReadError::Remote(err) => from_remote(err),
        err => from_api(&err),
    }
}

pub fn from_group(err: GroupError) -> Status {
    match err {
        GroupError::Call(err) => from_append(err),
        GroupError::GroupsTopic(AdminError::Remote(err)) => from_remote(err),
        err => from_api(&err),
    }
}

pub fn from_admin(err: AdminError) -> Status {
    match err {
        AdminError::Remote(err) => from_remote(err),
        err => from_api(&err),
    }
}

/// A Raft host's failure, as the Raft transport answers it.
pub fn from_host(err: HostError) -> Status {
    let status = Status::new(code(host_error_code(&err)), host_error_message(&err));
    log_fault(&status);
    with_not_leader(status, host_not_leader(&err))
}

/// A failure serving a peer's Raft message: as `from_host`, but a payload this node cannot
/// decode is the sender's fault.
pub fn from_raft_message(err: HostError) -> Status {
    match err {
        HostError::Storage(err) if err.kind() == std::io::ErrorKind::InvalidData => {
            Status::invalid_argument(format!("malformed raft message: {err}"))
        }
        err => from_host(err),
    }
}

/// A Raft envelope of a kind this node does not know (a newer peer's).
pub fn unknown_raft_kind(kind: i32) -> Status {
    Status::invalid_argument(format!("unknown raft message kind {kind}"))
}

/// A Raft message stamped with another cluster's identity.
pub fn foreign_cluster(from_node: NodeId, sender: &str, me: NodeId, cluster: &str) -> Status {
    Status::failed_precondition(format!(
        "raft message from node {from_node} of cluster [{sender}] refused: node {me} belongs to cluster [{cluster}]; \
         a node of another cluster is using this address (check its --initial-cluster or --join)"
    ))
}

/// A failure on this node.
fn from_api(err: &dyn ApiError) -> Status {
    let status = Status::new(code(err.code()), err.to_string());
    log_fault(&status);
    with_not_leader(status, err.not_leader())
}

/// A failure another node answered, passed on as it came.
fn from_remote(err: RemoteError) -> Status {
    let status = Status::with_details(code(err.code), err.message, err.details.into());
    with_not_leader(status, err.not_leader)
}

/// The first failure's code and every partition's outcome in the details. Never "not
/// leader": some partitions were written, so a forwarding node must not send it all again.
fn from_partly_written(partly: PartlyWritten) -> Status {
    let message = partly.to_string();
    let first_code = code(partly.code());
    let outcomes = pb::AppendOutcomes {
        partitions: partly
            .writes
            .into_iter()
            .map(|write| {
                let mut outcome = pb::PartitionOutcome {
                    partition: write.partition,
                    record_indexes: write.record_indexes.iter().map(|&index| index as u32).collect(),
                    ..Default::default()
                };
                match write.result {
                    Ok(written) => {
                        outcome.base_offset = Some(written.base_offset);
                        outcome.applied_index = written.applied_index;
                    }
                    Err(err) => {
                        let status = Status::new(code(err.code()), err.to_string());
                        if !matches!(err, AppendError::Remote(_)) {
                            log_fault(&status);
                        }
                        outcome.code = status.code() as i32;
                        outcome.message = status.message().to_owned();
                    }
                }
                outcome
            })
            .collect(),
    };
    Status::with_details(first_code, message, outcomes.encode_to_vec().into())
}

/// A failure of this node that needs a human: logged once, here.
fn log_fault(status: &Status) {
    if matches!(status.code(), Code::Internal | Code::DataLoss) {
        tracing::error!(code = ?status.code(), message = status.message(), "request failed on this node");
    }
}

/// Marks `status` "not the leader, nothing proposed", with the leader's address.
fn with_not_leader(mut status: Status, not_leader: Option<NotLeader>) -> Status {
    let Some(not_leader) = not_leader else { return status };
    status.metadata_mut().insert(NOT_LEADER_HEADER, MetadataValue::from_static("1"));
    if let Some(address) = not_leader.leader_address.and_then(|a| a.parse().ok()) {
        status.metadata_mut().insert(LEADER_HEADER, address);
    }
    status
}

/// A status another node answered (or the client library gave for a call that got no
/// answer), as an error to pass on.
pub fn remote_error(status: Status) -> RemoteError {
    let not_leader = status.metadata().get(NOT_LEADER_HEADER).map(|_| NotLeader {
        leader_address: status.metadata().get(LEADER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned),
    });
    RemoteError {
        code: error_code(status.code()),
        message: status.message().to_owned(),
        not_leader,
        details: status.details().to_vec(),
    }
}

/// The gRPC code of an api error code.
pub fn code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::Cancelled => Code::Cancelled,
        ErrorCode::Unknown => Code::Unknown,
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::Unimplemented => Code::Unimplemented,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
    }
}

/// The api error code of a gRPC code (`Ok`, never an error's, reads as `Unknown`).
pub fn error_code(code: Code) -> ErrorCode {
    match code {
        Code::Cancelled => ErrorCode::Cancelled,
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        Code::NotFound => ErrorCode::NotFound,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::ResourceExhausted => ErrorCode::ResourceExhausted,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::Aborted => ErrorCode::Aborted,
        Code::OutOfRange => ErrorCode::OutOfRange,
        Code::Unimplemented => ErrorCode::Unimplemented,
        Code::Internal => ErrorCode::Internal,
        Code::Unavailable => ErrorCode::Unavailable,
        Code::DataLoss => ErrorCode::DataLoss,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::Ok | Code::Unknown => ErrorCode::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PartitionWrite, RecordLimitError, Written};

    fn not_leader_at(address: &str) -> RemoteError {
        let mut err = RemoteError::local(ErrorCode::Unavailable, "electing".to_owned());
        err.not_leader = Some(NotLeader { leader_address: Some(address.to_owned()) });
        err
    }

    #[test]
    fn not_leader_survives_a_status_and_back() {
        let status = from_append(AppendError::Remote(not_leader_at("127.0.0.1:1")));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "electing");
        let back = remote_error(status);
        assert_eq!(back.code, ErrorCode::Unavailable);
        assert_eq!(back.not_leader, Some(NotLeader { leader_address: Some("127.0.0.1:1".to_owned()) }));
    }

    #[test]
    fn a_partial_failure_carries_every_partition_in_its_details() {
        let written = |partition, record_indexes, base_offset| PartitionWrite {
            partition,
            record_indexes,
            result: Ok(Written { base_offset, applied_index: base_offset + 100, duplicate: false }),
        };
        let failed = |partition, record_indexes, err| PartitionWrite { partition, record_indexes, result: Err(err) };
        let unavailable = RemoteError::local(ErrorCode::Unavailable, "partition 1 has no leader".to_owned());
        let writes = vec![
            written(0, vec![0, 2], 5),
            failed(1, vec![1], AppendError::Remote(unavailable)),
            failed(2, vec![3], AppendError::Limits(RecordLimitError::RequestTooLarge { bytes: 2, max: 1 })),
        ];
        let status = from_append(AppendError::PartlyWritten(PartlyWritten { writes }));
        assert_eq!(status.code(), Code::Unavailable, "the first failure's code");
        // Not "nothing proposed": a forwarding node must not send it all again.
        assert_eq!(remote_error(status.clone()).not_leader, None);
        assert!(status.message().contains("written to 1 of 3 partitions"), "{}", status.message());
        let outcomes: pb::AppendOutcomes = cairn_proto::Message::decode(status.details()).expect("details decode");
        let summary: Vec<(u32, Vec<u32>, Option<u64>, i32)> = outcomes
            .partitions
            .iter()
            .map(|p| (p.partition, p.record_indexes.clone(), p.base_offset, p.code))
            .collect();
        assert_eq!(
            summary,
            [
                (0, vec![0, 2], Some(5), 0),
                (1, vec![1], None, Code::Unavailable as i32),
                (2, vec![3], None, Code::ResourceExhausted as i32),
            ]
        );
        assert_eq!(outcomes.partitions[0].applied_index, 105);
        assert_eq!(outcomes.partitions[1].message, "partition 1 has no leader");
    }

    #[test]
    fn every_code_maps_back_to_itself() {
        for code in [Code::Cancelled, Code::InvalidArgument, Code::NotFound, Code::Unavailable, Code::DataLoss] {
            assert_eq!(super::code(error_code(code)), code);
        }
    }
}
