//! Queries against a brute-force model of the same events, on a real RocksDB on disk.

use std::sync::Arc;

use bytes::Bytes;
use cairn_types::{EventFields, EventQuery, QueryItem, Record};
use proptest::prelude::*;

use super::*;
use crate::{Store, StoreOptions, WriteBatch};

const GROUP: u64 = 3;
const TYPES: [&str; 3] = ["Created", "Enrolled", "Left"];
const TAGS: [&str; 4] = ["course=1", "course=2", "student=a", "student=b"];

/// An event of the model: its type and tags by index, or a plain (non-event) record.
#[derive(Debug, Clone)]
enum Stored {
    Event { event_type: usize, tags: Vec<usize> },
    Plain,
}

/// Ids only need to differ (the id index is not what these tests look at).
fn next_event_id() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut id = [0; 16];
    id[8..].copy_from_slice(&NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_be_bytes());
    id
}

fn event_fields(event_type: usize, tags: &[usize], revision: u64) -> EventFields {
    EventFields {
        event_id: next_event_id(),
        stream_revision: revision,
        event_type: TYPES[event_type].to_owned(),
        content_type: "application/json".to_owned(),
        metadata: Bytes::new(),
        tags: tags.iter().map(|tag| TAGS[*tag].to_owned()).collect(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    state: PartitionLogState,
    /// Next revision per stream.
    revisions: HashMap<String, u64>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        Fixture { _dir: dir, store, state: PartitionLogState::default(), revisions: HashMap::new() }
    }

    fn log(&self) -> PartitionLog {
        PartitionLog::new(self.store.clone(), GROUP)
    }

    /// Appends one batch: events go to `stream`, plain records have no event fields (a
    /// batch with events and plain records alike is how control records sit among events).
    fn append(&mut self, stream: &str, stored: &[Stored], timestamp_ms: u64) {
        let log = self.log();
        let mut batch = WriteBatch::default();
        let mut records = Vec::new();
        let mut fields = Vec::new();
        for item in stored {
            let revision = self.revisions.entry(stream.to_owned()).or_default();
            let event = match item {
                Stored::Event { event_type, tags } => {
                    *revision += 1;
                    event_fields(*event_type, tags, *revision - 1)
                }
                Stored::Plain => EventFields {
                    event_type: crate::STREAM_HEAD_EVENT_TYPE.to_owned(),
                    ..event_fields(0, &[], *revision)
                },
            };
            records.push(Record {
                key: Some(Bytes::copy_from_slice(stream.as_bytes())),
                headers: Vec::new(),
                value: Bytes::from_static(b"{}"),
            });
            fields.push(event);
        }
        log.append(&mut batch, &mut self.state, &records, &fields, timestamp_ms);
        let head = StreamHead {
            next_revision: self.revisions[stream],
            ..log.stream_head(stream.as_bytes()).expect("query the store")
        };
        log.put_stream_head(&mut batch, stream.as_bytes(), head);
        self.store.write(batch).expect("write");
    }
}

fn item(types: &[usize], tags: &[usize]) -> QueryItem {
    QueryItem::new(types.iter().map(|t| TYPES[*t]), tags.iter().map(|t| TAGS[*t]))
}

fn no_limits() -> QueryReadLimits {
    QueryReadLimits { max_events: usize::MAX, max_bytes: usize::MAX, as_of_ms: None, now_ms: 0 }
}

fn offsets(events: &QueryEvents) -> Vec<Offset> {
    events.events.iter().map(|record| record.offset).collect()
}

fn stored_strategy() -> impl Strategy<Value = Stored> {
    prop_oneof![
        6 => (0..TYPES.len(), proptest::collection::btree_set(0..TAGS.len(), 0..3))
            .prop_map(|(event_type, tags)| Stored::Event { event_type, tags: tags.into_iter().collect() }),
        1 => Just(Stored::Plain),
    ]
}

fn query_strategy() -> impl Strategy<Value = Vec<(Vec<usize>, Vec<usize>)>> {
    let item = (
        proptest::collection::btree_set(0..TYPES.len(), 0..3).prop_map(|set| set.into_iter().collect()),
        proptest::collection::btree_set(0..TAGS.len(), 0..3).prop_map(|set| set.into_iter().collect()),
    );
    proptest::collection::vec(item, 0..3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the events and the query: the first match after a position, and a read
    /// paged by the position it answers, agree with checking every event.
    #[test]
    fn queries_match_a_scan_of_every_event(
        batches in proptest::collection::vec(proptest::collection::vec(stored_strategy(), 1..6), 1..12),
        query in query_strategy(),
        after in proptest::option::of(0u64..40),
        page in 1usize..5,
    ) {
        let mut fixture = Fixture::new();
        let mut model = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            fixture.append(&format!("stream-{}", i % 3), batch, 1_000 + i as u64);
            model.extend(batch.iter().cloned());
        }
        let query = EventQuery { items: query.iter().map(|(types, tags)| item(types, tags)).collect() };
        let matching: Vec<Offset> = model
            .iter()
            .enumerate()
            .filter_map(|(offset, stored)| match stored {
                Stored::Event { event_type, tags } => {
                    let tags: Vec<String> = tags.iter().map(|t| TAGS[*t].to_owned()).collect();
                    query.matches(TYPES[*event_type], &tags).then_some(offset as Offset)
                }
                Stored::Plain => None,
            })
            .filter(|offset| after.is_none_or(|after| *offset > after))
            .collect();
        let log = fixture.log();
        let (state, end) = (fixture.state, fixture.state.next_offset);
        prop_assert_eq!(log.first_query_match(&query, after, &state, end).expect("query the store"), matching.first().copied());

        let whole = log.query_events(&query, after, &state, end, no_limits()).expect("query the store");
        prop_assert_eq!(offsets(&whole), matching.clone());
        prop_assert!(!whole.limited);
        prop_assert_eq!(whole.position, Some(end - 1).max(after));

        // Paged: each read goes on after the position the previous one answered.
        let mut paged = Vec::new();
        let mut position = after;
        for _ in 0..model.len() + 1 {
            let limits = QueryReadLimits { max_events: page, ..no_limits() };
            let read = log.query_events(&query, position, &state, end, limits).expect("query the store");
            prop_assert!(read.events.len() <= page);
            paged.extend(offsets(&read));
            prop_assert!(read.position >= position);
            position = read.position;
            if !read.limited {
                break;
            }
        }
        prop_assert_eq!(paged, matching);
    }
}

#[test]
fn retention_deletion_and_as_of_bound_what_a_query_sees() {
    let mut fixture = Fixture::new();
    let enrolled = |tags: &[usize]| Stored::Event { event_type: 1, tags: tags.to_vec() };
    fixture.append("s1", &[enrolled(&[0]), enrolled(&[0])], 1_000); // offsets 0, 1
    fixture.append("s2", &[enrolled(&[0])], 2_000); // 2
    fixture.append("s1", &[enrolled(&[0, 2])], 3_000); // 3
    let log = fixture.log();
    let query = EventQuery { items: vec![item(&[1], &[0])] };
    let mut state = fixture.state;
    let end = state.next_offset;
    let read = |state: &PartitionLogState, limits| {
        offsets(&log.query_events(&query, None, state, end, limits).expect("query the store"))
    };

    assert_eq!(read(&state, no_limits()), [0, 1, 2, 3]);
    // As of 2,000: the events stamped later are left out, and the position says so.
    let as_of = QueryReadLimits { as_of_ms: Some(2_000), ..no_limits() };
    let answer = log.query_events(&query, None, &state, end, as_of).expect("query the store");
    assert_eq!((offsets(&answer), answer.position, answer.limited), (vec![0, 1, 2], Some(2), false));

    // A soft delete of s1 up to revision 2 hides its first two events from reads, not from
    // conditions (a condition decides at apply time; it must not depend on the clock).
    let mut batch = WriteBatch::default();
    let head = log.stream_head(b"s1").expect("query the store");
    log.put_stream_head(&mut batch, b"s1", StreamHead { deleted_before: 2, ..head });
    fixture.store.write(batch).expect("query the store");
    assert_eq!(read(&state, no_limits()), [2, 3]);
    assert_eq!(log.first_query_match(&query, None, &state, end).expect("query the store"), Some(0));

    // Retention moved the log start to 2: index entries below it are skipped.
    state.log_start_offset = 2;
    assert_eq!(log.first_query_match(&query, None, &state, end).expect("query the store"), Some(2));
    assert_eq!(log.first_query_match(&EventQuery::all(), Some(0), &state, end).expect("query the store"), Some(2));
    // The end bounds what is seen (a follower's or a read's visible end).
    assert_eq!(log.first_query_match(&query, Some(2), &state, 3).expect("query the store"), None);
    assert_eq!(log.first_query_match(&query, Some(2), &state, 4).expect("query the store"), Some(3));
}

#[test]
fn control_records_and_empty_partitions_match_nothing() {
    let mut fixture = Fixture::new();
    let log = fixture.log();
    let state = fixture.state;
    let all = EventQuery::all();
    assert_eq!(log.first_query_match(&all, None, &state, 0).expect("query the store"), None);
    let empty = log.query_events(&all, None, &state, 0, no_limits()).expect("query the store");
    assert_eq!((empty.events.len(), empty.position, empty.limited), (0, None, false));

    fixture.append("s", &[Stored::Plain, Stored::Plain], 1_000);
    fixture.append("s", &[Stored::Event { event_type: 0, tags: vec![] }], 1_000);
    let log = fixture.log();
    let state = fixture.state;
    assert_eq!(log.first_query_match(&all, None, &state, state.next_offset).expect("query the store"), Some(2));
    assert_eq!(log.first_query_match(&all, Some(2), &state, state.next_offset).expect("query the store"), None);
}
