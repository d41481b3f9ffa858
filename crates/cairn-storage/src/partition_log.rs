//! `PartitionLog`: one partition's records in the store. Appends and prefix deletions go
//! into the caller's `WriteBatch` (with the state machine's state, so both land at once);
//! reads are bounded and verify every stored batch; the timestamp and key indexes, the
//! retention cut and the batch import of snapshots live here too.

use std::sync::Arc;

use bytes::Bytes;
use cairn_types::batch::decode_header;
use cairn_types::{EventFields, GroupId, Offset, Record, StoredRecord, decode_batch, encode_batch};
use rocksdb::ReadOptions;
use serde::{Deserialize, Serialize};

use crate::keys::{self, CF_INDEX};
use crate::write_batch::WriteBatch;
use crate::{StorageError, Store};

/// What a partition's log looks like after the last applied entry. Persisted by the state
/// machine in the same WriteBatch as the records it describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLogState {
    /// The offset the next record gets: the high watermark once applied.
    pub next_offset: Offset,
    /// The first offset still stored; records before it were removed by retention.
    pub log_start_offset: Offset,
    /// Timestamps never decrease within a partition: the next batch gets at least this.
    pub last_timestamp_ms: u64,
    /// Bytes of stored batches in `[log_start_offset, next_offset)`.
    pub size_bytes: u64,
}

/// The records a read returns, and where the next read starts: past the last record, or
/// past records compaction removed (a read may then return none and still move on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRecords {
    pub records: Vec<StoredRecord>,
    pub next_offset: Offset,
}

/// Batches one read passes over at most, so that a long run of batches whose records
/// compaction removed is crossed in bounded steps.
const READ_BATCHES_MAX: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_records: usize,
    /// A read returns at least one record when one is there, even a larger one, so a
    /// consumer always makes progress.
    pub max_bytes: usize,
}

/// One partition's records and indexes inside the node's store.
#[derive(Clone)]
pub struct PartitionLog {
    store: Arc<Store>,
    group: GroupId,
}

