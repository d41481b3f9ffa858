//! Query reads (DCB): the events of one partition that match a query of types and tags,
//! after a position, forwards, optionally "as of" a time; served from any replica at the
//! consistency asked (or forwarded to a node holding one). The answer's position is what
//! an append passes back as its query condition's `after`. Cost is O(matches), through the
//! type and tag indexes (`cairn_storage::event_query`).

use cairn_storage::QueryReadLimits;
use cairn_types::now_ms;
use cairn_types::partitioner::partition_for_key;

use crate::api::event_limits::check_query;
use crate::api::{CairnApi, PartitionOf, QueryEventsRead, QueryEventsRequest, ReadError};

impl CairnApi {
    pub async fn query_events(&self, request: QueryEventsRequest, hops: u32) -> Result<QueryEventsRead, ReadError> {
        check_query(&request.query).map_err(ReadError::InvalidQuery)?;
        let meta = self.topic(&request.topic)?;
        let partition = match &request.partition {
            PartitionOf::Partition(partition) => *partition,
            PartitionOf::Key(key) => partition_for_key(key.as_bytes(), meta.config.partition_count),
        };
        let forwarded = request.clone();
        let replica = match self
            .replica_or_forward(&request.topic, partition, hops, |address| {
                self.forward.query_events(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(replica) => replica,
            Err(answer) => return Ok(answer),
        };
        self.make_consistent(&replica, request.consistency).await?;
        let state = replica.view.borrow().log;
        // Never skip silently over records retention removed.
        if let Some(after) = request.after
            && after.saturating_add(1) < state.log_start_offset
        {
            return Err(ReadError::QueryRangeRemoved { after, log_start_offset: state.log_start_offset });
        }
        let read_limits = self.read_limits(request.max_events, 0);
        let limits = QueryReadLimits {
            max_events: read_limits.max_records,
            max_bytes: read_limits.max_bytes,
            as_of_ms: request.as_of_ms,
            now_ms: now_ms(),
        };
        let (log, query, after) = (replica.log.clone(), request.query, request.after);
        let read =
            tokio::task::spawn_blocking(move || log.query_events(&query, after, &state, state.next_offset, limits))
                .await
                .map_err(|err| ReadError::ReadTask(format!("query read task failed: {err}")))?
                .map_err(ReadError::Storage)?;
        Ok(QueryEventsRead { partition, events: read.events, position: read.position, limited: read.limited })
    }
}
