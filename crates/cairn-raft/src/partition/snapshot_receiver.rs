//! The receiving end of a partition snapshot: which record batches were imported, for
//! which leader and snapshot, and whether the replica still exists.
//!
//! A partition snapshot arrives as chunks of retired stream heads (see
//! `cairn_storage::retired_heads`), then record chunks (`SnapshotChunk`), and then the
//! state that installs them (`network.rs`). Chunks are written to the store as they come, before
//! openraft sees the snapshot, so each one is checked here first:
//!
//! - it must come from the current leader or a newer one: its vote is at least the
//!   replica's (a late chunk of a deposed leader is refused);
//! - the replica must still run: `close` (the replica is stopped, its data about to be
//!   deleted) waits for an import under way and refuses every later chunk, so nothing is
//!   written into a deleted group;
//! - chunks of one transfer (one vote and snapshot) extend one contiguous run of offsets;
//!   a batch that does not follow the previous one starts a new run (the sender skips what
//!   retention deleted meanwhile), and a chunk of another transfer starts over.
//!
//! Before the state is installed, `check_complete` verifies that the run imported in this
//! transfer is exactly `[log_start_offset, next_offset)` of the state: no hole, nothing
//! taken on trust (an empty range needs no chunk).

use cairn_storage::{PartitionLog, RetiredHead};
use cairn_types::Offset;
use cairn_types::batch::decode_header;
use serde::{Deserialize, Serialize};

use super::state_machine::PartitionSmState;
use crate::type_config::{LogId, Vote};

/// Part of a partition's records, sent ahead of its snapshot, tagged with the transfer it
/// belongs to.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The sending leader's vote.
    pub vote: Vote,
    /// The last log id of the snapshot the records belong to.
    pub last_log_id: Option<LogId>,
    pub batches: Vec<(Offset, Vec<u8>)>,
    /// Heads of streams whose records retention removed, sent before any batch.
    pub retired_heads: Vec<RetiredHead>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotRefused {
    #[error("snapshot chunk of a stale leader refused: vote {chunk}, this replica has seen {current}")]
    StaleVote { chunk: String, current: String },
    #[error("snapshot refused: the replica is stopped (its group is being deleted)")]
    Closed,
    #[error(
        "snapshot incomplete: its state needs offsets [{needed_start}, {needed_end}), this transfer imported \
         [{imported_start}, {imported_end})"
    )]
    Incomplete { needed_start: Offset, needed_end: Offset, imported_start: Offset, imported_end: Offset },
    #[error("snapshot chunk refused: {0}")]
    Malformed(String),
    #[error("snapshot chunk not stored: {0}")]
    Storage(String),
}

/// One transfer's contiguous run of imported offsets, `[start, next)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    vote: Vote,
    last_log_id: Option<LogId>,
    start: Offset,
    next: Offset,
}

#[derive(Debug, Default)]
struct Receiving {
    closed: bool,
    session: Option<Session>,
}

/// One per partition replica. Imports hold its lock, so `close` waits for them.
#[derive(Debug, Default)]
pub struct SnapshotReceiver {
    receiving: tokio::sync::Mutex<Receiving>,
}

