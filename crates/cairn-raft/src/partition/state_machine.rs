//! The state machine of one partition: applies committed batches, and event appends
//! (`stream_apply.rs`), to the partition log.
//!
//! Records, the partition's `PartitionLogState`, `last_applied` and the entries of the
//! producers the entries touched (`producer_store.rs`) are written in one RocksDB
//! WriteBatch per `apply` call, so a restart resumes exactly after the last applied entry. Readers see the applied state through a watch channel (`PartitionView`) and read
//! RocksDB directly: they never take a lock the apply path holds.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use cairn_storage::{PartitionLog, PartitionLogState, Store, WriteBatch};
use cairn_types::{GroupId, LatencyHistogram};
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::producer_store::{self, ProducerChanges};
use super::producer_table::{ProducerBatch, ProducerTable, SequenceCheck};
use super::snapshot::{Snapshot, SnapshotLock, StateSnapshot, build_and_save, load_snapshot, save_snapshot};
use super::stream_apply::PendingStreams;
use crate::command::{AppendOutcome, COMPACTION_EVENTS_MAX, Command, CommandResponse, PartitionCommand};
use crate::group::{GroupStore, GroupTable, SharedGroups};
use crate::type_config::{LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::{decode, encode};

const TAG_STATE: u8 = b's';

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionSmState {
    pub log: PartitionLogState,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    /// Idempotent producers' recent batches: snapshotted with the log; stored one entry per
    /// producer (`producer_store.rs`), so the stored state value has an empty table.
    pub producers: ProducerTable,
}

/// What readers may see: everything below `log.next_offset` is committed and applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionView {
    pub log: PartitionLogState,
    pub applied_index: u64,
}

impl PartitionView {
    pub fn high_watermark(&self) -> u64 {
        self.log.next_offset
    }
}

/// Largest WriteBatch one apply call accumulates before writing (a catching-up replica
/// may apply thousands of entries in one call).
const APPLY_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

pub struct PartitionStateMachine {
    pub(super) store: Arc<Store>,
    pub(super) log: PartitionLog,
    pub(super) state: PartitionSmState,
    /// Stream heads and events written by the apply batch being built (`stream_apply.rs`).
    pub(super) pending: PendingStreams,
    /// Producers changed since the state was last written.
    producer_changes: ProducerChanges,
    /// The consumer groups this partition coordinates (a partition of the internal groups
    /// topic; empty elsewhere), shared with the node, and their stored entries.
    groups: SharedGroups,
    group_store: GroupStore,
    view: watch::Sender<PartitionView>,
    /// Serialises snapshot saves with builders running in openraft's background task.
    snapshot_lock: SnapshotLock,
    /// Where each apply call's duration goes (the host's, for `/metrics`), if anywhere.
    apply_latency: Option<Arc<LatencyHistogram>>,
}

impl PartitionStateMachine {
    /// Loads the state machine of `group` from the store (empty if new).
    pub fn open(
        store: Arc<Store>,
        group: GroupId,
    ) -> io::Result<(PartitionStateMachine, watch::Receiver<PartitionView>)> {
        let mut state: PartitionSmState =
            store.sm_meta_get(group, TAG_STATE)?.map(|raw| decode(&raw)).transpose()?.unwrap_or_default();
        // A state written before producers had entries of their own carries the table:
        // the next write moves it to entries.
        let mut producer_changes = ProducerChanges::default();
        for (producer_id, _) in state.producers.iter() {
            producer_changes.touched(producer_id);
        }
        producer_store::load(&store, group, &mut state.producers)?;
        let groups = SharedGroups::default();
        let group_store = GroupStore::load(&store, group, &mut *groups.write()?)?;
        let (view, receiver) = watch::channel(view_of(&state));
        let log = PartitionLog::new(Arc::clone(&store), group);
        let snapshot_lock = SnapshotLock::default();
        let pending = PendingStreams::default();
        let apply_latency = None;
        let sm = PartitionStateMachine {
            store,
            log,
            state,
            pending,
            producer_changes,
            groups,
            group_store,
            view,
            snapshot_lock,
            apply_latency,
        };
        Ok((sm, receiver))
    }

