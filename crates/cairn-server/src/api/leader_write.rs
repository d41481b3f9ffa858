//! Writing one partition command where the partition's leader is: proposed here when this
//! node leads the partition, else forwarded to the leader (found through the local replica,
//! or the live nodes' claims, or asked of a replica), with retries while the group elects,
//! up to `LEADER_WAIT`. Appends of records and of events both go through here; they differ
//! only in the command, how its answer reads, and the forwarded call (`LeaderWrite`).

use std::time::Duration;

use cairn_raft::{CommandResponse, HostError, PartitionCommand, TopicMeta};
use cairn_types::{PartitionId, retry_delays};

use crate::api::forwarding_bounds::{HOPS_MAX, LEADER_WAIT};
use crate::api::{AppendError, CairnApi, Forwarded};

/// One write, as `write_at_leader` needs it.
pub(crate) struct LeaderWrite<MakeCommand, ReadApplied, SendOn, ReadForwarded> {
    /// The command to propose (made again for each attempt: its timestamp is the leader's).
    pub command: MakeCommand,
    /// What the applied command's answer means.
    pub applied: ReadApplied,
    /// The same write sent to the node at an address, within a deadline.
    pub forward: SendOn,
    /// What the forwarded answer means.
    pub forwarded: ReadForwarded,
    /// Whether to try again after a forwarded attempt got no answer: only for a write
    /// whose retry can never be applied twice (a producer sequence, event ids).
    pub retry_unanswered: bool,
}

impl CairnApi {
    pub(crate) async fn write_at_leader<'a, T, R>(
        &'a self,
        topic: &TopicMeta,
        partition: PartitionId,
        hops: u32,
        write: LeaderWrite<
            impl Fn() -> PartitionCommand,
            impl Fn(CommandResponse) -> Result<T, AppendError>,
            impl Fn(String, Duration) -> Forwarded<'a, R>,
            impl Fn(R) -> Result<T, AppendError>,
        >,
    ) -> Result<T, AppendError> {
        let group = topic.partitions[partition as usize].group_id;
        let LeaderWrite { command, applied, forward, forwarded, retry_unanswered } = write;
        let propose = || self.host.partition_write(group, command());
        let call = LeaderWrite { command: propose, applied, forward, forwarded, retry_unanswered };
        self.call_at_leader(topic, partition, hops, call).await
    }

    /// Like `write_at_leader`, for any step the leader takes (`write.command`: run on this
    /// node when it holds a replica; it answers `HostError::NotLeader` unless it leads).
    pub(crate) async fn call_at_leader<'a, T, R, L, Step>(
        &'a self,
        topic: &TopicMeta,
        partition: PartitionId,
        hops: u32,
        write: LeaderWrite<
            impl Fn() -> Step,
            impl Fn(L) -> Result<T, AppendError>,
            impl Fn(String, Duration) -> Forwarded<'a, R>,
            impl Fn(R) -> Result<T, AppendError>,
        >,
    ) -> Result<T, AppendError>
    where
        Step: std::future::Future<Output = Result<L, HostError>>,
    {
        let assignment = &topic.partitions[partition as usize];
        let group = assignment.group_id;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        // Checking again is cheap; a new leader is usually there within a second.
        const BACKOFF_CEILING: Duration = Duration::from_millis(100);
        let mut delays = retry_delays(Duration::from_millis(20), BACKOFF_CEILING);
        // The leader a forwarded attempt's "not leader" answer named: tried next.
        let mut named_leader = None;
        for attempt in 0usize.. {
            let target = if self.host.partition(group).is_some() {
                match (write.command)().await {
                    Ok(response) => return (write.applied)(response),
                    // The last hop cannot forward: it names the leader at once (nothing was
                    // proposed), and the hop before it or the client goes there.
                    Err(err @ HostError::NotLeader { leader: Some(leader), leader_address: Some(_), .. })
                        if hops >= HOPS_MAX && leader != self.host.node_id() =>
                    {
                        return Err(AppendError::Host(err));
                    }
                    // A replica that cannot name its leader asks the live nodes' claims, as a
                    // node without a replica does: it may be out of the group's membership (a
                    // move's source once promoted, until it leaves), and nobody tells it
                    // who leads the new voters.
                    Err(HostError::NotLeader { leader, leader_address, .. }) if leader != Some(self.host.node_id()) => {
                        leader_address.or_else(|| self.host.claimed_leader(group).map(|(_, address)| address))
                    }
                    Err(HostError::NotLeader { .. }) => None,
                    Err(err) => return Err(AppendError::Host(err)),
                }
            } else if hops >= HOPS_MAX {
                return Err(AppendError::LastHopWithoutReplica {
                    node: self.host.node_id(),
                    topic: topic.name.clone(),
                    partition,
                    hops,
                });
            } else {
                // No replica here: the live node that claims to lead the group, else a live
                // replica (a replica knows its leader), else any replica.
                self.host.claimed_leader(group).map(|(_, address)| address).or_else(|| {
                    let live: Vec<cairn_types::NodeId> =
                        assignment.replicas.iter().copied().filter(|node| self.host.is_node_live(*node)).collect();
                    let candidates = if live.is_empty() { &assignment.replicas } else { &live };
                    let replica = candidates[attempt % candidates.len()];
                    self.host.cluster_nodes().get(&replica).cloned()
                })
            };
            if let Some(address) = named_leader.take().or(target).filter(|_| hops < HOPS_MAX) {
                let within = deadline.saturating_duration_since(tokio::time::Instant::now());
                match (write.forward)(address.clone(), within).await {
                    Ok(answer) => return (write.forwarded)(answer),
                    // "Not leader": not proposed there, so safe to try again, at the leader
                    // it named.
                    Err(err) if err.not_leader.is_some() => {
                        named_leader = err.not_leader.and_then(|not_leader| not_leader.leader_address);
                    }
                    // The peer went silent (its connection was closed for an unanswered
                    // ping) or did not answer in time: the write may have been proposed
                    // there, so only one that cannot be applied twice is tried again, at the
                    // leader the others elect meanwhile.
                    Err(err) if write.retry_unanswered && err.code.is_no_answer() => {
                        tracing::debug!(%address, message = %err, "forwarded write failed; retrying");
                    }
                    Err(err) => return Err(AppendError::Remote(err)),
                }
            }
            let wait = delays.next().unwrap_or(BACKOFF_CEILING);
            if tokio::time::Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        Err(AppendError::NoReachableLeader { topic: topic.name.clone(), partition, waited_s: LEADER_WAIT.as_secs() })
    }
}
