//! `Store`: the node's one RocksDB instance, shared by every Raft group. Opens it with its
//! column families, writes `WriteBatch`es (unsynced, or synced; the WAL `Syncer` makes
//! unsynced writes durable in groups), and keeps each group's Raft log, Raft metadata and
//! state-machine metadata and tables under keys that start with the group id.

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use cairn_types::GroupId;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, ReadOptions, WriteOptions};

use crate::StorageError;
use crate::keys::{self, CF_RAFT_LOG, CF_RAFT_META, CF_RECORDS, CF_SM_META, COLUMN_FAMILIES};
use crate::syncer::{SyncCallback, Syncer};
use crate::write_batch::WriteBatch;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// RocksDB background flush and compaction threads.
    pub background_jobs: i32,
    /// Size of each memtable, in bytes.
    pub write_buffer_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { background_jobs: 2, write_buffer_bytes: 32 * 1024 * 1024 }
    }
}

/// A node's RocksDB instance, shared by all its Raft groups.
pub struct Store {
    // Field order matters: the syncer thread holds a clone of `db` and must stop first.
    syncer: Syncer,
    db: Arc<DB>,
    /// Bytes of WriteBatches written since open (what applies cost, for tests and metrics).
    bytes_written: std::sync::atomic::AtomicU64,
}

impl Store {
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Arc<Store>, StorageError> {
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(options.background_jobs);
        db_options.set_write_buffer_size(options.write_buffer_bytes);
        db_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Cairn syncs the WAL itself (group commit); RocksDB must not skip it.
        db_options.set_manual_wal_flush(false);
        db_options.set_paranoid_checks(true);
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let mut cf_options = Options::default();
            cf_options.set_write_buffer_size(options.write_buffer_bytes);
            cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = Arc::new(DB::open_cf_descriptors(&db_options, path, descriptors)?);
        let syncer = Syncer::start(Arc::clone(&db)).map_err(|err| StorageError::CorruptMeta {
            group: 0,
            what: "syncer thread",
            detail: err.to_string(),
        })?;
        Ok(Arc::new(Store { syncer, db, bytes_written: Default::default() }))
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        // The column families are fixed and created at open: absence is a programming error.
        self.db.cf_handle(name).expect("column family created at open")
    }

    /// Writes a batch without waiting for the disk. Durable once a later sync completes.
    pub fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.bytes_written.fetch_add(batch.size_in_bytes() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db.write_opt(batch.inner, &options)?;
        Ok(())
    }

