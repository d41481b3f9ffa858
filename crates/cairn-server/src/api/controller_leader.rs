//! Requests that need the controller leader: run here when this node leads the controller
//! (waiting out an election), else forwarded to the leader.

use std::time::Duration;

use cairn_raft::{CommandResponse, ControllerCommand, HostError};
use cairn_types::retry_delays;

use crate::api::forwarding_bounds::{HOPS_MAX, LEADER_WAIT};
use crate::api::{AdminError, CairnApi};

impl CairnApi {
    /// Proposes a controller command when this node leads the controller (waiting out an
    /// election); `Err(address)` names the leader to forward the request to instead.
    pub(crate) async fn controller_write(
        &self,
        command: ControllerCommand,
        hops: u32,
    ) -> Result<Result<CommandResponse, String>, AdminError> {
        self.at_controller_leader(hops, || self.host.controller_write(command.clone())).await
    }

    /// Runs `operation` (which needs the controller leader) here, waiting out an election;
    /// `Err(address)` names the leader to forward the request to instead.
    pub(crate) async fn at_controller_leader<T, F, Fut>(
        &self,
        hops: u32,
        mut operation: F,
    ) -> Result<Result<T, String>, AdminError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HostError>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        const BACKOFF_CEILING: Duration = Duration::from_millis(500);
        let mut delays = retry_delays(Duration::from_millis(20), BACKOFF_CEILING);
        loop {
            match operation().await {
                Ok(done) => return Ok(Ok(done)),
                Err(HostError::NotLeader { leader, leader_address: Some(address), .. })
                    if leader != Some(self.host.node_id()) && hops < HOPS_MAX =>
                {
                    return Ok(Err(address));
                }
                // The last hop names the leader at once instead of waiting here.
                Err(err @ HostError::NotLeader { leader: Some(leader), leader_address: Some(_), .. })
                    if leader != self.host.node_id() =>
                {
                    return Err(AdminError::Host(err));
                }
                Err(HostError::NotLeader { .. } | HostError::NoLeader { .. }) => {}
                Err(err) => return Err(AdminError::Host(err)),
            }
            let wait = delays.next().unwrap_or(BACKOFF_CEILING);
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(AdminError::NoControllerLeader);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// An answer of the controller that is not the kind its command gives.
pub(crate) fn unexpected(response: CommandResponse) -> AdminError {
    AdminError::UnexpectedOutcome(format!("{response:?}"))
}
