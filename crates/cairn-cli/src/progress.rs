use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the progress line on stderr is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// A `produced N records` line on stderr, redrawn every second, only when stderr is a
/// terminal and only once a run has lasted a second.
pub struct Progress {
    enabled: bool,
    started: Instant,
    drawn_at: Option<Instant>,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress { enabled: enabled && std::io::stderr().is_terminal(), started: Instant::now(), drawn_at: None }
    }

    pub fn update(&mut self, records: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let last = self.drawn_at.unwrap_or(self.started);
        if now.duration_since(last) < PROGRESS_INTERVAL {
            return;
        }
        self.drawn_at = Some(now);
        let seconds = now.duration_since(self.started).as_secs_f64();
        let rate = records as f64 / seconds.max(0.001);
        // Progress is best effort: a failed write to stderr is not worth failing a run.
        let _ = write!(std::io::stderr(), "\r\x1b[2Kproduced {records} records ({rate:.0}/s)");
    }

    /// Clears the line, if one was drawn.
    pub fn finish(&mut self) {
        if self.drawn_at.take().is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
