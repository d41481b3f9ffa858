//! Slow-disk faults: a delay added to every fsync, which `resume` lifts, releasing the
//! syncs already waiting.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Faults {
    fsync_delay: Mutex<Duration>,
    changed: Condvar,
}

impl Faults {
    pub(crate) fn fsync_delay(&self) -> Duration {
        *self.fsync_delay.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_fsync_delay(&self, delay: Duration) {
        *self.fsync_delay.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = delay;
        self.changed.notify_all();
    }

    /// Blocks until the fsync that started at `started` has waited out the delay in force
    /// (a changed delay applies to it at once).
    pub(crate) fn wait_fsync(&self, started: Instant) {
        let mut delay = self.fsync_delay.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let waited = started.elapsed();
            if waited >= *delay {
                return;
            }
            let left = *delay - waited;
            delay = match self.changed.wait_timeout(delay, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn resume_releases_a_waiting_fsync() {
        let faults = Arc::new(Faults::default());
        faults.set_fsync_delay(Duration::from_secs(60));
        let started = Instant::now();
        let waiter = std::thread::spawn({
            let faults = Arc::clone(&faults);
            move || faults.wait_fsync(started)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "the fsync waits out the delay");
        faults.set_fsync_delay(Duration::ZERO);
        waiter.join().expect("waiter");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn without_a_delay_nothing_waits() {
        let faults = Faults::default();
        let started = Instant::now();
        faults.wait_fsync(started);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
