//! Raft snapshots of both state machines as the store keeps them: the payload (the state
//! machine's encoded state; a partition's records are not in it, they are streamed
//! separately in bounded chunks, see `network.rs` and `snapshot_receiver.rs`), and saving,
//! loading and building one under a lock so that a save never replaces a newer snapshot.

use std::io;
use std::sync::Arc;

use cairn_storage::{Store, WriteBatch};
use cairn_types::GroupId;
use serde::{Deserialize, Serialize};

use crate::type_config::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::{decode, encode};

const TAG_SNAPSHOT: u8 = b'n';

/// Snapshot payload shared by both state machines: their encoded state. A partition's
/// records are not in it: they are streamed separately, in bounded chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateSnapshot(pub Vec<u8>);

pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, StateSnapshot>;

/// Guards the stored snapshot of one group: a save never replaces a newer snapshot.
pub type SnapshotLock = Arc<std::sync::Mutex<()>>;

/// Saves a snapshot of `group` (state only), unless a newer one is already stored.
pub(crate) fn build_and_save(
    store: &Store,
    group: GroupId,
    lock: &SnapshotLock,
    last_log_id: Option<LogId>,
    last_membership: &StoredMembership,
    state: Vec<u8>,
) -> io::Result<Snapshot> {
    let meta = SnapshotMeta { last_log_id, last_membership: last_membership.clone() };
    let data = StateSnapshot(state);
    let mut batch = WriteBatch::default();
    save_snapshot(store, group, lock, &mut batch, &meta, &data)?;
    store.write(batch)?;
    Ok(Snapshot { meta, snapshot: data })
}

/// Adds the snapshot to `batch` when it is newer than the stored one. Holds `lock` so a
/// slow builder cannot overwrite a snapshot installed meanwhile.
pub(crate) fn save_snapshot(
    store: &Store,
    group: GroupId,
    lock: &SnapshotLock,
    batch: &mut WriteBatch,
    meta: &SnapshotMeta,
    data: &StateSnapshot,
) -> io::Result<()> {
    let _guard = lock.lock().map_err(|_| io::Error::other("snapshot lock poisoned"))?;
    if let Some(current) = load_snapshot(store, group)?
        && current.meta.last_log_id > meta.last_log_id
    {
        return Ok(());
    }
    store.sm_meta_put(batch, group, TAG_SNAPSHOT, &encode(&(meta, data))?);
    Ok(())
}

pub(crate) fn load_snapshot(store: &Store, group: GroupId) -> io::Result<Option<Snapshot>> {
    let Some(raw) = store.sm_meta_get(group, TAG_SNAPSHOT)? else { return Ok(None) };
    let (meta, snapshot): (SnapshotMeta, StateSnapshot) = decode(&raw)?;
    Ok(Some(Snapshot { meta, snapshot }))
}
