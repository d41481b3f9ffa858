//! The partition log against a simple in-memory model, on a real RocksDB on disk.

use std::sync::Arc;

use bytes::Bytes;
use cairn_storage::{PartitionLog, PartitionLogState, ReadLimits, StorageError, Store, StoreOptions, WriteBatch};
use cairn_types::{Record, StoredRecord};
use proptest::prelude::*;

const GROUP: u64 = 7;
const STATE_TAG: u8 = b's';

fn open(dir: &std::path::Path) -> Arc<Store> {
    Store::open(dir, &StoreOptions::default()).expect("open store")
}

fn load_state(store: &Store) -> PartitionLogState {
    store
        .sm_meta_get(GROUP, STATE_TAG)
        .expect("read state")
        .map(|raw| bincode::serde::decode_from_slice(&raw, bincode::config::standard()).expect("decode").0)
        .unwrap_or_default()
}

fn save_state(store: &Store, batch: &mut WriteBatch, state: &PartitionLogState) {
    let raw = bincode::serde::encode_to_vec(state, bincode::config::standard()).expect("encode");
    store.sm_meta_put(batch, GROUP, STATE_TAG, &raw);
}

fn record(key: Option<&str>, value: &[u8]) -> Record {
    Record {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        headers: vec![],
        value: Bytes::copy_from_slice(value),
    }
}

fn append(store: &Arc<Store>, log: &PartitionLog, state: &mut PartitionLogState, records: &[Record], ts: u64) -> u64 {
    let mut batch = WriteBatch::default();
    let base = log.append(&mut batch, state, records, &[], ts);
    save_state(store, &mut batch, state);
    store.write(batch).expect("write");
    base
}

#[derive(Debug, Clone)]
enum Op {
    Append { values: Vec<Vec<u8>>, keyed: bool, timestamp_ms: u64 },
    Read { from_back: u64, max_records: usize, max_bytes: usize },
    DeletePrefix { fraction: u8 },
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8), any::<bool>(), 0u64..2_000)
            .prop_map(|(values, keyed, timestamp_ms)| Op::Append { values, keyed, timestamp_ms }),
        3 => (0u64..40, 1usize..20, 1usize..400).prop_map(|(from_back, max_records, max_bytes)| Op::Read { from_back, max_records, max_bytes }),
        1 => (0u8..=100).prop_map(|fraction| Op::DeletePrefix { fraction }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn partition_log_matches_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = open(dir.path());
        let mut log = PartitionLog::new(Arc::clone(&store), GROUP);
        let mut state = PartitionLogState::default();
        // The model: every record ever appended with its timestamp, and the log start.
        let mut model: Vec<(Record, u64)> = Vec::new();
        let mut batch_starts: Vec<u64> = Vec::new();
        let mut model_start = 0u64;
        let mut last_ts = 0u64;

        for op in ops {
            match op {
                Op::Append { values, keyed, timestamp_ms } => {
                    let records: Vec<Record> = values.iter().enumerate()
                        .map(|(i, v)| record(keyed.then_some(if i % 2 == 0 { "even" } else { "odd" }), v))
                        .collect();
                    let base = append(&store, &log, &mut state, &records, timestamp_ms);
                    prop_assert_eq!(base, model.len() as u64);
                    last_ts = last_ts.max(timestamp_ms);
                    batch_starts.push(base);
                    model.extend(records.into_iter().map(|r| (r, last_ts)));
                }
                Op::Read { from_back, max_records, max_bytes } => {
                    let hw = model.len() as u64;
                    let from = hw.saturating_sub(from_back);
                    let result = log.read(from, &state, hw, ReadLimits { max_records, max_bytes });
                    if from < model_start {
                        let out_of_range = matches!(result, Err(StorageError::OffsetOutOfRange { .. }));
                        prop_assert!(out_of_range);
                        continue;
                    }
                    let read = result.expect("read");
                    let got = read.records;
                    prop_assert!(got.len() <= max_records);
                    prop_assert_eq!(read.next_offset, got.last().map_or(from, |r| r.offset + 1), "no record is removed here");
                    let expected_len = (hw - from) as usize;
                    if expected_len > 0 {
                        prop_assert!(!got.is_empty(), "a read with data returns at least one record");
                    }
                    for (i, stored) in got.iter().enumerate() {
                        let offset = from + i as u64;
                        let (expected, ts) = &model[offset as usize];
                        prop_assert_eq!(stored, &StoredRecord {
                            offset, timestamp_ms: *ts, key: expected.key.clone(),
                            headers: expected.headers.clone(), value: expected.value.clone(), event: None,
                        });
                    }
                }
                Op::DeletePrefix { fraction } => {
                    // Only whole batches go: pick a batch boundary.
                    let target = model.len() as u64 * u64::from(fraction) / 100;
                    let cut = batch_starts.iter().copied().filter(|&b| b <= target).max().unwrap_or(0);
                    let mut batch = WriteBatch::default();
                    log.delete_prefix(&mut batch, &mut state, cut).expect("delete prefix");
                    save_state(&store, &mut batch, &state);
                    store.write(batch).expect("write");
                    model_start = model_start.max(cut);
                    prop_assert_eq!(state.log_start_offset, model_start);
                }
                Op::Reopen => {
                    drop(log);
                    drop(store);
                    store = open(dir.path());
                    log = PartitionLog::new(Arc::clone(&store), GROUP);
                    state = load_state(&store);
                }
            }
            prop_assert_eq!(state.next_offset, model.len() as u64);
            prop_assert_eq!(state.log_start_offset, model_start);
        }
        // The key index returns exactly the live offsets of each key.
        for key in ["even", "odd"] {
            let expected: Vec<u64> = model.iter().enumerate()
                .filter(|(o, (r, _))| *o as u64 >= model_start && r.key.as_deref() == Some(key.as_bytes()))
                .map(|(o, _)| o as u64).collect();
            prop_assert_eq!(log.offsets_for_key(key.as_bytes(), 0, usize::MAX, &state).expect("key index"), expected);
        }
        // The size accounting matches what retention by bytes needs.
        let cut = log.retention_cut(&state, 0, None, Some(1)).expect("cut");
        if state.next_offset > state.log_start_offset {
            prop_assert!(cut.is_some());
        }
    }
}

