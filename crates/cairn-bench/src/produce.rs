//! `cairn-bench produce`: sends through the public client's `BatchingProducer` (idempotent,
//! batched per partition on the client, as Kafka's producer does), closed loop (each of
//! `--in-flight` slots sends its next `--batch` records when the last ones are
//! acknowledged) or open loop (`--rate`: sends are due on a fixed schedule, and latency
//! counts from when a send was due, so a stalled server cannot hide its stall: no
//! coordinated omission). `--direct` sends one append request per send instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{BatchingConfig, BatchingProducer, CairnClient};
use cairn_types::Record;
use tokio::time::Instant;

use crate::stats::{ProgressLine, Report, Stats};
use crate::{TopicArgs, ensure_topic};

/// Pause after a failed send.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Append load against a topic.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceBench {
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per send.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Sends awaiting acknowledgement per producer.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// One append request per send, without batching on the client (and without
    /// idempotence): measures the server's cost per request.
    #[arg(long)]
    pub direct: bool,
    /// Appends the producer keeps in flight per partition (1 to 5, as Kafka's
    /// `max.in.flight.requests.per.connection`); beyond the first, only full batches.
    #[arg(long, default_value_t = cairn_types::PRODUCER_BATCHES_REMEMBERED)]
    pub partition_in_flight: usize,
    /// How long the producer waits to fill a batch that is not full.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    /// How long to run, e.g. 30s or 2m.
    #[arg(long, default_value = "30s")]
    pub duration: humantime::Duration,
    /// Open loop: this many records per second in all (default: closed loop, as fast as
    /// the cluster answers).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Producers, each with its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
}

/// Record values: distinct bytes, so nothing downstream can shortcut on repeated content.
pub fn batch_of(records: usize, record_size: usize, seed: u64) -> Vec<Record> {
    (0..records as u64)
        .map(|n| {
            let mut state = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let value: Vec<u8> = (0..record_size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            Record { key: None, headers: vec![], value: Bytes::from(value) }
        })
        .collect()
}

/// How the bench's sends reach the cluster.
enum Sender {
    Batching(BatchingProducer),
    Direct(CairnClient, String),
}

impl Sender {
    async fn send(&self, partition: u32, records: Vec<Record>) -> Result<(), cairn_client::ClientError> {
        match self {
            Sender::Batching(producer) => producer.send(partition, records).await.map(drop),
            Sender::Direct(client, topic) => client.append(topic, Some(partition), records).await.map(drop),
        }
    }
}

impl ProduceBench {
    pub async fn run(&self, server: &str) -> anyhow::Result<Report> {
        anyhow::ensure!(
            self.batch > 0 && self.in_flight > 0 && self.producers > 0,
            "--batch, --in-flight and --producers must be at least 1"
        );
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate > 0, "--rate must be at least 1 record per second");
        }
        let partitions = ensure_topic(server, &self.topic).await?;
        // Connect and set up every producer before the clock starts.
        anyhow::ensure!(
            (1..=cairn_types::PRODUCER_BATCHES_REMEMBERED).contains(&self.partition_in_flight),
            "--partition-in-flight must be from 1 to {}",
            cairn_types::PRODUCER_BATCHES_REMEMBERED
        );
        let batching = BatchingConfig {
            linger: Duration::from_millis(self.linger_ms),
            in_flight_max: self.partition_in_flight,
            ..BatchingConfig::default()
        };
        let mut senders = Vec::new();
        for _ in 0..self.producers {
            let client = CairnClient::connect(server).await?;
            senders.push(Arc::new(if self.direct {
                Sender::Direct(client, self.topic.topic.clone())
            } else {
                Sender::Batching(BatchingProducer::new(&client, &self.topic.topic, batching).await?)
            }));
        }
        let stats = Arc::new(Stats::new());
        let progress = ProgressLine::start(&stats, "produce");
        let started = Instant::now();
        let deadline = started + Duration::from(self.duration);
        // Open loop: each producer's appends are due every `interval`.
        let interval = self.rate.map(|rate| {
            let per_producer = rate as f64 / self.producers as f64;
            Duration::from_secs_f64(self.batch as f64 / per_producer)
        });
        let mut tasks = Vec::new();
        for (producer, sender) in senders.into_iter().enumerate() {
            let records = batch_of(self.batch, self.record_size, producer as u64);
            let bytes = (self.batch * self.record_size) as u64;
            let next_append = Arc::new(AtomicU64::new(0));
            for _ in 0..self.in_flight {
                let (sender, records, stats) = (Arc::clone(&sender), records.clone(), Arc::clone(&stats));
                let next_append = Arc::clone(&next_append);
                tasks.push(tokio::spawn(async move {
                    loop {
                        let n = next_append.fetch_add(1, Ordering::Relaxed);
                        let due = match interval {
                            Some(interval) => started + interval.mul_f64(n as f64),
                            None => Instant::now(),
                        };
                        // Open loop: every send due before the deadline is made and timed,
                        // however late (no coordinated omission at the end either).
                        if due >= deadline || (interval.is_none() && Instant::now() >= deadline) {
                            return;
                        }
                        tokio::time::sleep_until(due).await;
                        // Spread appends over the partitions, producers starting apart.
                        let partition = ((n + producer as u64) % u64::from(partitions)) as u32;
                        match sender.send(partition, records.clone()).await {
                            Ok(()) => stats.record(records.len() as u64, bytes, due.elapsed()),
                            Err(_) => {
                                stats.error();
                                // A failing cluster (or a stopped producer) must not turn
                                // the loop into a busy spin.
                                tokio::time::sleep(ERROR_BACKOFF).await;
                            }
                        }
                    }
                }));
            }
        }
        for task in tasks {
            task.await?;
        }
        progress.finish().await;
        Ok(stats.report("produce"))
    }
}
