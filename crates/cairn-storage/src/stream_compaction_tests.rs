//! Compaction against a model of which events a stream's head hides, on a real RocksDB on
//! disk: what is removed, what every kind of read still returns, and what a replica
//! importing the compacted batches rebuilds.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use cairn_types::stream::StreamMetadata;
use cairn_types::{EventFields, EventQuery, QueryItem, Record, StoredRecord};
use proptest::prelude::*;

use super::*;
use crate::stream_index::{Direction, StreamEvents, StreamWindow};
use crate::{ReadLimits, Store, StoreOptions};

const GROUP: u64 = 5;
const STREAMS: [&str; 3] = ["account-1", "account-2", "{order-7}/payments"];

/// How a test changes one stream's head after the first appends.
#[derive(Debug, Clone)]
enum Change {
    None,
    SoftDelete,
    Tombstone,
    Metadata(StreamMetadata),
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    state: PartitionLogState,
    next_id: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        Fixture { _dir: dir, store, state: PartitionLogState::default(), next_id: 1 }
    }

    fn log(&self) -> PartitionLog {
        PartitionLog::new(self.store.clone(), GROUP)
    }

    /// One batch of events, `streams[i]` naming each event's stream, as the state machine
    /// appends them (heads move on with the batch).
    fn append(&mut self, streams: &[usize], timestamp_ms: u64) {
        let log = self.log();
        let mut batch = WriteBatch::default();
        let mut heads: HashMap<usize, StreamHead> = HashMap::new();
        let (mut records, mut fields) = (Vec::new(), Vec::new());
        for &stream in streams {
            let head = match heads.get_mut(&stream) {
                Some(head) => head,
                None => heads.entry(stream).or_insert(log.stream_head(STREAMS[stream].as_bytes()).expect("head")),
            };
            let mut event_id = [0; 16];
            event_id[8..].copy_from_slice(&self.next_id.to_be_bytes());
            self.next_id += 1;
            records.push(Record {
                key: Some(Bytes::from_static(STREAMS[stream].as_bytes())),
                headers: Vec::new(),
                value: Bytes::from(vec![b'x'; 40]),
            });
            fields.push(EventFields {
                event_id,
                stream_revision: head.next_revision,
                event_type: format!("Type{}", head.next_revision % 2),
                content_type: "application/json".to_owned(),
                metadata: Bytes::new(),
                tags: vec![format!("stream={stream}")],
            });
            head.next_revision += 1;
        }
        log.append(&mut batch, &mut self.state, &records, &fields, timestamp_ms);
        for (stream, head) in heads {
            log.put_stream_head(&mut batch, STREAMS[stream].as_bytes(), head);
        }
        self.store.write(batch).expect("write");
    }

    fn change(&mut self, stream: usize, change: &Change, timestamp_ms: u64) {
        let log = self.log();
        let mut head = log.stream_head(STREAMS[stream].as_bytes()).expect("head");
        match change {
            Change::None => return,
            Change::SoftDelete => head.deleted_before = head.next_revision,
            Change::Tombstone => {
                head.deleted_before = head.next_revision;
                head.tombstoned = true;
            }
            Change::Metadata(metadata) => head.metadata = *metadata,
        }
        let mut batch = WriteBatch::default();
        log.append_stream_change(&mut batch, &mut self.state, STREAMS[stream].as_bytes(), head, timestamp_ms);
        self.store.write(batch).expect("write");
    }

    /// Runs compaction as the leader and the state machine do, until nothing is due.
    fn compact(&mut self, now_ms: u64, budget: u64) -> Compacted {
        let log = self.log();
        let mut total = Compacted::default();
        for _ in 0..100 {
            let candidates = log.compaction_candidates(&self.state, now_ms, 2).expect("candidates");
            if candidates.is_empty() {
                return total;
            }
            let mut batch = WriteBatch::default();
            let compacted =
                log.compact_streams(&mut batch, &mut self.state, &candidates, now_ms, budget).expect("compact");
            self.store.write(batch).expect("write");
            total.events += compacted.events;
            total.bytes += compacted.bytes;
        }
        panic!("compaction does not finish");
    }
}

