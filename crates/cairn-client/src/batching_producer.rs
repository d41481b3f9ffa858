//! A producer that batches on the client, as Kafka's does: concurrent `send` calls to one
//! partition are collected and sent as one idempotent append, while the previous append of
//! that partition is in flight. Under load, batches fill by themselves; a lone record goes
//! out at once (or after `linger`, if set).
//!
//! Each partition has one sender task and at most one append in flight, so sequence
//! numbers reach the server in order and a retry (same records, same sequence) can never be
//! applied twice. After an append fails for good having maybe been applied (an attempt's
//! outcome was unknown), the partition refuses further sends: its next sequence is
//! unknown, so the producer must be replaced. A definite refusal (a bad record, a limit)
//! fails only the sends of that batch.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use cairn_types::{Offset, PartitionId, Record};
use tokio::sync::{mpsc, oneshot};

use crate::convert::record_to_proto;
use crate::idempotent_producer::{FailedAppend, append_until_answered, route};
use crate::{CairnClient, ClientError, proto};

/// How a `BatchingProducer` groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Most records in one append (the server's `records_per_request_max` caps it too).
    pub batch_records_max: usize,
    /// Most bytes of record values in one append, roughly.
    pub batch_bytes_max: usize,
    /// How long a partition waits for more records before sending a batch that is not full
    /// while nothing is in flight. Zero sends at once.
    pub linger: Duration,
    /// `send` calls waiting per partition before the next one waits for room
    /// (backpressure).
    pub queue_sends_max: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            batch_records_max: 1_000,
            batch_bytes_max: 1024 * 1024,
            linger: Duration::ZERO,
            queue_sends_max: 10_000,
        }
    }
}

/// Records of one `send` call, waiting for their partition's next batch.
struct PendingSend {
    records: Vec<Record>,
    answer: oneshot::Sender<Result<Offset, ClientError>>,
}

pub struct BatchingProducer {
    partitions: Vec<mpsc::Sender<PendingSend>>,
    round_robin: AtomicU32,
    producer_id: u64,
}

impl BatchingProducer {
    /// A producer for `topic` with a fresh producer id from the cluster.
    pub async fn new(client: &CairnClient, topic: &str, config: BatchingConfig) -> Result<Self, ClientError> {
        let producer_id = client.init_producer().await?;
        let partition_count = client.describe_topic(topic).await?.partitions.len() as u32;
        let queue_slots = config.queue_sends_max.max(1);
        let partitions = (0..partition_count)
            .map(|partition| {
                let (sender, receiver) = mpsc::channel(queue_slots);
                let batcher = PartitionBatcher {
                    client: client.clone(),
                    topic: topic.to_owned(),
                    partition,
                    producer_id,
                    next_sequence: 0,
                    config,
                    carry: None,
                };
                tokio::spawn(batcher.run(receiver));
                sender
            })
            .collect();
        Ok(BatchingProducer { partitions, round_robin: AtomicU32::new(0), producer_id })
    }

    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The partition a record goes to: `partition` if given, else by key, else round robin.
    pub fn partition_for(&self, partition: Option<PartitionId>, key: Option<&[u8]>) -> PartitionId {
        route(partition, key, self.partition_count(), &self.round_robin)
    }

    /// Appends `records` to `partition`, batched with other sends to it; resolves to the
    /// first record's offset (the others follow densely) once the batch is acknowledged.
    pub async fn send(&self, partition: PartitionId, records: Vec<Record>) -> Result<Offset, ClientError> {
        let queue = self.partitions.get(partition as usize).ok_or_else(|| ClientError::Status {
            code: tonic::Code::NotFound,
            message: format!(
                "the topic has partitions 0..{}; partition {partition} does not exist",
                self.partitions.len()
            ),
        })?;
        if records.is_empty() {
            return Err(ClientError::Status {
                code: tonic::Code::InvalidArgument,
                message: "a send needs at least one record".into(),
            });
        }
        let (answer, answered) = oneshot::channel();
        queue.send(PendingSend { records, answer }).await.map_err(|_| stopped(partition))?;
        answered.await.map_err(|_| stopped(partition))?
    }
}