    /// Records how long each apply call takes (entries in, batch written) in `histogram`.
    pub fn observe_applies(&mut self, histogram: Arc<LatencyHistogram>) {
        self.apply_latency = Some(histogram);
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The consumer groups this partition coordinates, as applied so far.
    pub fn groups(&self) -> SharedGroups {
        self.groups.clone()
    }

    pub(super) fn apply_command(
        &mut self,
        batch: &mut WriteBatch,
        command: PartitionCommand,
        index: u64,
    ) -> io::Result<CommandResponse> {
        Ok(match command {
            PartitionCommand::Append { records, timestamp_ms, producer } => {
                if let Some(producer) = producer {
                    match self.state.producers.check(producer.producer_id, producer.sequence, records.len() as u32) {
                        SequenceCheck::Append => {}
                        SequenceCheck::Duplicate(batch) => {
                            return Ok(CommandResponse::Appended(AppendOutcome {
                                base_offset: batch.base_offset,
                                record_count: batch.record_count,
                                timestamp_ms: batch.timestamp_ms,
                                applied_index: index,
                                duplicate: true,
                            }));
                        }
                        SequenceCheck::OutOfOrder { expected } => {
                            return Ok(CommandResponse::SequenceError {
                                producer_id: producer.producer_id,
                                sequence: producer.sequence,
                                expected,
                            });
                        }
                    }
                }
                let base_offset = self.log.append(batch, &mut self.state.log, &records, &[], timestamp_ms);
                let timestamp_ms = self.state.log.last_timestamp_ms;
                if let Some(producer) = producer {
                    let record_count = records.len() as u32;
                    let appended =
                        ProducerBatch { sequence: producer.sequence, record_count, base_offset, timestamp_ms };
                    let evicted = self.state.producers.record(producer.producer_id, appended, index);
                    self.producer_changes.touched(producer.producer_id);
                    if let Some(evicted) = evicted {
                        self.producer_changes.touched(evicted);
                    }
                }
                CommandResponse::Appended(AppendOutcome {
                    base_offset,
                    record_count: records.len() as u32,
                    timestamp_ms,
                    applied_index: index,
                    duplicate: false,
                })
            }
            PartitionCommand::DeletePrefix { before_offset } => {
                self.log.delete_prefix(batch, &mut self.state.log, before_offset)?;
                CommandResponse::PrefixDeleted { log_start_offset: self.state.log.log_start_offset }
            }
            PartitionCommand::AppendEvents(append) => self.apply_events(batch, append, index)?,
            PartitionCommand::ChangeStream(change) => self.apply_stream_change(batch, change, index)?,
            PartitionCommand::CompactStreams { streams, now_ms } => {
                let streams: Vec<Bytes> = streams.into_iter().map(Bytes::from).collect();
                let compacted =
                    self.log.compact_streams(batch, &mut self.state.log, &streams, now_ms, COMPACTION_EVENTS_MAX)?;
                CommandResponse::Compacted { events: compacted.events, bytes: compacted.bytes }
            }
            PartitionCommand::Group(command) => {
                let (outcome, changed) = self.groups.write()?.apply(&command);
                if changed {
                    self.group_store.touched(command.group());
                }
                CommandResponse::Group(outcome)
            }
        })
    }

    /// Writes what apply accumulated, with the state, then publishes it and answers.
    async fn commit(
        &mut self,
        mut batch: WriteBatch,
        responses: Vec<(openraft::storage::ApplyResponder<TypeConfig>, CommandResponse)>,
    ) -> io::Result<()> {
        self.persist(&mut batch)?;
        crate::blocking::write(&self.store, batch).await?;
        self.pending.clear();
        self.view.send_replace(view_of(&self.state));
        for (responder, response) in responses {
            responder.send(response);
        }
        Ok(())
    }

    /// Adds the state to `batch`: the state value without the producer table, and the
    /// entries of the producers that changed.
    pub(super) fn persist(&mut self, batch: &mut WriteBatch) -> io::Result<()> {
        let group = self.log.group();
        self.producer_changes.write(&self.store, batch, group, &self.state.producers)?;
        self.group_store.write(&self.store, batch, group, &*self.groups.read()?)?;
        let producers = std::mem::take(&mut self.state.producers);
        let encoded = encode(&self.state);
        self.state.producers = producers;
        self.store.sm_meta_put(batch, group, TAG_STATE, &encoded?);
        Ok(())
    }
}

fn view_of(state: &PartitionSmState) -> PartitionView {
    PartitionView { log: state.log, applied_index: state.last_applied.map_or(0, |id| id.index) }
}

impl RaftStateMachine<TypeConfig> for PartitionStateMachine {
    type SnapshotData = StateSnapshot;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        if let Some(delay) = crate::apply_hold::apply_delay() {
            tokio::time::sleep(delay).await;
        }
        let started = std::time::Instant::now();
        let mut batch = WriteBatch::default();
        let mut responses = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            // A prefix deletion and a compaction find what to remove in the store, and the
            // batch this call builds cannot be read back: write what it applied so far first,
            // or a replica catching up (appends and their deletion in one call) would keep
            // them. A compaction is written at once too: later entries (appends checking
            // event ids, another compaction rewriting the same batch) read what it removed.
            let reads_store = matches!(
                entry.payload,
                EntryPayload::Normal(Command::Partition(
                    PartitionCommand::DeletePrefix { .. } | PartitionCommand::CompactStreams { .. }
                ))
            );
            let compaction = matches!(
                entry.payload,
                EntryPayload::Normal(Command::Partition(PartitionCommand::CompactStreams { .. }))
            );
            if reads_store && !batch.is_empty() {
                self.commit(std::mem::take(&mut batch), std::mem::take(&mut responses)).await?;
            }
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Normal(Command::Partition(command)) => {
                    self.apply_command(&mut batch, command, entry.log_id.index)?
                }
                EntryPayload::Normal(Command::Controller(_)) => CommandResponse::Misrouted,
                EntryPayload::Membership(membership) => {
                    self.state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::None
                }
            };
            debug_assert!(self.state.last_applied < Some(entry.log_id), "entries apply in order");
            self.state.last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                responses.push((responder, response));
            }
            if compaction || batch.size_in_bytes() > APPLY_BATCH_BYTES_MAX {
                self.commit(std::mem::take(&mut batch), std::mem::take(&mut responses)).await?;
            }
        }
        let committed = self.commit(batch, responses).await;
        if let Some(histogram) = &self.apply_latency {
            histogram.observe(started.elapsed());
        }
        committed
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: Arc::clone(&self.store),
            group: self.log.group(),
            state: self.state.clone(),
            groups: self.groups.read().map(|groups| groups.clone()).ok(),
            lock: Arc::clone(&self.snapshot_lock),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: StateSnapshot) -> Result<(), io::Error> {
        // The partition's batches in [log_start_offset, next_offset) were streamed into the
        // store before this call (see network.rs); here the state catches up with them and
        // anything below the new log start goes.
        let (mut state, groups) = decode_snapshot(&snapshot.0)?;
        state.last_applied = meta.last_log_id;
        state.last_membership = meta.last_membership.clone();
        let mut batch = WriteBatch::default();
        self.log.truncate_below(&mut batch, state.log.log_start_offset)?;
        producer_store::replace_all(&self.store, &mut batch, self.log.group(), &state.producers)?;
        self.producer_changes = ProducerChanges::default();
        self.group_store.replace_all(&self.store, &mut batch, self.log.group(), &groups)?;
        *self.groups.write()? = groups;
        self.pending.clear();
        self.state = state;
        self.persist(&mut batch)?;
        save_snapshot(&self.store, self.log.group(), &self.snapshot_lock, &mut batch, meta, &snapshot)?;
        crate::blocking::write(&self.store, batch).await?;
        self.view.send_replace(view_of(&self.state));
        tracing::info!(
            group = self.log.group(),
            log_start_offset = self.state.log.log_start_offset,
            next_offset = self.state.log.next_offset,
            last_log_id = ?meta.last_log_id,
            "partition snapshot installed"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let (store, group) = (Arc::clone(&self.store), self.log.group());
        crate::blocking::run(move || load_snapshot(&store, group)).await
    }
}

