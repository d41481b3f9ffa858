//! A producer that batches on the client, as Kafka's does: concurrent `send` calls to one
//! partition are collected and sent as one idempotent append, while earlier appends of
//! that partition are in flight. Under load, batches fill by themselves; a lone record goes
//! out at once (or after `linger`, if set).
//!
//! Each partition has one sender task with up to `in_flight_max` appends in flight (at most
//! the batches a partition remembers per producer, so any of them can be retried without
//! being applied twice), the second and later only when full batches wait: under a
//! backlog. Their sequences are consecutive; when one fails, the task waits
//! for the others and sends the failed ones again one at a time, in sequence order (one
//! that overtook an earlier batch was refused as a gap and is now in order). After an
//! append fails for good having maybe been applied (an attempt's outcome was unknown), the
//! partition refuses further sends: its next sequence is unknown, so the producer must be
//! replaced. A definite refusal (a bad record, a limit) fails only the sends of that batch.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use cairn_types::{Offset, PRODUCER_BATCHES_REMEMBERED, PartitionId, Record};
use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use tokio::sync::{mpsc, oneshot};

use crate::idempotent_producer::{FailedAppend, append_until_answered, attempt_append, refused_for_good, route};
use crate::{CairnClient, ClientError, RetryPolicy, proto};

/// How a `BatchingProducer` groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Most records in one append (the server's `records_per_request_max` caps it too).
    pub batch_records_max: usize,
    /// Most bytes of record values in one append, roughly.
    pub batch_bytes_max: usize,
    /// How long a partition waits for more records before sending a batch that is not
    /// full. Zero sends at once.
    pub linger: Duration,
    /// `send` calls waiting per partition before the next one waits for room
    /// (backpressure).
    pub queue_sends_max: usize,
    /// Appends in flight per partition (Kafka's `max.in.flight.requests.per.connection`),
    /// from 1 to `PRODUCER_BATCHES_REMEMBERED`. Beyond the first, only full batches are
    /// sent while others are in flight.
    pub in_flight_max: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            batch_records_max: 1_000,
            batch_bytes_max: 1024 * 1024,
            linger: Duration::ZERO,
            queue_sends_max: 10_000,
            in_flight_max: PRODUCER_BATCHES_REMEMBERED,
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
    routes: Arc<Routes>,
}

