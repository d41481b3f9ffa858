//! Compaction: a task that, for each partition this node leads, asks the log which marked
//! streams hold events their deletion or metadata hides (see
//! `cairn_storage::stream_compaction`), and proposes their removal. The removal itself is
//! decided when the entry is applied, on every replica alike.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use cairn_types::now_ms;
use openraft::ServerState;

use super::{BACKGROUND_WRITE_TIMEOUT, Host, HostError, PartitionReplica};
use crate::command::{COMPACTION_STREAMS_MAX, CommandResponse, PartitionCommand};

/// Compaction entries one partition gets per round at most: a large deletion is removed
/// over several rounds, leaving room for appends.
const ENTRIES_PER_ROUND_MAX: usize = 16;

impl Host {
    pub(super) async fn compaction_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.compaction_check_interval_ms.max(100));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for replica in self.partitions() {
                if let Err(err) = self.compact(&replica).await {
                    tracing::warn!(group = replica.group_id, error = %err, "compaction failed");
                }
            }
        }
    }

    async fn compact(&self, replica: &PartitionReplica) -> Result<(), HostError> {
        for _ in 0..ENTRIES_PER_ROUND_MAX {
            if replica.metrics().state != ServerState::Leader {
                return Ok(());
            }
            let state = replica.view.borrow().log;
            let now_ms = now_ms();
            let log = replica.log.clone();
            let candidates =
                tokio::task::spawn_blocking(move || log.compaction_candidates(&state, now_ms, COMPACTION_STREAMS_MAX))
                    .await
                    .map_err(io::Error::other)?
                    .map_err(io::Error::from)?;
            if candidates.is_empty() {
                return Ok(());
            }
            // Stream names are UTF-8 (streams are named by the event API).
            let streams: Vec<String> =
                candidates.iter().filter_map(|stream| String::from_utf8(stream.to_vec()).ok()).collect();
            if streams.is_empty() {
                return Ok(());
            }
            let count = streams.len();
            let compact = self.partition_write(replica.group_id, PartitionCommand::CompactStreams { streams, now_ms });
            let response = tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, compact).await.map_err(|_| {
                HostError::NoLeader { group: replica.group_id, waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64 }
            })??;
            if let CommandResponse::Compacted { events, bytes } = response {
                tracing::info!(group = replica.group_id, streams = count, events, bytes, "compaction");
            }
        }
        Ok(())
    }
}
