//! Streams inside a partition's log: each stream's head (its next revision), the index of
//! its events by revision, and the indexes of events by id, by type and by tag (the last
//! two serve queries, see `event_query.rs`).
//!
//! All are written in the caller's `WriteBatch` with the records they describe, and
//! are rebuilt from the records alone when batches are imported (the records carry every
//! event field, see `cairn_types::batch`). A stream costs nothing in memory: a head is read
//! from RocksDB when an append names the stream, and written only when it changes.
//!
//! Index entries below the log start (retention) stay in place and are skipped on read,
//! as the key index's are.

use bytes::Bytes;
use cairn_types::stream::StreamMetadata;
use cairn_types::{EventFields, Offset, Record, StoredRecord, decode_batch};
use rocksdb::ReadOptions;

use crate::StorageError;
use crate::keys::{self, CF_INDEX};
use crate::partition_log::{PartitionLog, PartitionLogState};
use crate::write_batch::WriteBatch;

/// The version byte of a stored `StreamHead`.
const STREAM_HEAD_FORMAT: u8 = 1;
/// `format next_revision deleted_before flags max_age_ms max_count truncate_before`.
const STREAM_HEAD_BYTES: usize = 1 + 8 + 8 + 1 + 8 + 8 + 8;
const FLAG_TOMBSTONED: u8 = 1;
const FLAG_MAX_AGE: u8 = 2;
const FLAG_MAX_COUNT: u8 = 4;
const FLAG_TRUNCATE_BEFORE: u8 = 8;

/// The event type of the control record a stream change leaves in the log (see
/// `append_stream_change`). Event types starting with `$` are Cairn's own: clients cannot
/// append them, and they are not events of their stream (no revision, no id).
pub const STREAM_HEAD_EVENT_TYPE: &str = "$stream-head";

/// Whether `event` is one of Cairn's control records rather than an event of its stream.
pub fn is_control(event: &EventFields) -> bool {
    event.event_type.starts_with('$')
}

/// Rebuilds stream heads from imported records, in log order: events move a head's next
/// revision on; a control record sets the whole head as the change left it.
#[derive(Default)]
pub(crate) struct HeadReplay {
    heads: std::collections::BTreeMap<Bytes, StreamHead>,
}

impl HeadReplay {
    pub(crate) fn record(&mut self, log: &PartitionLog, record: &StoredRecord) -> Result<(), StorageError> {
        let (Some(stream), Some(event)) = (&record.key, &record.event) else { return Ok(()) };
        let head = match self.heads.entry(stream.clone()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(log.stream_head(stream)?),
        };
        if event.event_type == STREAM_HEAD_EVENT_TYPE {
            let changed = StreamHead::decode(&record.value).ok_or_else(|| StorageError::CorruptMeta {
                group: log.group(),
                what: "stream change record",
                detail: format!("offset {} holds no stream head", record.offset),
            })?;
            *head = StreamHead { next_revision: head.next_revision.max(changed.next_revision), ..changed };
        } else if !is_control(event) {
            head.next_revision = head.next_revision.max(event.stream_revision + 1);
        }
        Ok(())
    }

    pub(crate) fn write(self, log: &PartitionLog, batch: &mut WriteBatch) {
        for (stream, head) in self.heads {
            log.put_stream_head(batch, &stream, head);
            log.mark_for_compaction(batch, &stream, head);
        }
    }
}

/// A stream's state, stored under its own key when it changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamHead {
    /// The revision the next event gets (0: the stream never had an event).
    pub next_revision: u64,
    /// Events below this revision were deleted (a soft delete): hidden from reads at once.
    /// Revisions go on from `next_revision` when appends resume.
    pub deleted_before: u64,
    /// Deleted for good: never appended to again.
    pub tombstoned: bool,
    pub metadata: StreamMetadata,
}

impl StreamHead {
    /// The revision of the stream's last event; `None` when it never had one.
    pub fn current_revision(&self) -> Option<u64> {
        self.next_revision.checked_sub(1)
    }