impl BatchingProducer {
    /// A producer for `topic` with a fresh producer id from the cluster.
    pub async fn new(client: &CairnClient, topic: &str, config: BatchingConfig) -> Result<Self, ClientError> {
        let producer_id = client.init_producer().await?;
        let described = client.describe_topic(topic).await?;
        let partition_count = described.partitions.len() as u32;
        let queue_slots = config.queue_sends_max.max(1);
        let routes = Arc::new(Routes {
            bootstrap: client.clone(),
            topic: topic.to_owned(),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            pipelined: AtomicU64::new(0),
        });
        let mut leaders = routes.leaders_of(&described).await;
        let partitions = (0..partition_count)
            .map(|partition| {
                let (sender, receiver) = mpsc::channel(queue_slots);
                let batcher = PartitionBatcher {
                    route: leaders.remove(&partition).unwrap_or_else(|| client.clone()),
                    routes: Arc::clone(&routes),
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
        Ok(BatchingProducer { partitions, round_robin: AtomicU32::new(0), producer_id, routes })
    }

    /// Appends sent while another append of their partition was in flight (pipelined).
    pub fn pipelined_appends(&self) -> u64 {
        self.routes.pipelined.load(Ordering::Relaxed)
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

/// A batch on its way: its request (with its sequence) and the sends it answers.
struct Batch {
    request: proto::AppendRequest,
    record_count: u64,
    /// Each send's record count and answer, in order.
    answers: Vec<(u64, oneshot::Sender<Result<Offset, ClientError>>)>,
}

impl Batch {
    /// Answers every send: offsets follow densely from `base_offset`.
    fn acknowledge(self, base_offset: Offset) {
        let mut offset = base_offset;
        for (count, answer) in self.answers {
            let _ = answer.send(Ok(offset));
            offset += count;
        }
    }

    fn fail(self, error: &ClientError) {
        for (_, answer) in self.answers {
            let _ = answer.send(Err(error.clone()));
        }
    }
}

/// The first attempt of a pipelined append: the batch back with the outcome.
type Attempt = Pin<Box<dyn Future<Output = (Batch, Result<proto::AppendResponse, tonic::Status>)> + Send>>;

/// Connections to the nodes that lead the topic's partitions: appends go straight to their
/// partition's leader (as Kafka's producer sends to the leader broker), instead of through
/// the node the producer connected to, which would forward them: one hop and one copy less.
struct Routes {
    /// The node the producer connected to: failed batches are sent again through it (it
    /// forwards them to whichever node leads by then).
    bootstrap: CairnClient,
    topic: String,
    /// By node address.
    connections: tokio::sync::Mutex<HashMap<String, CairnClient>>,
    /// Appends sent while another of their partition was in flight.
    pipelined: AtomicU64,
}

/// How long connecting to a leader may take before its appends go through the bootstrap
/// node instead.
const LEADER_CONNECT_RETRY_MS: u64 = 500;

impl Routes {
    /// A client for each partition whose leader is known and reachable, as the bootstrap
    /// node sees them now. Partitions left out go through the bootstrap node.
    async fn leaders(&self) -> HashMap<PartitionId, CairnClient> {
        match self.bootstrap.describe_topic(&self.topic).await {
            Ok(topic) => self.leaders_of(&topic).await,
            Err(_) => HashMap::new(),
        }
    }

    /// The same for `topic` as already described.
    async fn leaders_of(&self, topic: &proto::TopicDescription) -> HashMap<PartitionId, CairnClient> {
        let Ok(status) = self.bootstrap.cluster_status().await else { return HashMap::new() };
        let addresses: HashMap<u64, String> =
            status.nodes.into_iter().map(|node| (node.node_id, node.address)).collect();
        let leader_address = |leader: Option<u64>| leader.and_then(|leader| addresses.get(&leader));
        // Connect to each new leader once, without holding the lock: an unreachable one
        // costs this call `LEADER_CONNECT_RETRY_MS`, not every partition it leads.
        let known: HashMap<String, CairnClient> = self.connections.lock().await.clone();
        let mut connected = HashMap::new();
        for partition in &topic.partitions {
            if let Some(address) = leader_address(partition.leader)
                && !known.contains_key(address)
                && !connected.contains_key(address)
            {
                let policy = RetryPolicy { retry_total_ms: LEADER_CONNECT_RETRY_MS, ..RetryPolicy::default() };
                connected.insert(address.clone(), CairnClient::connect_with(address, policy).await.ok());
            }
        }
        let mut connections = self.connections.lock().await;
        for (address, client) in connected {
            if let Some(client) = client {
                connections.entry(address).or_insert(client);
            }
        }
        topic
            .partitions
            .iter()
            .filter_map(|partition| {
                let client = connections.get(leader_address(partition.leader)?)?;
                Some((partition.partition, client.clone()))
            })
            .collect()
    }
}

/// Sends one partition's batches in sequence order, up to `in_flight_max` at a time.
struct PartitionBatcher {
    /// Where first attempts go: the partition's leader when known, else the bootstrap node.
    route: CairnClient,
    routes: Arc<Routes>,
    partition: PartitionId,
    producer_id: u64,
    next_sequence: u64,
    config: BatchingConfig,
    /// A send that did not fit the last batch: it starts the next one.
    carry: Option<PendingSend>,
}

impl PartitionBatcher {
    async fn run(mut self, mut queue: mpsc::Receiver<PendingSend>) {
        let in_flight_max = self.config.in_flight_max.clamp(1, PRODUCER_BATCHES_REMEMBERED);
        // First attempts, answered in the order they were sent.
        let mut in_flight: FuturesOrdered<Attempt> = FuturesOrdered::new();
        // False once every producer handle is gone: what is in flight still finishes.
        let mut open = true;
        while open || !in_flight.is_empty() {
            // With nothing in flight a batch goes out at once, however small. While appends
            // are in flight only a full batch joins them (the last one had to leave sends
            // behind, or a batch's worth of sends waits): many small appends cost the
            // cluster more per record than they gain in overlap.
            let full_batch_waiting = self.carry.is_some() || queue.len() >= self.config.batch_records_max;
            let room = in_flight.is_empty() || (in_flight.len() < in_flight_max && full_batch_waiting);
            tokio::select! {
                biased;
                Some((batch, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    let answered = match outcome {
                        Ok(response) => answer(batch, &response.positions),
                        Err(status) => self.recover(batch, status, &mut in_flight).await,
                    };
                    if let Err(error) = answered {
                        return self.stop(queue, in_flight, error).await;
                    }
                }
                first = next_send(&mut self.carry, &mut queue), if open && room => match first {
                    Some(first) => {
                        let batch = self.collect(first, &mut queue).await;
                        if !in_flight.is_empty() {
                            self.routes.pipelined.fetch_add(1, Ordering::Relaxed);
                        }
                        in_flight.push_back(first_attempt(self.route.clone(), self.seal(batch)));
                    }
                    None => open = false,
                },
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

    /// The sends as one idempotent append request, numbered with the next sequence.
    fn seal(&mut self, sends: Vec<PendingSend>) -> Batch {
        let record_count: usize = sends.iter().map(|pending| pending.records.len()).sum();
        let mut records = Vec::with_capacity(record_count);
        let mut answers = Vec::with_capacity(sends.len());
        for pending in sends {
            answers.push((pending.records.len() as u64, pending.answer));
            records.extend(pending.records.into_iter().map(proto::Record::from));
        }
        let request = proto::AppendRequest {
            topic: self.routes.topic.clone(),
            partition: Some(self.partition),
            records,
            producer_id: Some(self.producer_id),
            sequence: Some(self.next_sequence),
        };
        self.next_sequence += record_count as u64;
        Batch { request, record_count: record_count as u64, answers }
    }

    /// A first attempt failed. Later batches may have overtaken it (and been refused as a
    /// gap), or failed too: wait for every attempt in flight, then send the failed batches
    /// again one at a time, in sequence order, each until answered (Kafka's producer does
    /// the same). A batch refused for good (a bad record, a limit) was not applied, and
    /// neither was anything after it (a gap): later batches are renumbered without it, when
    /// their first attempts were refused too (a renumbered batch must not meet an attempt
    /// that may still be on its way).
    ///
    /// Returns an error when the partition's next sequence is no longer known.
    async fn recover(
        &mut self,
        failed: Batch,
        status: tonic::Status,
        in_flight: &mut FuturesOrdered<Attempt>,
    ) -> Result<(), ClientError> {
        let mut outcomes = vec![(failed, Err(status))];
        while let Some(outcome) = in_flight.next().await {
            outcomes.push(outcome);
        }
        // A sequence refusal says the leader answered; anything else may mean it changed.
        let leader_in_doubt = outcomes
            .iter()
            .any(|(_, outcome)| outcome.as_ref().is_err_and(|status| status.code() != tonic::Code::FailedPrecondition));
        // Records of batches refused for good so far: later sequences move down by this.
        let mut refused_records = 0;
        let mut outcomes = outcomes.into_iter();
        while let Some((mut batch, outcome)) = outcomes.next() {
            let result = match outcome {
                Ok(response) if refused_records == 0 => answer(batch, &response.positions),
                Ok(response) => {
                    // Applied after an earlier batch was refused: it cannot be, as its
                    // sequence was a gap. The partition and the producer disagree.
                    let error = ClientError::InvalidResponse(format!(
                        "sequence {} was applied after an earlier batch was refused",
                        batch.request.sequence.unwrap_or_default()
                    ));
                    drop(answer(batch, &response.positions));
                    Err(error)
                }
                Err(status) if refused_for_good(status.code()) => {
                    refused_records += batch.record_count;
                    batch.fail(&status.into());
                    Ok(())
                }
                Err(status) if refused_records > 0 && status.code() != tonic::Code::FailedPrecondition => {
                    // Renumbered, this batch could meet its first attempt, whose outcome
                    // is unknown (it may still be on its way), and be applied twice.
                    let error = ClientError::from(status);
                    batch.fail(&error);
                    Err(error)
                }
                Err(status) => {
                    // A sequence refusal applied nothing; any other failure may have.
                    let first_maybe_applied = status.code() != tonic::Code::FailedPrecondition;
                    if let Some(sequence) = batch.request.sequence.as_mut() {
                        *sequence -= refused_records;
                    }
                    match append_until_answered(&self.routes.bootstrap, batch.request.clone()).await {
                        Ok(answered) => answer(batch, &answered.positions),
                        Err(FailedAppend { error, maybe_applied: false }) if !first_maybe_applied => {
                            refused_records += batch.record_count;
                            batch.fail(&error);
                            Ok(())
                        }
                        Err(FailedAppend { error, .. }) => {
                            batch.fail(&error);
                            Err(error)
                        }
                    }
                }
            };
            if let Err(error) = result {
                for (batch, _) in outcomes {
                    batch.fail(&error);
                }
                return Err(error);
            }
        }
        self.next_sequence -= refused_records;
        if leader_in_doubt {
            // The leader may have changed (or died): look again where to send.
            let leader = self.routes.leaders().await.remove(&self.partition);
            self.route = leader.unwrap_or_else(|| self.routes.bootstrap.clone());
        }
        Ok(())
    }

    /// After an append failed having maybe been applied, the next sequence is unknown:
    /// fail whatever is in flight or waits, and refuse the rest.
    async fn stop(
        mut self,
        mut queue: mpsc::Receiver<PendingSend>,
        mut in_flight: FuturesOrdered<Attempt>,
        error: ClientError,
    ) {
        queue.close();
        while let Some((batch, outcome)) = in_flight.next().await {
            match outcome {
                Ok(response) => drop(answer(batch, &response.positions)),
                Err(_) => batch.fail(&error),
            }
        }
        if let Some(pending) = self.carry.take() {
            let _ = pending.answer.send(Err(error.clone()));
        }
        while let Some(pending) = queue.recv().await {
            let _ = pending.answer.send(Err(error.clone()));
        }
    }
}

/// The carried-over send, else the next one queued (`None` once every handle is gone).
async fn next_send(carry: &mut Option<PendingSend>, queue: &mut mpsc::Receiver<PendingSend>) -> Option<PendingSend> {
    match carry.take() {
        Some(first) => Some(first),
        None => queue.recv().await,
    }
}

/// The first attempt at `batch`, through `client`.
fn first_attempt(client: CairnClient, batch: Batch) -> Attempt {
    Box::pin(async move {
        let outcome = attempt_append(&client, batch.request.clone()).await;
        (batch, outcome)
    })
}

/// Answers the batch's sends from the append's answer.
fn answer(batch: Batch, positions: &[proto::RecordPosition]) -> Result<(), ClientError> {
    match positions.first() {
        Some(position) => {
            batch.acknowledge(position.offset);
            Ok(())
        }
        None => {
            let error = ClientError::InvalidResponse("append returned no positions".into());
            batch.fail(&error);
            Err(error)
        }
    }
}

/// Roughly what `records` take in a request: values, keys and headers.
fn encoded_bytes(records: &[Record]) -> usize {
    records.iter().map(Record::encoded_len).sum()
}
