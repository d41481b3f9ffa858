//! Why the controller leader did not take a command that a partition leader reported to it
//! over the Raft transport (`RpcKind::ControllerWrite`: move progress, finished operations,
//! preferred leaders). The reason stays typed across the wire, so that the reporting node
//! answers its own caller with the right kind of error: a controller leader that has just
//! stepped down is a passing condition (UNAVAILABLE, retry) and not a failure of the node
//! that asked (INTERNAL), which is how the reason arrived when it travelled as a string.
//! Found by the fault-injection suite's membership nemesis: a leader transfer during a
//! controller election answered INTERNAL "this node is not the leader of group 0".

use cairn_types::CONTROLLER_GROUP_ID;
use serde::{Deserialize, Serialize};

use super::HostError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum ControllerWriteRefusal {
    /// The node asked does not lead the controller (any more): ask the leader, once known.
    NotLeader,
    /// The write's outcome is unknown: the controller's leadership changed while it was in
    /// flight.
    Indeterminate,
    /// The controller leader did not commit the write in time.
    TimedOut { waited_ms: u64 },
    /// The command cannot be proposed over the transport, or the write failed for good.
    Failed(String),
}

impl ControllerWriteRefusal {
    /// The refusal the serving node sends for its own error.
    pub(super) fn from_host_error(error: HostError) -> ControllerWriteRefusal {
        match error {
            HostError::NotLeader { .. } | HostError::NoLeader { .. } => ControllerWriteRefusal::NotLeader,
            HostError::Indeterminate { .. } => ControllerWriteRefusal::Indeterminate,
            other => ControllerWriteRefusal::Failed(other.to_string()),
        }
    }

    /// The error the asking node reports: passing conditions stay retryable.
    pub(super) fn into_host_error(self) -> HostError {
        let group = CONTROLLER_GROUP_ID;
        match self {
            ControllerWriteRefusal::NotLeader => HostError::NoLeader { group, waited_ms: 0 },
            ControllerWriteRefusal::Indeterminate => HostError::Indeterminate { group },
            ControllerWriteRefusal::TimedOut { waited_ms } => HostError::NoLeader { group, waited_ms },
            ControllerWriteRefusal::Failed(detail) => HostError::Raft(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode};

    /// What the asking node makes of the serving node's error, through the wire encoding.
    fn across_the_wire(error: HostError) -> HostError {
        let answer: Result<(), ControllerWriteRefusal> = Err(ControllerWriteRefusal::from_host_error(error));
        let bytes = encode(&answer).expect("encode");
        let answer: Result<(), ControllerWriteRefusal> = decode(&bytes).expect("decode");
        answer.expect_err("a refusal").into_host_error()
    }

    #[test]
    fn a_controller_that_stepped_down_is_a_retryable_refusal() {
        let stepped_down = HostError::NotLeader { group: CONTROLLER_GROUP_ID, leader: Some(2), leader_address: None };
        assert!(matches!(across_the_wire(stepped_down), HostError::NoLeader { group: CONTROLLER_GROUP_ID, .. }));
        let electing = HostError::NoLeader { group: CONTROLLER_GROUP_ID, waited_ms: 500 };
        assert!(matches!(across_the_wire(electing), HostError::NoLeader { .. }));
        let unknown = HostError::Indeterminate { group: CONTROLLER_GROUP_ID };
        assert!(matches!(across_the_wire(unknown), HostError::Indeterminate { group: CONTROLLER_GROUP_ID }));
    }

    #[test]
    fn other_failures_keep_their_message() {
        let failed = across_the_wire(HostError::Raft("the state machine stopped".into()));
        assert!(
            matches!(&failed, HostError::Raft(detail) if detail.contains("the state machine stopped")),
            "{failed:?}"
        );
        let timed_out = ControllerWriteRefusal::TimedOut { waited_ms: 5_000 }.into_host_error();
        assert!(matches!(timed_out, HostError::NoLeader { waited_ms: 5_000, .. }));
    }
}
