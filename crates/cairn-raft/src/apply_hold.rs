//! A test hook that holds partition applies back.
//!
//! With `CAIRN_TEST_APPLY_DELAY_MS=N` in a node's environment, every partition state machine
//! of that node waits `N` ms before each apply. On loopback a follower applies a committed
//! entry within a millisecond, so a read that merely serves what the replica has applied
//! (`LOCAL`) looks linearizable; held back this way, only a read that really waits for a
//! read index sees the latest acknowledged write. Never set in production: it only slows
//! applies down, it changes nothing they do.

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that sets the delay, in milliseconds.
pub const APPLY_DELAY_ENV: &str = "CAIRN_TEST_APPLY_DELAY_MS";

/// How long each apply waits first; `None` (no delay) unless the hook is set.
pub(crate) fn apply_delay() -> Option<Duration> {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    *DELAY.get_or_init(|| {
        let delay = std::env::var(APPLY_DELAY_ENV).ok()?.parse().ok().map(Duration::from_millis)?;
        tracing::warn!(?delay, "test hook {APPLY_DELAY_ENV} set: partition applies are held back");
        Some(delay)
    })
}
