//! Compaction: removing from the store the events that a stream's deletion or metadata
//! (`max_age`, `max_count`, `truncate_before`) hides. Reads hide them at once; this frees
//! their bytes later.
//!
//! A stream whose head can hide events is **marked** (`group 'c' len stream`, written with
//! the head by a stream change or a snapshot import), so finding work costs O(marked
//! streams), never O(streams). The hidden events of a stream are always a prefix of its
//! revisions (deletions and limits cut below a revision; timestamps never decrease), so
//! compaction walks each marked stream's index from its first entry and stops at the first
//! visible event.
//!
//! Removal runs in the state machine (`compact_streams`, from a Raft entry that names the
//! streams and the time `max_age` is measured at), so every replica removes the same events
//! at the same point of its log: query conditions and event-id checks, which count stored
//! events, decide alike everywhere. A removed event leaves an empty slot in its batch
//! (`cairn_types::batch::remove_records`), so no offset moves; its index entries go in the
//! same write. A stream's mark is dropped once nothing more can become hidden (no
//! `max_age` or `max_count`) and every hidden event is gone.

use std::collections::BTreeSet;

use bytes::Bytes;
use cairn_types::{Offset, StoredRecord, decode_batch, remove_records};
use rocksdb::ReadOptions;

use crate::StorageError;
use crate::keys::{self, CF_INDEX};
use crate::partition_log::{PartitionLog, PartitionLogState};
use crate::stream_index::{BatchCache, StreamHead};
use crate::write_batch::WriteBatch;

/// What one compaction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    pub events: u64,
    /// Bytes the rewritten batches shrank by.
    pub bytes: u64,
}

/// Why compaction stopped walking a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The stream has no more index entries.
    Exhausted,
    /// The next event is visible: so are the later ones.
    Visible,
    /// The command's event budget is spent.
    Budget,
}

impl PartitionLog {
    /// Marks `stream` for compaction when `head` can hide events.
    pub(crate) fn mark_for_compaction(&self, batch: &mut WriteBatch, stream: &[u8], head: StreamHead) {
        if head.may_hide() {
            batch.inner.put_cf(self.store().cf(CF_INDEX), keys::compaction_mark(self.group(), stream), []);
        }
    }

    /// Up to `max` marked streams with something to do at `now_ms`: a hidden event still
    /// stored, an index entry retention left behind, or a mark to drop.
    pub fn compaction_candidates(
        &self,
        state: &PartitionLogState,
        now_ms: u64,
        max: usize,
    ) -> Result<Vec<Bytes>, StorageError> {
        let prefix = keys::group_tag(self.group(), keys::INDEX_COMPACTION);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let mut marks = self.store().db().raw_iterator_cf_opt(self.store().cf(CF_INDEX), options);
        marks.seek(prefix);
        let mut cache = BatchCache::default();
        let mut candidates = Vec::new();
        while let Some(key) = marks.key() {
            if candidates.len() >= max {
                break;
            }
            let stream = keys::named_stream(key).ok_or_else(|| StorageError::CorruptMeta {
                group: self.group(),
                what: "compaction mark",
                detail: format!("{} bytes", key.len()),
            })?;
            let head = self.stream_head(stream)?;
            let due = !head.hides_more_later()
                || match self.first_indexed(stream)? {
                    None => false,
                    Some((_, offset)) if offset < state.log_start_offset => true,
                    // Hidden by revision: no need to read the record.
                    Some((revision, _)) if revision < head.first_visible_revision() => true,
                    // Only a max age needs the event's timestamp.
                    Some(_) if head.metadata.max_age_ms.is_none() => false,
                    Some((revision, offset)) => match cache.record(self, offset)? {
                        None => true,
                        Some(record) => head.hides(revision, record.timestamp_ms, now_ms),
                    },
                };
            if due {
                candidates.push(Bytes::copy_from_slice(stream));
            }
            marks.next();
        }
        marks.status()?;
        Ok(candidates)
    }

