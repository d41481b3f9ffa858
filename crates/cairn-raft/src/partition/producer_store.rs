//! A partition's producer table on disk: one entry per producer, under the partition's
//! group, written only when that producer changes.
//!
//! The table holds up to `PRODUCERS_PER_PARTITION_MAX` producers; written whole with the
//! partition state, it made every apply write ~1 MB at 10,000 producers. Now an apply
//! writes the entries of the producers it touched (the one that appended, the one
//! evicted to make room), in the same WriteBatch as the records and `last_applied`, so a
//! restart still resumes exactly after the last applied entry. The state value itself
//! (`PartitionSmState` under its tag) is stored with an empty table. Snapshots still
//! carry the whole table: installing one replaces every entry.
//!
//! Other per-key state of a partition (per-stream heads, later) can live the same way:
//! a table tag of its own in `Store::sm_table_*`.

use std::collections::BTreeSet;
use std::io;

use cairn_storage::{Store, WriteBatch};
use cairn_types::GroupId;

use super::producer_table::{ProducerState, ProducerTable};
use crate::{decode, encode};

/// The table tag of producer entries in the state-machine metadata.
const TAG_PRODUCERS: u8 = b'p';

/// The producers whose entries differ from the store since the last `write`.
#[derive(Debug, Default)]
pub struct ProducerChanges(BTreeSet<u64>);

impl ProducerChanges {
    pub fn touched(&mut self, producer_id: u64) {
        self.0.insert(producer_id);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds to `batch` the entry of every changed producer (a delete for one no longer in
    /// `table`) and forgets the changes.
    pub fn write(
        &mut self,
        store: &Store,
        batch: &mut WriteBatch,
        group: GroupId,
        table: &ProducerTable,
    ) -> io::Result<()> {
        for producer_id in std::mem::take(&mut self.0) {
            match table.get(producer_id) {
                Some(state) => store.sm_table_put(batch, group, TAG_PRODUCERS, producer_id, &encode(state)?),
                None => store.sm_table_delete(batch, group, TAG_PRODUCERS, producer_id),
            }
        }
        Ok(())
    }
}

/// Adds the stored producers of `group` to `table`.
pub fn load(store: &Store, group: GroupId, table: &mut ProducerTable) -> io::Result<()> {
    for (producer_id, raw) in store.sm_table_entries(group, TAG_PRODUCERS)? {
        let state: ProducerState = decode(&raw)?;
        table.insert(producer_id, state);
    }
    Ok(())
}

/// Adds to `batch` what replaces every stored producer of `group` by `table` (a snapshot
/// being installed).
pub fn replace_all(store: &Store, batch: &mut WriteBatch, group: GroupId, table: &ProducerTable) -> io::Result<()> {
    store.sm_table_clear(batch, group, TAG_PRODUCERS);
    for (producer_id, state) in table.iter() {
        store.sm_table_put(batch, group, TAG_PRODUCERS, producer_id, &encode(state)?);
    }
    Ok(())
}
