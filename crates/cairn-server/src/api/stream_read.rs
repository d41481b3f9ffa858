//! Stream reads: one stream's events, forwards or backwards from a revision, optionally
//! "as of" a time, and a stream's state (`stream_info`), served from any replica at the
//! consistency asked (or forwarded to a node holding one). Cost is O(events returned),
//! through the stream index. Events a deletion, the stream's metadata or retention hide are
//! never returned, and a read that starts among them says so instead of skipping them.

use std::sync::Arc;

use cairn_raft::PartitionReplica;
use cairn_storage::{Direction, StreamHead, StreamWindow};
use cairn_types::now_ms;
use cairn_types::partitioner::partition_for_key;

use crate::api::{
    CairnApi, Consistency, ReadError, ReadStreamRequest, StreamEventsRead, StreamFrom, StreamInfo, StreamInfoRequest,
};

impl CairnApi {
    pub async fn read_stream(&self, request: ReadStreamRequest, hops: u32) -> Result<StreamEventsRead, ReadError> {
        let forwarded = request.clone();
        let (partition, replica) = match self
            .stream_replica(&request.topic, &request.stream, request.consistency, hops, |address| {
                self.forward.read_stream(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
        let state = replica.view.borrow().log;
        let limits = self.read_limits(request.max_events, 0);
        let from = match request.from {
            StreamFrom::Start => None,
            StreamFrom::Revision(revision) => Some(revision),
        };
        let log = replica.log.clone();
        let stream = request.stream.clone();
        let (direction, as_of_ms) = (request.direction, request.as_of_ms);
        let (read, head) = tokio::task::spawn_blocking(move || {
            let head = log.stream_head(stream.as_bytes())?;
            let window = StreamWindow {
                first_revision: head.first_visible_revision(),
                min_timestamp_ms: head.metadata.max_age_ms.map(|max_age| now_ms().saturating_sub(max_age)),
                max_timestamp_ms: as_of_ms,
            };
            let (max_events, max_bytes) = (limits.max_records, limits.max_bytes);
            let read = log.read_stream(
                stream.as_bytes(),
                from,
                direction,
                max_events,
                max_bytes,
                &state,
                state.next_offset,
                window,
            )?;
            Ok::<_, cairn_storage::StorageError>((read, head))
        })
        .await
        .map_err(|err| ReadError::ReadTask(format!("stream read task failed: {err}")))?
        .map_err(ReadError::Storage)?;
        if head.tombstoned {
            return Err(ReadError::StreamTombstoned { stream: request.stream });
        }
        // Never skip silently over hidden or removed events.
        if let Some(revision) = from {
            let hidden = match read.first_revision {
                Some(first) => revision < first,
                None => revision < head.next_revision && read.events.is_empty(),
            };
            if hidden {
                return Err(ReadError::StreamRevisionRemoved {
                    stream: request.stream,
                    revision,
                    first_revision: read.first_revision,
                });
            }
        }
        let last = read.events.last().and_then(|record| record.event.as_ref()).map(|event| event.stream_revision);
        let next_revision = match (read.limited, last, direction) {
            (false, _, _) | (true, None, _) => None,
            (true, Some(last), Direction::Forwards) => Some(last + 1),
            (true, Some(last), Direction::Backwards) => last.checked_sub(1),
        };
        Ok(StreamEventsRead { partition, events: read.events, next_revision, first_revision: read.first_revision })
    }

    /// Where a stream stands: its last revision, what reads start from, whether it was
    /// deleted, its metadata.
    pub async fn stream_info(&self, request: StreamInfoRequest, hops: u32) -> Result<StreamInfo, ReadError> {
        let forwarded = request.clone();
        let (partition, replica) = match self
            .stream_replica(&request.topic, &request.stream, request.consistency, hops, |address| {
                self.forward.stream_info(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
        let (log, stream) = (replica.log.clone(), request.stream.clone());
        let head: StreamHead = tokio::task::spawn_blocking(move || log.stream_head(stream.as_bytes()))
            .await
            .map_err(|err| ReadError::ReadTask(format!("stream info task failed: {err}")))?
            .map_err(ReadError::Storage)?;
        Ok(StreamInfo {
            partition,
            current_revision: head.current_revision(),
            first_visible_revision: head.first_visible_revision(),
            deleted_before: head.deleted_before,
            tombstoned: head.tombstoned,
            metadata: head.metadata,
        })
    }

    /// The partition of `stream` and its replica here, made consistent; or the answer of
    /// a node holding one.
    async fn stream_replica<'s, Answer>(
        &'s self,
        topic: &str,
        stream: &str,
        consistency: Consistency,
        hops: u32,
        call: impl FnMut(String) -> crate::api::Forwarded<'s, Answer>,
    ) -> Result<Result<(u32, Arc<PartitionReplica>), Answer>, ReadError> {
        let meta = self.topic(topic)?;
        let partition = partition_for_key(stream.as_bytes(), meta.config.partition_count);
        let replica = match self.replica_or_forward(topic, partition, hops, call).await? {
            Ok(replica) => replica,
            Err(answer) => return Ok(Err(answer)),
        };
        self.make_consistent(&replica, consistency).await?;
        Ok(Ok((partition, replica)))
    }
}