/// Every record of the log, read as a consumer does: pages of `page` records, each read
/// going on from the `next_offset` the last one answered.
fn consume(log: &PartitionLog, state: &PartitionLogState, page: usize) -> Vec<StoredRecord> {
    let (mut records, mut from) = (Vec::new(), state.log_start_offset);
    while from < state.next_offset {
        let read = log
            .read(from, state, state.next_offset, ReadLimits { max_records: page, max_bytes: usize::MAX })
            .expect("read");
        assert!(read.next_offset > from, "a read below the high watermark moves on");
        from = read.next_offset;
        records.extend(read.records);
    }
    records
}

fn read_stream(log: &PartitionLog, state: &PartitionLogState, stream: usize, now_ms: u64) -> StreamEvents {
    let head = log.stream_head(STREAMS[stream].as_bytes()).expect("head");
    let window = StreamWindow {
        first_revision: head.first_visible_revision(),
        min_timestamp_ms: head.metadata.max_age_ms.map(|max_age| now_ms.saturating_sub(max_age)),
        max_timestamp_ms: None,
    };
    let mut events = log
        .read_stream(
            STREAMS[stream].as_bytes(),
            None,
            Direction::Forwards,
            usize::MAX,
            usize::MAX,
            state,
            state.next_offset,
            window,
        )
        .expect("read stream");
    // Which revision is stored first is what compaction changes; the events shown are not.
    events.first_revision = None;
    events
}

fn every_event() -> EventQuery {
    EventQuery { items: vec![QueryItem::new(["Type0", "Type1"], std::iter::empty::<&str>())] }
}

fn stored_bytes(log: &PartitionLog) -> u64 {
    log.raw_batches(0, usize::MAX).expect("batches").iter().map(|(_, raw)| raw.len() as u64).sum()
}

fn metadata_strategy() -> impl Strategy<Value = StreamMetadata> {
    (proptest::option::of(0u64..400), proptest::option::of(0u64..6), proptest::option::of(0u64..8))
        .prop_map(|(max_age_ms, max_count, truncate_before)| StreamMetadata { max_age_ms, max_count, truncate_before })
}

fn change_strategy() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::None),
        Just(Change::SoftDelete),
        Just(Change::Tombstone),
        metadata_strategy().prop_map(Change::Metadata),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Whatever the events, the changes, the time and the budget: compaction removes
    /// exactly the events the heads hide and nothing else; stream reads and query reads
    /// answer as before; consumers page over the emptied slots; conditions and event ids
    /// no longer see removed events; the partition's size is what is stored; a replica
    /// importing the compacted batches answers alike and has nothing left to compact.
    #[test]
    fn compaction_removes_exactly_what_heads_hide(
        before in proptest::collection::vec(proptest::collection::vec(0..STREAMS.len(), 1..6), 1..10),
        changes in proptest::collection::vec(change_strategy(), STREAMS.len()),
        after in proptest::collection::vec(proptest::collection::vec(0..STREAMS.len(), 1..4), 0..4),
        now_ms in 1_000u64..1_500,
        budget in 1u64..20,
        page in 1usize..8,
    ) {
        let mut fixture = Fixture::new();
        let mut timestamp_ms = 1_000;
        for streams in &before {
            fixture.append(streams, timestamp_ms);
            timestamp_ms += 30;
        }
        for (stream, change) in changes.iter().enumerate() {
            fixture.change(stream, change, timestamp_ms);
        }
        for streams in &after {
            // Tombstoned streams take no appends.
            let open: Vec<usize> = streams.iter().copied().filter(|s| !matches!(changes[*s], Change::Tombstone)).collect();
            if !open.is_empty() {
                fixture.append(&open, timestamp_ms);
                timestamp_ms += 30;
            }
        }
        let log = fixture.log();
        let everything = consume(&log, &fixture.state, usize::MAX);
        let heads: Vec<StreamHead> =
            STREAMS.iter().map(|stream| log.stream_head(stream.as_bytes()).expect("head")).collect();
        let hidden = |record: &StoredRecord| {
            let (Some(key), Some(event)) = (&record.key, &record.event) else { return false };
            let stream = STREAMS.iter().position(|s| s.as_bytes() == key.as_ref()).expect("a known stream");
            !crate::is_control(event) && heads[stream].hides(event.stream_revision, record.timestamp_ms, now_ms)
        };
        let streams_before: Vec<_> = (0..STREAMS.len()).map(|s| read_stream(&log, &fixture.state, s, now_ms)).collect();
        let limits = crate::QueryReadLimits { max_events: usize::MAX, max_bytes: usize::MAX, as_of_ms: None, now_ms };
        let query_before = log.query_events(&every_event(), None, &fixture.state, fixture.state.next_offset, limits).expect("query");

        let compacted = fixture.compact(now_ms, budget);

        let log = fixture.log();
        let kept: Vec<StoredRecord> = everything.iter().filter(|record| !hidden(record)).cloned().collect();
        prop_assert_eq!(compacted.events as usize, everything.len() - kept.len());
        prop_assert_eq!(&consume(&log, &fixture.state, page), &kept);
        for (stream, expected) in streams_before.iter().enumerate() {
            prop_assert_eq!(&read_stream(&log, &fixture.state, stream, now_ms), expected);
        }
        let query_after = log.query_events(&every_event(), None, &fixture.state, fixture.state.next_offset, limits).expect("query");
        prop_assert_eq!(&query_after.events, &query_before.events);
        // Conditions count stored events: the first match is now the first kept event.
        let first_kept = kept.iter().find(|r| r.event.as_ref().is_some_and(|e| !crate::is_control(e))).map(|r| r.offset);
        prop_assert_eq!(log.first_query_match(&every_event(), None, &fixture.state, fixture.state.next_offset).expect("match"), first_kept);
        for record in &everything {
            let Some(event) = record.event.as_ref().filter(|e| !crate::is_control(e)) else { continue };
            let found = log.event_offset(&event.event_id, &fixture.state, fixture.state.next_offset).expect("id");
            prop_assert_eq!(found, (!hidden(record)).then_some(record.offset));
        }
        prop_assert_eq!(fixture.state.size_bytes, stored_bytes(&log));

        // A replica that imports the compacted batches (a snapshot) answers alike.
        let mut replica = Fixture::new();
        let batches: Vec<(Offset, Vec<u8>)> =
            log.raw_batches(0, usize::MAX).expect("batches").into_iter().map(|(at, raw)| (at, raw.to_vec())).collect();
        replica.log().import_batches(&batches).expect("import");
        replica.state = fixture.state;
        let imported = replica.log();
        prop_assert_eq!(&consume(&imported, &replica.state, page), &kept);
        for (stream, expected) in streams_before.iter().enumerate() {
            prop_assert_eq!(&read_stream(&imported, &replica.state, stream, now_ms), expected);
        }
        prop_assert_eq!(replica.compact(now_ms, budget).events, 0, "nothing hidden is left to remove");
    }
}

