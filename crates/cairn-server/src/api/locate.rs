//! Where a partition's reads are served: the replica on this node, or else another node
//! holding one, to which the read is forwarded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cairn_raft::PartitionReplica;
use cairn_types::PartitionId;

use crate::api::forward::Forwarded;
use crate::api::forwarding_bounds::HOPS_MAX;
use crate::api::topic_lookup::partition_of;
use crate::api::{CairnApi, ErrorCode, ReadError};

/// Where a partition's reads are served.
pub enum ReplicaAt {
    Here(Arc<PartitionReplica>),
    /// Addresses of nodes holding a replica.
    Elsewhere(Vec<String>),
}

impl CairnApi {
    /// Where `topic`/`partition` can be read: from the replica on this node, or else from
    /// one of the nodes that hold one (their addresses, this node's pick first).
    pub(crate) fn locate(&self, topic: &str, partition: PartitionId) -> Result<ReplicaAt, ReadError> {
        let meta = self.topic(topic)?;
        let assignment = partition_of(&meta, partition)?;
        // A replica still copying (the target of a move) is not read from until it votes.
        let state = self.host.controller_state();
        if state.serves_reads(assignment, self.host.node_id())
            && let Some(replica) = self.host.partition(assignment.group_id)
        {
            return Ok(ReplicaAt::Here(replica));
        }
        let nodes = self.host.cluster_nodes();
        let mut addresses: Vec<String> = assignment
            .replicas
            .iter()
            .filter(|&&node| node != self.host.node_id() && state.serves_reads(assignment, node))
            .filter_map(|node| nodes.get(node).cloned())
            .collect();
        if addresses.is_empty() {
            return Err(ReadError::NoReachableReplica {
                topic: topic.to_owned(),
                partition,
                replicas: assignment.replicas.clone(),
            });
        }
        // Spread forwarded reads over the replicas.
        let len = addresses.len();
        addresses.rotate_left(self.round_robin.fetch_add(1, Ordering::Relaxed) as usize % len);
        Ok(ReplicaAt::Elsewhere(addresses))
    }

    /// The replica of `topic`/`partition` on this node or, when there is none here, the
    /// answer of the first node holding one that answers `call` (a replica that is down,
    /// starting or behind on the controller's state is skipped).
    pub(crate) async fn replica_or_forward<'s, Resp>(
        &'s self,
        topic: &str,
        partition: PartitionId,
        hops: u32,
        mut call: impl FnMut(String) -> Forwarded<'s, Resp>,
    ) -> Result<Result<Arc<PartitionReplica>, Resp>, ReadError> {
        let addresses = match self.locate(topic, partition)? {
            ReplicaAt::Here(replica) => return Ok(Ok(replica)),
            ReplicaAt::Elsewhere(addresses) => addresses,
        };
        if hops >= HOPS_MAX {
            return Err(ReadError::LastHopWithoutReplica {
                node: self.host.node_id(),
                topic: topic.to_owned(),
                partition,
                hops,
            });
        }
        let mut last = None;
        for address in addresses {
            match call(address).await {
                // A replica still starting, or one whose view of the controller lags (it
                // does not know the topic yet): ask the next one.
                Err(err) if matches!(err.code, ErrorCode::Unavailable | ErrorCode::NotFound) => last = Some(err),
                Err(err) => return Err(ReadError::Remote(err)),
                Ok(answer) => return Ok(Err(answer)),
            }
        }
        Err(last.map_or(ReadError::NoReplicaAnswered, ReadError::Remote))
    }
}
