//! A node's wall clock, moved by libfaketime: the node runs with the library preloaded and
//! reads its offset from a file the nemesis rewrites (`+0`, `+90`, `-3600`: seconds).
//!
//! Only the wall clock moves (`CLOCK_REALTIME`: record timestamps, retention, log lines);
//! the monotonic clock, which Raft's timers use, is left alone, as NTP steps leave it.
//! libfaketime 0.9.10 mishandles absolute sleeps on the monotonic clock when it is not
//! faked (`clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` gets a negative time and fails
//! with EINVAL: Python's `time.sleep` does that); the cairn binary does not sleep that way,
//! which the host tests check by running a node with an offset.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where Debian and Ubuntu install the thread-safe libfaketime.
pub const LIBFAKETIME_DEFAULT: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// How often (seconds) a node re-reads its offset: a new offset shows within this time.
pub const CACHE_SECONDS: u64 = 1;

/// A node's faketime file.
#[derive(Debug, Clone)]
pub struct ClockFile {
    path: PathBuf,
    library: PathBuf,
}

impl ClockFile {
    /// Creates (or resets) the file at `path` with offset zero.
    pub fn create(path: &Path, library: &Path) -> anyhow::Result<ClockFile> {
        anyhow::ensure!(library.exists(), "libfaketime not found at {} (install libfaketime)", library.display());
        let clock = ClockFile { path: path.to_owned(), library: library.to_owned() };
        clock.set_offset(0)?;
        Ok(clock)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the node's wall clock to real time plus `seconds`. Written to a temporary
    /// file and renamed, so the node never reads half an offset.
    pub fn set_offset(&self, seconds: i64) -> anyhow::Result<()> {
        let temporary = self.path.with_extension("faketime.tmp");
        std::fs::write(&temporary, format!("{seconds:+}\n"))
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.path).with_context(|| format!("replacing {}", self.path.display()))
    }

    /// The offset now in the file, in seconds.
    pub fn offset(&self) -> anyhow::Result<i64> {
        let text = std::fs::read_to_string(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        text.trim().parse().with_context(|| format!("{}: not an offset in seconds: {text:?}", self.path.display()))
    }

    /// The environment that makes a process follow this file (`env NAME=VALUE` arguments).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE".into(), self.path.display().to_string()),
            ("FAKETIME_CACHE_DURATION".into(), CACHE_SECONDS.to_string()),
            // Both spellings: libfaketime renamed the variable in 0.9.10.
            ("DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}
