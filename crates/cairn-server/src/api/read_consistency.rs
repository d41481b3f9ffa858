//! How fresh a read must be, and how a replica makes sure it is before serving it:
//! `Local` serves what the replica applied, `ReadYourWrites` waits for an index an append
//! returned, `Linearizable` confirms a read index with a quorum (at the leader, or asked of
//! it by a follower) and waits until the replica applied that far.

use cairn_raft::{HostError, PartitionReplica, RpcKind};

use crate::api::forwarding_bounds::LEADER_WAIT;
use crate::api::{CairnApi, Consistency, ReadError};

impl CairnApi {
    /// Waits until `replica` may serve a read at `consistency`.
    pub(crate) async fn make_consistent(
        &self,
        replica: &PartitionReplica,
        consistency: Consistency,
    ) -> Result<(), ReadError> {
        let must_apply = match consistency {
            Consistency::Local => 0,
            Consistency::ReadYourWrites { min_applied_index } => min_applied_index,
            Consistency::Linearizable if cfg!(feature = "bug-stale-linearizable-reads") => 0,
            Consistency::Linearizable => self.read_index(replica).await?,
            Consistency::Unknown(value) => return Err(ReadError::UnknownConsistency(value)),
        };
        self.wait_applied(replica, must_apply).await
    }

    /// The index a linearizable read must see applied: from this node if it leads the
    /// partition, else from the leader (a `ReadIndex` call), so followers serve it too.
    async fn read_index(&self, replica: &PartitionReplica) -> Result<u64, ReadError> {
        let group = replica.group_id;
        match self.host.read_index(group).await {
            Ok(index) => return Ok(index),
            Err(HostError::NotLeader { .. }) => {}
            Err(err) => return Err(ReadError::Host(err)),
        }
        let (leader, address) = self.host.partition_leader(group).ok_or(ReadError::ElectingLeader(group))?;
        let call = self.transport.call(leader, address, group, RpcKind::ReadIndex, Vec::new());
        let reply = tokio::time::timeout(LEADER_WAIT, call)
            .await
            .map_err(|_| ReadError::ReadIndexTimedOut(group))?
            .map_err(|err| ReadError::ReadIndexCall(err.to_string()))?;
        let index: Result<u64, String> =
            cairn_raft::decode(&reply).map_err(|err| ReadError::ReadIndexReply(err.to_string()))?;
        index.map_err(ReadError::ReadIndexRefused)
    }

    /// Waits until this replica has applied `index`.
    async fn wait_applied(&self, replica: &PartitionReplica, index: u64) -> Result<(), ReadError> {
        let mut view = replica.view.clone();
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let applied = view.borrow_and_update().applied_index;
            if applied >= index {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, view.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ReadError::ReplicaStopped),
                Err(_) => return Err(ReadError::NotAppliedYet { applied, index }),
            }
        }
    }
}
