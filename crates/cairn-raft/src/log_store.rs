//! openraft's log storage for one group, on the node's shared RocksDB.
//!
//! Durability: `append` writes the entries (readable at once) and hands the flush callback to
//! the store's syncer thread, which fsyncs the WAL once for every group's pending appends and
//! only then reports them flushed. `save_vote` and `purge` write synced.
//!
//! Every RocksDB call runs on tokio's blocking threads (`spawn_blocking`), never on an async
//! worker: a write can take long (a large append, a stalled disk), and workers blocked on
//! storage delay everything else a node does, node heartbeats included.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use cairn_storage::{Store, WriteBatch};
use cairn_types::GroupId;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::type_config::{Entry, LogId, TypeConfig, Vote};
use crate::{decode, encode};

const TAG_VOTE: u8 = b'v';
const TAG_LAST_PURGED: u8 = b'p';

#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    group: GroupId,
}

impl LogStore {
    pub fn new(store: Arc<Store>, group: GroupId) -> LogStore {
        LogStore { store, group }
    }

    /// Runs blocking RocksDB work off the async worker threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store, GroupId) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let store = Arc::clone(&self.store);
        let group = self.group;
        crate::blocking::run(move || work(&store, group)).await
    }
}

fn last_purged(store: &Store, group: GroupId) -> io::Result<Option<LogId>> {
    store.raft_meta_get(group, TAG_LAST_PURGED)?.map(|raw| decode(&raw)).transpose()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        self.blocking(move |store, group| {
            let raw = store.raft_log_range(group, range)?;
            let mut entries = Vec::with_capacity(raw.len());
            for (index, bytes) in raw {
                let entry: Entry = decode(&bytes)?;
                if entry.log_id.index != index {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("group {group}: raft log key {index} holds entry {}", entry.log_id.index),
                    ));
                }
                entries.push(entry);
            }
            Ok(entries)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.blocking(|store, group| store.raft_meta_get(group, TAG_VOTE)?.map(|raw| decode(&raw)).transpose()).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        self.blocking(|store, group| {
            let last_purged_log_id = last_purged(store, group)?;
            let last_log_id = match store.raft_log_last(group)? {
                Some((_, raw)) => Some(decode::<Entry>(&raw)?.log_id),
                None => last_purged_log_id,
            };
            Ok(LogState { last_purged_log_id, last_log_id })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let raw = encode(vote)?;
        self.blocking(move |store, group| {
            let mut batch = WriteBatch::default();
            store.raft_meta_put(&mut batch, group, TAG_VOTE, &raw);
            Ok(store.write_synced(batch)?)
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            self.store.raft_log_put(&mut batch, self.group, entry.log_id.index, &encode(&entry)?);
        }
        // A memtable insert and a buffered WAL write (the entries are readable once it
        // returns), off the async workers: a batch can be tens of MiB. openraft awaits each
        // append before the next, so they still reach the store, and the syncer, in order.
        // The fsync happens on the syncer thread.
        self.blocking(move |store, _| {
            store.write(batch)?;
            store.sync_then(Box::new(move |result| callback.io_completed(result)));
            Ok(())
        })
        .await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.blocking(move |store, group| {
            let mut batch = WriteBatch::default();
            store.raft_log_delete(&mut batch, group, from, u64::MAX);
            Ok(store.write(batch)?)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let raw = encode(&log_id)?;
        self.blocking(move |store, group| {
            let mut batch = WriteBatch::default();
            store.raft_meta_put(&mut batch, group, TAG_LAST_PURGED, &raw);
            store.raft_log_delete(&mut batch, group, 0, log_id.index + 1);
            Ok(store.write_synced(batch)?)
        })
        .await
    }
}
