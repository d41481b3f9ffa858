//! `StorageError`: what the store and the partition logs report: RocksDB failures, corrupt
//! stored batches or metadata (never served, never guessed at), reads out of range, and a
//! stopped WAL syncer.

use cairn_types::{CodecError, GroupId, Offset};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage engine failed. Only its message travels: the engine's types stay inside
    /// this crate.
    #[error("rocksdb: {message}")]
    Engine { message: String },
    #[error("group {group}: stored batch at offset {base_offset} is corrupt: {source}")]
    Corrupt { group: GroupId, base_offset: Offset, source: CodecError },
    #[error("group {group}: stored metadata {what} is corrupt: {detail}")]
    CorruptMeta { group: GroupId, what: &'static str, detail: String },
    #[error("offset {offset} is out of range: the log holds [{log_start_offset}, {high_watermark})")]
    OffsetOutOfRange { offset: Offset, log_start_offset: Offset, high_watermark: Offset },
    #[error("the WAL syncer has stopped")]
    SyncerStopped,
}

impl From<rocksdb::Error> for StorageError {
    fn from(err: rocksdb::Error) -> Self {
        StorageError::Engine { message: err.into_string() }
    }
}

impl From<StorageError> for std::io::Error {
    fn from(err: StorageError) -> Self {
        std::io::Error::other(err)
    }
}
