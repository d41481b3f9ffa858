//! Retention: a task that, for each partition this node leads, asks the log where the
//! topic's time and size limits cut it, and proposes the deletion of that prefix.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use cairn_types::now_ms;
use openraft::ServerState;

use super::{BACKGROUND_WRITE_TIMEOUT, Host, HostError, PartitionReplica};
use crate::command::PartitionCommand;

impl Host {
    pub(super) async fn retention_loop(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.retention_check_interval_ms.max(100));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for replica in self.partitions() {
                if let Err(err) = self.enforce_retention(&replica).await {
                    tracing::warn!(group = replica.group_id, error = %err, "retention check failed");
                }
            }
        }
    }

    async fn enforce_retention(&self, replica: &PartitionReplica) -> Result<(), HostError> {
        if replica.metrics().state != ServerState::Leader {
            return Ok(());
        }
        let Some(topic) = self.topic(&replica.topic) else { return Ok(()) };
        let state = replica.view.borrow().log;
        let (retention_ms, retention_bytes) = (topic.config.retention_ms, topic.config.retention_bytes);
        let log = replica.log.clone();
        let cut =
            tokio::task::spawn_blocking(move || log.retention_cut(&state, now_ms(), retention_ms, retention_bytes))
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::from)?;
        if let Some(before_offset) = cut {
            tracing::info!(group = replica.group_id, before_offset, "retention: deleting a prefix");
            let delete = self.partition_write(replica.group_id, PartitionCommand::DeletePrefix { before_offset });
            tokio::time::timeout(BACKGROUND_WRITE_TIMEOUT, delete).await.map_err(|_| HostError::NoLeader {
                group: replica.group_id,
                waited_ms: BACKGROUND_WRITE_TIMEOUT.as_millis() as u64,
            })??;
        }
        Ok(())
    }
}
