//! Tests of `stream_apply.rs`: the apply-time checks of event appends and stream changes,
//! on a real store.

use cairn_storage::{Direction, Store, StoreOptions, StreamWindow};
use cairn_types::stream::StreamMetadata;
use cairn_types::{EventQuery, GroupId, QueryItem};

use super::*;
use crate::command::PartitionCommand;
use crate::partition::state_machine::apply_in_one_call;
use crate::stream_command::{StreamCheck, StreamWrite};

const GROUP: GroupId = 7;

fn open(dir: &std::path::Path) -> PartitionStateMachine {
    let store = Store::open(&dir.join("db"), &StoreOptions::default()).expect("store");
    PartitionStateMachine::open(store, GROUP).expect("open").0
}

fn event(id: u8, data: &str) -> NewEvent {
    NewEvent {
        event_id: [id; 16],
        event_type: "Deposited".into(),
        content_type: "application/json".into(),
        data: Bytes::copy_from_slice(data.as_bytes()),
        metadata: Bytes::new(),
        tags: vec!["account=1".into()],
    }
}

fn write(stream: &str, expected: ExpectedRevision, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite { stream: stream.into(), expected, events }
}

fn append(writes: Vec<StreamWrite>, checks: Vec<StreamCheck>) -> PartitionCommand {
    PartitionCommand::AppendEvents(EventAppend { writes, checks, condition: None, timestamp_ms: 1_000 })
}

/// Applies `commands` as one apply call does (one WriteBatch, written at the end).
fn apply(sm: &mut PartitionStateMachine, commands: Vec<PartitionCommand>) -> Vec<CommandResponse> {
    let mut batch = WriteBatch::default();
    let base = sm.state.last_applied.map_or(0, |id| id.index) + 1;
    let responses = commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| sm.apply_command(&mut batch, command, base + i as u64).expect("apply"))
        .collect();
    sm.persist(&mut batch).expect("persist");
    sm.store.write(batch).expect("write");
    sm.pending.clear();
    responses
}

fn appended(response: &CommandResponse) -> &EventsAppended {
    match response {
        CommandResponse::EventsAppended(appended) => appended,
        other => panic!("not appended: {other:?}"),
    }
}

fn revisions(sm: &PartitionStateMachine, stream: &str) -> Vec<u64> {
    let state = sm.state.log;
    let read = sm
        .log
        .read_stream(
            stream.as_bytes(),
            None,
            Direction::Forwards,
            1000,
            usize::MAX,
            &state,
            state.next_offset,
            StreamWindow::default(),
        )
        .expect("read");
    read.events.iter().map(|r| r.event.as_ref().expect("event").stream_revision).collect()
}

/// The trap the module doc names: two appends to one stream in one apply batch. The
/// second must see the first's head, though the batch is not written yet.
#[test]
fn appends_in_one_apply_batch_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let responses = apply(
        &mut sm,
        vec![
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(1, "1"), event(2, "2")])], vec![]),
            // Expects the revision the first append left: succeeds.
            append(vec![write("a", ExpectedRevision::Exact(1), vec![event(3, "3")])], vec![]),
            // Expects what the stream was before the batch: refused.
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(4, "4")])], vec![]),
        ],
    );
    assert_eq!(appended(&responses[0]).positions.iter().map(|p| p.stream_revision).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(appended(&responses[1]).positions[0].stream_revision, 2);
    let CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(violations)) = &responses[2] else {
        panic!("{:?}", responses[2]);
    };
    let expected = RevisionViolation { stream: "a".into(), expected: ExpectedRevision::NoStream, actual: Some(2) };
    assert_eq!(violations, &ConditionViolations { revisions: vec![expected], query: None });
    assert_eq!(revisions(&sm, "a"), [0, 1, 2]);
    // The head survives a restart.
    drop(sm);
    let mut sm = open(dir.path());
    let responses =
        apply(&mut sm, vec![append(vec![write("a", ExpectedRevision::Exact(2), vec![event(5, "5")])], vec![])]);
    assert_eq!(appended(&responses[0]).positions[0].stream_revision, 3);
}

