//! Stream deletions (soft, or for good) and stream metadata: one command to the stream's
//! partition, written at its leader (`leader_write.rs`) and checked against the stream's
//! expected revision when the state machine applies it.

use std::time::Duration;

use cairn_raft::{CommandResponse, EventAppendRefusal, PartitionCommand, StreamChange};
use cairn_types::now_ms;
use cairn_types::partitioner::partition_for_key;

use crate::api::leader_write::LeaderWrite;
use crate::api::{AppendError, CairnApi, ChangeStreamRequest, EventInputError, StreamChangedAnswer};

impl CairnApi {
    /// Changes a stream, forwarded `hops` times already. A retry is harmless: a deletion
    /// again at the same expected revision changes nothing more, a tombstone again is
    /// answered as done, metadata set again is the same.
    pub async fn change_stream(
        &self,
        request: ChangeStreamRequest,
        hops: u32,
    ) -> Result<StreamChangedAnswer, AppendError> {
        let topic = self.topic(&request.topic)?;
        if request.stream.is_empty() {
            return Err(AppendError::InvalidEvents(EventInputError::StreamNameEmpty));
        }
        let partition = partition_for_key(request.stream.as_bytes(), topic.config.partition_count);
        let write = LeaderWrite {
            command: || {
                PartitionCommand::ChangeStream(StreamChange {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    change: request.change,
                    timestamp_ms: now_ms(),
                })
            },
            applied: |response: CommandResponse| match response {
                CommandResponse::StreamChanged(changed) => Ok(StreamChangedAnswer {
                    partition,
                    current_revision: changed.current_revision,
                    first_visible_revision: changed.first_visible_revision,
                    applied_index: changed.applied_index,
                }),
                CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(violations)) => {
                    Err(AppendError::ConditionsFailed(violations))
                }
                CommandResponse::EventAppendRefused(EventAppendRefusal::StreamsTombstoned(streams)) => {
                    Err(AppendError::StreamsTombstoned(streams))
                }
                other => Err(AppendError::UnexpectedOutcome(format!("{other:?}"))),
            },
            forward: |address: String, within: Duration| {
                self.forward.change_stream(address, request.clone(), hops, within)
            },
            forwarded: Ok::<StreamChangedAnswer, AppendError>,
            retry_unanswered: true,
        };
        self.write_at_leader(&topic, partition, hops, write).await
    }
}