impl PartitionLog {
    pub fn new(store: Arc<Store>, group: GroupId) -> PartitionLog {
        PartitionLog { store, group }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Adds `records` as one batch to `batch`, stamped `max(timestamp_ms, last timestamp)`.
    /// `events` is empty, or holds each record's event fields (the record's key names its
    /// stream): they are stored in the batch and indexed (see `stream_index.rs`). Returns
    /// the batch's base offset. `state` advances; the caller persists it in `batch`.
    pub fn append(
        &self,
        batch: &mut WriteBatch,
        state: &mut PartitionLogState,
        records: &[Record],
        events: &[EventFields],
        timestamp_ms: u64,
    ) -> Offset {
        let base_offset = state.next_offset;
        if records.is_empty() {
            return base_offset;
        }
        let timestamp_ms = timestamp_ms.max(state.last_timestamp_ms);
        let timestamps = vec![timestamp_ms; records.len()];
        let encoded = encode_batch(base_offset, records, events, &timestamps);
        let keyed_events = records
            .iter()
            .enumerate()
            .map(|(i, record)| (base_offset + i as u64, record.key.as_deref(), events.get(i)));
        self.index_events(batch, keyed_events);
        batch.inner.put_cf(self.store.records_cf(), keys::group_u64(self.group, base_offset), &encoded);
        let index = self.store.cf(CF_INDEX);
        batch.inner.put_cf(index, keys::timestamp_index(self.group, timestamp_ms, base_offset), []);
        for (i, record) in records.iter().enumerate() {
            if let Some(key) = &record.key {
                batch.inner.put_cf(index, keys::key_index(self.group, key, base_offset + i as u64), []);
            }
        }
        let next_offset = base_offset + records.len() as u64;
        debug_assert!(next_offset > state.next_offset, "offsets only grow");
        state.next_offset = next_offset;
        state.last_timestamp_ms = timestamp_ms;
        state.size_bytes += encoded.len() as u64;
        base_offset
    }

    /// Records from `from`, up to `high_watermark` (exclusive) and `limits`. Offsets of
    /// records compaction removed are passed over: `next_offset` says where to go on.
    pub fn read(
        &self,
        from: Offset,
        state: &PartitionLogState,
        high_watermark: Offset,
        limits: ReadLimits,
    ) -> Result<ReadRecords, StorageError> {
        if from < state.log_start_offset || from > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                log_start_offset: state.log_start_offset,
                high_watermark,
            });
        }
        let mut read = ReadRecords { records: Vec::new(), next_offset: from };
        if from == high_watermark || limits.max_records == 0 {
            return Ok(read);
        }
        let mut bytes = 0usize;
        let mut iter = self.records_iter();
        iter.seek_for_prev(keys::group_u64(self.group, from));
        if !iter.valid() {
            iter.seek(keys::group_u64(self.group, from));
        }
        let mut batches = 0;
        'batches: while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let base_offset = keys::trailing_u64(key).unwrap_or_default();
            if base_offset >= high_watermark || batches >= READ_BATCHES_MAX {
                break;
            }
            if base_offset > read.next_offset {
                // Retention removed the range meanwhile: never skip records silently.
                return Err(StorageError::OffsetOutOfRange {
                    offset: read.next_offset,
                    log_start_offset: base_offset,
                    high_watermark,
                });
            }
            batches += 1;
            let batch = decode_batch(&Bytes::copy_from_slice(value)).map_err(|source| StorageError::Corrupt {
                group: self.group,
                base_offset,
                source,
            })?;
            for record in batch.records {
                if record.offset < from {
                    continue;
                }
                let size = record_size(&record);
                if record.offset >= high_watermark
                    || read.records.len() >= limits.max_records
                    || (!read.records.is_empty() && bytes + size > limits.max_bytes)
                {
                    break 'batches;
                }
                bytes += size;
                read.next_offset = record.offset + 1;
                read.records.push(record);
            }
            // Every record of the batch was taken: the offsets compaction removed after
            // the last one are passed over too.
            read.next_offset = read.next_offset.max(batch.header.next_offset().min(high_watermark));
            iter.next();
        }
        iter.status()?;
        if read.next_offset == from {
            // `from` is below the high watermark, so a batch must hold it.
            return Err(StorageError::OffsetOutOfRange {
                offset: from,
                log_start_offset: state.log_start_offset,
                high_watermark,
            });
        }
        Ok(read)
    }

    /// The first offset whose timestamp is at or after `timestamp_ms`; `None` if no stored
    /// record is that recent.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: u64,
        state: &PartitionLogState,
    ) -> Result<Option<Offset>, StorageError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::group_tag(self.group, keys::INDEX_TIMESTAMP + 1).to_vec());
        let mut iter = self.store.db().raw_iterator_cf_opt(self.store.cf(CF_INDEX), options);
        iter.seek(keys::timestamp_index(self.group, timestamp_ms, 0));
        // Timestamps never decrease, so the first batch whose last timestamp reaches the
        // target holds the answer.
        while let Some(key) = iter.key() {
            let base_offset = keys::trailing_u64(key).unwrap_or_default();
            iter.next();
            if base_offset >= state.next_offset {
                break;
            }
            if base_offset < state.log_start_offset {
                continue;
            }
            let Some(raw) =
                self.store.db().get_pinned_cf(self.store.records_cf(), keys::group_u64(self.group, base_offset))?
            else {
                continue;
            };
            let batch = decode_batch(&Bytes::copy_from_slice(&raw)).map_err(|source| StorageError::Corrupt {
                group: self.group,
                base_offset,
                source,
            })?;
            if let Some(record) = batch.records.iter().find(|r| r.timestamp_ms >= timestamp_ms) {
                return Ok(Some(record.offset));
            }
        }
        iter.status()?;
        Ok(None)
    }

    /// Offsets of records with `key`, from `from`, at most `limit`.
    pub fn offsets_for_key(
        &self,
        key: &[u8],
        from: Offset,
        limit: usize,
        state: &PartitionLogState,
    ) -> Result<Vec<Offset>, StorageError> {
        let prefix = keys::key_index_prefix(self.group, key);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let mut iter = self.store.db().raw_iterator_cf_opt(self.store.cf(CF_INDEX), options);
        iter.seek(keys::key_index(self.group, key, from.max(state.log_start_offset)));
        let mut offsets = Vec::new();
        while let Some(index_key) = iter.key() {
            if offsets.len() >= limit {
                break;
            }
            if let Some(offset) = keys::trailing_u64(index_key)
                && offset < state.next_offset
            {
                offsets.push(offset);
            }
            iter.next();
        }
        iter.status()?;
        Ok(offsets)
    }

    /// Where retention would move the log start: the base offset of the first batch to keep.
    /// `None` when nothing is due for deletion.
    pub fn retention_cut(
        &self,
        state: &PartitionLogState,
        now_ms: u64,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Result<Option<Offset>, StorageError> {
        if retention_ms.is_none() && retention_bytes.is_none() {
            return Ok(None);
        }
        let mut size_bytes = state.size_bytes;
        let mut cut = state.log_start_offset;
        let mut iter = self.records_iter();
        iter.seek(keys::group_u64(self.group, state.log_start_offset));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let (base_offset, header) = self.stored_header(key, value)?;
            if base_offset >= state.next_offset {
                break;
            }
            let too_old = retention_ms.is_some_and(|ms| header.last_timestamp_ms.saturating_add(ms) < now_ms);
            let too_big = retention_bytes.is_some_and(|max| size_bytes > max);
            if !too_old && !too_big {
                break;
            }
            size_bytes = size_bytes.saturating_sub(value.len() as u64);
            cut = header.next_offset();
            iter.next();
        }
        iter.status()?;
        Ok((cut > state.log_start_offset).then_some(cut))
    }

    /// Removes every batch that ends at or before `before_offset` (a batch boundary).
    pub fn delete_prefix(
        &self,
        batch: &mut WriteBatch,
        state: &mut PartitionLogState,
        before_offset: Offset,
    ) -> Result<(), StorageError> {
        let before_offset = before_offset.min(state.next_offset);
        if before_offset <= state.log_start_offset {
            return Ok(());
        }
        let mut iter = self.records_iter();
        iter.seek(keys::group_u64(self.group, state.log_start_offset));
        let mut removed_bytes = 0u64;
        let mut new_start = state.log_start_offset;
        let mut last_timestamp_ms = 0;
        let mut streams = std::collections::BTreeSet::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let (base_offset, header) = self.stored_header(key, value)?;
            if header.next_offset() > before_offset {
                break;
            }
            let decoded = decode_batch(&Bytes::copy_from_slice(value)).map_err(|source| StorageError::Corrupt {
                group: self.group,
                base_offset,
                source,
            })?;
            streams.extend(decoded.records.into_iter().filter(|r| r.event.is_some()).filter_map(|r| r.key));
            removed_bytes += value.len() as u64;
            new_start = header.next_offset();
            last_timestamp_ms = header.last_timestamp_ms;
            iter.next();
        }
        iter.status()?;
        if new_start == state.log_start_offset {
            return Ok(());
        }
        batch.inner.delete_range_cf(
            self.store.records_cf(),
            keys::group_u64(self.group, 0),
            keys::group_u64(self.group, new_start),
        );
        batch.inner.delete_range_cf(
            self.store.cf(CF_INDEX),
            keys::timestamp_index(self.group, 0, 0),
            keys::timestamp_index(self.group, last_timestamp_ms, new_start),
        );
        // Key-index entries below the log start are filtered on read and left in place.
        self.retire_heads(batch, &streams)?;
        state.log_start_offset = new_start;
        state.size_bytes = state.size_bytes.saturating_sub(removed_bytes);
        Ok(())
    }

    /// Removes every record below `offset` (a batch boundary) and its timestamp-index
    /// entries, whatever the current state says. For snapshot installs.
    pub fn truncate_below(&self, batch: &mut WriteBatch, offset: Offset) -> Result<(), StorageError> {
        if offset == 0 {
            return Ok(());
        }
        batch.inner.delete_range_cf(
            self.store.records_cf(),
            keys::group_u64(self.group, 0),
            keys::group_u64(self.group, offset),
        );
        let mut iter = self.records_iter();
        iter.seek(keys::group_u64(self.group, offset));
        let index_end = match (iter.key(), iter.value()) {
            (Some(key), Some(value)) => {
                let (_, header) = self.stored_header(key, value)?;
                keys::timestamp_index(self.group, header.last_timestamp_ms, offset).to_vec()
            }
            _ => keys::group_tag(self.group, keys::INDEX_TIMESTAMP + 1).to_vec(),
        };
        iter.status()?;
        batch.inner.delete_range_cf(
            self.store.cf(CF_INDEX),
            keys::timestamp_index(self.group, 0, 0).to_vec(),
            index_end,
        );
        Ok(())
    }

    /// Raw stored batches from the one holding `from`, for replica catch-up. Verified.
    pub fn raw_batches(&self, from: Offset, max_bytes: usize) -> Result<Vec<(Offset, Bytes)>, StorageError> {
        let mut iter = self.records_iter();
        iter.seek_for_prev(keys::group_u64(self.group, from));
        if !iter.valid() {
            iter.seek(keys::group_u64(self.group, from));
        }
        let mut batches = Vec::new();
        let mut bytes = 0;
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !batches.is_empty() && bytes + value.len() > max_bytes {
                break;
            }
            let (base_offset, _) = self.stored_header(key, value)?;
            bytes += value.len();
            batches.push((base_offset, Bytes::copy_from_slice(value)));
            iter.next();
        }
        iter.status()?;
        Ok(batches)
    }

    /// Stores batches streamed from another replica (snapshot catch-up), with their index
    /// entries, after verifying each one. The state machine's state is installed separately.
    pub fn import_batches(&self, batches: &[(Offset, Vec<u8>)]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let index = self.store.cf(CF_INDEX);
        // Stream heads, replayed from the events and stream changes the batches hold.
        let mut heads = crate::stream_index::HeadReplay::default();
        for (base_offset, raw) in batches {
            let raw = Bytes::copy_from_slice(raw);
            let decoded = decode_batch(&raw).map_err(|source| StorageError::Corrupt {
                group: self.group,
                base_offset: *base_offset,
                source,
            })?;
            if decoded.header.base_offset != *base_offset {
                return Err(StorageError::CorruptMeta {
                    group: self.group,
                    what: "imported batch",
                    detail: format!("sent as offset {base_offset}, holds offset {}", decoded.header.base_offset),
                });
            }
            batch.inner.put_cf(self.store.records_cf(), keys::group_u64(self.group, *base_offset), &raw);
            batch.inner.put_cf(
                index,
                keys::timestamp_index(self.group, decoded.header.last_timestamp_ms, *base_offset),
                [],
            );
            for record in &decoded.records {
                if let Some(key) = &record.key {
                    batch.inner.put_cf(index, keys::key_index(self.group, key, record.offset), []);
                }
                heads.record(self, record)?;
            }
            let keyed_events =
                decoded.records.iter().map(|record| (record.offset, record.key.as_deref(), record.event.as_ref()));
            self.index_events(&mut batch, keyed_events);
        }
        heads.write(self, &mut batch);
        self.store.write(batch)
    }

    /// The stored batch holding `offset` or, failing that, the last one before it.
    pub(crate) fn batch_at_or_before(&self, offset: Offset) -> Result<Option<(Offset, Vec<u8>)>, StorageError> {
        let mut iter = self.records_iter();
        iter.seek_for_prev(keys::group_u64(self.group, offset));
        let found = match (iter.key(), iter.value()) {
            (Some(key), Some(value)) => Some((keys::trailing_u64(key).unwrap_or_default(), value.to_vec())),
            _ => None,
        };
        iter.status()?;
        Ok(found)
    }

    /// The base offset and verified header of a stored batch.
    fn stored_header(&self, key: &[u8], value: &[u8]) -> Result<(Offset, cairn_types::BatchHeader), StorageError> {
        let base_offset = keys::trailing_u64(key).unwrap_or_default();
        let header =
            decode_header(value).map_err(|source| StorageError::Corrupt { group: self.group, base_offset, source })?;
        Ok((base_offset, header))
    }

    pub(crate) fn records_iter(&self) -> rocksdb::DBRawIterator<'_> {
        let (lower, upper) = keys::group_bounds(self.group);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(lower);
        options.set_iterate_upper_bound(upper);
        self.store.db().raw_iterator_cf_opt(self.store.records_cf(), options)
    }
}

fn record_size(record: &StoredRecord) -> usize {
    record.value.len()
        + record.key.as_ref().map_or(0, |k| k.len())
        + record.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + 16
}