/// Every violation is answered at once (written streams and checked ones), and a
/// refused append writes nothing.
#[test]
fn every_violation_is_listed_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    apply(&mut sm, vec![append(vec![write("a", ExpectedRevision::Any, vec![event(1, "1")])], vec![])]);
    let next_offset = sm.state.log.next_offset;
    let responses = apply(
        &mut sm,
        vec![append(
            vec![
                write("a", ExpectedRevision::NoStream, vec![event(2, "2")]),
                write("b", ExpectedRevision::Exists, vec![event(3, "3")]),
                write("c", ExpectedRevision::Any, vec![event(4, "4")]),
            ],
            vec![
                StreamCheck { stream: "a".into(), expected: ExpectedRevision::Exact(0) },
                StreamCheck { stream: "d".into(), expected: ExpectedRevision::Exact(5) },
            ],
        )],
    );
    let CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(violations)) = &responses[0] else {
        panic!("{:?}", responses[0]);
    };
    let listed: Vec<(&str, Option<u64>)> = violations.revisions.iter().map(|v| (v.stream.as_str(), v.actual)).collect();
    assert_eq!(listed, [("a", Some(0)), ("b", None), ("d", None)]);
    assert_eq!(sm.state.log.next_offset, next_offset, "nothing written");
    assert_eq!(revisions(&sm, "c"), Vec::<u64>::new());
}

/// A retry (same ids, same content) answers the original positions and writes nothing,
/// whether the original is in the store or in the same apply batch, and even when the
/// expected revision no longer holds. Other content, or a partial match, is refused.
#[test]
fn event_ids_make_appends_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let original = append(vec![write("a", ExpectedRevision::NoStream, vec![event(1, "1"), event(2, "2")])], vec![]);
    let responses = apply(&mut sm, vec![original.clone(), original.clone()]);
    let first = appended(&responses[0]).clone();
    let in_batch = appended(&responses[1]);
    assert!(!first.duplicate && in_batch.duplicate);
    assert_eq!(in_batch.positions, first.positions);
    let next_offset = sm.state.log.next_offset;
    let responses = apply(&mut sm, vec![original]);
    assert!(appended(&responses[0]).duplicate);
    assert_eq!(appended(&responses[0]).positions, first.positions);
    assert_eq!(sm.state.log.next_offset, next_offset, "a retry writes nothing");

    let other_content = append(vec![write("a", ExpectedRevision::Any, vec![event(1, "changed")])], vec![]);
    let partial = append(vec![write("a", ExpectedRevision::Any, vec![event(2, "2"), event(9, "9")])], vec![]);
    let repeated = append(vec![write("b", ExpectedRevision::Any, vec![event(7, "7"), event(7, "7")])], vec![]);
    let responses = apply(&mut sm, vec![other_content, partial, repeated]);
    let offset = first.positions[0].offset;
    assert!(matches!(
        &responses[0],
        CommandResponse::EventAppendRefused(EventAppendRefusal::EventIdReused { stored_at, reason: EventIdReuse::OtherContent, .. })
            if *stored_at == offset
    ));
    assert!(matches!(
        &responses[1],
        CommandResponse::EventAppendRefused(EventAppendRefusal::EventIdReused {
            reason: EventIdReuse::PartOfAnotherAppend,
            ..
        })
    ));
    assert!(matches!(
        &responses[2],
        CommandResponse::EventAppendRefused(EventAppendRefusal::EventIdRepeated { event_id })
            if *event_id == [7; 16]
    ));
    assert_eq!(sm.state.log.next_offset, next_offset);
}

/// Streams read back exactly, forwards and backwards, with limits.
#[test]
fn streams_read_back_in_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut commands = Vec::new();
    for i in 0..20u8 {
        let stream = if i % 2 == 0 { "even" } else { "odd" };
        commands.push(append(vec![write(stream, ExpectedRevision::Any, vec![event(i + 1, &i.to_string())])], vec![]));
    }
    apply(&mut sm, commands);
    assert_eq!(revisions(&sm, "even"), (0..10).collect::<Vec<_>>());
    let state = sm.state.log;
    let read = |from, direction, max| {
        let read = sm
            .log
            .read_stream(b"odd", from, direction, max, usize::MAX, &state, state.next_offset, StreamWindow::default())
            .expect("read");
        let data: Vec<String> =
            read.events.iter().map(|r| String::from_utf8(r.value.to_vec()).expect("utf-8")).collect();
        (data, read.limited, read.first_revision)
    };
    assert_eq!(read(Some(3), Direction::Forwards, 2), (vec!["7".into(), "9".into()], true, Some(0)));
    assert_eq!(read(None, Direction::Backwards, 3), (vec!["19".into(), "17".into(), "15".into()], true, Some(0)));
    assert_eq!(read(Some(1), Direction::Backwards, 5), (vec!["3".into(), "1".into()], false, Some(0)));
    assert_eq!(read(Some(10), Direction::Forwards, 5), (vec![], false, Some(0)));
}