#[test]
fn timestamp_index_finds_first_offset_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let log = PartitionLog::new(Arc::clone(&store), GROUP);
    let mut state = PartitionLogState::default();
    for (i, ts) in [100u64, 200, 200, 350, 90].into_iter().enumerate() {
        append(&store, &log, &mut state, &[record(None, &[i as u8]), record(None, b"x")], ts);
    }
    // Batches: [0,1]@100 [2,3]@200 [4,5]@200 [6,7]@350 [8,9]@350 (90 clamps up to 350).
    let find = |ts| log.offset_for_timestamp(ts, &state).expect("lookup");
    assert_eq!(find(0), Some(0));
    assert_eq!(find(100), Some(0));
    assert_eq!(find(101), Some(2));
    assert_eq!(find(200), Some(2));
    assert_eq!(find(201), Some(6));
    assert_eq!(find(350), Some(6));
    assert_eq!(find(351), None);
    let read =
        log.read(8, &state, state.next_offset, ReadLimits { max_records: 10, max_bytes: 1 << 20 }).expect("read");
    assert_eq!(read.records[0].timestamp_ms, 350, "timestamps never decrease");

    // After retention removes the first two batches, lookups start at the log start.
    let mut batch = WriteBatch::default();
    log.delete_prefix(&mut batch, &mut state, 4).expect("delete");
    store.write(batch).expect("write");
    assert_eq!(state.log_start_offset, 4);
    assert_eq!(log.offset_for_timestamp(0, &state).expect("lookup"), Some(4));
}

#[test]
fn retention_by_age_and_size_cuts_whole_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let log = PartitionLog::new(Arc::clone(&store), GROUP);
    let mut state = PartitionLogState::default();
    for ts in [1_000u64, 2_000, 3_000] {
        append(&store, &log, &mut state, &[record(None, &[0; 100]), record(None, &[1; 100])], ts);
    }
    assert_eq!(log.retention_cut(&state, 10_000, None, None).expect("cut"), None);
    // Records older than now - retention: batches at 1000 and 2000 when now = 2500 + 1000.
    assert_eq!(log.retention_cut(&state, 3_500, Some(1_000), None).expect("cut"), Some(4));
    assert_eq!(log.retention_cut(&state, 2_500, Some(1_000), None).expect("cut"), Some(2));
    assert_eq!(log.retention_cut(&state, 1_500, Some(1_000), None).expect("cut"), None);
    // Three equal batches: a budget of one and a half batches keeps only the last one, and a
    // budget smaller than one batch keeps none (whole batches only).
    let batch_bytes = state.size_bytes / 3;
    assert_eq!(log.retention_cut(&state, 0, None, Some(batch_bytes * 3 / 2)).expect("cut"), Some(4));
    assert_eq!(log.retention_cut(&state, 0, None, Some(batch_bytes - 1)).expect("cut"), Some(6));
    assert_eq!(log.retention_cut(&state, 0, None, Some(state.size_bytes)).expect("cut"), None);
}

