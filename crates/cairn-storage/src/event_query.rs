//! Queries over a partition's events (`cairn_types::event_query`): the first stored event
//! that matches after a position (an append condition, checked when the state machine
//! applies the append) and the events that match from a position (a query read).
//!
//! Both are answered from the type and tag indexes (`stream_index.rs` writes them with
//! the events) without reading a record that does not match. Each type or tag is a cursor
//! over the offsets of its events, in order. An item intersects the cursors of its tags
//! and the union of the cursors of its types by leapfrogging: every cursor seeks to the
//! largest offset another one stands at, until all agree. The query is the union of its
//! items. Each step is one RocksDB seek, so finding the first match after a position costs
//! a few seeks however large the partition, and a read costs O(matches returned) seeks. A
//! query that matches every event (no items, or an item with neither types nor tags)
//! scans the records from the position instead.
//!
//! Only records in `[log_start_offset, end)` are considered: index entries of events that
//! retention removed are skipped, as the other indexes' are.

use std::collections::HashMap;

use bytes::Bytes;
use cairn_types::{EventQuery, Offset, StoredRecord, decode_batch};
use rocksdb::ReadOptions;

use crate::StorageError;
use crate::keys::{self, CF_INDEX};
use crate::partition_log::{PartitionLog, PartitionLogState};
use crate::stream_index::{BatchCache, StreamHead, is_control};

/// Matches a query read examines at most (hidden ones included) before it answers with
/// what it has: a read's work is bounded even when a deletion hides most matches.
pub const QUERY_READ_MATCHES_MAX: usize = 10_000;

/// The events of one query read, and how far it looked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryEvents {
    pub events: Vec<StoredRecord>,
    /// Every event that matches the query, at an offset up to this one (and stamped at or
    /// before the read's "as of" time), was returned by this read or was before the read's
    /// start. Pass it back as the next read's or an append condition's `after`. `None`:
    /// the partition holds nothing the read could look at yet.
    pub position: Option<Offset>,
    /// The read stopped at a limit: more matches may follow `position`.
    pub limited: bool,
}

/// What a query read returns of the matches it finds.
#[derive(Debug, Clone, Copy)]
pub struct QueryReadLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    /// Only events stamped at or before this time ("as of").
    pub as_of_ms: Option<u64>,
    /// The time a stream's `max_age` is measured from.
    pub now_ms: u64,
}

impl PartitionLog {
    /// The offset of the first event after `after` (`None`: the first event stored) that
    /// matches `query`, among the records in `[log_start_offset, end)`.
    pub fn first_query_match(
        &self,
        query: &EventQuery,
        after: Option<Offset>,
        state: &PartitionLogState,
        end: Offset,
    ) -> Result<Option<Offset>, StorageError> {
        let from = start(after, state);
        let mut cursor = Cursor::of(self, query);
        cursor.seek(&Scope { log: self, state, end }, from)
    }

    /// The events that match `query` after `after` (`None`: from the first stored), in
    /// offset order, among the records in `[log_start_offset, end)`. Events a deletion or
    /// their stream's metadata hide are skipped, as stream reads skip them.
    pub fn query_events(
        &self,
        query: &EventQuery,
        after: Option<Offset>,
        state: &PartitionLogState,
        end: Offset,
        limits: QueryReadLimits,
    ) -> Result<QueryEvents, StorageError> {
        let scope = Scope { log: self, state, end };
        let mut cursor = Cursor::of(self, query);
        let mut heads: HashMap<Bytes, StreamHead> = HashMap::new();
        let mut cache = BatchCache::default();
        let mut answer = QueryEvents::default();
        let mut bytes = 0;
        let mut from = start(after, state);
        let mut examined = 0;
        loop {
            let Some(offset) = cursor.seek(&scope, from)? else {
                // Everything up to the end was looked at.
                answer.position = end.checked_sub(1).max(after);
                break;
            };
            // Every match before `offset` was returned or is hidden.
            let before = offset.checked_sub(1).max(after);
            if answer.events.len() >= limits.max_events || examined >= QUERY_READ_MATCHES_MAX {
                answer.position = before;
                answer.limited = true;
                break;
            }
            examined += 1;
            let Some(record) = cache.record(self, offset)? else {
                if cache.holds(offset) {
                    // Compaction removed it since the index was read: it was hidden.
                    from = offset + 1;
                    continue;
                }
                // Retention removed it since the caller took `state`: never skip it silently.
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    high_watermark: end,
                });
            };
            if limits.as_of_ms.is_some_and(|as_of| record.timestamp_ms > as_of) {
                // Timestamps never decrease: nothing later is "as of" either.
                answer.position = before;
                break;
            }
            if self.visible(&record, &mut heads, limits.now_ms)? {
                let size = record.value.len() + record.event.as_ref().map_or(0, |event| event.encoded_len());
                if !answer.events.is_empty() && bytes + size > limits.max_bytes {
                    answer.position = before;
                    answer.limited = true;
                    break;
                }
                bytes += size;
                answer.events.push(record);
            }
            from = offset + 1;
        }
        Ok(answer)
    }

    /// Whether a stream read would show `record`: not deleted, truncated or too old by its
    /// stream's head (heads are read once per stream and read).
    fn visible(
        &self,
        record: &StoredRecord,
        heads: &mut HashMap<Bytes, StreamHead>,
        now_ms: u64,
    ) -> Result<bool, StorageError> {
        let (Some(stream), Some(event)) = (&record.key, &record.event) else { return Ok(false) };
        let head = match heads.get(stream) {
            Some(head) => *head,
            None => {
                let head = self.stream_head(stream)?;
                heads.insert(stream.clone(), head);
                head
            }
        };
        Ok(!head.hides(event.stream_revision, record.timestamp_ms, now_ms))
    }
}