fn change(stream: &str, expected: ExpectedRevision, change: StreamChangeKind) -> PartitionCommand {
    PartitionCommand::ChangeStream(StreamChange { stream: stream.into(), expected, change, timestamp_ms: 1_000 })
}

/// A soft delete hides the events and lets appends resume at the next revision (the
/// stream counts as no stream); a tombstone refuses every later append; metadata moves
/// what reads start from; every change checks its expected revision.
#[test]
fn deletes_and_metadata_change_what_is_visible_and_what_may_be_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let three = vec![event(1, "1"), event(2, "2"), event(3, "3")];
    apply(&mut sm, vec![append(vec![write("a", ExpectedRevision::NoStream, three)], vec![])]);
    let responses = apply(
        &mut sm,
        vec![
            change("a", ExpectedRevision::Exact(1), StreamChangeKind::SoftDelete),
            change("a", ExpectedRevision::Exact(2), StreamChangeKind::SoftDelete),
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(4, "4")])], vec![]),
        ],
    );
    assert!(matches!(
        &responses[0],
        CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(v)) if v.revisions[0].actual == Some(2)
    ));
    let CommandResponse::StreamChanged(deleted) = &responses[1] else { panic!("{:?}", responses[1]) };
    assert_eq!((deleted.current_revision, deleted.first_visible_revision), (Some(2), 3));
    assert_eq!(appended(&responses[2]).positions[0].stream_revision, 3, "revisions go on after a soft delete");

    let metadata = StreamMetadata { max_count: Some(1), truncate_before: Some(2), max_age_ms: None };
    let responses = apply(
        &mut sm,
        vec![
            append(vec![write("a", ExpectedRevision::Exact(3), vec![event(5, "5")])], vec![]),
            change("a", ExpectedRevision::Any, StreamChangeKind::SetMetadata(metadata)),
        ],
    );
    let CommandResponse::StreamChanged(changed) = &responses[1] else { panic!("{:?}", responses[1]) };
    assert_eq!(changed.first_visible_revision, 4, "max count 1 of revisions 0..=4");
    assert_eq!(sm.log.stream_head(b"a").expect("head").metadata, metadata, "stored");

    let responses = apply(
        &mut sm,
        vec![
            change("a", ExpectedRevision::Exists, StreamChangeKind::Tombstone),
            change("a", ExpectedRevision::Exists, StreamChangeKind::Tombstone),
            append(vec![write("a", ExpectedRevision::Any, vec![event(6, "6")])], vec![]),
            change("a", ExpectedRevision::Any, StreamChangeKind::SoftDelete),
        ],
    );
    assert!(matches!(responses[0], CommandResponse::StreamChanged(_)));
    assert!(matches!(responses[1], CommandResponse::StreamChanged(_)), "a tombstone again is a retry");
    for refused in &responses[2..] {
        assert!(
            matches!(refused, CommandResponse::EventAppendRefused(EventAppendRefusal::StreamsTombstoned(s)) if s == &["a"]),
            "{refused:?}"
        );
    }
    drop(sm);
    let sm = open(dir.path());
    let head = sm.log.stream_head(b"a").expect("head");
    assert!(head.tombstoned && !head.has_visible_events() && head.next_revision == 5, "{head:?}");
}

