//! Cairn's storage: one RocksDB instance per node holding every Raft group's log, vote and
//! state, and every partition's records and indexes. Knows nothing of openraft or gRPC: Raft
//! log entries and state-machine state are opaque bytes here.
//!
//! Column families (every key starts with the 8-byte big-endian group id):
//! - `raft_log`: `group | index` → encoded Raft entry
//! - `raft_meta`: `group | tag` → vote, last purged log id
//! - `records`: `group | base_offset` → one stored batch (`cairn_types::batch` format)
//! - `index`: `group | 't' | last_timestamp_ms | base_offset`,
//!   `group | 'k' | key_len | key | offset`, and for streams (`stream_index.rs`)
//!   `group | 'r' | stream_len | stream | revision` → offset,
//!   `group | 'e' | event_id` → offset, `group | 'h' | stream_len | stream` → stream head,
//!   `group | 'y' | len | type | offset`, `group | 'g' | len | tag | offset` (queries),
//!   `group | 'c' | stream_len | stream` (streams to compact, `stream_compaction.rs`),
//!   `group | 'x' | stream_len | stream` → the head of a stream retention removed (`retired_heads.rs`)
//! - `sm_meta`: `group | tag` → state-machine state, snapshot metadata

mod error;
mod event_query;
mod keys;
mod partition_log;
mod retired_heads;
mod store;
mod stream_compaction;
mod stream_index;
mod syncer;
mod write_batch;

pub use error::StorageError;
pub use event_query::{QUERY_READ_MATCHES_MAX, QueryEvents, QueryReadLimits};
pub use partition_log::{PartitionLog, PartitionLogState, ReadLimits, ReadRecords};
pub use retired_heads::RetiredHead;
pub use store::{Store, StoreOptions};
pub use stream_compaction::Compacted;
pub use stream_index::{Direction, STREAM_HEAD_EVENT_TYPE, StreamEvents, StreamHead, StreamWindow, is_control};
pub use syncer::SyncCallback;
pub use write_batch::WriteBatch;