fn stopped(partition: PartitionId) -> ClientError {
    ClientError::Status {
        code: tonic::Code::FailedPrecondition,
        message: format!("partition {partition}'s sender stopped after a failed append; create a new producer"),
    }
}

/// Sends one partition's batches, one at a time, in order.
struct PartitionBatcher {
    client: CairnClient,
    topic: String,
    partition: PartitionId,
    producer_id: u64,
    next_sequence: u64,
    config: BatchingConfig,
    /// A send that did not fit the last batch: it starts the next one.
    carry: Option<PendingSend>,
}

impl PartitionBatcher {
    async fn run(mut self, mut queue: mpsc::Receiver<PendingSend>) {
        loop {
            let first = match self.carry.take() {
                Some(first) => first,
                None => match queue.recv().await {
                    Some(first) => first,
                    None => return,
                },
            };
            let batch = self.collect(first, &mut queue).await;
            if let Err(FailedAppend { error, maybe_applied: true }) = self.send(batch).await {
                // The batch may have been applied: the next sequence is unknown. Fail
                // whatever waits and refuse the rest.
                queue.close();
                if let Some(pending) = self.carry.take() {
                    let _ = pending.answer.send(Err(error.clone()));
                }
                while let Some(pending) = queue.recv().await {
                    let _ = pending.answer.send(Err(error.clone()));
                }
                return;
            }
        }
    }

    /// `first` and whatever else is queued, within the batch limits (a send that would
    /// overflow them waits for the next batch); waits up to `linger` for more when the
    /// batch is not full. A single send larger than the limits goes alone.
    async fn collect(&mut self, first: PendingSend, queue: &mut mpsc::Receiver<PendingSend>) -> Vec<PendingSend> {
        let mut records = first.records.len();
        let mut bytes = encoded_bytes(&first.records);
        let mut batch = vec![first];
        let linger_until = tokio::time::Instant::now() + self.config.linger;
        while records < self.config.batch_records_max && bytes < self.config.batch_bytes_max {
            let next = match queue.try_recv() {
                Ok(next) => next,
                Err(_) if self.config.linger.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(linger_until, queue.recv()).await {
                    Ok(Some(next)) => next,
                    Ok(None) | Err(_) => break,
                },
            };
            let next_bytes = encoded_bytes(&next.records);
            if records + next.records.len() > self.config.batch_records_max
                || bytes + next_bytes > self.config.batch_bytes_max
            {
                self.carry = Some(next);
                break;
            }
            records += next.records.len();
            bytes += next_bytes;
            batch.push(next);
        }
        batch
    }

    /// One idempotent append of the whole batch, retried until answered; answers every send.
    async fn send(&mut self, batch: Vec<PendingSend>) -> Result<(), FailedAppend> {
        let record_count: usize = batch.iter().map(|pending| pending.records.len()).sum();
        let mut records = Vec::with_capacity(record_count);
        let mut answers = Vec::with_capacity(batch.len());
        for pending in batch {
            answers.push((pending.records.len() as u64, pending.answer));
            records.extend(pending.records.into_iter().map(record_to_proto));
        }
        let request = proto::AppendRequest {
            topic: self.topic.clone(),
            partition: Some(self.partition),
            records,
            producer_id: Some(self.producer_id),
            sequence: Some(self.next_sequence),
        };
        let result = append_until_answered(&self.client, request).await.and_then(|answered| {
            answered.positions.first().map(|position| position.offset).ok_or_else(|| FailedAppend {
                error: ClientError::InvalidResponse("append returned no positions".into()),
                maybe_applied: true,
            })
        });
        match result {
            Ok(base_offset) => {
                self.next_sequence += record_count as u64;
                let mut offset = base_offset;
                for (count, answer) in answers {
                    let _ = answer.send(Ok(offset));
                    offset += count;
                }
                Ok(())
            }
            Err(failed) => {
                for (_, answer) in answers {
                    let _ = answer.send(Err(failed.error.clone()));
                }
                Err(failed)
            }
        }
    }
}

/// Roughly what `records` take in a request: values, keys and headers.
fn encoded_bytes(records: &[Record]) -> usize {
    records.iter().map(Record::encoded_len).sum()
}