/// A replica that receives the partition's batches (a snapshot) rebuilds every stream
/// head from them alone: revisions, deletions, tombstones and metadata, which the
/// changes left in the log as control records.
#[test]
fn imported_batches_rebuild_stream_heads_with_their_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let metadata = StreamMetadata { max_age_ms: Some(60_000), max_count: Some(2), truncate_before: None };
    apply(
        &mut sm,
        vec![
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(1, "1"), event(2, "2")])], vec![]),
            append(vec![write("b", ExpectedRevision::NoStream, vec![event(3, "3")])], vec![]),
            append(vec![write("c", ExpectedRevision::NoStream, vec![event(4, "4")])], vec![]),
            change("a", ExpectedRevision::Exact(1), StreamChangeKind::SoftDelete),
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(5, "5")])], vec![]),
            change("b", ExpectedRevision::Any, StreamChangeKind::Tombstone),
            change("c", ExpectedRevision::Any, StreamChangeKind::SetMetadata(metadata)),
        ],
    );
    let batches: Vec<(u64, Vec<u8>)> = sm
        .log
        .raw_batches(0, usize::MAX)
        .expect("batches")
        .into_iter()
        .map(|(offset, bytes)| (offset, bytes.to_vec()))
        .collect();
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = open(other_dir.path());
    other.log.import_batches(&batches).expect("import");
    for stream in ["a", "b", "c"] {
        let (original, imported) = (sm.log.stream_head(stream.as_bytes()), other.log.stream_head(stream.as_bytes()));
        assert_eq!(imported.expect("head"), original.expect("head"), "stream {stream}");
    }
    let a = other.log.stream_head(b"a").expect("head");
    assert_eq!((a.next_revision, a.deleted_before), (3, 2));
    assert!(other.log.stream_head(b"b").expect("head").tombstoned);
    assert_eq!(other.log.stream_head(b"c").expect("head").metadata, metadata);
    // Control records are no events of their stream: revisions stay dense, and the
    // one visible event of "a" is the one appended after the deletion.
    let state = sm.state.log;
    let window = StreamWindow { first_revision: a.first_visible_revision(), ..StreamWindow::default() };
    let read = sm
        .log
        .read_stream(b"a", None, Direction::Forwards, 100, usize::MAX, &state, state.next_offset, window)
        .expect("read");
    let seen: Vec<(u64, &str, &[u8])> = read
        .events
        .iter()
        .map(|r| {
            let event = r.event.as_ref().expect("an event");
            (event.stream_revision, event.event_type.as_str(), &r.value[..])
        })
        .collect();
    assert_eq!(seen, [(2, "Deposited", &b"5"[..])]);
}

fn tagged(id: u8, event_type: &str, tags: &[&str]) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        tags: tags.iter().map(|tag| tag.to_string()).collect(),
        ..event(id, "{}")
    }
}

fn conditional(writes: Vec<StreamWrite>, query: EventQuery, after: Option<u64>) -> PartitionCommand {
    let condition = Some(QueryCondition { query, after });
    PartitionCommand::AppendEvents(EventAppend { writes, checks: vec![], condition, timestamp_ms: 1_000 })
}

fn enrolments_of(course: &str) -> EventQuery {
    EventQuery { items: vec![QueryItem::new(["Enrolled".to_owned()], [format!("course={course}")])] }
}

fn refusal(response: &CommandResponse) -> &ConditionViolations {
    match response {
        CommandResponse::EventAppendRefused(EventAppendRefusal::ConditionsFailed(violations)) => violations,
        other => panic!("not refused for its conditions: {other:?}"),
    }
}

/// A query condition (DCB) is checked at apply time: an append fails when an event
/// matching the query was stored after the position it read, whatever the stream, and
/// revision violations and the query's first match are answered together.
#[test]
fn a_query_condition_fails_on_a_matching_event_after_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let responses = apply(
        &mut sm,
        vec![
            append(vec![write("student-a", ExpectedRevision::Any, vec![tagged(1, "Enrolled", &["course=1"])])], vec![]),
            append(vec![write("student-b", ExpectedRevision::Any, vec![tagged(2, "Enrolled", &["course=2"])])], vec![]),
        ],
    );
    assert_eq!(appended(&responses[1]).positions[0].offset, 1);
    // Nothing about course 2 after offset 1: accepted.
    let ok = conditional(
        vec![write("student-c", ExpectedRevision::NoStream, vec![tagged(3, "Enrolled", &["course=2"])])],
        enrolments_of("2"),
        Some(1),
    );
    // Course 1 had an enrolment at offset 0, and student-a is not new: both are said.
    let refused = conditional(
        vec![write("student-a", ExpectedRevision::NoStream, vec![tagged(4, "Enrolled", &["course=1"])])],
        enrolments_of("1"),
        None,
    );
    // Another type, or another course, is no conflict.
    let unrelated = conditional(
        vec![write("student-d", ExpectedRevision::Any, vec![tagged(5, "Enrolled", &["course=3"])])],
        EventQuery { items: vec![QueryItem::new(["Left"], ["course=1"])] },
        None,
    );
    let responses = apply(&mut sm, vec![ok, refused, unrelated]);
    assert_eq!(appended(&responses[0]).positions[0].offset, 2);
    let violations = refusal(&responses[1]);
    assert_eq!(violations.revisions.len(), 1);
    assert_eq!(violations.query, Some(QueryViolation { after: None, first_match: 0 }));
    assert_eq!(appended(&responses[2]).positions[0].offset, 3);
    // After offset 2 there is no course-2 enrolment but the one at 2 itself: after 1 it conflicts.
    let again = |id, after| {
        conditional(
            vec![write("student-e", ExpectedRevision::Any, vec![tagged(id, "Enrolled", &["course=2"])])],
            enrolments_of("2"),
            after,
        )
    };
    let responses = apply(&mut sm, vec![again(6, Some(1))]);
    assert_eq!(refusal(&responses[0]).query, Some(QueryViolation { after: Some(1), first_match: 2 }));
    let responses = apply(&mut sm, vec![again(7, Some(2))]);
    assert_eq!(appended(&responses[0]).positions[0].offset, 4);
}

