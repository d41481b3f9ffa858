//! Producer ids: handed out by the controller (never reused), and checked on every
//! idempotent append against this node's view of it.

use std::time::Duration;

use cairn_raft::{CommandResponse, ControllerCommand};

use crate::api::controller_leader::unexpected;
use crate::api::{AdminError, AppendError, CairnApi};

/// How long an append waits for this node to learn of a freshly allocated producer id.
const PRODUCER_CHECK_WAIT: Duration = Duration::from_secs(2);

impl CairnApi {
    /// A new producer id, from the controller.
    pub async fn init_producer(&self, hops: u32) -> Result<u64, AdminError> {
        match self.controller_write(ControllerCommand::AllocateProducerId, hops).await? {
            Ok(CommandResponse::ProducerId(producer_id)) => Ok(producer_id),
            Ok(other) => Err(unexpected(other)),
            Err(leader) => self.forward.init_producer(leader, hops).await.map_err(AdminError::Remote),
        }
    }

    /// Refuses producer ids the controller never handed out. This node's view of the
    /// controller may lag the leader that allocated the id: wait for it briefly, then
    /// answer that it is not known yet (retryable).
    pub(crate) async fn check_producer(&self, producer_id: u64) -> Result<(), AppendError> {
        let deadline = tokio::time::Instant::now() + PRODUCER_CHECK_WAIT;
        while !self.host.controller_state().knows_producer(producer_id) {
            if tokio::time::Instant::now() >= deadline {
                if producer_id == 0 {
                    return Err(AppendError::ProducerIdZero);
                }
                let next_producer_id = self.host.controller_state().next_producer_id;
                return Err(AppendError::UnknownProducer { producer_id, next_producer_id });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
