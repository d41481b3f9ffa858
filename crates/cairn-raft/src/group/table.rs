//! The consumer groups one coordinator partition holds, shared between its state machine
//! (which alone changes them, by applying `GroupCommand`s) and the node's coordinator code
//! (which reads them to answer heartbeats and descriptions), and how they are stored: one
//! entry per group in the state-machine metadata, written only when that group changes, in
//! the same WriteBatch as the partition state, so a restart resumes exactly after the last
//! applied entry. Snapshots carry the whole table.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use cairn_storage::{Store, WriteBatch};
use cairn_types::GroupId;
use serde::{Deserialize, Serialize};

use super::command::{GROUPS_PER_PARTITION_MAX, GroupCommand, GroupOutcome, GroupRefusal};
use super::state::GroupState;
use crate::{decode, encode};

/// The table tag of group entries in the state-machine metadata.
const TAG_GROUPS: u8 = b'g';

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTable {
    groups: BTreeMap<String, GroupState>,
}

impl GroupTable {
    pub fn get(&self, name: &str) -> Option<&GroupState> {
        self.groups.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &GroupState)> {
        self.groups.iter()
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Applies `command`; answers its outcome and whether the group changed.
    pub fn apply(&mut self, command: &GroupCommand) -> (GroupOutcome, bool) {
        let name = command.group();
        if let GroupCommand::Delete { .. } = command {
            let outcome = match self.groups.get(name) {
                None => GroupOutcome::Refused(GroupRefusal::UnknownGroup),
                Some(state) => GroupState::apply(Some(&mut state.clone()), command).1,
            };
            let deleted = outcome == GroupOutcome::Deleted;
            if deleted {
                self.groups.remove(name);
            }
            return (outcome, deleted);
        }
        match self.groups.get_mut(name) {
            Some(state) => {
                let before = state.clone();
                let (_, outcome) = GroupState::apply(Some(state), command);
                let changed = *state != before;
                (outcome, changed)
            }
            None => {
                if self.groups.len() >= GROUPS_PER_PARTITION_MAX {
                    let max = GROUPS_PER_PARTITION_MAX as u32;
                    return (GroupOutcome::Refused(GroupRefusal::TooManyGroups { max }), false);
                }
                let (created, outcome) = GroupState::apply(None, command);
                let changed = created.is_some();
                if let Some(state) = created {
                    self.groups.insert(name.to_string(), state);
                }
                (outcome, changed)
            }
        }
    }
}

/// A coordinator partition's groups, shared with the node's coordinator code.
#[derive(Debug, Clone, Default)]
pub struct SharedGroups(Arc<RwLock<GroupTable>>);

impl SharedGroups {
    pub fn read(&self) -> io::Result<RwLockReadGuard<'_, GroupTable>> {
        self.0.read().map_err(|_| io::Error::other("group table lock poisoned"))
    }

    pub(crate) fn write(&self) -> io::Result<RwLockWriteGuard<'_, GroupTable>> {
        self.0.write().map_err(|_| io::Error::other("group table lock poisoned"))
    }
}

/// Each stored group's entry id, and the groups changed since the last `write`.
#[derive(Debug, Default)]
pub struct GroupStore {
    ids: BTreeMap<String, u64>,
    next_id: u64,
    changed: std::collections::BTreeSet<String>,
}

impl GroupStore {
    /// Loads the stored groups of `group` (a partition's Raft group) into `table`.
    pub fn load(store: &Store, group: GroupId, table: &mut GroupTable) -> io::Result<GroupStore> {
        let mut groups = GroupStore::default();
        for (id, raw) in store.sm_table_entries(group, TAG_GROUPS)? {
            let (name, state): (String, GroupState) = decode(&raw)?;
            groups.ids.insert(name.clone(), id);
            groups.next_id = groups.next_id.max(id + 1);
            table.groups.insert(name, state);
        }
        Ok(groups)
    }

    pub fn touched(&mut self, name: &str) {
        self.changed.insert(name.to_string());
    }

    /// Adds to `batch` the entry of every changed group (a delete for one no longer in
    /// `table`) and forgets the changes.
    pub fn write(
        &mut self,
        store: &Store,
        batch: &mut WriteBatch,
        group: GroupId,
        table: &GroupTable,
    ) -> io::Result<()> {
        for name in std::mem::take(&mut self.changed) {
            match table.get(&name) {
                Some(state) => {
                    let id = *self.ids.entry(name.clone()).or_insert_with(|| {
                        self.next_id += 1;
                        self.next_id - 1
                    });
                    store.sm_table_put(batch, group, TAG_GROUPS, id, &encode(&(&name, state))?);
                }
                None => {
                    if let Some(id) = self.ids.remove(&name) {
                        store.sm_table_delete(batch, group, TAG_GROUPS, id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds to `batch` what replaces every stored group of `group` by `table` (a snapshot
    /// being installed), and starts over from it.
    pub fn replace_all(
        &mut self,
        store: &Store,
        batch: &mut WriteBatch,
        group: GroupId,
        table: &GroupTable,
    ) -> io::Result<()> {
        *self = GroupStore::default();
        store.sm_table_clear(batch, group, TAG_GROUPS);
        for name in table.groups.keys() {
            self.touched(name);
        }
        self.write(store, batch, group, table)
    }
}

#[cfg(test)]
mod tests {
    use cairn_storage::StoreOptions;

    use super::*;
    use crate::group::{Assignor, PositionCommit, TopicPartition};

    fn join(group: &str, member: &str) -> GroupCommand {
        GroupCommand::Join {
            group: group.to_string(),
            member_id: member.to_string(),
            client_id: "test".to_string(),
            topics: vec!["t".to_string()],
            assignor: Assignor::Range,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            partition_counts: BTreeMap::from([("t".to_string(), 2)]),
            now_ms: 1,
        }
    }

    /// What the table holds after applies is what a reopened store loads, deletions too.
    #[test]
    fn stored_groups_load_as_they_were_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db"), &StoreOptions::default()).expect("store");
        let mut table = GroupTable::default();
        let mut stored = GroupStore::default();
        for command in [join("a", "m1"), join("b", "m1"), join("c", "m1")] {
            let (_, changed) = table.apply(&command);
            assert!(changed);
            stored.touched(command.group());
        }
        let commit = GroupCommand::Commit {
            group: "a".to_string(),
            member_id: "m1".to_string(),
            generation: 1,
            positions: vec![PositionCommit {
                partition: TopicPartition { topic: "t".to_string(), partition: 1 },
                offset: 7,
                metadata: String::new(),
            }],
            release: Vec::new(),
            now_ms: 2,
        };
        assert_eq!(table.apply(&commit).0, GroupOutcome::Committed { generation: 1 });
        stored.touched("a");
        table.apply(&GroupCommand::Leave { group: "b".to_string(), member_id: "m1".to_string(), now_ms: 3 });
        assert_eq!(table.apply(&GroupCommand::Delete { group: "b".to_string() }).0, GroupOutcome::Deleted);
        stored.touched("b");
        let mut batch = WriteBatch::default();
        stored.write(&store, &mut batch, 9, &table).expect("write");
        store.write(batch).expect("write");
        let mut loaded = GroupTable::default();
        GroupStore::load(&store, 9, &mut loaded).expect("load");
        assert_eq!(loaded, table);
        assert!(loaded.get("b").is_none());
        assert_eq!(loaded.get("a").expect("a").positions.values().next().map(|p| p.offset), Some(7));
    }
}
