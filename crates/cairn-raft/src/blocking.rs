//! Storage work off the async worker threads.
//!
//! A node runs all its groups, its liveness loop and its gRPC services on a few tokio
//! workers (as many as cores). A RocksDB call blocks its thread: a write of an apply batch
//! (up to `APPLY_BATCH_BYTES_MAX`) or a large append takes milliseconds to seconds under
//! load, and a worker held that long delays every task queued on it, node heartbeats
//! included, until peers count the node as dead and elect new leaders for its groups. So
//! the state machines and the log store hand each RocksDB call to tokio's blocking pool and
//! await it. Each of openraft's storage calls is awaited before the next one starts, so the
//! calls of one group still reach RocksDB in order.

use std::io;
use std::sync::Arc;

use cairn_storage::{Store, WriteBatch};

/// Runs `work` on the blocking pool and waits for it.
pub(crate) async fn run<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io::Error::other)?
}

/// `Store::write` (unsynced) on the blocking pool.
pub(crate) async fn write(store: &Arc<Store>, batch: WriteBatch) -> io::Result<()> {
    let store = Arc::clone(store);
    run(move || Ok(store.write(batch)?)).await
}