/// The trap of the module doc, for queries: two appends with the same condition in one
/// apply call. The second must see the first's event, though the batch is not written.
#[test]
fn query_conditions_in_one_apply_batch_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let claim = |id, stream: &str| {
        conditional(
            vec![write(stream, ExpectedRevision::Any, vec![tagged(id, "UsernameClaimed", &["username=ada"])])],
            EventQuery { items: vec![QueryItem::new(["UsernameClaimed"], ["username=ada"])] },
            None,
        )
    };
    let responses = apply(&mut sm, vec![claim(1, "user-1"), claim(2, "user-2")]);
    assert_eq!(appended(&responses[0]).positions[0].offset, 0);
    assert_eq!(refusal(&responses[1]).query, Some(QueryViolation { after: None, first_match: 0 }));
    // A query that matches every event sees the pending one too, and the stored one later.
    let responses = apply(
        &mut sm,
        vec![
            append(vec![write("other", ExpectedRevision::Any, vec![tagged(3, "Noted", &[])])], vec![]),
            conditional(
                vec![write("x", ExpectedRevision::Any, vec![tagged(4, "Noted", &[])])],
                EventQuery::all(),
                Some(0),
            ),
        ],
    );
    assert_eq!(refusal(&responses[1]).query, Some(QueryViolation { after: Some(0), first_match: 1 }));
    let responses = apply(
        &mut sm,
        vec![conditional(
            vec![write("x", ExpectedRevision::Any, vec![tagged(5, "Noted", &[])])],
            EventQuery::all(),
            Some(0),
        )],
    );
    assert_eq!(refusal(&responses[0]).query, Some(QueryViolation { after: Some(0), first_match: 1 }));
    assert_eq!(revisions(&sm, "user-2"), Vec::<u64>::new());
}

fn compact(streams: &[&str]) -> PartitionCommand {
    PartitionCommand::CompactStreams { streams: streams.iter().map(|s| (*s).to_owned()).collect(), now_ms: 5_000 }
}

/// Compaction applied in one call with the appends and the deletion it removes (a replica
/// catching up), twice over the same batches, and after a change that shows the events
/// again: it removes exactly what the head hides when it applies, on every replica alike.
#[test]
fn compaction_removes_what_the_head_hides_when_it_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let metadata = |max_count| StreamMetadata { max_count, ..StreamMetadata::default() };
    apply_in_one_call(
        &mut sm,
        vec![
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(1, "1"), event(2, "2")])], vec![]),
            append(vec![write("b", ExpectedRevision::NoStream, vec![event(3, "3"), event(4, "4")])], vec![]),
            change("a", ExpectedRevision::Exact(1), StreamChangeKind::SoftDelete),
            // Hidden, then shown again before the compaction applies: it keeps them.
            change("b", ExpectedRevision::Any, StreamChangeKind::SetMetadata(metadata(Some(1)))),
            change("b", ExpectedRevision::Any, StreamChangeKind::SetMetadata(metadata(None))),
            compact(&["a", "b"]),
            compact(&["a", "b"]),
            append(vec![write("a", ExpectedRevision::NoStream, vec![event(5, "5")])], vec![]),
        ],
    );
    let state = sm.state.log;
    let read =
        sm.log.read(0, &state, state.next_offset, cairn_storage::ReadLimits { max_records: 100, max_bytes: 1 << 20 });
    let events: Vec<(String, u64)> = read
        .expect("read")
        .records
        .iter()
        .filter_map(|r| {
            let event = r.event.as_ref().filter(|e| !cairn_storage::is_control(e))?;
            Some((String::from_utf8(r.key.as_ref()?.to_vec()).ok()?, event.stream_revision))
        })
        .collect();
    assert_eq!(events, vec![("b".into(), 0), ("b".into(), 1), ("a".into(), 2)], "a's deleted events are gone");
    assert_eq!(revisions(&sm, "b"), vec![0, 1]);
    // A removed event's id no longer makes an append a retry: the id is free again.
    apply_in_one_call(&mut sm, vec![append(vec![write("a", ExpectedRevision::Exact(2), vec![event(1, "1")])], vec![])]);
    assert_eq!(sm.log.stream_head(b"a").expect("head").next_revision, 4);
}