impl SnapshotReceiver {
    /// Verifies `chunk` against `current` (the replica's vote) and the transfer so far, then
    /// imports its batches into `log`.
    pub async fn import(&self, log: &PartitionLog, current: Vote, chunk: SnapshotChunk) -> Result<(), SnapshotRefused> {
        if !matches!(chunk.vote.partial_cmp(&current), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)) {
            return Err(SnapshotRefused::StaleVote { chunk: chunk.vote.to_string(), current: current.to_string() });
        }
        let mut receiving = self.receiving.lock().await;
        if receiving.closed {
            return Err(SnapshotRefused::Closed);
        }
        let (mut session, mut new_run) = match receiving.session {
            Some(session) if session.vote == chunk.vote && session.last_log_id == chunk.last_log_id => (session, false),
            _ => (Session { vote: chunk.vote, last_log_id: chunk.last_log_id, start: 0, next: 0 }, true),
        };
        for (base_offset, raw) in &chunk.batches {
            let header = decode_header(raw).map_err(|err| SnapshotRefused::Malformed(err.to_string()))?;
            if header.base_offset != *base_offset || header.next_offset() <= *base_offset {
                return Err(SnapshotRefused::Malformed(format!(
                    "batch sent as offset {base_offset} holds [{}, {})",
                    header.base_offset,
                    header.next_offset()
                )));
            }
            if new_run || *base_offset != session.next {
                session.start = *base_offset;
                new_run = false;
            }
            session.next = header.next_offset();
        }
        let log = log.clone();
        let (batches, heads) = (chunk.batches, chunk.retired_heads);
        tokio::task::spawn_blocking(move || {
            if !heads.is_empty() {
                log.import_retired_heads(&heads)?;
            }
            log.import_batches(&batches)
        })
        .await
        .map_err(|err| SnapshotRefused::Storage(err.to_string()))?
        .map_err(|err| SnapshotRefused::Storage(err.to_string()))?;
        receiving.session = Some(session);
        Ok(())
    }

    /// Verifies that this transfer (`vote`, `last_log_id`) imported exactly the records
    /// `state` describes, before it is installed.
    pub async fn check_complete(
        &self,
        vote: &Vote,
        last_log_id: Option<LogId>,
        state: &PartitionSmState,
    ) -> Result<(), SnapshotRefused> {
        let receiving = self.receiving.lock().await;
        if receiving.closed {
            return Err(SnapshotRefused::Closed);
        }
        let (needed_start, needed_end) = (state.log.log_start_offset, state.log.next_offset);
        if needed_start == needed_end {
            return Ok(());
        }
        let (imported_start, imported_end) = match receiving.session {
            Some(session) if session.vote == *vote && session.last_log_id == last_log_id => {
                (session.start, session.next)
            }
            _ => (0, 0),
        };
        if imported_start != needed_start || imported_end != needed_end {
            return Err(SnapshotRefused::Incomplete { needed_start, needed_end, imported_start, imported_end });
        }
        Ok(())
    }

    /// The replica stops: waits for an import under way, then refuses every later chunk.
    pub async fn close(&self) {
        self.receiving.lock().await.closed = true;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use cairn_storage::{Store, StoreOptions};
    use cairn_types::{Record, encode_batch};

    use super::*;

    fn batch(base_offset: Offset, records: usize) -> (Offset, Vec<u8>) {
        let records: Vec<Record> =
            (0..records).map(|_| Record { key: None, headers: Vec::new(), value: Bytes::from_static(b"v") }).collect();
        (base_offset, encode_batch(base_offset, &records, &[], &vec![1; records.len()]).to_vec())
    }

    fn vote(term: u64) -> Vote {
        Vote::new_committed(term, 1)
    }

    fn log_id(index: u64) -> Option<LogId> {
        use openraft::vote::RaftLeaderId;
        let leader = openraft::type_config::alias::CommittedLeaderIdOf::<crate::TypeConfig>::new(1, 1);
        Some(LogId::new(leader, index))
    }

    fn state(log_start_offset: Offset, next_offset: Offset) -> PartitionSmState {
        let mut state = PartitionSmState::default();
        state.log.log_start_offset = log_start_offset;
        state.log.next_offset = next_offset;
        state
    }

    fn chunk(term: u64, index: u64, batches: Vec<(Offset, Vec<u8>)>) -> SnapshotChunk {
        SnapshotChunk { vote: vote(term), last_log_id: log_id(index), batches, retired_heads: Vec::new() }
    }

    fn log() -> (tempfile::TempDir, PartitionLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db"), &StoreOptions::default()).expect("store");
        (dir, PartitionLog::new(Arc::clone(&store), 7))
    }

    #[tokio::test]
    async fn contiguous_chunks_complete_the_range() {
        let (_dir, log) = log();
        let receiver = SnapshotReceiver::default();
        receiver.import(&log, vote(2), chunk(2, 10, vec![batch(0, 3), batch(3, 2)])).await.expect("first");
        receiver.import(&log, vote(2), chunk(2, 10, vec![batch(5, 5)])).await.expect("second");
        receiver.check_complete(&vote(2), log_id(10), &state(0, 10)).await.expect("complete");
        let refused = receiver.check_complete(&vote(2), log_id(10), &state(0, 12)).await;
        assert!(matches!(refused, Err(SnapshotRefused::Incomplete { imported_end: 10, .. })), "{refused:?}");
        let refused = receiver.check_complete(&vote(2), log_id(11), &state(0, 10)).await;
        assert!(matches!(refused, Err(SnapshotRefused::Incomplete { .. })), "another snapshot: {refused:?}");
    }

    #[tokio::test]
    async fn a_hole_restarts_the_run_and_the_state_must_start_there() {
        let (_dir, log) = log();
        let receiver = SnapshotReceiver::default();
        receiver.import(&log, vote(2), chunk(2, 10, vec![batch(0, 3)])).await.expect("first");
        // Retention deleted [3, 6) at the sender meanwhile.
        receiver.import(&log, vote(2), chunk(2, 10, vec![batch(6, 4)])).await.expect("after the hole");
        let refused = receiver.check_complete(&vote(2), log_id(10), &state(0, 10)).await;
        assert!(
            matches!(refused, Err(SnapshotRefused::Incomplete { imported_start: 6, imported_end: 10, .. })),
            "a hole is never installed: {refused:?}"
        );
        receiver.check_complete(&vote(2), log_id(10), &state(6, 10)).await.expect("the run after the hole");
    }

    #[tokio::test]
    async fn nothing_imported_installs_only_an_empty_range() {
        let (_dir, log) = log();
        let receiver = SnapshotReceiver::default();
        receiver.check_complete(&vote(2), log_id(10), &state(10, 10)).await.expect("empty range");
        let refused = receiver.check_complete(&vote(2), log_id(10), &state(0, 10)).await;
        assert!(matches!(refused, Err(SnapshotRefused::Incomplete { .. })), "{refused:?}");
        // A chunk of an earlier transfer does not count for this one.
        receiver.import(&log, vote(2), chunk(2, 9, vec![batch(0, 10)])).await.expect("old transfer");
        let refused = receiver.check_complete(&vote(3), log_id(10), &state(0, 10)).await;
        assert!(matches!(refused, Err(SnapshotRefused::Incomplete { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn stale_and_late_chunks_are_refused() {
        let (_dir, log) = log();
        let receiver = SnapshotReceiver::default();
        let refused = receiver.import(&log, vote(3), chunk(2, 10, vec![batch(0, 3)])).await;
        assert!(matches!(refused, Err(SnapshotRefused::StaleVote { .. })), "{refused:?}");
        assert!(log.raw_batches(0, 1024).expect("read").is_empty(), "a refused chunk writes nothing");
        receiver.import(&log, vote(3), chunk(4, 10, vec![batch(0, 3)])).await.expect("a newer leader's chunk");
        receiver.close().await;
        let refused = receiver.import(&log, vote(4), chunk(4, 10, vec![batch(3, 3)])).await;
        assert_eq!(refused, Err(SnapshotRefused::Closed));
        assert_eq!(log.raw_batches(0, 1024).expect("read").len(), 1, "nothing after close");
    }
}