/// The first offset a query after `after` looks at.
fn start(after: Option<Offset>, state: &PartitionLogState) -> Offset {
    after.map_or(0, |after| after.saturating_add(1)).max(state.log_start_offset)
}

/// What the cursors of one query look at.
struct Scope<'a> {
    log: &'a PartitionLog,
    state: &'a PartitionLogState,
    end: Offset,
}

/// Offsets of events in ascending order. A cursor's seeks only move forwards: `seek(from)`
/// answers the first offset at or after `from`, given that no earlier seek asked for more.
enum Cursor<'a> {
    Term(TermCursor<'a>),
    AnyOf(Vec<Cursor<'a>>),
    AllOf(Vec<Cursor<'a>>),
    Events(EventScan),
}

impl<'a> Cursor<'a> {
    fn of(log: &'a PartitionLog, query: &EventQuery) -> Cursor<'a> {
        if query.matches_all() {
            return Cursor::Events(EventScan::default());
        }
        let items = query.items.iter().map(|item| {
            let mut parts: Vec<Cursor<'a>> =
                item.tags.iter().map(|tag| Cursor::Term(TermCursor::new(log, keys::INDEX_EVENT_TAG, tag))).collect();
            if !item.types.is_empty() {
                let types = item.types.iter();
                parts.push(Cursor::AnyOf(
                    types.map(|t| Cursor::Term(TermCursor::new(log, keys::INDEX_EVENT_TYPE, t))).collect(),
                ));
            }
            Cursor::AllOf(parts)
        });
        Cursor::AnyOf(items.collect())
    }

    fn seek(&mut self, scope: &Scope<'_>, from: Offset) -> Result<Option<Offset>, StorageError> {
        if from >= scope.end {
            return Ok(None);
        }
        match self {
            Cursor::Term(term) => term.seek(from, scope.end),
            Cursor::AnyOf(cursors) => {
                let mut first: Option<Offset> = None;
                for cursor in cursors {
                    if let Some(offset) = cursor.seek(scope, from)? {
                        first = Some(first.map_or(offset, |first| first.min(offset)));
                    }
                }
                Ok(first)
            }
            Cursor::AllOf(cursors) => {
                let mut at = from;
                'leapfrog: loop {
                    for cursor in cursors.iter_mut() {
                        match cursor.seek(scope, at)? {
                            None => return Ok(None),
                            Some(offset) if offset > at => {
                                at = offset;
                                continue 'leapfrog;
                            }
                            Some(_) => {}
                        }
                    }
                    return Ok(Some(at));
                }
            }
            Cursor::Events(scan) => scan.seek(scope, from),
        }
    }
}

/// The offsets of one type's or one tag's events, from its index.
struct TermCursor<'a> {
    iter: rocksdb::DBRawIterator<'a>,
    /// The term's prefix, then the offset a seek asks for (reused: no allocation a seek).
    key: Vec<u8>,
    prefix_len: usize,
    /// The offset the iterator stands at; `None` before the first seek or past the end.
    at: Option<Offset>,
    exhausted: bool,
}

impl<'a> TermCursor<'a> {
    fn new(log: &'a PartitionLog, index: u8, term: &str) -> TermCursor<'a> {
        let prefix = keys::event_term_prefix(log.group(), index, term.as_bytes());
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(prefix.clone());
        options.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let iter = log.store().db().raw_iterator_cf_opt(log.store().cf(CF_INDEX), options);
        let prefix_len = prefix.len();
        TermCursor { iter, key: prefix, prefix_len, at: None, exhausted: false }
    }

    fn seek(&mut self, from: Offset, end: Offset) -> Result<Option<Offset>, StorageError> {
        if self.exhausted {
            return Ok(None);
        }
        if let Some(at) = self.at.filter(|at| *at >= from) {
            return Ok(Some(at).filter(|at| *at < end));
        }
        self.key.truncate(self.prefix_len);
        self.key.extend_from_slice(&from.to_be_bytes());
        self.iter.seek(&self.key);
        self.at = self.iter.key().and_then(keys::trailing_u64);
        self.iter.status()?;
        self.exhausted = self.at.is_none();
        Ok(self.at.filter(|at| *at < end))
    }
}

/// Every event, found by reading records: for queries that match them all. Reads the
/// stored batches as they are (an apply call's own batches are not stored yet, and the
/// state machine checks those itself).
#[derive(Default)]
struct EventScan {
    at: Option<Offset>,
}

impl EventScan {
    fn seek(&mut self, scope: &Scope<'_>, from: Offset) -> Result<Option<Offset>, StorageError> {
        if let Some(at) = self.at.filter(|at| *at >= from) {
            return Ok(Some(at));
        }
        let from = from.max(scope.state.log_start_offset);
        let log = scope.log;
        let mut iter = log.records_iter();
        iter.seek_for_prev(keys::group_u64(log.group(), from));
        if !iter.valid() {
            iter.seek(keys::group_u64(log.group(), from));
        }
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let base_offset = keys::trailing_u64(key).unwrap_or_default();
            if base_offset >= scope.end {
                break;
            }
            let batch = decode_batch(&Bytes::copy_from_slice(value)).map_err(|source| StorageError::Corrupt {
                group: log.group(),
                base_offset,
                source,
            })?;
            let first = batch
                .records
                .iter()
                .find(|record| record.offset >= from && record.event.as_ref().is_some_and(|event| !is_control(event)));
            if let Some(record) = first {
                self.at = Some(record.offset).filter(|offset| *offset < scope.end);
                return Ok(self.at);
            }
            iter.next();
        }
        iter.status()?;
        Ok(None)
    }
}

#[cfg(test)]
#[path = "event_query_tests.rs"]
mod tests;