    /// The first revision reads may show, by deletion, `truncate_before` and `max_count`
    /// (`max_age` depends on the time of the read: see `StreamWindow`).
    pub fn first_visible_revision(&self) -> u64 {
        let by_count = self.metadata.max_count.map_or(0, |count| self.next_revision.saturating_sub(count));
        self.deleted_before.max(self.metadata.truncate_before.unwrap_or(0)).max(by_count)
    }

    /// Whether any event is left to read (deleted and truncated ones are not).
    pub fn has_visible_events(&self) -> bool {
        self.first_visible_revision() < self.next_revision
    }

    /// Whether the event at `revision`, stamped `timestamp_ms`, is hidden from reads at
    /// `now_ms`: deleted, truncated, past `max_count` or older than `max_age`.
    pub fn hides(&self, revision: u64, timestamp_ms: u64, now_ms: u64) -> bool {
        revision < self.first_visible_revision()
            || self.metadata.max_age_ms.is_some_and(|max_age| timestamp_ms < now_ms.saturating_sub(max_age))
    }

    /// Whether the head can hide any event (a deletion or a limit): compaction looks at such
    /// streams only.
    pub fn may_hide(&self) -> bool {
        let metadata = &self.metadata;
        self.deleted_before > 0
            || metadata.max_age_ms.is_some()
            || metadata.max_count.is_some()
            || metadata.truncate_before.is_some_and(|before| before > 0)
    }

    /// Whether events hidden now may still be joined by others as time passes or events
    /// are appended (`max_age`, `max_count`): compaction then never finishes with the stream.
    pub fn hides_more_later(&self) -> bool {
        self.metadata.max_age_ms.is_some() || self.metadata.max_count.is_some()
    }

    pub(crate) fn encode(&self) -> [u8; STREAM_HEAD_BYTES] {
        let mut raw = [0; STREAM_HEAD_BYTES];
        raw[0] = STREAM_HEAD_FORMAT;
        raw[1..9].copy_from_slice(&self.next_revision.to_le_bytes());
        raw[9..17].copy_from_slice(&self.deleted_before.to_le_bytes());
        let metadata = &self.metadata;
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        raw[17] = flag(self.tombstoned, FLAG_TOMBSTONED)
            | flag(metadata.max_age_ms.is_some(), FLAG_MAX_AGE)
            | flag(metadata.max_count.is_some(), FLAG_MAX_COUNT)
            | flag(metadata.truncate_before.is_some(), FLAG_TRUNCATE_BEFORE);
        raw[18..26].copy_from_slice(&metadata.max_age_ms.unwrap_or(0).to_le_bytes());
        raw[26..34].copy_from_slice(&metadata.max_count.unwrap_or(0).to_le_bytes());
        raw[34..42].copy_from_slice(&metadata.truncate_before.unwrap_or(0).to_le_bytes());
        raw
    }

    pub(crate) fn decode(raw: &[u8]) -> Option<StreamHead> {
        let raw: &[u8; STREAM_HEAD_BYTES] = raw.try_into().ok()?;
        let flags = raw[17];
        if raw[0] != STREAM_HEAD_FORMAT
            || flags & !(FLAG_TOMBSTONED | FLAG_MAX_AGE | FLAG_MAX_COUNT | FLAG_TRUNCATE_BEFORE) != 0
        {
            return None;
        }
        let u64_at = |at: usize| raw[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        let optional = |bit: u8, at: usize| u64_at(at).map(|value| (flags & bit != 0).then_some(value));
        Some(StreamHead {
            next_revision: u64_at(1)?,
            deleted_before: u64_at(9)?,
            tombstoned: flags & FLAG_TOMBSTONED != 0,
            metadata: StreamMetadata {
                max_age_ms: optional(FLAG_MAX_AGE, 18)?,
                max_count: optional(FLAG_MAX_COUNT, 26)?,
                truncate_before: optional(FLAG_TRUNCATE_BEFORE, 34)?,
            },
        })
    }
}

/// Which of a stream's events a read may return: revisions from `first_revision`, stamped
/// no earlier than `min_timestamp_ms` (a `max_age`) and no later than `max_timestamp_ms`
/// (an "as of" read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamWindow {
    pub first_revision: u64,
    pub min_timestamp_ms: Option<u64>,
    pub max_timestamp_ms: Option<u64>,
}

