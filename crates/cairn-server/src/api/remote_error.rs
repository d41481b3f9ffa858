//! A failure answered by another node a request was forwarded to, passed back as it came.

use crate::api::{ErrorCode, NotLeader};

/// The code and message another node answered (or the failure to reach it), whether it
/// said "not leader, nothing proposed", and the details it attached (kept as bytes so that
/// they reach the client unchanged).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
    pub not_leader: Option<NotLeader>,
    pub details: Vec<u8>,
}

impl RemoteError {
    /// A failure on this side of the call (no channel to the address): nothing was sent.
    pub fn local(code: ErrorCode, message: String) -> RemoteError {
        RemoteError { code, message, not_leader: None, details: Vec::new() }
    }
}
