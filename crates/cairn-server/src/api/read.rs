//! Reads of a partition's records, and offset lookups by timestamp: served from this
//! node's replica, at the consistency asked, or forwarded to a node that holds one.

use std::time::Duration;

use cairn_raft::PartitionReplica;
use cairn_storage::{PartitionLogState, ReadLimits, ReadRecords};
use cairn_types::Offset;

use crate::api::forwarding_bounds::LEADER_WAIT;
use crate::api::{CairnApi, OffsetForTimestampRequest, OffsetFound, ReadBatch, ReadError, ReadRequest};

/// Records returned by a read that names no limit.
const READ_RECORDS_DEFAULT: usize = 1_000;
/// Bytes returned by a read that names no limit.
const READ_BYTES_DEFAULT: usize = 1024 * 1024;

impl CairnApi {
    /// `read` (`api_stats.rs`) counts what this returns.
    pub(crate) async fn read_unmetered(&self, request: ReadRequest, hops: u32) -> Result<ReadBatch, ReadError> {
        let forwarded = request.clone();
        let replica = match self
            .replica_or_forward(&request.topic, request.partition, hops, |address| {
                self.forward.read(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(replica) => replica,
            Err(answer) => return Ok(answer),
        };
        let limits = self.read_limits(request.max_records, request.max_bytes);
        let wait_max = self.host.limits().read_wait_ms_max;
        self.make_consistent(&replica, request.consistency).await?;
        let mut view = replica.view.clone();
        let mut state = view.borrow_and_update().log;
        // Nothing there yet: wait up to `wait_ms` for records. An offset past the end of a
        // follower's replica (reached by an earlier read another replica served: this one
        // lags, say after a restart) is waited for, up to `LEADER_WAIT` (and
        // `read_wait_ms_max`), before it counts as out of range; past the leader's end it is
        // out of range at once.
        let lagging = replica.metrics().state != openraft::ServerState::Leader;
        let wait = if request.from_offset > state.next_offset && lagging {
            LEADER_WAIT.min(Duration::from_millis(wait_max))
        } else {
            Duration::from_millis(request.wait_ms.min(wait_max))
        };
        if request.from_offset >= state.next_offset && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while state.next_offset <= request.from_offset {
                match tokio::time::timeout_at(deadline, view.changed()).await {
                    Ok(Ok(())) => state = view.borrow_and_update().log,
                    Ok(Err(_)) => return Err(ReadError::ReplicaStopped),
                    Err(_) => break,
                }
            }
        }
        let ReadRecords { records, next_offset } = read_blocking(&replica, request.from_offset, state, limits).await?;
        Ok(ReadBatch {
            records,
            high_watermark: state.next_offset,
            log_start_offset: state.log_start_offset,
            next_offset,
        })
    }

    pub async fn offset_for_timestamp(
        &self,
        request: OffsetForTimestampRequest,
        hops: u32,
    ) -> Result<OffsetFound, ReadError> {
        let forwarded = request.clone();
        let replica = match self
            .replica_or_forward(&request.topic, request.partition, hops, |address| {
                self.forward.offset_for_timestamp(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(replica) => replica,
            Err(answer) => return Ok(answer),
        };
        let state = replica.view.borrow().log;
        let found = offset_for_timestamp_blocking(&replica, request.timestamp_ms, state).await?;
        Ok(OffsetFound { offset: found.unwrap_or(state.next_offset), found: found.is_some() })
    }

    /// The limits of one read: those asked (0: the defaults), within the node's.
    pub(crate) fn read_limits(&self, max_records: u32, max_bytes: u32) -> ReadLimits {
        let limits = self.host.limits();
        let max_records = if max_records == 0 { READ_RECORDS_DEFAULT } else { max_records as usize };
        let max_bytes = if max_bytes == 0 { READ_BYTES_DEFAULT } else { max_bytes as usize };
        ReadLimits {
            max_records: max_records.min(limits.read_records_max),
            max_bytes: max_bytes.min(limits.read_bytes_max),
        }
    }
}

/// Reads on a blocking thread: RocksDB calls stay off the async workers.
pub(crate) async fn read_blocking(
    replica: &PartitionReplica,
    from: Offset,
    state: PartitionLogState,
    limits: ReadLimits,
) -> Result<ReadRecords, ReadError> {
    let log = replica.log.clone();
    tokio::task::spawn_blocking(move || log.read(from, &state, state.next_offset, limits))
        .await
        .map_err(|err| ReadError::ReadTask(format!("read task failed: {err}")))?
        .map_err(ReadError::Storage)
}

/// Looks the offset up on a blocking thread.
pub(crate) async fn offset_for_timestamp_blocking(
    replica: &PartitionReplica,
    timestamp_ms: u64,
    state: PartitionLogState,
) -> Result<Option<Offset>, ReadError> {
    let log = replica.log.clone();
    tokio::task::spawn_blocking(move || log.offset_for_timestamp(timestamp_ms, &state))
        .await
        .map_err(|err| ReadError::ReadTask(err.to_string()))?
        .map_err(ReadError::Storage)
}
