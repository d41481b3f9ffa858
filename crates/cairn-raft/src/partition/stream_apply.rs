//! Applying an event append (`EventAppend`): the checks, in order, then the write.
//!
//! Streams deleted for good (tombstoned) are refused before anything else but the ids.
//!
//! 1. **Event ids.** When every event id of the append is stored with the same content, it
//!    is a retry (after a timeout or a failover): answered with the original positions,
//!    nothing written. An id stored with other content, or an append only part of which is
//!    stored, is refused. Ids are looked up in the event-id index for as long as the
//!    events are retained, not for a time window. This check comes first so that a retry of
//!    an append made with an exact expected revision is not refused by its own success.
//! 2. **Conditions.** Every written and every checked stream must be at its expected
//!    revision, and no event matching the query condition (DCB) may be stored after its
//!    position; all violations are answered at once.
//! 3. **Write.** The events become one batch; each stream's head moves on.
//!
//! Apply accumulates many entries in one RocksDB `WriteBatch`, which cannot be read back:
//! the heads and events written by earlier entries of the same batch live in
//! `PendingStreams` until the batch is written, so an append sees every one applied before
//! it (else two appends to one stream in one apply call would both check a stale head, and
//! two appends with one query condition would both miss each other's events).

use std::collections::{HashMap, HashSet};
use std::io;

use bytes::Bytes;
use cairn_storage::{StreamHead, WriteBatch};
use cairn_types::{
    ConditionViolations, EventFields, ExpectedRevision, NewEvent, QueryCondition, QueryViolation, Record,
    RevisionViolation, StoredRecord,
};

use super::state_machine::PartitionStateMachine;
use crate::command::CommandResponse;
use crate::stream_command::{
    EventAppend, EventAppendRefusal, EventIdReuse, EventPosition, EventsAppended, StreamChange, StreamChangeKind,
    StreamChanged,
};

/// What the entries of the current apply batch wrote, until the batch is written.
#[derive(Debug, Default)]
pub(super) struct PendingStreams {
    heads: HashMap<Bytes, StreamHead>,
    events: HashMap<[u8; 16], StoredRecord>,
}

impl PendingStreams {
    /// The batch was written (or dropped): the store answers from here on.
    pub(super) fn clear(&mut self) {
        self.heads.clear();
        self.events.clear();
    }
}

impl PartitionStateMachine {
    pub(super) fn apply_events(
        &mut self,
        batch: &mut WriteBatch,
        append: EventAppend,
        index: u64,
    ) -> io::Result<CommandResponse> {
        if let Some(answer) = self.stored_already(&append, index)? {
            return Ok(answer);
        }
        let mut tombstoned = Vec::new();
        for write in &append.writes {
            if self.stream_head(write.stream.as_bytes())?.tombstoned {
                tombstoned.push(write.stream.clone());
            }
        }
        if !tombstoned.is_empty() {
            return Ok(CommandResponse::EventAppendRefused(EventAppendRefusal::StreamsTombstoned(tombstoned)));
        }
        let mut violations = ConditionViolations::default();
        let conditions = append.writes.iter().map(|write| (&write.stream, write.expected));
        for (stream, expected) in conditions.chain(append.checks.iter().map(|check| (&check.stream, check.expected))) {
            if let Some(violation) = self.violation(stream, expected)? {
                violations.revisions.push(violation);
            }
        }
        if let Some(condition) = &append.condition {
            violations.query = self.query_violation(condition)?;
        }
        if !violations.is_empty() {
            return Ok(CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(violations)));
        }