    /// Writes a batch and fsyncs the WAL before returning. Blocking.
    pub fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.bytes_written.fetch_add(batch.size_in_bytes() as u64, std::sync::atomic::Ordering::Relaxed);
        let mut options = WriteOptions::default();
        options.set_sync(!cfg!(feature = "bug-no-wal-fsync"));
        self.db.write_opt(batch.inner, &options)?;
        Ok(())
    }

    /// Bytes of the WriteBatches written through this store since it was opened.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long each WAL sync (one fsync per group commit) took.
    pub fn wal_sync_latency(&self) -> &cairn_types::LatencyHistogram {
        self.syncer.latency()
    }

    /// Calls `callback` once every write made before this call is on disk.
    pub fn sync_then(&self, callback: SyncCallback) {
        self.syncer.submit(callback);
    }

    /// How long the WAL sync under way has been running (`None` between syncs): the disk
    /// has made no progress for that long.
    pub fn wal_sync_running_for(&self) -> Option<std::time::Duration> {
        self.syncer.running_for()
    }

    // ---- Raft log: opaque entries by (group, index) ----

    pub fn raft_log_put(&self, batch: &mut WriteBatch, group: GroupId, index: u64, entry: &[u8]) {
        batch.inner.put_cf(self.cf(CF_RAFT_LOG), keys::group_u64(group, index), entry);
    }

    /// Entries of `group` with index in `range`, in order.
    pub fn raft_log_range(
        &self,
        group: GroupId,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut options = ReadOptions::default();
        match range.end_bound() {
            Bound::Included(&i) if i < u64::MAX => options.set_iterate_upper_bound(keys::group_u64(group, i + 1)),
            Bound::Excluded(&i) => options.set_iterate_upper_bound(keys::group_u64(group, i)),
            _ => options.set_iterate_upper_bound(keys::group_bounds(group).1),
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_RAFT_LOG), options);
        iter.seek(keys::group_u64(group, start));
        let mut entries = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let index = keys::trailing_u64(key).ok_or_else(|| StorageError::CorruptMeta {
                group,
                what: "raft log key",
                detail: format!("{} bytes", key.len()),
            })?;
            entries.push((index, value.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(entries)
    }

    /// The last entry of `group`'s Raft log.
    pub fn raft_log_last(&self, group: GroupId) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let (lower, upper) = keys::group_bounds(group);
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(lower);
        options.set_iterate_upper_bound(upper);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_RAFT_LOG), options);
        iter.seek_to_last();
        let last = match (iter.key(), iter.value()) {
            (Some(key), Some(value)) => keys::trailing_u64(key).map(|index| (index, value.to_vec())),
            _ => None,
        };
        iter.status()?;
        Ok(last)
    }

    /// Deletes entries with index in `[from, to)`.
    pub fn raft_log_delete(&self, batch: &mut WriteBatch, group: GroupId, from: u64, to: u64) {
        batch.inner.delete_range_cf(self.cf(CF_RAFT_LOG), keys::group_u64(group, from), keys::group_u64(group, to));
    }

    // ---- small per-group metadata ----

    pub fn raft_meta_put(&self, batch: &mut WriteBatch, group: GroupId, tag: u8, value: &[u8]) {
        batch.inner.put_cf(self.cf(CF_RAFT_META), keys::group_tag(group, tag), value);
    }

    pub fn raft_meta_get(&self, group: GroupId, tag: u8) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_RAFT_META), keys::group_tag(group, tag))?)
    }

    pub fn sm_meta_put(&self, batch: &mut WriteBatch, group: GroupId, tag: u8, value: &[u8]) {
        batch.inner.put_cf(self.cf(CF_SM_META), keys::group_tag(group, tag), value);
    }

    pub fn sm_meta_get(&self, group: GroupId, tag: u8) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(CF_SM_META), keys::group_tag(group, tag))?)
    }

    /// Every group that stored anything, in any column family. One seek per group and
    /// column family: keys start with the big-endian group id. Blocking.
    pub fn group_ids(&self) -> Result<std::collections::BTreeSet<GroupId>, StorageError> {
        let mut groups = std::collections::BTreeSet::new();
        for name in COLUMN_FAMILIES {
            let mut iter = self.db.raw_iterator_cf(self.cf(name));
            iter.seek_to_first();
            while let Some(key) = iter.key() {
                let Some(group) = key.get(..8).and_then(|prefix| prefix.try_into().ok()).map(GroupId::from_be_bytes)
                else {
                    return Err(StorageError::CorruptMeta {
                        group: 0,
                        what: "key",
                        detail: format!("{} bytes", key.len()),
                    });
                };
                groups.insert(group);
                let Some(next) = group.checked_add(1) else { break };
                iter.seek(next.to_be_bytes());
            }
            iter.status()?;
        }
        Ok(groups)
    }

    // ---- keyed state-machine tables: one entry per (group, tag, id) ----
    //
    // For state that is too large to rewrite on every apply (a partition's producer
    // table): each entry is written only when it changes. The keys are longer than
    // `group_tag`'s, so a table never collides with a single-value tag.

    pub fn sm_table_put(&self, batch: &mut WriteBatch, group: GroupId, tag: u8, id: u64, value: &[u8]) {
        batch.inner.put_cf(self.cf(CF_SM_META), keys::group_tag_u64(group, tag, id), value);
    }

    pub fn sm_table_delete(&self, batch: &mut WriteBatch, group: GroupId, tag: u8, id: u64) {
        batch.inner.delete_cf(self.cf(CF_SM_META), keys::group_tag_u64(group, tag, id));
    }

    /// Deletes every entry of the table `tag` of `group`.
    pub fn sm_table_clear(&self, batch: &mut WriteBatch, group: GroupId, tag: u8) {
        let lower = keys::group_tag_u64(group, tag, 0);
        let upper = keys::prefix_end(&keys::group_tag(group, tag));
        batch.inner.delete_range_cf(self.cf(CF_SM_META), lower.as_slice(), upper.as_slice());
        // From id 0 to the next tag: every entry, never the single-value key of the same
        // tag (it sorts before id 0).
    }

    /// Every entry of the table `tag` of `group`, by id.
    pub fn sm_table_entries(&self, group: GroupId, tag: u8) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(keys::prefix_end(&keys::group_tag(group, tag)));
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(CF_SM_META), options);
        let lower = keys::group_tag_u64(group, tag, 0);
        iter.seek(lower);
        let mut entries = Vec::new();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if key.len() != lower.len() {
                return Err(StorageError::CorruptMeta {
                    group,
                    what: "state-machine table key",
                    detail: format!("{} bytes under tag {tag}", key.len()),
                });
            }
            let id = keys::trailing_u64(key).ok_or_else(|| StorageError::CorruptMeta {
                group,
                what: "state-machine table key",
                detail: format!("{} bytes", key.len()),
            })?;
            entries.push((id, value.to_vec()));
            iter.next();
        }
        iter.status()?;
        Ok(entries)
    }

    /// Deletes everything `group` stored, in every column family.
    pub fn delete_group(&self, group: GroupId) -> Result<(), StorageError> {
        let (lower, upper) = keys::group_bounds(group);
        let mut batch = WriteBatch::default();
        for name in COLUMN_FAMILIES {
            batch.inner.delete_range_cf(self.cf(name), lower, upper);
        }
        self.write_synced(batch)
    }

    pub(crate) fn records_cf(&self) -> &ColumnFamily {
        self.cf(CF_RECORDS)
    }
}
