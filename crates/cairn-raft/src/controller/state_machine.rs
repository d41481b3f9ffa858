//! The controller's state machine: cluster metadata, persisted on every apply (the topics
//! that changed and the small rest, `controller_store.rs`) and published to the host
//! through a watch channel.

use std::io;
use std::sync::Arc;

use cairn_storage::{Store, WriteBatch};
use cairn_types::CONTROLLER_GROUP_ID;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::apply::ControllerOutcome;
use super::state::ControllerState;
use super::store::ControllerStore;
use crate::command::{Command, CommandResponse};
use crate::partition::snapshot::{Snapshot, SnapshotLock, StateSnapshot, build_and_save, load_snapshot, save_snapshot};
use crate::type_config::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::{decode, encode};

const TAG_STATE: u8 = b's';

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    cluster: ControllerState,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

pub struct ControllerStateMachine {
    store: Arc<Store>,
    state: Persisted,
    /// The topics as the store holds them.
    topics: ControllerStore,
    snapshot_lock: SnapshotLock,
    view: watch::Sender<Arc<ControllerState>>,
}

impl ControllerStateMachine {
    pub fn open(store: Arc<Store>) -> io::Result<(ControllerStateMachine, watch::Receiver<Arc<ControllerState>>)> {
        let mut state: Persisted =
            store.sm_meta_get(CONTROLLER_GROUP_ID, TAG_STATE)?.map(|raw| decode(&raw)).transpose()?.unwrap_or_default();
        let topics = ControllerStore::load(&store, &mut state.cluster)?;
        let (view, receiver) = watch::channel(Arc::new(state.cluster.clone()));
        Ok((ControllerStateMachine { store, state, topics, snapshot_lock: SnapshotLock::default(), view }, receiver))
    }

    /// Adds the state to `batch`: the topics that changed, and the rest without the topics.
    fn persist(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        self.topics.write_topics(&self.store, batch, &self.state.cluster)?;
        let topics = std::mem::take(&mut self.state.cluster.topics);
        let encoded = encode(&self.state);
        self.state.cluster.topics = topics;
        self.store.sm_meta_put(batch, CONTROLLER_GROUP_ID, TAG_STATE, &encoded?);
        Ok(())
    }

    async fn persist_and_publish(&mut self, mut batch: WriteBatch) -> io::Result<()> {
        self.persist(&mut batch)?;
        crate::blocking::write(&self.store, batch).await?;
        self.view.send_replace(Arc::new(self.state.cluster.clone()));
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for ControllerStateMachine {
    type SnapshotData = StateSnapshot;
    type SnapshotBuilder = ControllerSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut responses = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Normal(Command::Controller(command)) => {
                    let members: std::collections::BTreeMap<u64, String> = self
                        .state
                        .last_membership
                        .membership()
                        .nodes()
                        .map(|(id, node)| (*id, node.addr.clone()))
                        .collect();
                    match self.state.cluster.apply(&command, &members) {
                        ControllerOutcome::Topic(result) => CommandResponse::Topic(result),
                        ControllerOutcome::TopicDeleted(result) => CommandResponse::TopicDeleted(result),
                        ControllerOutcome::NodeRegistered => CommandResponse::NodeRegistered,
                        ControllerOutcome::ProducerId(id) => CommandResponse::ProducerId(id),
                        ControllerOutcome::NodeRemoved(result) => CommandResponse::NodeRemoved(result),
                        ControllerOutcome::Operations(result) => CommandResponse::Operations(result),
                        ControllerOutcome::Rebalanced(plan, operations) => {
                            CommandResponse::Rebalanced { plan, operations }
                        }
                        ControllerOutcome::OperationUpdated(result) => CommandResponse::OperationUpdated(result),
                    }
                }
                EntryPayload::Normal(Command::Partition(_)) => CommandResponse::Misrouted,
                EntryPayload::Membership(membership) => {
                    self.state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::None
                }
            };
            self.state.last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                responses.push((responder, response));
            }
        }
        self.persist_and_publish(WriteBatch::default()).await?;
        for (responder, response) in responses {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        ControllerSnapshotBuilder {
            store: Arc::clone(&self.store),
            state: self.state.clone(),
            lock: Arc::clone(&self.snapshot_lock),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: StateSnapshot) -> Result<(), io::Error> {
        let mut state: Persisted = decode(&snapshot.0)?;
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        self.state = state;
        let mut batch = WriteBatch::default();
        self.topics.clear(&self.store, &mut batch);
        save_snapshot(&self.store, CONTROLLER_GROUP_ID, &self.snapshot_lock, &mut batch, meta, &snapshot)?;
        self.persist_and_publish(batch).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let store = Arc::clone(&self.store);
        crate::blocking::run(move || load_snapshot(&store, CONTROLLER_GROUP_ID)).await
    }
}

pub struct ControllerSnapshotBuilder {
    store: Arc<Store>,
    state: Persisted,
    lock: SnapshotLock,
}

