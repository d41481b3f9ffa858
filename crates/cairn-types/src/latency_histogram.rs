//! A lock-free latency histogram with fixed buckets, for the hot paths of the lower crates
//! (WAL fsync, apply, appends). It only counts: `cairn-server` encodes it as a Prometheus
//! histogram when `/metrics` is scraped, so none of these crates knows Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 50 µs to 10 s, about 2.5x apart.
pub const LATENCY_BUCKETS_SECONDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts of observed durations per bucket (one more for those past the last bound), their
/// sum and count. Every method takes `&self`; observations are relaxed atomic adds.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A histogram's content at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations above the previous bound and at or below
    /// this one)`: per bucket, not cumulative (as `prometheus-client` takes them); the last
    /// bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket =
            LATENCY_BUCKETS_SECONDS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The buckets, sum and count (read one after the other: a scrape during an
    /// observation may see it in some and not yet in others).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets = self
            .buckets
            .iter()
            .zip(LATENCY_BUCKETS_SECONDS.iter().copied().chain([f64::INFINITY]))
            .map(|(count, bound)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(10));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.buckets.len(), LATENCY_BUCKETS_SECONDS.len() + 1);
        assert_eq!(snapshot.buckets[0], (0.000_05, 1));
        let at_5ms = snapshot.buckets.iter().find(|(bound, _)| *bound == 0.005).expect("5 ms bucket");
        assert_eq!(at_5ms.1, 1);
        assert_eq!(snapshot.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(snapshot.buckets.iter().map(|(_, count)| count).sum::<u64>(), 3);
        assert!((snapshot.sum_seconds - 60.003_01).abs() < 1e-6, "{}", snapshot.sum_seconds);
    }
}
