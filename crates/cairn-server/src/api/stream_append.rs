//! Event appends: the streams' partition found (one partition per append), the append
//! checked against the limits, then written at the partition's leader (`leader_write.rs`),
//! where the state machine checks its conditions when it applies it.

use std::time::Duration;

use cairn_raft::{CommandResponse, EventAppend, EventAppendRefusal, PartitionCommand};
use cairn_types::now_ms;
use cairn_types::partitioner::partition_for_key;

use crate::api::event_limits::{check_events, check_query};
use crate::api::leader_write::LeaderWrite;
use crate::api::{AppendError, AppendToStreamsRequest, CairnApi, EventInputError, StreamsAppended};

impl CairnApi {
    /// Appends `request`'s events, forwarded `hops` times already. A retry of an append
    /// (same event ids, same events) answers the original positions, for as long as the
    /// events are retained; so it is retried here too when a forwarded attempt got no
    /// answer.
    pub async fn append_to_streams(
        &self,
        request: AppendToStreamsRequest,
        hops: u32,
    ) -> Result<StreamsAppended, AppendError> {
        let topic = self.topic(&request.topic)?;
        check_events(&request.writes, &request.checks, self.host.limits())?;
        if let Some(condition) = &request.condition {
            check_query(&condition.query)?;
        }
        let partition_count = topic.config.partition_count;
        let streams = request.writes.iter().map(|w| &w.stream).chain(request.checks.iter().map(|c| &c.stream));
        let placed: Vec<(String, u32)> =
            streams.map(|stream| (stream.clone(), partition_for_key(stream.as_bytes(), partition_count))).collect();
        let partition = placed[0].1;
        if placed.iter().any(|(_, p)| *p != partition) {
            return Err(AppendError::StreamsInSeveralPartitions { topic: topic.name.clone(), streams: placed });
        }
        let topic = &topic;
        let write = LeaderWrite {
            command: || {
                PartitionCommand::AppendEvents(EventAppend {
                    writes: request.writes.clone(),
                    checks: request.checks.clone(),
                    condition: request.condition.clone(),
                    timestamp_ms: now_ms(),
                })
            },
            applied: |response: CommandResponse| match response {
                CommandResponse::EventsAppended(appended) => Ok(StreamsAppended {
                    partition,
                    positions: appended.positions,
                    timestamp_ms: appended.timestamp_ms,
                    applied_index: appended.applied_index,
                    duplicate: appended.duplicate,
                }),
                CommandResponse::EventAppendRefused(refusal) => Err(match refusal {
                    EventAppendRefusal::ConditionsFailed(violations) => AppendError::ConditionsFailed(violations),
                    EventAppendRefusal::EventIdReused { event_id, stored_at, reason } => {
                        AppendError::EventIdReused { event_id, stored_at, reason }
                    }
                    EventAppendRefusal::EventIdRepeated { event_id } => {
                        AppendError::InvalidEvents(EventInputError::EventIdRepeated { event_id })
                    }
                    EventAppendRefusal::StreamsTombstoned(streams) => AppendError::StreamsTombstoned(streams),
                }),
                other => Err(AppendError::UnexpectedOutcome(format!("{other:?}"))),
            },
            forward: |address: String, within: Duration| {
                self.forward.append_to_streams(address, request.clone(), hops, within)
            },
            forwarded: Ok::<StreamsAppended, AppendError>,
            retry_unanswered: true,
        };
        self.write_at_leader(topic, partition, hops, write).await
    }
}
