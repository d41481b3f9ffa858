//! Retired heads: what a replica restored from a snapshot must know of streams whose
//! records retention removed.
//!
//! A replica importing a snapshot's batches rebuilds stream heads from the records (events
//! and the control records of stream changes, see `stream_index.rs`). A stream whose every
//! record retention removed would be unknown to it, and it would number that stream's next
//! event from 0 where the other replicas say N. So a prefix deletion writes, for every
//! stream with events or changes among the records it removes, the stream's head as it is
//! then (`group 'x' stream`); snapshots send this table before the batches, and the
//! receiver starts each such stream from it, replaying the records it receives on top.
//!
//! An entry written when the head was at revision N stays right for the snapshot: later
//! events and changes of the stream are records after the deleted prefix, sent with the
//! batches, or deleted by a later prefix deletion that wrote a newer entry.

use std::collections::BTreeSet;

use bytes::Bytes;
use rocksdb::ReadOptions;

use crate::StorageError;
use crate::keys::{self, CF_INDEX};
use crate::partition_log::PartitionLog;
use crate::stream_index::StreamHead;
use crate::write_batch::WriteBatch;

/// One retired head as it travels: the stream and its encoded head.
pub type RetiredHead = (Vec<u8>, Vec<u8>);

impl PartitionLog {
    /// Records the heads of `streams`, whose records a prefix deletion is removing.
    pub(crate) fn retire_heads(&self, batch: &mut WriteBatch, streams: &BTreeSet<Bytes>) -> Result<(), StorageError> {
        for stream in streams {
            let head = self.stream_head(stream)?;
            if head != StreamHead::default() {
                batch.inner.put_cf(self.store().cf(CF_INDEX), keys::retired_head(self.group(), stream), head.encode());
            }
        }
        Ok(())
    }

