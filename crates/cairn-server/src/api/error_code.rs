//! What every error of the api says to a front door: a stable code, and whether the
//! request was certainly not proposed (so it may be sent again, to the leader named).
//!
//! The codes are gRPC's canonical ones, because they are what clients have always seen;
//! they are plain values here so that the gRPC adapter, a Kafka listener and a status page
//! each map them to their own protocol (`grpc/status.rs` for gRPC). An error's message is
//! its `Display`, written for a person who has to act on it.

/// The stable code of an api error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl ErrorCode {
    /// A failure to get an answer from another node (its connection broke, or no answer
    /// came in time) or a passing refusal: the outcome is unknown, or nothing was applied.
    pub fn is_no_answer(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Unknown | ErrorCode::Cancelled | ErrorCode::DeadlineExceeded)
    }
}

/// "Not the leader, nothing proposed": safe to send again, at the leader's address when
/// it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    pub leader_address: Option<String>,
}

/// What the front doors need of an api error besides its message.
pub trait ApiError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// `Some` when the request was certainly not proposed (see `NotLeader`).
    fn not_leader(&self) -> Option<NotLeader> {
        None
    }
}
