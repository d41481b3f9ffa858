use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cairn_types::partitioner::partition_for_key;
use cairn_types::{Offset, PartitionId, Record, retry_delays};
use tokio::time::Instant;

use crate::{CairnClient, ClientError, proto};

/// How long one append keeps retrying (leader elections, restarts) before giving up.
pub const APPEND_RETRY_TOTAL: Duration = Duration::from_secs(30);
/// How long one attempt waits for its answer (the server itself answers within ~10 s,
/// waiting out an election).
const APPEND_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Appends that are never duplicated, however often they are retried.
///
/// The producer gets a cluster-unique id from the controller and numbers its records per
/// partition. Every append is retried with the same sequence until the cluster answers; a
/// retry of a batch that was applied before the answer got lost returns the original
/// offsets and writes nothing. Keys are partitioned on the client (Kafka's murmur2, the same
/// as the server's), so that each request targets one partition.
pub struct IdempotentProducer {
    client: CairnClient,
    topic: String,
    producer_id: u64,
    partition_count: u32,
    next_sequence: HashMap<PartitionId, u64>,
    round_robin: AtomicU32,
}

/// Where an idempotent append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedBatch {
    pub partition: PartitionId,
    pub base_offset: Offset,
    /// Whether the cluster had applied this batch already (a retry after a lost answer).
    pub duplicate: bool,
    /// Attempts it took (1 when the first one was answered).
    pub attempts: u32,
    /// The partition's Raft log index that applied the batch: pass it as
    /// `Consistency::ReadYourWrites` to read this append back from any replica.
    pub applied_index: u64,
}

impl IdempotentProducer {
    pub async fn new(client: &CairnClient, topic: &str) -> Result<IdempotentProducer, ClientError> {
        let producer_id = client.init_producer().await?;
        let partition_count = client.describe_topic(topic).await?.partitions.len() as u32;
        Ok(IdempotentProducer {
            client: client.clone(),
            topic: topic.to_owned(),
            producer_id,
            partition_count,
            next_sequence: HashMap::new(),
            round_robin: AtomicU32::new(0),
        })
    }

    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// The partition a record goes to: `partition` if given, else by key, else round robin.
    pub fn partition_for(&self, partition: Option<PartitionId>, key: Option<&[u8]>) -> PartitionId {
        route(partition, key, self.partition_count, &self.round_robin)
    }

    /// Appends `records` to `partition` as one batch, retrying until answered. After an
    /// error, retry with the same records: the sequence only advances on success.
    pub async fn append(&mut self, partition: PartitionId, records: Vec<Record>) -> Result<ProducedBatch, ClientError> {
        let sequence = self.next_sequence.get(&partition).copied().unwrap_or(0);
        let record_count = records.len() as u64;
        let request = proto::AppendRequest {
            topic: self.topic.clone(),
            partition: Some(partition),
            records: records.into_iter().map(proto::Record::from).collect(),
            producer_id: Some(self.producer_id),
            sequence: Some(sequence),
        };
        let response = append_until_answered(&self.client, request).await.map_err(|failed| failed.error)?;
        let base_offset = response
            .positions
            .first()
            .map(|p| p.offset)
            .ok_or_else(|| ClientError::InvalidResponse("append returned no positions".into()))?;
        let applied_index =
            response.tokens.iter().find(|token| token.partition == partition).map_or(0, |token| token.applied_index);
        self.next_sequence.insert(partition, sequence + record_count);
        Ok(ProducedBatch {
            partition,
            base_offset,
            duplicate: response.duplicate,
            attempts: response.attempts,
            applied_index,
        })
    }
}

/// Where a record goes: `partition` if given, else by key (Kafka's murmur2, as the
/// server), else the next partition in round-robin order.
pub(crate) fn route(
    partition: Option<PartitionId>,
    key: Option<&[u8]>,
    partition_count: u32,
    round_robin: &AtomicU32,
) -> PartitionId {
    let count = partition_count.max(1);
    match (partition, key) {
        (Some(partition), _) => partition,
        (None, Some(key)) => partition_for_key(key, count),
        (None, None) => round_robin.fetch_add(1, Ordering::Relaxed) % count,
    }
}

/// An append's answer and the attempts it took.
pub(crate) struct AnsweredAppend {
    pub positions: Vec<proto::RecordPosition>,
    pub tokens: Vec<proto::PartitionToken>,
    pub duplicate: bool,
    pub attempts: u32,
}

/// A failed append: the error, and whether some attempt may have been applied (an attempt
/// failed in a way that leaves its outcome unknown) or the sequence was refused: either
/// way the producer's next sequence for the partition is no longer known.
pub(crate) struct FailedAppend {
    pub error: ClientError,
    pub maybe_applied: bool,
}

/// One append attempt. One that gets no answer within `APPEND_ATTEMPT_TIMEOUT` fails with
/// `DEADLINE_EXCEEDED`: its outcome is unknown.
pub(crate) async fn attempt_append(
    client: &CairnClient,
    request: proto::AppendRequest,
) -> Result<proto::AppendResponse, tonic::Status> {
    match tokio::time::timeout(APPEND_ATTEMPT_TIMEOUT, client.proto_client().append(request)).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer to the append in time")),
    }
}

/// Sends `request` (which must carry a producer id and sequence, so that a retry is never
/// applied twice) until the cluster answers, for up to `APPEND_RETRY_TOTAL`.
pub(crate) async fn append_until_answered(
    client: &CairnClient,
    request: proto::AppendRequest,
) -> Result<AnsweredAppend, FailedAppend> {
    let deadline = Instant::now() + APPEND_RETRY_TOTAL;
    // A short ceiling: a failover takes well under a second, and a long wait between
    // attempts would add up to its length again.
    const BACKOFF_CEILING: Duration = Duration::from_millis(200);
    let mut delays = retry_delays(Duration::from_millis(20), BACKOFF_CEILING);
    let mut wait = delays.next().unwrap_or(BACKOFF_CEILING);
    let mut attempts = 0;
    let mut maybe_applied = false;
    loop {
        attempts += 1;
        match attempt_append(client, request.clone()).await {
            Ok(response) => {
                return Ok(AnsweredAppend {
                    positions: response.positions,
                    tokens: response.tokens,
                    duplicate: response.duplicate,
                    attempts,
                });
            }
            Err(status) if retryable(status.code()) && Instant::now() + wait < deadline => {
                maybe_applied = true;
                tokio::time::sleep(wait).await;
                wait = delays.next().unwrap_or(BACKOFF_CEILING);
            }
            Err(status) => {
                // A sequence refusal means the producer and the partition disagree: treat
                // the sequence as unknown too, as after any failure but a refusal for good.
                maybe_applied |= !refused_for_good(status.code());
                return Err(FailedAppend { error: status.into(), maybe_applied });
            }
        }
    }
}

/// Failures that say the append was not applied, and would not be if sent again: the
/// server refuses a bad record, a limit or an unknown topic before proposing anything. A
/// sequence refusal is not one (the producer and the partition disagree, or a pipelined
/// batch overtook an earlier one), nor is any other code: `INTERNAL`, say, may come from a
/// stream reset after the append was applied.
pub(crate) fn refused_for_good(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::ResourceExhausted
            | tonic::Code::NotFound
            | tonic::Code::OutOfRange
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::Unimplemented
    )
}

/// Failures after which the append may or may not have been applied, or certainly was not:
/// with a sequence number, retrying is safe either way.
fn retryable(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
    )
}
