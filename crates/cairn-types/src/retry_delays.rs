//! The one backoff of every retry loop in Cairn: the waits between attempts double from a
//! first wait up to a ceiling, each with a random part added (up to as much again), so
//! that callers that failed together do not retry together. Built on `backon`; the loops
//! keep their own deadlines and decide what is worth retrying.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The waits before each retry: `first`, then doubling up to `ceiling`, each with a random
/// part of up to as much again (so a wait is below twice its step). Never ends.
pub fn retry_delays(first: Duration, ceiling: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(ceiling.max(first))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps double to the ceiling; every wait lies within [step, 2 × step) (give or take
    /// backon's `f32` arithmetic); jitter spreads the waits of callers that failed together.
    #[test]
    fn waits_double_to_a_ceiling_with_jitter() {
        let (first, ceiling) = (Duration::from_millis(20), Duration::from_millis(200));
        let steps = [20, 40, 80, 160, 200, 200, 200, 200].map(Duration::from_millis);
        let runs: Vec<Vec<Duration>> =
            (0..20).map(|_| retry_delays(first, ceiling).take(steps.len()).collect()).collect();
        for waits in &runs {
            for (wait, step) in waits.iter().zip(steps) {
                let slack = Duration::from_micros(10);
                assert!(*wait + slack >= step && *wait < step * 2 + slack, "wait {wait:?} for step {step:?}");
            }
        }
        assert!(runs.windows(2).any(|pair| pair[0] != pair[1]), "jitter spreads the waits");
    }

    #[test]
    fn it_never_runs_out() {
        assert_eq!(retry_delays(Duration::from_millis(1), Duration::from_millis(2)).take(1_000).count(), 1_000);
    }
}