    /// Removes the events of `streams` hidden at `now_ms`, at most `max_events` of them, and
    /// their index entries; rewrites the batches that held them and shrinks
    /// `state.size_bytes`. Decides from the store and the arguments alone, so that every
    /// replica removes the same events.
    pub fn compact_streams(
        &self,
        batch: &mut WriteBatch,
        state: &mut PartitionLogState,
        streams: &[Bytes],
        now_ms: u64,
        max_events: u64,
    ) -> Result<Compacted, StorageError> {
        let index = self.store().cf(CF_INDEX);
        let mut cache = BatchCache::default();
        let mut removed = BTreeSet::new();
        for stream in streams {
            let head = self.stream_head(stream)?;
            // The entries the budget can use, and one more to see where the stream goes on:
            // the cost is bounded by the budget, however long the stream.
            let limit = max_events.saturating_sub(removed.len() as u64).saturating_add(1) as usize;
            let entries = self.indexed(stream, limit)?;
            let mut stop = if entries.len() == limit { Stop::Budget } else { Stop::Exhausted };
            for (revision, offset) in entries {
                if removed.len() as u64 >= max_events {
                    stop = Stop::Budget;
                    break;
                }
                let entry = keys::stream_index(self.group(), stream, revision);
                if offset < state.log_start_offset {
                    // Retention removed the record; its entry goes now.
                    batch.inner.delete_cf(index, entry);
                    continue;
                }
                let Some(record) = cache.record(self, offset)? else {
                    batch.inner.delete_cf(index, entry);
                    continue;
                };
                if !head.hides(revision, record.timestamp_ms, now_ms) {
                    stop = Stop::Visible;
                    break;
                }
                self.unindex(batch, &record)?;
                removed.insert(offset);
            }
            if stop != Stop::Budget && !head.hides_more_later() {
                batch.inner.delete_cf(index, keys::compaction_mark(self.group(), stream));
            }
        }
        let (stored, rewritten) = self.rewrite_without(batch, &removed)?;
        state.size_bytes = (state.size_bytes + rewritten).saturating_sub(stored);
        Ok(Compacted { events: removed.len() as u64, bytes: stored.saturating_sub(rewritten) })
    }

    /// The first revision of `stream` in its index, and its offset.
    fn first_indexed(&self, stream: &[u8]) -> Result<Option<(u64, Offset)>, StorageError> {
        Ok(self.indexed(stream, 1)?.into_iter().next())
    }

    /// The first `max` entries of `stream`'s revision index: `(revision, offset)`.
    fn indexed(&self, stream: &[u8], max: usize) -> Result<Vec<(u64, Offset)>, StorageError> {
        let prefix = keys::stream_index_prefix(self.group(), stream);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let mut iter = self.store().db().raw_iterator_cf_opt(self.store().cf(CF_INDEX), options);
        iter.seek(&prefix);
        let mut entries = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if entries.len() >= max {
                break;
            }
            let (Some(revision), Some(offset)) = (keys::trailing_u64(key), keys::trailing_u64(value)) else {
                return Err(StorageError::CorruptMeta {
                    group: self.group(),
                    what: "stream index",
                    detail: format!("entry of {} key bytes, {} value bytes", key.len(), value.len()),
                });
            };
            entries.push((revision, offset));
            iter.next();
        }
        iter.status()?;
        Ok(entries)
    }

    /// Deletes every index entry of the event `record`.
    fn unindex(&self, batch: &mut WriteBatch, record: &StoredRecord) -> Result<(), StorageError> {
        let (Some(stream), Some(event)) = (&record.key, &record.event) else { return Ok(()) };
        let (index, group, offset) = (self.store().cf(CF_INDEX), self.group(), record.offset);
        batch.inner.delete_cf(index, keys::stream_index(group, stream, event.stream_revision));
        batch.inner.delete_cf(index, keys::key_index(group, stream, offset));
        batch
            .inner
            .delete_cf(index, keys::event_term(group, keys::INDEX_EVENT_TYPE, event.event_type.as_bytes(), offset));
        for tag in &event.tags {
            batch.inner.delete_cf(index, keys::event_term(group, keys::INDEX_EVENT_TAG, tag.as_bytes(), offset));
        }
        // The id may name a later event (the same id appended again after an earlier
        // compaction): delete the entry only if it names this one.
        let id_key = keys::event_id_index(group, &event.event_id);
        let names_this = self.store().db().get_pinned_cf(index, id_key)?.and_then(|raw| keys::trailing_u64(&raw));
        if names_this == Some(offset) {
            batch.inner.delete_cf(index, id_key);
        }
        Ok(())
    }

    /// Rewrites the batches holding `offsets` with those records removed; returns their
    /// bytes before and after.
    fn rewrite_without(&self, batch: &mut WriteBatch, offsets: &BTreeSet<Offset>) -> Result<(u64, u64), StorageError> {
        let (mut stored, mut rewritten) = (0u64, 0u64);
        let mut next = offsets.first().copied();
        while let Some(offset) = next {
            let Some((base_offset, raw)) = self.batch_at_or_before(offset)? else { break };
            stored += raw.len() as u64;
            let decoded = decode_batch(&Bytes::from(raw)).map_err(|source| StorageError::Corrupt {
                group: self.group(),
                base_offset,
                source,
            })?;
            let end = decoded.header.next_offset();
            let without = remove_records(&decoded, |offset| offsets.contains(&offset));
            rewritten += without.len() as u64;
            batch.inner.put_cf(self.store().records_cf(), keys::group_u64(self.group(), base_offset), without);
            next = offsets.range(end.max(offset + 1)..).next().copied();
        }
        Ok((stored, rewritten))
    }
}

#[cfg(test)]
#[path = "stream_compaction_tests.rs"]
mod tests;
