use std::error::Error as _;

use cairn_proto::Message as _;
use cairn_types::{Offset, PartitionId, QueryViolation, RevisionViolation};

use crate::proto;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server address could not be parsed as a URI.
    #[error("invalid server address '{address}': {message}")]
    InvalidAddress { address: String, message: String },
    /// No connection could be made to the server.
    #[error("could not connect to {address}: {message}")]
    Connect { address: String, message: String },
    /// The server (or the transport) answered with a gRPC error status.
    #[error("{message} ({code:?})")]
    Status { code: tonic::Code, message: String },
    /// The server's answer broke the API contract (a missing field, a count mismatch).
    #[error("invalid response from server: {0}")]
    InvalidResponse(String),
    /// An append whose records went to several partitions was written to some of them and
    /// failed for others (see `proto::AppendOutcomes`). `written` holds each stored
    /// record's index in the request, partition and offset: sending those again would
    /// store them twice. `unwritten` holds the indexes of the others: send only those again.
    #[error("{message} ({code:?})")]
    PartlyWritten {
        code: tonic::Code,
        message: String,
        written: Vec<(usize, PartitionId, Offset)>,
        unwritten: Vec<usize>,
    },
    /// An event append refused for its conditions (`FAILED_PRECONDITION`): streams not at
    /// the expected revisions (`violations`), and the first event matching its query
    /// condition after the condition's position (`query`). Nothing was written. Every
    /// violation is listed, so the caller can read again and decide without another round
    /// trip.
    #[error("{message} (FailedPrecondition)")]
    ConditionFailed { message: String, violations: Vec<RevisionViolation>, query: Option<QueryViolation> },
    /// A consumer group refused the call (`proto::GroupRefusal`): nothing changed.
    #[error("group {group:?}: {message} ({code:?})")]
    GroupRefused { group: String, code: proto::GroupRefusalCode, message: String },
}

impl ClientError {
    /// The gRPC code, when the error is a status from the server or transport.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { code, .. } | ClientError::PartlyWritten { code, .. } => Some(*code),
            ClientError::ConditionFailed { .. } => Some(tonic::Code::FailedPrecondition),
            _ => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Status { code: status.code(), message: message_of(&status) }
    }
}

/// The status's message with its sources, or its code's description when it has none.
fn message_of(status: &tonic::Status) -> String {
    let mut message = status.message().to_string();
    if let Some(source) = status.source() {
        let detail = error_chain(source);
        if !message.contains(&detail) {
            message = if message.is_empty() { detail } else { format!("{message}: {detail}") };
        }
    }
    if message.is_empty() {
        message = status.code().description().to_string();
    }
    message
}

/// The error of an append: `PartlyWritten` when the status details say which partitions
/// of a multi-partition append were written, else the status as it is.
pub(crate) fn from_append_status(status: tonic::Status) -> ClientError {
    let Ok(outcomes) = proto::AppendOutcomes::decode(status.details()) else { return status.into() };
    if outcomes.partitions.is_empty() {
        return status.into();
    }
    let (mut written, mut unwritten) = (Vec::new(), Vec::new());
    for outcome in outcomes.partitions {
        let indexes = outcome.record_indexes.iter().map(|&index| index as usize);
        match outcome.base_offset {
            Some(base_offset) => {
                written.extend(indexes.zip(base_offset..).map(|(index, offset)| (index, outcome.partition, offset)))
            }
            None => unwritten.extend(indexes),
        }
    }
    written.sort_unstable();
    unwritten.sort_unstable();
    ClientError::PartlyWritten { code: status.code(), message: message_of(&status), written, unwritten }
}

/// An error and its sources, joined with ": ", skipping sources its message repeats.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_code_and_message() {
        let error = ClientError::from(tonic::Status::not_found("topic 'orders' does not exist"));
        assert_eq!(error.code(), Some(tonic::Code::NotFound));
        assert_eq!(error.to_string(), "topic 'orders' does not exist (NotFound)");
    }

    #[test]
    fn empty_status_message_is_described() {
        let error = ClientError::from(tonic::Status::unavailable(""));
        assert_eq!(error.code(), Some(tonic::Code::Unavailable));
        assert!(!error.to_string().starts_with(" ("), "{error}");
    }
}