/// Where an event stands against a window, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Before,
    Inside,
    After,
}

impl StreamWindow {
    fn place(&self, revision: u64, timestamp_ms: u64) -> Place {
        if revision < self.first_revision || self.min_timestamp_ms.is_some_and(|min| timestamp_ms < min) {
            Place::Before
        } else if self.max_timestamp_ms.is_some_and(|max| timestamp_ms > max) {
            Place::After
        } else {
            Place::Inside
        }
    }
}

/// Which way a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// One stream's events, as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamEvents {
    pub events: Vec<StoredRecord>,
    /// The stream's first revision still stored; `None` when none is.
    pub first_revision: Option<u64>,
    /// The read stopped at `max_events` or `max_bytes`: more events may follow.
    pub limited: bool,
}

impl PartitionLog {
    /// The head of `stream` as last written (a stream never written has revision none).
    pub fn stream_head(&self, stream: &[u8]) -> Result<StreamHead, StorageError> {
        let Some(raw) =
            self.store().db().get_pinned_cf(self.store().cf(CF_INDEX), keys::stream_head(self.group(), stream))?
        else {
            return Ok(StreamHead::default());
        };
        StreamHead::decode(&raw).ok_or_else(|| StorageError::CorruptMeta {
            group: self.group(),
            what: "stream head",
            detail: format!("{} bytes, format {:?}", raw.len(), raw.first()),
        })
    }

    pub fn put_stream_head(&self, batch: &mut WriteBatch, stream: &[u8], head: StreamHead) {
        batch.inner.put_cf(self.store().cf(CF_INDEX), keys::stream_head(self.group(), stream), head.encode());
    }

    /// Writes a stream's head after a deletion or a metadata change, and records the change
    /// in the log as a control record (`STREAM_HEAD_EVENT_TYPE`, the new head as its value),
    /// so that importing the records (a snapshot) rebuilds the head as it was. Returns the
    /// control record's offset.
    pub fn append_stream_change(
        &self,
        batch: &mut WriteBatch,
        state: &mut PartitionLogState,
        stream: &[u8],
        head: StreamHead,
        timestamp_ms: u64,
    ) -> Offset {
        self.put_stream_head(batch, stream, head);
        self.mark_for_compaction(batch, stream, head);
        let record = Record {
            key: Some(Bytes::copy_from_slice(stream)),
            headers: Vec::new(),
            value: Bytes::copy_from_slice(&head.encode()),
        };
        let control = EventFields {
            event_id: [0; 16],
            stream_revision: head.next_revision,
            event_type: STREAM_HEAD_EVENT_TYPE.to_owned(),
            content_type: "application/octet-stream".to_owned(),
            metadata: Bytes::new(),
            tags: Vec::new(),
        };
        self.append(batch, state, &[record], &[control], timestamp_ms)
    }

