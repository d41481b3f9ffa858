//! `WriteBatch`: writes that one atomic RocksDB write applies. cairn-storage's own type, so
//! that only this crate knows RocksDB: `Store` and `PartitionLog` add their writes to it
//! (a state machine's records, state and `last_applied` go in one batch), and
//! `Store::write` or `Store::write_synced` applies it. A thin wrapper: what reaches the
//! disk is exactly what RocksDB's own batch holds.

/// Writes applied together, all or none.
#[derive(Default)]
pub struct WriteBatch {
    pub(crate) inner: rocksdb::WriteBatch,
}

impl WriteBatch {
    /// The size of the batch's contents as RocksDB encodes them, in bytes.
    pub fn size_in_bytes(&self) -> usize {
        self.inner.size_in_bytes()
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
