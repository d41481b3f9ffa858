//! `cairn-bench e2e`: produce and consume at once; the latency measured is from the moment
//! an append was due to the moment a subscriber received the record.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use cairn_client::{CairnClient, StartPosition};
use cairn_types::Record;
use futures::StreamExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::{ProgressLine, Report, Stats};
use crate::{TopicArgs, ensure_topic};

/// How long consumers wait for the last records after the producers stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Produce and subscribe together; end-to-end latency per record.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eBench {
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Bytes per record value (at least 16: a marker and the send time travel in it).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per append request.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Append requests in flight.
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Records per second in all (default: closed loop).
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to produce, e.g. 30s.
    #[arg(long, default_value = "30s")]
    pub duration: humantime::Duration,
}

impl E2eBench {
    pub async fn run(&self, server: &str) -> anyhow::Result<Report> {
        anyhow::ensure!(self.record_size >= 16, "--record-size must be at least 16 for e2e");
        anyhow::ensure!(self.batch > 0 && self.in_flight > 0, "--batch and --in-flight must be at least 1");
        let partitions = ensure_topic(server, &self.topic).await?;
        let client = CairnClient::connect(server).await?;
        let described = client.describe_topic(&self.topic.topic).await?;
        // Delivery statistics: records counted as received, latency per record.
        let delivered = Arc::new(Stats::new());
        let base = Instant::now();
        let stop = CancellationToken::new();
        let progress = ProgressLine::start(&delivered, "e2e");
        let mut consumers = Vec::new();
        for partition in &described.partitions {
            let consumer = CairnClient::connect(server).await?;
            let start = StartPosition::Offset(partition.high_watermark);
            let stream = consumer.subscribe(&self.topic.topic, partition.partition, start);
            let (stats, stop) = (Arc::clone(&delivered), stop.clone());
            consumers.push(tokio::spawn(async move {
                let mut stream = Box::pin(stream);
                loop {
                    let batch = tokio::select! {
                        batch = stream.next() => batch,
                        () = stop.cancelled() => return,
                    };
                    let Some(Ok(records)) = batch else { return };
                    let now = base.elapsed();
                    for record in records {
                        // Records of other writers to this topic carry no send time.
                        let Some(sent) = send_time(&record.value) else {
                            continue;
                        };
                        stats.record(1, record.value.len() as u64, now.saturating_sub(sent));
                    }
                }
            }));
        }

        let produced = Arc::new(Stats::new());
        let deadline = Instant::now() + Duration::from(self.duration);
        let interval = self.rate.map(|rate| Duration::from_secs_f64(self.batch as f64 / rate.max(1) as f64));
        let next_append = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = Instant::now();
        let mut producers = Vec::new();
        for _ in 0..self.in_flight {
            let (client, produced, next_append) = (client.clone(), Arc::clone(&produced), Arc::clone(&next_append));
            let (topic, batch, record_size) = (self.topic.topic.clone(), self.batch, self.record_size);
            producers.push(tokio::spawn(async move {
                loop {
                    let n = next_append.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let due = interval.map_or_else(Instant::now, |interval| started + interval.mul_f64(n as f64));
                    if due >= deadline || (interval.is_none() && Instant::now() >= deadline) {
                        return;
                    }
                    tokio::time::sleep_until(due).await;
                    let sent = due.duration_since(base).as_nanos() as u64;
                    let records = (0..batch).map(|_| stamped(sent, record_size)).collect();
                    let partition = (n % u64::from(partitions)) as u32;
                    match client.append(&topic, Some(partition), records).await {
                        Ok(_) => produced.count(batch as u64, (batch * record_size) as u64),
                        Err(_) => produced.error(),
                    }
                }
            }));
        }
        for producer in producers {
            producer.await?;
        }
        let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
        while delivered.records() < produced.records() && Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        for consumer in consumers {
            consumer.await?;
        }
        progress.finish().await;
        let mut report = delivered.report("e2e");
        report.errors = produced.report("produce").errors;
        if delivered.records() < produced.records() {
            eprintln!(
                "warning: {} of {} acknowledged records were not delivered within {} s",
                produced.records() - delivered.records(),
                produced.records(),
                DRAIN_TIMEOUT.as_secs()
            );
        }
        Ok(report)
    }
}

/// Marks the values this benchmark writes, so that other records in the topic are not
/// taken for send times.
const STAMP_MARKER: &[u8; 8] = b"cairn-e2";

/// A record whose value is the marker then `sent` (nanoseconds since the run's base instant).
fn stamped(sent: u64, record_size: usize) -> Record {
    let mut value = BytesMut::with_capacity(record_size);
    value.put_slice(STAMP_MARKER);
    value.put_u64_le(sent);
    value.resize(record_size, b'e');
    Record { key: None, headers: vec![], value: Bytes::from(value) }
}

/// The send time in a value `stamped` made.
fn send_time(value: &[u8]) -> Option<Duration> {
    let stamp = value.strip_prefix(STAMP_MARKER)?.get(..8)?;
    Some(Duration::from_nanos(u64::from_le_bytes(stamp.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stamped_values_carry_a_send_time() {
        let record = stamped(123_456, 64);
        assert_eq!(record.value.len(), 64);
        assert_eq!(send_time(&record.value), Some(Duration::from_nanos(123_456)));
        assert_eq!(send_time(b"some other record of 24 bytes"), None);
        assert_eq!(send_time(b"cairn-e2"), None);
    }
}