/// Builds a snapshot from a copy of the state taken when the builder was made. Cheap: the
/// state machine is already on disk, so a snapshot only records where it stands.
pub struct SnapshotBuilder {
    store: Arc<Store>,
    group: GroupId,
    state: PartitionSmState,
    /// `None`: the table could not be read (its lock was poisoned); building fails.
    groups: Option<GroupTable>,
    lock: SnapshotLock,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = StateSnapshot;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (store, group, lock) = (Arc::clone(&self.store), self.group, Arc::clone(&self.lock));
        let (last_applied, last_membership) = (self.state.last_applied, self.state.last_membership.clone());
        let groups = self.groups.as_ref().ok_or_else(|| io::Error::other("group table lock poisoned"))?;
        let state = encode_snapshot(&self.state, groups)?;
        crate::blocking::run(move || build_and_save(&store, group, &lock, last_applied, &last_membership, state)).await
    }
}

/// A partition snapshot's payload: the encoded state, then the encoded group table (a
/// payload of before groups existed ends after the state, and has none).
pub(crate) fn encode_snapshot(state: &PartitionSmState, groups: &GroupTable) -> io::Result<Vec<u8>> {
    let mut payload = encode(state)?;
    payload.extend(encode(groups)?);
    Ok(payload)
}

pub(crate) fn decode_snapshot(payload: &[u8]) -> io::Result<(PartitionSmState, GroupTable)> {
    let (state, read): (PartitionSmState, usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
    let rest = &payload[read..];
    let groups = if rest.is_empty() { GroupTable::default() } else { decode(rest)? };
    Ok((state, groups))
}

/// Applies `commands` through openraft's `apply`, in one call, as a replica catching up
/// does (the entries follow the last applied one).
#[cfg(test)]
pub(super) fn apply_in_one_call(sm: &mut PartitionStateMachine, commands: Vec<PartitionCommand>) {
    use openraft::vote::RaftLeaderId;

    use crate::type_config::{Entry, LogId};
    let base = sm.state.last_applied.map_or(0, |id| id.index) + 1;
    let entries: Vec<_> = commands
        .into_iter()
        .zip(base..)
        .map(|(command, index)| {
            let leader = openraft::type_config::alias::CommittedLeaderIdOf::<TypeConfig>::new(1, 1);
            let payload = EntryPayload::Normal(Command::Partition(command));
            Ok::<_, io::Error>((Entry { log_id: LogId::new(leader, index), payload }, None))
        })
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(sm.apply(futures::stream::iter(entries)))
        .expect("apply");
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cairn_storage::StoreOptions;
    use cairn_types::Record;

    use super::*;
    use crate::command::ProducerSequence;

    const GROUP: GroupId = 42;

    fn open(dir: &std::path::Path) -> PartitionStateMachine {
        let store = Store::open(&dir.join("db"), &StoreOptions::default()).expect("store");
        PartitionStateMachine::open(store, GROUP).expect("open").0
    }

    fn append(producer_id: u64, sequence: u64) -> PartitionCommand {
        PartitionCommand::Append {
            records: vec![Record { key: None, headers: Vec::new(), value: Bytes::from_static(b"v") }],
            timestamp_ms: 1,
            producer: Some(ProducerSequence { producer_id, sequence }),
        }
    }

    /// Applies `commands` as one apply call would (without responders) and returns the
    /// bytes of the WriteBatch written.
    fn apply(sm: &mut PartitionStateMachine, commands: Vec<(PartitionCommand, u64)>) -> usize {
        let mut batch = WriteBatch::default();
        for (command, index) in commands {
            sm.apply_command(&mut batch, command, index).expect("apply");
        }
        sm.persist(&mut batch).expect("persist");
        let bytes = batch.size_in_bytes();
        sm.store.write(batch).expect("write");
        bytes
    }

    /// One idempotent append with 10 producers known, then with 10,000: what the apply
    /// writes must not grow with the producer table (it did: the whole table, ~1 MB).
    #[test]
    fn apply_cost_does_not_grow_with_the_producer_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let mut index = 1;
        let cost_at = |sm: &mut PartitionStateMachine, producers: u64, index: &mut u64| {
            let known = sm.state.producers.len() as u64;
            let commands = (known..producers).map(|id| {
                *index += 1;
                (append(id, 0), *index)
            });
            apply(sm, commands.collect());
            // Producer 0 appends again, at its next sequence.
            let next = match sm.state.producers.check(0, u64::MAX, 1) {
                SequenceCheck::OutOfOrder { expected } => expected,
                other => panic!("{other:?}"),
            };
            *index += 1;
            let next_offset = sm.state.log.next_offset;
            let bytes = apply(sm, vec![(append(0, next), *index)]);
            assert_eq!(sm.state.log.next_offset, next_offset + 1, "the append was applied");
            bytes
        };
        let small = cost_at(&mut sm, 10, &mut index);
        let large = cost_at(&mut sm, PRODUCERS_FOR_TEST, &mut index);
        println!(
            "bytes written by one idempotent append: {small} with 10 producers, {large} with {PRODUCERS_FOR_TEST}"
        );
        assert!(large <= small + 64, "apply cost grew with the producer table: {small} -> {large} bytes");
    }

    /// Reopening the store gives the table the applies left, evictions included: the entries
    /// are in the same WriteBatch as the records.
    #[test]
    fn producers_survive_a_restart_and_evicted_ones_are_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let producers = PRODUCERS_FOR_TEST + 3;
        apply(&mut sm, (0..producers).map(|id| (append(id, 0), id + 1)).collect());
        assert_eq!(sm.state.producers.len() as u64, PRODUCERS_FOR_TEST);
        apply(&mut sm, vec![(append(producers - 1, 1), producers + 1)]);
        let before = sm.state.producers.clone();
        drop(sm);
        let sm = open(dir.path());
        assert_eq!(sm.state.producers, before, "the table after a restart is the table before it");
        assert_eq!(sm.state.producers.check(0, 1, 1), SequenceCheck::OutOfOrder { expected: 0 }, "0 was evicted");
    }

    /// A state value written with the whole table inside (before producers had entries) is
    /// read, and the next write moves the table to entries.
    #[test]
    fn a_state_with_the_table_inside_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        apply(&mut sm, (0..10).map(|id| (append(id, 0), id + 1)).collect());
        let table = sm.state.producers.clone();
        let legacy = encode(&sm.state).expect("encode");
        let mut batch = WriteBatch::default();
        sm.store.sm_meta_put(&mut batch, GROUP, TAG_STATE, &legacy);
        sm.store.write(batch).expect("write");
        drop(sm);
        let mut sm = open(dir.path());
        assert_eq!(sm.state.producers, table);
        apply(&mut sm, vec![(append(0, 1), 20)]);
        let stored: PartitionSmState =
            decode(&sm.store.sm_meta_get(GROUP, TAG_STATE).expect("get").expect("state")).expect("decode");
        assert!(stored.producers.is_empty(), "the state value no longer carries the table");
        let after = sm.state.producers.clone();
        drop(sm);
        assert_eq!(open(dir.path()).state.producers, after);
    }

    /// Installing a snapshot replaces every stored producer by the snapshot's table.
    #[test]
    fn a_snapshot_replaces_the_stored_producers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        apply(&mut sm, (0..10).map(|id| (append(id, 0), id + 1)).collect());
        let mut snapshot_state = PartitionSmState::default();
        snapshot_state.producers.record(
            77,
            ProducerBatch { sequence: 0, record_count: 1, base_offset: 0, timestamp_ms: 1 },
            5,
        );
        snapshot_state.log.next_offset = 1;
        let meta = SnapshotMeta::default();
        let data = StateSnapshot(encode(&snapshot_state).expect("encode"));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(sm.install_snapshot(&meta, data))
            .expect("install");
        assert_eq!(sm.state.producers, snapshot_state.producers);
        drop(sm);
        assert_eq!(open(dir.path()).state.producers, snapshot_state.producers, "no producer of before is left");
    }

    /// A replica catching up applies appends and the prefix deletion that removes them in
    /// one apply call (a follower whose replica started late did, in a CI run). The
    /// deletion finds its batches in the store, so they must be written by then, or this
    /// replica would keep what the others deleted.
    #[test]
    fn a_prefix_deletion_applied_with_its_appends_in_one_call_deletes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let plain = || PartitionCommand::Append {
            records: vec![Record { key: None, headers: Vec::new(), value: Bytes::from_static(b"v") }],
            timestamp_ms: 1,
            producer: None,
        };
        let commands = (0..5).map(|_| plain()).chain([PartitionCommand::DeletePrefix { before_offset: 5 }]);
        apply_in_one_call(&mut sm, commands.collect());
        assert_eq!((sm.state.log.log_start_offset, sm.state.log.next_offset), (5, 5));
        assert!(sm.log.raw_batches(0, usize::MAX).expect("batches").is_empty(), "the deleted batches are gone");
    }

    const PRODUCERS_FOR_TEST: u64 = super::super::producer_table::PRODUCERS_PER_PARTITION_MAX as u64;
}