    /// Retired heads in stream order after `after` (`None`: from the first), until
    /// `max_bytes` (at least one when any is left).
    pub fn retired_heads(&self, after: Option<&[u8]>, max_bytes: usize) -> Result<Vec<RetiredHead>, StorageError> {
        let prefix = keys::group_tag(self.group(), keys::INDEX_RETIRED_HEAD);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::prefix_end(&prefix));
        let mut iter = self.store().db().raw_iterator_cf_opt(self.store().cf(CF_INDEX), options);
        match after {
            Some(stream) => {
                let last = keys::retired_head(self.group(), stream);
                iter.seek(&last);
                if iter.key() == Some(last.as_slice()) {
                    iter.next();
                }
            }
            None => iter.seek(prefix),
        }
        let (mut heads, mut bytes) = (Vec::new(), 0);
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let stream = self.retired_stream(key)?;
            if !heads.is_empty() && bytes + stream.len() + value.len() > max_bytes {
                break;
            }
            bytes += stream.len() + value.len();
            heads.push((stream.to_vec(), value.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(heads)
    }

    /// Stores retired heads a snapshot sent, before its batches: each becomes the table's
    /// entry and the stream's head, unless the stored head is further on (its records come
    /// with the batches and are replayed on top either way).
    pub fn import_retired_heads(&self, heads: &[RetiredHead]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        for (stream, raw) in heads {
            let head = StreamHead::decode(raw).ok_or_else(|| StorageError::CorruptMeta {
                group: self.group(),
                what: "retired stream head",
                detail: format!("{} bytes for stream {}", raw.len(), String::from_utf8_lossy(stream)),
            })?;
            batch.inner.put_cf(self.store().cf(CF_INDEX), keys::retired_head(self.group(), stream), raw);
            if head.next_revision >= self.stream_head(stream)?.next_revision {
                self.put_stream_head(&mut batch, stream, head);
                self.mark_for_compaction(&mut batch, stream, head);
            }
        }
        self.store().write(batch)
    }

    fn retired_stream<'k>(&self, key: &'k [u8]) -> Result<&'k [u8], StorageError> {
        keys::named_stream(key).ok_or_else(|| StorageError::CorruptMeta {
            group: self.group(),
            what: "retired head key",
            detail: format!("{} bytes", key.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cairn_types::stream::StreamMetadata;
    use cairn_types::{EventFields, Record};

    use super::*;
    use crate::{PartitionLogState, Store, StoreOptions};

    const GROUP: u64 = 9;

    fn append(log: &PartitionLog, store: &Store, state: &mut PartitionLogState, stream: &str, count: u64) {
        let mut batch = WriteBatch::default();
        let mut head = log.stream_head(stream.as_bytes()).expect("head");
        let (mut records, mut events) = (Vec::new(), Vec::new());
        for _ in 0..count {
            records.push(Record {
                key: Some(Bytes::from(stream.to_owned())),
                headers: Vec::new(),
                value: Bytes::new(),
            });
            let mut event_id = [0; 16];
            event_id[..8].copy_from_slice(&state.next_offset.to_be_bytes());
            event_id[8..].copy_from_slice(&(records.len() as u64).to_be_bytes());
            events.push(EventFields {
                event_id,
                stream_revision: head.next_revision,
                event_type: "E".into(),
                content_type: "application/json".into(),
                metadata: Bytes::new(),
                tags: Vec::new(),
            });
            head.next_revision += 1;
        }
        log.append(&mut batch, state, &records, &events, 1);
        log.put_stream_head(&mut batch, stream.as_bytes(), head);
        store.write(batch).expect("write");
    }

    /// A prefix deletion keeps the heads of the streams it removes records of; a replica
    /// that imports them and then the remaining batches (as a snapshot sends them) has
    /// every head the original has, paged in any chunk size.
    #[test]
    fn heads_of_streams_retention_removed_reach_a_restored_replica() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        let log = PartitionLog::new(Arc::clone(&store), GROUP);
        let mut state = PartitionLogState::default();
        append(&log, &store, &mut state, "gone", 3);
        append(&log, &store, &mut state, "changed", 2);
        let metadata = StreamMetadata { max_count: Some(1), ..StreamMetadata::default() };
        let changed = StreamHead { metadata, ..log.stream_head(b"changed").expect("head") };
        let mut batch = WriteBatch::default();
        log.append_stream_change(&mut batch, &mut state, b"changed", changed, 1);
        store.write(batch).expect("write");
        append(&log, &store, &mut state, "spans", 1);
        let cut = state.next_offset;
        append(&log, &store, &mut state, "spans", 1);
        append(&log, &store, &mut state, "kept", 2);
        let mut batch = WriteBatch::default();
        log.delete_prefix(&mut batch, &mut state, cut).expect("delete prefix");
        store.write(batch).expect("write");

        let retired = log.retired_heads(None, usize::MAX).expect("retired");
        let streams: Vec<&[u8]> = retired.iter().map(|(stream, _)| stream.as_slice()).collect();
        // In key order: by name length, then name.
        assert_eq!(streams, [&b"gone"[..], b"spans", b"changed"], "streams with records in the deleted prefix");
        for max_bytes in [1, 20, usize::MAX] {
            let (mut paged, mut after) = (Vec::new(), None);
            loop {
                let page = log.retired_heads(after.as_deref(), max_bytes).expect("page");
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                paged.extend(page);
            }
            assert_eq!(paged, retired, "pages of {max_bytes} bytes");
        }

        let other_dir = tempfile::tempdir().expect("tempdir");
        let other_store = Store::open(other_dir.path(), &StoreOptions::default()).expect("open");
        let other = PartitionLog::new(Arc::clone(&other_store), GROUP);
        other.import_retired_heads(&retired).expect("import heads");
        let batches: Vec<_> = log
            .raw_batches(cut, usize::MAX)
            .expect("batches")
            .into_iter()
            .map(|(at, raw)| (at, raw.to_vec()))
            .collect();
        other.import_batches(&batches).expect("import batches");
        for stream in ["gone", "changed", "spans", "kept"] {
            let (original, restored) = (log.stream_head(stream.as_bytes()), other.stream_head(stream.as_bytes()));
            assert_eq!(restored.expect("head"), original.expect("head"), "stream {stream}");
        }
        assert_eq!(other.stream_head(b"gone").expect("head").next_revision, 3);
        assert_eq!(other.retired_heads(None, usize::MAX).expect("retired"), retired, "it can send them on");
        assert!(StreamHead::decode(&[1, 2, 3]).is_none());
        let refused = other.import_retired_heads(&[(b"bad".to_vec(), vec![1, 2, 3])]);
        assert!(matches!(refused, Err(StorageError::CorruptMeta { .. })), "{refused:?}");
    }
}
