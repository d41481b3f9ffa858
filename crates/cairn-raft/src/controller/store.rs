//! The controller's state on disk: each topic in an entry of its own, the rest (nodes,
//! operations, counters: small) in one value, so an apply writes what it changed.
//!
//! The controller state holds up to `topics_max` topics with all their partitions; written
//! whole, every apply (one per producer id handed out, per node registered, per move step)
//! rewrote all of it. Now the state value is written with an empty topic map, and a topic's
//! entry only when the topic differs from what the store holds: an apply's write is bounded
//! by the topics it touched. Which topics differ is found by comparing with the copy of
//! what was last written (memory, no encoding), so no command needs to say what it
//! touches. The state value and the topic entries go in the apply's one WriteBatch, with
//! `last_applied`, so a restart resumes exactly after the last applied entry. Snapshots
//! still carry the whole state.
//!
//! A topic's entry is keyed by the group id of its partition 0, which never changes and is
//! never reused (a re-created topic gets a new one).

use std::collections::BTreeMap;
use std::io;

use cairn_storage::{Store, WriteBatch};
use cairn_types::{CONTROLLER_GROUP_ID, GroupId};

use super::state::ControllerState;
use super::topic::TopicMeta;
use crate::{decode, encode};

/// The table tag of topic entries in the controller's state-machine metadata.
const TAG_TOPICS: u8 = b't';

/// What the store holds of the controller's topics, by name, with each entry's key.
#[derive(Debug, Default)]
pub struct ControllerStore {
    written: BTreeMap<String, (GroupId, TopicMeta)>,
}

fn topic_key(topic: &TopicMeta) -> GroupId {
    topic.partitions.first().map_or(0, |partition| partition.group_id)
}

impl ControllerStore {
    /// Adds the stored topics to `state` (whose value was read with its topic map; a value
    /// written before topics had entries carries them itself, and they are written as
    /// entries next time).
    pub fn load(store: &Store, state: &mut ControllerState) -> io::Result<ControllerStore> {
        let mut written = BTreeMap::new();
        for (key, raw) in store.sm_table_entries(CONTROLLER_GROUP_ID, TAG_TOPICS)? {
            let topic: TopicMeta = decode(&raw)?;
            state.topics.insert(topic.name.clone(), topic.clone());
            written.insert(topic.name.clone(), (key, topic));
        }
        Ok(ControllerStore { written })
    }

    /// Adds to `batch` the entry of every topic of `state` that differs from the store and
    /// the deletion of every stored topic `state` no longer has.
    pub fn write_topics(&mut self, store: &Store, batch: &mut WriteBatch, state: &ControllerState) -> io::Result<()> {
        let gone: Vec<String> = self.written.keys().filter(|name| !state.topics.contains_key(*name)).cloned().collect();
        for name in gone {
            if let Some((key, _)) = self.written.remove(&name) {
                store.sm_table_delete(batch, CONTROLLER_GROUP_ID, TAG_TOPICS, key);
            }
        }
        for (name, topic) in &state.topics {
            let key = topic_key(topic);
            match self.written.get(name) {
                Some((written_key, written)) if *written_key == key && written == topic => continue,
                Some((written_key, _)) if *written_key != key => {
                    store.sm_table_delete(batch, CONTROLLER_GROUP_ID, TAG_TOPICS, *written_key);
                }
                _ => {}
            }
            store.sm_table_put(batch, CONTROLLER_GROUP_ID, TAG_TOPICS, key, &encode(topic)?);
            self.written.insert(name.clone(), (key, topic.clone()));
        }
        Ok(())
    }

    /// Adds to `batch` the deletion of every stored topic (a snapshot replaces them all);
    /// the next `write_topics` writes the new ones.
    pub fn clear(&mut self, store: &Store, batch: &mut WriteBatch) {
        store.sm_table_clear(batch, CONTROLLER_GROUP_ID, TAG_TOPICS);
        self.written.clear();
    }
}
