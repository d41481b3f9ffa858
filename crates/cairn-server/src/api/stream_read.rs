//! Stream reads: one stream's events, forwards or backwards from a revision, optionally
//! "as of" a time, served from any replica at the consistency asked (or forwarded to a
//! node holding one). Cost is O(events returned), through the stream index.

use cairn_storage::Direction;
use cairn_types::partitioner::partition_for_key;

use crate::api::{CairnApi, ReadError, ReadStreamRequest, StreamEventsRead, StreamFrom};

impl CairnApi {
    pub async fn read_stream(&self, request: ReadStreamRequest, hops: u32) -> Result<StreamEventsRead, ReadError> {
        let topic = self.topic(&request.topic)?;
        let partition = partition_for_key(request.stream.as_bytes(), topic.config.partition_count);
        let forwarded = request.clone();
        let replica = match self
            .replica_or_forward(&request.topic, partition, hops, |address| {
                self.forward.read_stream(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(replica) => replica,
            Err(answer) => return Ok(answer),
        };
        self.make_consistent(&replica, request.consistency).await?;
        let state = replica.view.borrow().log;
        let max_events = self.read_limits(request.max_events, 0);
        let from = match request.from {
            StreamFrom::Start => None,
            StreamFrom::Revision(revision) => Some(revision),
        };
        let log = replica.log.clone();
        let stream = request.stream.clone();
        let (direction, as_of_ms) = (request.direction, request.as_of_ms);
        let (read, head) = tokio::task::spawn_blocking(move || {
            let past = |record: &cairn_types::StoredRecord| as_of_ms.is_some_and(|as_of| record.timestamp_ms > as_of);
            let read = log.read_stream(
                stream.as_bytes(),
                from,
                direction,
                max_events.max_records,
                max_events.max_bytes,
                &state,
                state.next_offset,
                past,
            )?;
            Ok::<_, cairn_storage::StorageError>((read, log.stream_head(stream.as_bytes())?))
        })
        .await
        .map_err(|err| ReadError::ReadTask(format!("stream read task failed: {err}")))?
        .map_err(ReadError::Storage)?;
        // Never skip silently over events retention removed.
        if let Some(revision) = from {
            let removed = match read.first_revision {
                Some(first) => revision < first,
                None => revision < head.next_revision && read.events.is_empty(),
            };
            if removed {
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
}
