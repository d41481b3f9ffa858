//! Appends: records split by partition, each partition's batch written where its leader
//! is (here, or forwarded), with retries while the group elects.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_raft::{CommandResponse, HostError, PartitionCommand, ProducerSequence, TopicMeta};
use cairn_types::partitioner::partition_for_key;
use cairn_types::{PartitionId, Record, now_ms, retry_delays};

use crate::api::append_outcomes;
use crate::api::forwarding_bounds::{HOPS_MAX, LEADER_WAIT};
use crate::api::record_limits::check_records;
use crate::api::{AppendAnswer, AppendError, CairnApi, PartitionWrite, TopicLookupError, Written};

/// Records for a topic: to `partition`, or else each to its key's partition (unkeyed ones
/// together to one round-robin partition). With a producer id and sequence (both or
/// neither) it is idempotent, and then it names its partition.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub topic: String,
    pub partition: Option<PartitionId>,
    pub records: Vec<Record>,
    pub producer_id: Option<u64>,
    pub sequence: Option<u64>,
}

impl CairnApi {
    /// Appends `request`, forwarded `hops` times already. Every partition's write runs to
    /// its end, so a failure can say what was written (`AppendError::PartlyWritten`).
    pub async fn append(&self, request: AppendRequest, hops: u32) -> Result<AppendAnswer, AppendError> {
        let topic = self.topic(&request.topic)?;
        let producer = match (request.producer_id, request.sequence) {
            (None, None) => None,
            (Some(producer_id), Some(sequence)) => {
                if request.partition.is_none() {
                    return Err(AppendError::ProducerWithoutPartition);
                }
                self.check_producer(producer_id).await?;
                Some(ProducerSequence { producer_id, sequence })
            }
            _ => return Err(AppendError::ProducerWithoutSequence),
        };
        check_records(&request.records, self.host.limits())?;
        let partition_count = topic.config.partition_count;
        if let Some(partition) = request.partition
            && partition >= partition_count
        {
            return Err(TopicLookupError::PartitionNotFound {
                topic: topic.name.clone(),
                partition,
                count: partition_count,
            }
            .into());
        }
        // Unkeyed records of one request stick to one round-robin partition.
        let sticky = self.round_robin.fetch_add(1, Ordering::Relaxed) % partition_count;
        let mut by_partition: BTreeMap<PartitionId, Vec<(usize, Record)>> = BTreeMap::new();
        for (i, record) in request.records.into_iter().enumerate() {
            let partition = match (request.partition, &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => partition_for_key(key, partition_count),
                (None, None) => sticky,
            };
            by_partition.entry(partition).or_default().push((i, record));
        }
        let record_count: usize = by_partition.values().map(Vec::len).sum();
        let topic = &topic;
        let writes = by_partition.into_iter().map(|(partition, records)| {
            let (record_indexes, records): (Vec<usize>, Vec<Record>) = records.into_iter().unzip();
            async move {
                let result = self.append_partition(topic, partition, records, producer, hops).await;
                PartitionWrite { partition, record_indexes, result }
            }
        });
        let writes = futures::future::join_all(writes).await;
        append_outcomes::combine(record_count, writes)
    }

    /// Appends one partition's batch: here when this node leads the partition, else at
    /// the leader (found through the local replica, or asked of a replica).
    async fn append_partition(
        &self,
        topic: &TopicMeta,
        partition: PartitionId,
        records: Vec<Record>,
        producer: Option<ProducerSequence>,
        hops: u32,
    ) -> Result<Written, AppendError> {
        let assignment = &topic.partitions[partition as usize];
        let group = assignment.group_id;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        // Checking again is cheap; a new leader is usually there within a second.
        const BACKOFF_CEILING: Duration = Duration::from_millis(100);
        let mut delays = retry_delays(Duration::from_millis(20), BACKOFF_CEILING);
        // The leader a forwarded attempt's "not leader" answer named: tried next.
        let mut named_leader = None;
        // The producer's later batches wait for this one while it is tried here.
        let _arrival = producer.and_then(|producer| self.host.arrive(group, producer));
        for attempt in 0usize.. {
            let target = if self.host.partition(group).is_some() {
                let command = PartitionCommand::Append { records: records.clone(), timestamp_ms: now_ms(), producer };
                match self.host.partition_write(group, command).await {
                    Ok(CommandResponse::Appended(outcome)) => {
                        return Ok(Written {
                            base_offset: outcome.base_offset,
                            applied_index: outcome.applied_index,
                            duplicate: outcome.duplicate,
                        });
                    }
                    Ok(CommandResponse::SequenceError { producer_id, sequence, expected }) => {
                        return Err(AppendError::Sequence {
                            producer_id,
                            sequence,
                            topic: topic.name.clone(),
                            partition,
                            expected,
                        });
                    }
                    Ok(other) => return Err(AppendError::UnexpectedOutcome(format!("{other:?}"))),
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
                let request = AppendRequest {
                    topic: topic.name.clone(),
                    partition: Some(partition),
                    records: records.clone(),
                    producer_id: producer.map(|p| p.producer_id),
                    sequence: producer.map(|p| p.sequence),
                };
                let within = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.forward.append(address.clone(), request, hops, within).await {
                    Ok(answer) => {
                        let base = answer.positions.first().map(|p| p.offset);
                        let applied_index = answer.tokens.first().map_or(0, |t| t.applied_index);
                        return base
                            .map(|base_offset| Written { base_offset, applied_index, duplicate: answer.duplicate })
                            .ok_or(AppendError::ForwardedWithoutOffsets);
                    }
                    // "Not leader": not proposed there, so safe to try again, at the leader
                    // it named.
                    Err(err) if err.not_leader.is_some() => {
                        named_leader = err.not_leader.and_then(|not_leader| not_leader.leader_address);
                    }
                    // The peer went silent (its connection was closed for an unanswered
                    // ping) or did not answer in time: the append may have been proposed
                    // there, so only one with a producer sequence, which cannot be applied
                    // twice, is tried again, at the leader the others elect meanwhile.
                    Err(err) if producer.is_some() && err.code.is_no_answer() => {
                        tracing::debug!(%address, message = %err, "forwarded append failed; retrying");
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