        let mut records = Vec::with_capacity(append.event_count());
        let mut fields = Vec::with_capacity(append.event_count());
        let mut revisions = Vec::with_capacity(append.event_count());
        for write in append.writes {
            let stream = Bytes::from(write.stream.into_bytes());
            let mut head = self.stream_head(&stream)?;
            for event in write.events {
                revisions.push(head.next_revision);
                let (record, event) = split(stream.clone(), event, head.next_revision);
                records.push(record);
                fields.push(event);
                head.next_revision += 1;
            }
            self.log.put_stream_head(batch, &stream, head);
            self.pending.heads.insert(stream, head);
        }
        let base_offset = self.log.append(batch, &mut self.state.log, &records, &fields, append.timestamp_ms);
        let timestamp_ms = self.state.log.last_timestamp_ms;
        let positions: Vec<EventPosition> = (base_offset..)
            .zip(revisions)
            .map(|(offset, stream_revision)| EventPosition { offset, stream_revision })
            .collect();
        for ((record, event), position) in records.into_iter().zip(fields).zip(&positions) {
            let event_id = event.event_id;
            let stored = StoredRecord {
                offset: position.offset,
                timestamp_ms,
                key: record.key,
                headers: record.headers,
                value: record.value,
                event: Some(event),
            };
            self.pending.events.insert(event_id, stored);
        }
        Ok(CommandResponse::EventsAppended(EventsAppended {
            positions,
            timestamp_ms,
            applied_index: index,
            duplicate: false,
        }))
    }

    /// Deletes a stream or sets its metadata, when it is at the expected revision. A
    /// tombstone of a tombstoned stream is answered as done (a retry); anything else on it
    /// is refused.
    pub(super) fn apply_stream_change(
        &mut self,
        batch: &mut WriteBatch,
        change: StreamChange,
        index: u64,
    ) -> io::Result<CommandResponse> {
        let stream = Bytes::from(change.stream.clone().into_bytes());
        let mut head = self.stream_head(&stream)?;
        let changed = |head: &StreamHead| {
            CommandResponse::StreamChanged(StreamChanged {
                current_revision: head.current_revision(),
                first_visible_revision: head.first_visible_revision(),
                applied_index: index,
            })
        };
        if head.tombstoned {
            if matches!(change.change, StreamChangeKind::Tombstone) {
                return Ok(changed(&head));
            }
            let refusal = EventAppendRefusal::StreamsTombstoned(vec![change.stream]);
            return Ok(CommandResponse::EventAppendRefused(refusal));
        }
        if let Some(violation) = self.violation(&change.stream, change.expected)? {
            let violations = ConditionViolations { revisions: vec![violation], query: None };
            return Ok(CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(violations)));
        }
        match change.change {
            StreamChangeKind::SoftDelete => head.deleted_before = head.next_revision,
            StreamChangeKind::Tombstone => {
                head.deleted_before = head.next_revision;
                head.tombstoned = true;
            }
            StreamChangeKind::SetMetadata(metadata) => head.metadata = metadata,
        }
        // The change is a record of the log too, so that a snapshot's records rebuild it.
        self.log.append_stream_change(batch, &mut self.state.log, &stream, head, change.timestamp_ms);
        self.pending.heads.insert(stream, head);
        Ok(changed(&head))
    }

    /// How `stream` fails to meet `expected`, if it does.
    fn violation(&self, stream: &str, expected: ExpectedRevision) -> io::Result<Option<RevisionViolation>> {
        let head = self.stream_head(stream.as_bytes())?;
        let actual = head.current_revision();
        Ok((!expected.is_met_by(actual, head.has_visible_events())).then(|| RevisionViolation {
            stream: stream.to_owned(),
            expected,
            actual,
        }))
    }

    /// The first event after the condition's position that matches its query, if any:
    /// among the stored events, and those earlier entries of this apply call wrote (not in
    /// the store yet). Every event counts, hidden ones too: what a deletion or a max age
    /// hides depends on when a read happens, and applying must not.
    fn query_violation(&self, condition: &QueryCondition) -> io::Result<Option<QueryViolation>> {
        let state = &self.state.log;
        let stored = self.log.first_query_match(&condition.query, condition.after, state, state.next_offset)?;
        let pending = self
            .pending
            .events
            .values()
            .filter(|record| condition.after.is_none_or(|after| record.offset > after))
            .filter(|record| {
                record.event.as_ref().is_some_and(|event| condition.query.matches(&event.event_type, &event.tags))
            })
            .map(|record| record.offset)
            .min();
        let first_match = match (stored, pending) {
            (Some(stored), Some(pending)) => Some(stored.min(pending)),
            (first, None) | (None, first) => first,
        };
        Ok(first_match.map(|first_match| QueryViolation { after: condition.after, first_match }))
    }

    /// The answer when the append's event ids are stored already (see the module doc).
    fn stored_already(&self, append: &EventAppend, index: u64) -> io::Result<Option<CommandResponse>> {
        let mut seen = HashSet::with_capacity(append.event_count());
        let mut stored = Vec::with_capacity(append.event_count());
        let mut missing = false;
        for write in &append.writes {
            for event in &write.events {
                if !seen.insert(event.event_id) {
                    let refusal = EventAppendRefusal::EventIdRepeated { event_id: event.event_id };
                    return Ok(Some(CommandResponse::EventAppendRefused(refusal)));
                }
                match self.stored_event(&event.event_id)? {
                    Some(record) => stored.push((&write.stream, event, record)),
                    None => missing = true,
                }
            }
        }
        let Some(&(_, first_event, ref first)) = stored.first() else {
            return Ok(None);
        };
        let refused = |event_id, stored_at, reason| {
            Some(CommandResponse::EventAppendRefused(EventAppendRefusal::EventIdReused { event_id, stored_at, reason }))
        };
        for (stream, event, record) in &stored {
            if !same_event(record, stream, event) {
                return Ok(refused(event.event_id, record.offset, EventIdReuse::OtherContent));
            }
        }
        if missing {
            return Ok(refused(first_event.event_id, first.offset, EventIdReuse::PartOfAnotherAppend));
        }
        let positions = stored
            .iter()
            .map(|(_, _, record)| EventPosition {
                offset: record.offset,
                stream_revision: record.event.as_ref().map_or(0, |event| event.stream_revision),
            })
            .collect();
        Ok(Some(CommandResponse::EventsAppended(EventsAppended {
            positions,
            timestamp_ms: first.timestamp_ms,
            applied_index: index,
            duplicate: true,
        })))
    }

    /// The stored event with `event_id`: written by this apply batch, or in the store.
    fn stored_event(&self, event_id: &[u8; 16]) -> io::Result<Option<StoredRecord>> {
        if let Some(record) = self.pending.events.get(event_id) {
            return Ok(Some(record.clone()));
        }
        let state = &self.state.log;
        match self.log.event_offset(event_id, state, state.next_offset)? {
            Some(offset) => Ok(self.log.record_at(offset)?),
            None => Ok(None),
        }
    }

    /// The stream's head after the entries applied so far.
    fn stream_head(&self, stream: &[u8]) -> io::Result<StreamHead> {
        match self.pending.heads.get(stream) {
            Some(head) => Ok(*head),
            None => Ok(self.log.stream_head(stream)?),
        }
    }
}

/// A new event as a stored record: the stream is its key, the data its value.
fn split(stream: Bytes, event: NewEvent, stream_revision: u64) -> (Record, EventFields) {
    let record = Record { key: Some(stream), headers: Vec::new(), value: event.data };
    let fields = EventFields {
        event_id: event.event_id,
        stream_revision,
        event_type: event.event_type,
        content_type: event.content_type,
        metadata: event.metadata,
        tags: event.tags,
    };
    (record, fields)
}

/// Whether `record` is `event` appended to `stream`.
fn same_event(record: &StoredRecord, stream: &str, event: &NewEvent) -> bool {
    let Some(stored) = &record.event else { return false };
    record.key.as_deref() == Some(stream.as_bytes())
        && record.value == event.data
        && stored.event_type == event.event_type
        && stored.content_type == event.content_type
        && stored.metadata == event.metadata
        && stored.tags == event.tags
}

#[cfg(test)]
#[path = "stream_apply_tests.rs"]
mod tests;
