//! What a benchmark measures while it runs: records, bytes, errors and a latency
//! histogram (HDR, microseconds), shared by its tasks; a progress line per second; the
//! final report, as a table or one JSON object.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use cairn_cli::OutputFormat;

/// Latencies above this are recorded as this (an hour, in microseconds).
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Bytes in a reported megabyte (as Kafka's perf tools count).
const MB: f64 = 1024.0 * 1024.0;

pub struct Stats {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Every latency of the run.
    latency_us: Mutex<Histogram<u64>>,
    /// Latencies since the last progress line.
    interval_us: Mutex<Histogram<u64>>,
    started: Instant,
    cpu_started: cpu_time::ProcessTime,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant histogram bounds are valid")
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_us: Mutex::new(histogram()),
            interval_us: Mutex::new(histogram()),
            started: Instant::now(),
            cpu_started: cpu_time::ProcessTime::now(),
        }
    }

    /// One successful request (or delivery) of `records` records and `bytes` bytes.
    pub fn record(&self, records: u64, bytes: u64, latency: Duration) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.latency(latency);
    }

    /// One latency sample without counting records (end-to-end: per record).
    pub fn latency(&self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        for histogram in [&self.latency_us, &self.interval_us] {
            if let Ok(mut histogram) = histogram.lock() {
                histogram.saturating_record(us);
            }
        }
    }

    pub fn count(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Prints a progress line on stderr every second until `stop` fires.
    pub async fn progress(&self, label: &str, stop: tokio_util::sync::CancellationToken) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        let (mut records_before, mut bytes_before, mut at_before) = (0, 0, Instant::now());
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            let now = Instant::now();
            let (records, bytes) = (self.records.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed));
            let seconds = now.duration_since(at_before).as_secs_f64().max(1e-3);
            let (p50, p99) = match self.interval_us.lock() {
                Ok(mut interval) => {
                    let quantiles = (interval.value_at_quantile(0.5), interval.value_at_quantile(0.99));
                    interval.reset();
                    quantiles
                }
                Err(_) => (0, 0),
            };
            eprintln!(
                "[{label} {:>4.0}s] {:>10.0} records/s {:>8.1} MB/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}",
                now.duration_since(self.started).as_secs_f64(),
                (records - records_before) as f64 / seconds,
                (bytes - bytes_before) as f64 / MB / seconds,
                p50 as f64 / 1000.0,
                p99 as f64 / 1000.0,
                self.errors.load(Ordering::Relaxed),
            );
            (records_before, bytes_before, at_before) = (records, bytes, now);
        }
    }

    /// The figures of the run so far.
    pub fn report(&self, mode: &str) -> Report {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        let cpu = self.cpu_started.elapsed().as_secs_f64();
        let records = self.records.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let latency_ms = match self.latency_us.lock() {
            Ok(h) if !h.is_empty() => {
                let ms = |quantile: f64| h.value_at_quantile(quantile) as f64 / 1000.0;
                Latency {
                    p50: ms(0.5),
                    p90: ms(0.9),
                    p99: ms(0.99),
                    p999: ms(0.999),
                    max: h.max() as f64 / 1000.0,
                    mean: h.mean() / 1000.0,
                }
            }
            _ => Latency::default(),
        };
        Report {
            mode: mode.to_owned(),
            records,
            bytes,
            errors: self.errors.load(Ordering::Relaxed),
            duration_secs: seconds,
            records_per_sec: records as f64 / seconds,
            mb_per_sec: bytes as f64 / MB / seconds,
            latency_ms,
            client_cpu_percent: cpu / seconds * 100.0,
        }
    }
}

/// A run's progress line, printed every second by a background task until `finish`.
pub struct ProgressLine {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressLine {
    pub fn start(stats: &std::sync::Arc<Stats>, label: &'static str) -> ProgressLine {
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn({
            let (stats, stop) = (std::sync::Arc::clone(stats), stop.clone());
            async move { stats.progress(label, stop).await }
        });
        ProgressLine { stop, task }
    }

    pub async fn finish(self) {
        self.stop.cancel();
        // The line is best effort: a failed printer task does not fail the run.
        let _ = self.task.await;
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub duration_secs: f64,
    pub records_per_sec: f64,
    /// Megabytes (2^20 bytes) of record values per second.
    pub mb_per_sec: f64,
    pub latency_ms: Latency,
    /// CPU time of this client process over wall time (100 = one core busy).
    pub client_cpu_percent: f64,
}

impl Report {
    pub fn print(&self, output: OutputFormat, out: &mut impl Write) -> anyhow::Result<()> {
        match output {
            OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(self)?)?,
            OutputFormat::Table => {
                let l = &self.latency_ms;
                writeln!(
                    out,
                    "{}: {} records in {:.1} s, {} errors\n  {:.0} records/s, {:.2} MB/s\n  \
                     latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})\n  \
                     client CPU: {:.0}% of one core",
                    self.mode,
                    self.records,
                    self.duration_secs,
                    self.errors,
                    self.records_per_sec,
                    self.mb_per_sec,
                    l.p50,
                    l.p90,
                    l.p99,
                    l.p999,
                    l.max,
                    l.mean,
                    self.client_cpu_percent
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_and_quantiles() {
        let stats = Stats::new();
        for ms in 1..=100u64 {
            stats.record(10, 1000, Duration::from_millis(ms));
        }
        stats.error();
        let report = stats.report("produce");
        assert_eq!(report.records, 1000);
        assert_eq!(report.bytes, 100_000);
        assert_eq!(report.errors, 1);
        assert!((report.latency_ms.p50 - 50.0).abs() < 0.5, "{:?}", report.latency_ms);
        assert!((report.latency_ms.p99 - 99.0).abs() < 0.5, "{:?}", report.latency_ms);
        assert!((report.latency_ms.max - 100.0).abs() < 0.5, "{:?}", report.latency_ms);
        let mut json = Vec::new();
        report.print(OutputFormat::Json, &mut json).expect("print");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("one JSON object");
        for field in ["records_per_sec", "mb_per_sec", "records", "errors"] {
            assert!(value[field].is_number(), "{field} in {value}");
        }
        for field in ["p50", "p90", "p99", "p999", "max"] {
            assert!(value["latency_ms"][field].is_number(), "latency_ms.{field} in {value}");
        }
    }
}
