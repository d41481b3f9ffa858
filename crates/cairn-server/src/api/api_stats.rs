//! What the api counts for `/metrics`: client appends (duration, records, bytes) and reads
//! (records, bytes), as plain atomics that `metrics/` encodes when scraped. Counted where a
//! client's request enters the cluster (`hops == 0`), so a forwarded request counts once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cairn_types::LatencyHistogram;

use crate::api::{AppendAnswer, AppendError, AppendRequest, CairnApi, ReadBatch, ReadError, ReadRequest};

#[derive(Debug, Default)]
pub struct ApiStats {
    /// Client appends, from the request to its answer (forwarding and retries included).
    pub append_latency: LatencyHistogram,
    /// Appends answered with an error.
    pub appends_failed: AtomicU64,
    pub records_appended: AtomicU64,
    /// The appended records' size in the stored batch format (`Record::encoded_len`).
    pub bytes_appended: AtomicU64,
    pub records_read: AtomicU64,
    /// Keys, header and values of the records read.
    pub bytes_read: AtomicU64,
}

impl CairnApi {
    /// What the api counted so far.
    pub fn stats(&self) -> &ApiStats {
        &self.stats
    }

    /// Subscriptions this node serves or relays now.
    pub fn subscriptions_active(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Appends `request` (see `append_unmetered`), counted when it comes from a client.
    pub async fn append(&self, request: AppendRequest, hops: u32) -> Result<AppendAnswer, AppendError> {
        if hops > 0 {
            return self.append_unmetered(request, hops).await;
        }
        let started = Instant::now();
        let records = request.records.len() as u64;
        let bytes: usize = request.records.iter().map(cairn_types::Record::encoded_len).sum();
        let answer = self.append_unmetered(request, hops).await;
        self.stats.append_latency.observe(started.elapsed());
        match &answer {
            Ok(_) => {
                self.stats.records_appended.fetch_add(records, Ordering::Relaxed);
                self.stats.bytes_appended.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.appends_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        answer
    }

    /// Reads (see `read_unmetered`), counted when it comes from a client.
    pub async fn read(&self, request: ReadRequest, hops: u32) -> Result<ReadBatch, ReadError> {
        let answer = self.read_unmetered(request, hops).await;
        if hops == 0
            && let Ok(batch) = &answer
        {
            let bytes: usize = batch
                .records
                .iter()
                .map(|record| {
                    let headers: usize = record.headers.iter().map(|(key, value)| key.len() + value.len()).sum();
                    record.key.as_ref().map_or(0, |key| key.len()) + headers + record.value.len()
                })
                .sum();
            self.stats.records_read.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            self.stats.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        answer
    }
}