#[test]
fn corrupted_batch_is_detected_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state = PartitionLogState::default();
    {
        let store = open(dir.path());
        let log = PartitionLog::new(Arc::clone(&store), GROUP);
        append(&store, &log, &mut state, &[record(Some("k"), b"hello world")], 5);
        append(&store, &log, &mut state, &[record(Some("k"), b"second batch")], 6);
    }
    // Flip one byte of the first stored batch behind the partition log's back.
    let mut db_options = rocksdb::Options::default();
    db_options.create_if_missing(false);
    let names = ["default", "raft_log", "raft_meta", "records", "index", "sm_meta"];
    {
        let db = rocksdb::DB::open_cf(&db_options, dir.path(), names).expect("open raw");
        let cf = db.cf_handle("records").expect("cf");
        let mut key = GROUP.to_be_bytes().to_vec();
        key.extend_from_slice(&0u64.to_be_bytes());
        let mut value = db.get_cf(cf, &key).expect("get").expect("present");
        let last = value.len() - 1;
        value[last] ^= 0x40;
        db.put_cf(cf, &key, value).expect("put");
    }
    let store = open(dir.path());
    let log = PartitionLog::new(Arc::clone(&store), GROUP);
    let limits = ReadLimits { max_records: 10, max_bytes: 1 << 20 };
    match log.read(0, &state, state.next_offset, limits) {
        Err(StorageError::Corrupt { group, base_offset, .. }) => {
            assert_eq!((group, base_offset), (GROUP, 0));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // The intact batch after it still reads.
    let second = log.read(1, &state, state.next_offset, limits).expect("second batch intact");
    assert_eq!(second.records[0].value, Bytes::from_static(b"second batch"));
}

#[test]
fn raft_log_range_and_truncate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut batch = WriteBatch::default();
    for index in 1..=10u64 {
        store.raft_log_put(&mut batch, 1, index, &index.to_le_bytes());
        store.raft_log_put(&mut batch, 2, index, b"other group");
    }
    store.write_synced(batch).expect("write");
    let got: Vec<u64> = store.raft_log_range(1, 3..6).expect("range").into_iter().map(|(i, _)| i).collect();
    assert_eq!(got, vec![3, 4, 5]);
    assert_eq!(store.raft_log_last(1).expect("last").map(|(i, _)| i), Some(10));
    let mut batch = WriteBatch::default();
    store.raft_log_delete(&mut batch, 1, 8, u64::MAX);
    store.write(batch).expect("write");
    assert_eq!(store.raft_log_last(1).expect("last").map(|(i, _)| i), Some(7));
    assert_eq!(store.raft_log_range(2, ..).expect("range").len(), 10, "other groups untouched");
    store.delete_group(2).expect("delete group");
    assert!(store.raft_log_range(2, ..).expect("range").is_empty());
}

#[test]
fn sync_callbacks_complete_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let (sender, receiver) = std::sync::mpsc::channel();
    for i in 0..100 {
        let mut batch = WriteBatch::default();
        store.raft_log_put(&mut batch, 1, i, b"entry");
        store.write(batch).expect("write");
        let sender = sender.clone();
        store.sync_then(Box::new(move |result| {
            sender.send((i, result.is_ok())).expect("send");
        }));
    }
    let completed: Vec<(u64, bool)> = receiver.iter().take(100).collect();
    assert_eq!(completed, (0..100).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn no_sync_counts_as_running_once_the_syncs_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(store.wal_sync_running_for(), None, "nothing to sync yet");
    let (sender, receiver) = std::sync::mpsc::channel();
    let mut batch = WriteBatch::default();
    store.raft_log_put(&mut batch, 1, 1, b"entry");
    store.write(batch).expect("write");
    store.sync_then(Box::new(move |result| sender.send(result.is_ok()).expect("send")));
    assert!(receiver.recv().expect("completed"), "the sync succeeded");
    assert_eq!(store.wal_sync_running_for(), None, "a completed sync no longer runs");
}

#[test]
fn group_ids_lists_every_group_that_stored_anything_until_it_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert!(store.group_ids().expect("groups").is_empty());
    let mut batch = WriteBatch::default();
    store.raft_log_put(&mut batch, 3, 1, b"entry");
    store.raft_log_put(&mut batch, 3, 2, b"entry");
    store.raft_meta_put(&mut batch, 0, b'v', b"vote");
    store.sm_meta_put(&mut batch, 9, b's', b"state");
    store.raft_meta_put(&mut batch, u64::MAX, b'v', b"vote");
    store.write(batch).expect("write");
    let log = PartitionLog::new(Arc::clone(&store), 5);
    let mut state = PartitionLogState::default();
    append(&store, &log, &mut state, &[record(None, b"v")], 1);
    assert_eq!(
        store.group_ids().expect("groups").into_iter().collect::<Vec<_>>(),
        [0, 3, 5, GROUP, 9, u64::MAX],
        "records of 5, state of GROUP"
    );
    store.delete_group(3).expect("delete");
    store.delete_group(5).expect("delete");
    assert_eq!(store.group_ids().expect("groups").into_iter().collect::<Vec<_>>(), [0, GROUP, 9, u64::MAX]);
}
