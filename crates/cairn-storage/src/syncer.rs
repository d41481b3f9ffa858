//! Group commit: one thread per node makes the shared RocksDB WAL durable for every
//! pending append of every Raft group with a single `flush_wal(true)`, then completes them
//! all, in submission order.
//!
//! It also says when the sync under way started: a disk that stops making progress (a
//! fail-slow disk) shows as a sync that runs for long, and a node must then stop claiming
//! to lead its groups (`host/liveness.rs`), since it commits nothing meanwhile.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_types::LatencyHistogram;

/// Called once the writes before it are durable (or the sync failed).
pub type SyncCallback = Box<dyn FnOnce(std::io::Result<()>) + Send>;

pub(crate) struct Syncer {
    sender: Option<mpsc::Sender<SyncCallback>>,
    thread: Option<JoinHandle<()>>,
    /// When the sync under way started; `None` between syncs.
    running_since: Arc<Mutex<Option<Instant>>>,
    /// How long each WAL sync took (one per group commit), for `/metrics`.
    latency: Arc<LatencyHistogram>,
}

impl Syncer {
    pub(crate) fn start(db: Arc<rocksdb::DB>) -> std::io::Result<Syncer> {
        // Unbounded by type, bounded in practice: each Raft group has at most a few log IOs
        // in flight, so the queue never exceeds (groups x in-flight IOs).
        let (sender, receiver) = mpsc::channel::<SyncCallback>();
        let running_since = Arc::new(Mutex::new(None));
        let started_at = Arc::clone(&running_since);
        let latency = Arc::new(LatencyHistogram::default());
        let observed = Arc::clone(&latency);
        let thread = std::thread::Builder::new().name("cairn-wal-sync".into()).spawn(move || {
            let mut failed: Option<String> = None;
            while let Ok(first) = receiver.recv() {
                let mut pending = vec![first];
                pending.extend(receiver.try_iter());
                let started = Instant::now();
                set(&started_at, Some(started));
                if failed.is_none()
                    && let Err(err) = db.flush_wal(!cfg!(feature = "bug-no-wal-fsync"))
                {
                    tracing::error!(error = %err, "WAL fsync failed: every Raft group on this node stops accepting writes");
                    failed = Some(err.to_string());
                }
                set(&started_at, None);
                observed.observe(started.elapsed());
                for callback in pending {
                    match &failed {
                        None => callback(Ok(())),
                        Some(err) => callback(Err(std::io::Error::other(format!("WAL fsync failed earlier: {err}")))),
                    }
                }
            }
        })?;
        Ok(Syncer { sender: Some(sender), thread: Some(thread), running_since, latency })
    }

    /// How long the sync under way has been running; `None` between syncs.
    pub(crate) fn running_for(&self) -> Option<Duration> {
        self.running_since.lock().ok().and_then(|since| since.map(|since| since.elapsed()))
    }

    /// How long each WAL sync took.
    pub(crate) fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    pub(crate) fn submit(&self, callback: SyncCallback) {
        let result = match &self.sender {
            Some(sender) => sender.send(callback).map_err(|mpsc::SendError(callback)| callback),
            None => Err(callback),
        };
        if let Err(callback) = result {
            callback(Err(std::io::Error::other("the WAL syncer has stopped")));
        }
    }
}

fn set(running_since: &Mutex<Option<Instant>>, value: Option<Instant>) {
    if let Ok(mut since) = running_since.lock() {
        *since = value;
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
