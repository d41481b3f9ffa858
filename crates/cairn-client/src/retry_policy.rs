use std::future::Future;
use std::time::Duration;

use cairn_types::retry_delays;
use tokio::time::Instant;

/// How long idempotent calls are retried while the server answers `UNAVAILABLE` (no
/// leader yet, a node restarting). Appends are never retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up once this much time has passed since the first attempt.
    pub retry_total_ms: u64,
    /// The wait before the first retry; doubled after each one.
    pub backoff_initial_ms: u64,
    /// Where the doubling stops. Each wait has a random part added, up to as much again
    /// (`cairn_types::retry_delays`).
    pub backoff_max_ms: u64,
}

pub const RETRY_TOTAL_MS_DEFAULT: u64 = 5_000;
pub const BACKOFF_INITIAL_MS_DEFAULT: u64 = 20;
pub const BACKOFF_MAX_MS_DEFAULT: u64 = 200;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_total_ms: RETRY_TOTAL_MS_DEFAULT,
            backoff_initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
            backoff_max_ms: BACKOFF_MAX_MS_DEFAULT,
        }
    }
}

/// The last attempt's result, and whether an earlier attempt ended ambiguously (the
/// server may have applied a call whose answer was lost).
pub(crate) struct RetryOutcome<T> {
    pub result: Result<T, tonic::Status>,
    pub retried: bool,
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy { retry_total_ms: 0, backoff_initial_ms: 0, backoff_max_ms: 0 }
    }

    /// Runs `call` until it returns something other than `UNAVAILABLE` or time is up.
    pub(crate) async fn run<T, F, Fut>(&self, mut call: F) -> RetryOutcome<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + Duration::from_millis(self.retry_total_ms);
        let mut delays =
            retry_delays(Duration::from_millis(self.backoff_initial_ms), Duration::from_millis(self.backoff_max_ms));
        let mut retried = false;
        loop {
            let result = call().await;
            let now = Instant::now();
            match result {
                Err(status) if status.code() == tonic::Code::Unavailable && now < deadline => {
                    let wait = delays.next().unwrap_or(Duration::from_millis(self.backoff_max_ms));
                    tokio::time::sleep(wait.min(deadline - now)).await;
                    retried = true;
                }
                result => return RetryOutcome { result, retried },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy { retry_total_ms: 2_000, backoff_initial_ms: 1, backoff_max_ms: 2 }
    }

    #[tokio::test]
    async fn retries_unavailable_until_success() {
        let attempts = AtomicU32::new(0);
        let outcome = quick()
            .run(|| async {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(tonic::Status::unavailable("no leader"))
                } else {
                    Ok(42)
                }
            })
            .await;
        assert_eq!(outcome.result.ok(), Some(42));
        assert!(outcome.retried);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let attempts = AtomicU32::new(0);
        let outcome: RetryOutcome<()> = quick()
            .run(|| async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(tonic::Status::not_found("no such topic"))
            })
            .await;
        assert_eq!(outcome.result.err().map(|s| s.code()), Some(tonic::Code::NotFound));
        assert!(!outcome.retried);
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_the_deadline() {
        let policy = RetryPolicy { retry_total_ms: 20, backoff_initial_ms: 1, backoff_max_ms: 5 };
        let outcome: RetryOutcome<()> = policy.run(|| async { Err(tonic::Status::unavailable("down")) }).await;
        assert_eq!(outcome.result.err().map(|s| s.code()), Some(tonic::Code::Unavailable));
    }

    #[tokio::test]
    async fn none_policy_makes_one_attempt() {
        let attempts = AtomicU32::new(0);
        let outcome: RetryOutcome<()> = RetryPolicy::none()
            .run(|| async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(tonic::Status::unavailable("down"))
            })
            .await;
        assert!(outcome.result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }
}