/// A stream whose limits keep hiding events stays marked: what ages out later is removed
/// by a later compaction. One whose deletion is fully removed is no longer looked at.
#[test]
fn marks_stay_while_more_can_be_hidden() {
    let mut fixture = Fixture::new();
    fixture.append(&[0, 0, 1, 1], 1_000);
    fixture.append(&[0, 1], 2_000);
    fixture.change(0, &Change::Metadata(StreamMetadata { max_age_ms: Some(500), ..StreamMetadata::default() }), 2_000);
    fixture.change(1, &Change::SoftDelete, 2_000);
    assert_eq!(fixture.compact(2_100, 100).events, 2 + 3, "stream 0's two old events, stream 1's three");
    let log = fixture.log();
    let marked = |log: &PartitionLog| {
        let prefix = keys::group_tag(GROUP, keys::INDEX_COMPACTION);
        let mut iter = log.store().db().raw_iterator_cf(log.store().cf(CF_INDEX));
        iter.seek(prefix);
        let mut streams = Vec::new();
        while let Some(key) = iter.key().filter(|key| key.starts_with(&prefix)) {
            streams.push(String::from_utf8(keys::named_stream(key).expect("a mark").to_vec()).expect("utf-8"));
            iter.next();
        }
        streams
    };
    assert_eq!(marked(&log), vec![STREAMS[0].to_owned()], "the soft delete is done with");
    assert!(log.compaction_candidates(&fixture.state, 2_400, 10).expect("candidates").is_empty());
    assert_eq!(fixture.compact(2_600, 100).events, 1, "stream 0's last event aged out");
    // Appends resume on the soft-deleted stream: its new events stay.
    fixture.append(&[0, 1], 2_700);
    assert_eq!(fixture.compact(10_000, 100).events, 1, "only stream 0's new event is removed");
    assert_eq!(fixture.log().stream_head(STREAMS[1].as_bytes()).expect("head").next_revision, 4);
}