impl RaftSnapshotBuilder<TypeConfig> for ControllerSnapshotBuilder {
    type SnapshotData = StateSnapshot;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let state = encode(&self.state)?;
        let (store, lock) = (Arc::clone(&self.store), Arc::clone(&self.lock));
        let (last_applied, last_membership) = (self.state.last_applied, self.state.last_membership.clone());
        crate::blocking::run(move || {
            build_and_save(&store, CONTROLLER_GROUP_ID, &lock, last_applied, &last_membership, state)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use cairn_storage::StoreOptions;
    use cairn_types::TopicConfig;
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::command::ControllerCommand;
    use crate::controller::topic::{PartitionAssignment, TopicMeta};
    use crate::type_config::Entry;

    fn open(dir: &std::path::Path) -> ControllerStateMachine {
        let store = Store::open(&dir.join("db"), &StoreOptions::default()).expect("store");
        ControllerStateMachine::open(store).expect("open").0
    }

    fn log_id(index: u64) -> LogId {
        let leader = openraft::type_config::alias::CommittedLeaderIdOf::<TypeConfig>::new(1, 1);
        LogId::new(leader, index)
    }

    /// Applies `command` as entry `index`; returns the bytes it wrote.
    fn apply(sm: &mut ControllerStateMachine, command: ControllerCommand, index: u64) -> u64 {
        let before = sm.store.bytes_written();
        let entry = Entry { log_id: log_id(index), payload: EntryPayload::Normal(Command::Controller(command)) };
        let entries = futures::stream::iter(vec![Ok::<_, io::Error>((entry, None))]);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(sm.apply(entries))
            .expect("apply");
        sm.store.bytes_written() - before
    }

    fn topic(name: String, group_id: u64) -> TopicMeta {
        let config =
            TopicConfig { partition_count: 1, replication_factor: 1, retention_ms: None, retention_bytes: None };
        let partitions =
            vec![PartitionAssignment { partition: 0, group_id, replicas: vec![1], operation: None, reassigned: false }];
        TopicMeta { name, config, partitions }
    }

    /// Adds topics up to `count` straight into the state (as creations would), then applies
    /// one more command once to write them.
    fn grow(sm: &mut ControllerStateMachine, count: u64, index: &mut u64) {
        for id in sm.state.cluster.topics.len() as u64..count {
            sm.state.cluster.topics.insert(format!("topic-{id}"), topic(format!("topic-{id}"), 1000 + id));
        }
        *index += 1;
        apply(sm, ControllerCommand::AllocateProducerId, *index);
    }

    /// Handing out a producer id changes a counter: what the apply writes must not grow with
    /// the number of topics (it did: the whole state).
    #[test]
    fn apply_cost_does_not_grow_with_the_topic_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let mut index = 0;
        grow(&mut sm, 10, &mut index);
        index += 1;
        let small = apply(&mut sm, ControllerCommand::AllocateProducerId, index);
        grow(&mut sm, 5_000, &mut index);
        index += 1;
        let large = apply(&mut sm, ControllerCommand::AllocateProducerId, index);
        println!("bytes written by one AllocateProducerId: {small} with 10 topics, {large} with 5,000");
        assert!(large <= small + 64, "apply cost grew with the topics: {small} -> {large} bytes");
    }

    /// A restart reads the state the applies left: topics written, changed and deleted.
    #[test]
    fn the_state_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let mut index = 0;
        grow(&mut sm, 20, &mut index);
        sm.state.cluster.topics.remove("topic-3");
        if let Some(topic) = sm.state.cluster.topics.get_mut("topic-4") {
            topic.partitions[0].replicas = vec![2, 3];
        }
        index += 1;
        apply(&mut sm, ControllerCommand::AllocateProducerId, index);
        let before = sm.state.cluster.clone();
        drop(sm);
        let sm = open(dir.path());
        assert_eq!(sm.state.cluster, before);
        assert_eq!(sm.state.last_applied, Some(log_id(index)));
    }

    /// A state value written with the topics inside (before topics had entries) is read,
    /// and the next write moves them to entries.
    #[test]
    fn a_state_with_the_topics_inside_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let mut index = 0;
        grow(&mut sm, 5, &mut index);
        let legacy = encode(&sm.state).expect("encode");
        let mut batch = WriteBatch::default();
        sm.store.sm_meta_put(&mut batch, CONTROLLER_GROUP_ID, TAG_STATE, &legacy);
        sm.store.write(batch).expect("write");
        drop(sm);
        let mut sm = open(dir.path());
        assert_eq!(sm.state.cluster.topics.len(), 5);
        index += 1;
        apply(&mut sm, ControllerCommand::AllocateProducerId, index);
        let stored: Persisted =
            decode(&sm.store.sm_meta_get(CONTROLLER_GROUP_ID, TAG_STATE).expect("get").expect("state"))
                .expect("decode");
        assert!(stored.cluster.topics.is_empty(), "the value no longer carries the topics");
        let before = sm.state.cluster.clone();
        drop(sm);
        assert_eq!(open(dir.path()).state.cluster, before);
    }
}