    /// Adds the revision, id, type and tag index entries of the events among `records`
    /// (each with its offset, its key and its event fields) to `batch`.
    pub(crate) fn index_events<'a>(
        &self,
        batch: &mut WriteBatch,
        records: impl Iterator<Item = (Offset, Option<&'a [u8]>, Option<&'a EventFields>)>,
    ) {
        let index = self.store().cf(CF_INDEX);
        for (at, key, event) in records {
            let (Some(stream), Some(event)) = (key, event) else { continue };
            if is_control(event) {
                continue;
            }
            let offset = at.to_be_bytes();
            batch.inner.put_cf(index, keys::stream_index(self.group(), stream, event.stream_revision), offset);
            batch.inner.put_cf(index, keys::event_id_index(self.group(), &event.event_id), offset);
            let group = self.group();
            let event_type = keys::event_term(group, keys::INDEX_EVENT_TYPE, event.event_type.as_bytes(), at);
            batch.inner.put_cf(index, event_type, []);
            for tag in &event.tags {
                batch.inner.put_cf(index, keys::event_term(group, keys::INDEX_EVENT_TAG, tag.as_bytes(), at), []);
            }
        }
    }

    /// The offset of the event with `event_id`, while it is stored (in
    /// `[log_start_offset, visible_end)`).
    pub fn event_offset(
        &self,
        event_id: &[u8; 16],
        state: &PartitionLogState,
        visible_end: Offset,
    ) -> Result<Option<Offset>, StorageError> {
        let raw =
            self.store().db().get_pinned_cf(self.store().cf(CF_INDEX), keys::event_id_index(self.group(), event_id))?;
        Ok(raw
            .and_then(|raw| keys::trailing_u64(&raw))
            .filter(|offset| (state.log_start_offset..visible_end).contains(offset)))
    }

    /// The record at `offset`, if it is stored.
    pub fn record_at(&self, offset: Offset) -> Result<Option<StoredRecord>, StorageError> {
        let mut cache = BatchCache::default();
        cache.record(self, offset)
    }

    /// Up to `max_events` events of `stream` from revision `from` (inclusive; `None`: the
    /// first one going forwards, the last going backwards), in `direction`, among the
    /// records in `[log_start_offset, visible_end)` and inside `window`, until `max_bytes`
    /// are read (at least one event is). Costs O(events returned), plus the index entries of
    /// events removed by retention, or outside the window, that the read passes over.
    #[allow(clippy::too_many_arguments)]
    pub fn read_stream(
        &self,
        stream: &[u8],
        from: Option<u64>,
        direction: Direction,
        max_events: usize,
        max_bytes: usize,
        state: &PartitionLogState,
        visible_end: Offset,
        window: StreamWindow,
    ) -> Result<StreamEvents, StorageError> {
        let prefix = keys::stream_index_prefix(self.group(), stream);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(prefix.clone());
        options.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let mut iter = self.store().db().raw_iterator_cf_opt(self.store().cf(CF_INDEX), options);
        // The first revision retained and inside the window by revision (the time bounds
        // of the window would need the records read).
        let first_revision = {
            iter.seek(keys::stream_index(self.group(), stream, window.first_revision));
            let mut first = None;
            while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
                let offset = keys::trailing_u64(value).unwrap_or_default();
                if offset >= state.log_start_offset {
                    first = keys::trailing_u64(key).filter(|_| offset < visible_end);
                    break;
                }
                iter.next();
            }
            iter.status()?;
            first
        };
        let mut answer = StreamEvents { events: Vec::new(), first_revision, limited: false };
        match (direction, from) {
            (Direction::Forwards, Some(revision)) => iter.seek(keys::stream_index(self.group(), stream, revision)),
            (Direction::Forwards, None) => iter.seek(keys::stream_index(self.group(), stream, window.first_revision)),
            (Direction::Backwards, Some(revision)) => {
                iter.seek_for_prev(keys::stream_index(self.group(), stream, revision))
            }
            (Direction::Backwards, None) => iter.seek_to_last(),
        }
        let mut cache = BatchCache::default();
        let mut bytes = 0;
        while let Some(value) = iter.value() {
            if answer.events.len() >= max_events {
                answer.limited = true;
                break;
            }
            let offset = keys::trailing_u64(value).unwrap_or_default();
            if offset >= visible_end {
                // Appended after the state the caller reads at: later revisions are too.
                if direction == Direction::Forwards {
                    break;
                }
            } else if offset < state.log_start_offset {
                // Removed by retention: earlier revisions are too.
                if direction == Direction::Backwards {
                    break;
                }
            } else if let Some(record) = cache.record(self, offset)? {
                let revision = record.event.as_ref().map_or(0, |event| event.stream_revision);
                let place = window.place(revision, record.timestamp_ms);
                let beyond = match direction {
                    Direction::Forwards => Place::After,
                    Direction::Backwards => Place::Before,
                };
                if place == beyond {
                    break;
                }
                if place == Place::Inside {
                    let size = record.value.len() + record.event.as_ref().map_or(0, EventFields::encoded_len);
                    if !answer.events.is_empty() && bytes + size > max_bytes {
                        answer.limited = true;
                        break;
                    }
                    bytes += size;
                    answer.events.push(record);
                }
            } else if !cache.holds(offset) {
                return Err(StorageError::CorruptMeta {
                    group: self.group(),
                    what: "stream index",
                    detail: format!("offset {offset} is indexed but no batch holds it"),
                });
            }
            // Otherwise compaction removed the event since the index was read: it was hidden.
            match direction {
                Direction::Forwards => iter.next(),
                Direction::Backwards => iter.prev(),
            }
        }
        iter.status()?;
        Ok(answer)
    }
}

