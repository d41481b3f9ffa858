//! Appends: records split by partition, each partition's batch written where its leader
//! is (here, or forwarded), with retries while the group elects.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use std::time::Duration;

use cairn_raft::{CommandResponse, PartitionCommand, ProducerSequence, TopicMeta};
use cairn_types::partitioner::partition_for_key;
use cairn_types::{PartitionId, Record, now_ms};

use crate::api::append_outcomes;
use crate::api::leader_write::LeaderWrite;
use crate::api::record_limits::check_records;
use crate::api::{AppendAnswer, AppendError, AppendRequest, CairnApi, PartitionWrite, TopicLookupError, Written};

impl CairnApi {
    /// Appends `request`, forwarded `hops` times already. Every partition's write runs to
    /// its end, so a failure can say what was written (`AppendError::PartlyWritten`).
    /// `append` (`api_stats.rs`) counts it, then calls this.
    pub(crate) async fn append_unmetered(
        &self,
        request: AppendRequest,
        hops: u32,
    ) -> Result<AppendAnswer, AppendError> {
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
    /// the leader (`write_at_leader`).
    async fn append_partition(
        &self,
        topic: &TopicMeta,
        partition: PartitionId,
        records: Vec<Record>,
        producer: Option<ProducerSequence>,
        hops: u32,
    ) -> Result<Written, AppendError> {
        let group = topic.partitions[partition as usize].group_id;
        // The producer's later batches wait for this one while it is tried here.
        let _arrival = producer.and_then(|producer| self.host.arrive(group, producer));
        let request = AppendRequest {
            topic: topic.name.clone(),
            partition: Some(partition),
            records: records.clone(),
            producer_id: producer.map(|p| p.producer_id),
            sequence: producer.map(|p| p.sequence),
        };
        let write = LeaderWrite {
            command: || PartitionCommand::Append { records: records.clone(), timestamp_ms: now_ms(), producer },
            applied: |response: CommandResponse| match response {
                CommandResponse::Appended(outcome) => Ok(Written {
                    base_offset: outcome.base_offset,
                    applied_index: outcome.applied_index,
                    duplicate: outcome.duplicate,
                }),
                CommandResponse::SequenceError { producer_id, sequence, expected } => {
                    Err(AppendError::Sequence { producer_id, sequence, topic: topic.name.clone(), partition, expected })
                }
                other => Err(AppendError::UnexpectedOutcome(format!("{other:?}"))),
            },
            forward: |address: String, within: Duration| self.forward.append(address, request.clone(), hops, within),
            forwarded: |answer: AppendAnswer| {
                let base = answer.positions.first().map(|p| p.offset);
                let applied_index = answer.tokens.first().map_or(0, |t| t.applied_index);
                base.map(|base_offset| Written { base_offset, applied_index, duplicate: answer.duplicate })
                    .ok_or(AppendError::ForwardedWithoutOffsets)
            },
            // An append with a producer sequence is never applied twice.
            retry_unanswered: producer.is_some(),
        };
        self.write_at_leader(topic, partition, hops, write).await
    }
}
