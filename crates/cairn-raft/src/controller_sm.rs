//! The controller's state machine: cluster metadata, persisted whole on every apply (it is
//! small and changes rarely) and published to the host through a watch channel.

use std::io;
use std::sync::Arc;

use cairn_storage::Store;
use cairn_types::CONTROLLER_GROUP_ID;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::command::{Command, CommandResponse};
use crate::controller_state::{ControllerOutcome, ControllerState};
use crate::partition_sm::{Snapshot, SnapshotLock, StateSnapshot, build_and_save, load_snapshot, save_snapshot};
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
    snapshot_lock: SnapshotLock,
    view: watch::Sender<Arc<ControllerState>>,
}

impl ControllerStateMachine {
    pub fn open(store: Arc<Store>) -> io::Result<(ControllerStateMachine, watch::Receiver<Arc<ControllerState>>)> {
        let state: Persisted =
            store.sm_meta_get(CONTROLLER_GROUP_ID, TAG_STATE)?.map(|raw| decode(&raw)).transpose()?.unwrap_or_default();
        let (view, receiver) = watch::channel(Arc::new(state.cluster.clone()));
        Ok((ControllerStateMachine { store, state, snapshot_lock: SnapshotLock::default(), view }, receiver))
    }

    async fn persist_and_publish(&self, mut batch: WriteBatch) -> io::Result<()> {
        self.store.sm_meta_put(&mut batch, CONTROLLER_GROUP_ID, TAG_STATE, &encode(&self.state)?);
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