/// The last batch decoded, for reads that visit neighbouring offsets.
#[derive(Default)]
pub(crate) struct BatchCache {
    batch: Option<cairn_types::DecodedBatch>,
}

impl BatchCache {
    /// Whether the batch last read holds `offset`: a record `record` did not find there
    /// was removed by compaction.
    pub(crate) fn holds(&self, offset: Offset) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|batch| batch.header.base_offset <= offset && offset < batch.header.next_offset())
    }

    pub(crate) fn record(&mut self, log: &PartitionLog, offset: Offset) -> Result<Option<StoredRecord>, StorageError> {
        let holds = |batch: &cairn_types::DecodedBatch| {
            batch.header.base_offset <= offset && offset < batch.header.next_offset()
        };
        if !self.batch.as_ref().is_some_and(holds) {
            let Some((base_offset, raw)) = log.batch_at_or_before(offset)? else {
                return Ok(None);
            };
            let batch = decode_batch(&Bytes::from(raw)).map_err(|source| StorageError::Corrupt {
                group: log.group(),
                base_offset,
                source,
            })?;
            self.batch = Some(batch);
        }
        // Compaction may have removed records: find the offset rather than count to it.
        Ok(self.batch.as_ref().filter(|batch| holds(batch)).and_then(|batch| {
            let at = batch.records.binary_search_by_key(&offset, |record| record.offset).ok()?;
            batch.records.get(at).cloned()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_and_damage_is_refused() {
        let heads = [
            StreamHead::default(),
            StreamHead {
                next_revision: 42,
                deleted_before: 40,
                tombstoned: true,
                metadata: StreamMetadata { max_age_ms: Some(0), max_count: Some(7), truncate_before: None },
            },
            StreamHead {
                next_revision: u64::MAX,
                deleted_before: 0,
                tombstoned: false,
                metadata: StreamMetadata { max_age_ms: None, max_count: None, truncate_before: Some(3) },
            },
        ];
        for head in heads {
            assert_eq!(StreamHead::decode(&head.encode()), Some(head));
        }
        let raw = heads[1].encode();
        let mut other_format = raw;
        other_format[0] = 9;
        let mut unknown_flag = raw;
        unknown_flag[17] |= 0x80;
        assert_eq!(StreamHead::decode(&other_format), None);
        assert_eq!(StreamHead::decode(&unknown_flag), None);
        assert_eq!(StreamHead::decode(&raw[..STREAM_HEAD_BYTES - 1]), None);
    }

    #[test]
    fn the_first_visible_revision_takes_every_bound() {
        let head = |deleted_before, max_count, truncate_before| StreamHead {
            next_revision: 10,
            deleted_before,
            tombstoned: false,
            metadata: StreamMetadata { max_age_ms: None, max_count, truncate_before },
        };
        assert_eq!(head(0, None, None).first_visible_revision(), 0);
        assert_eq!(head(4, None, None).first_visible_revision(), 4);
        assert_eq!(head(4, Some(3), None).first_visible_revision(), 7);
        assert_eq!(head(4, Some(3), Some(8)).first_visible_revision(), 8);
        assert!(!head(10, None, None).has_visible_events());
        assert!(head(9, Some(20), None).has_visible_events());
    }
}
