//! The event-store workload's checks: clients append events to streams, each with a fixed
//! event id (a retry across a failover carries the same id and must not land twice) and
//! often an expected revision (a conditional write, refused when the stream has moved on);
//! they read whole streams linearizably; after healing every stream is read back.
//!
//! A refused (`Fail`) append must not land, but the same event id may have been sent again
//! by a retry that did land: its id is only held against the stream when no other append
//! of that id completed `Ok` or `Info`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::precedence::{Completed, max_completed_before};
use super::queue::kind_name;
use super::{CheckResult, describe};
use crate::history::{Call, Expected, Kind, Operation, Reply};

/// The streams read back after healing: per stream, `(revision, event_id, value)`.
pub type FinalStreams = BTreeMap<String, Vec<(u64, String, String)>>;

/// A `StreamAppend` operation with the revision it was acknowledged at (`Ok` only).
struct StreamAppend<'a> {
    operation: &'a Operation,
    stream: &'a str,
    expected: Expected,
    event_id: &'a str,
    value: &'a str,
    revision: Option<u64>,
}

/// An `Ok` stream read.
struct StreamRead<'a> {
    operation: &'a Operation,
    stream: &'a str,
    events: &'a [(u64, String, String)],
}

/// Runs the stream checks over `operations` (from `history::operations`) and the final
/// streams.
pub fn check(operations: &[Operation], final_streams: &FinalStreams) -> Vec<CheckResult> {
    let mut appends = Vec::new();
    let mut reads = Vec::new();
    let mut read_counts = CheckResult::new("stream-reads");
    for operation in operations {
        match &operation.call {
            Call::StreamAppend { stream, expected, event_id, value, .. } => appends.push(StreamAppend {
                operation,
                stream,
                expected: *expected,
                event_id,
                value,
                revision: match (&operation.kind, &operation.reply) {
                    (Kind::Ok, Some(Reply::StreamAppended { revision })) => Some(*revision),
                    _ => None,
                },
            }),
            Call::StreamRead { stream, .. } => {
                read_counts.add(&format!("reads-{}", kind_name(operation.kind)), 1);
                if let (Kind::Ok, Some(Reply::StreamEvents { events })) = (&operation.kind, &operation.reply) {
                    reads.push(StreamRead { operation, stream, events });
                }
            }
            _ => {}
        }
    }
    vec![
        stream_lost(&appends, final_streams),
        stream_dense(final_streams),
        event_id_once(final_streams),
        expected_revision(&appends, &reads, final_streams),
        stream_reads(read_counts, &appends, &reads, final_streams),
    ]
}

/// `stream-lost`: each acknowledged event is at its revision in the final stream.
fn stream_lost(appends: &[StreamAppend<'_>], final_streams: &FinalStreams) -> CheckResult {
    let mut result = CheckResult::new("stream-lost");
    let at: HashMap<(&str, u64), (&str, &str)> = final_streams
        .iter()
        .flat_map(|(stream, events)| {
            events
                .iter()
                .map(move |(revision, id, value)| ((stream.as_str(), *revision), (id.as_str(), value.as_str())))
        })
        .collect();
    for append in appends {
        result.add(&format!("appends-{}", kind_name(append.operation.kind)), 1);
        if append.operation.kind != Kind::Ok {
            continue;
        }
        let what = format!("stream {:?}: event {} ({})", append.stream, append.event_id, describe(append.operation));
        let Some(revision) = append.revision else {
            result.error(format!("{what} completed ok without a revision"));
            continue;
        };
        match at.get(&(append.stream, revision)) {
            Some(&(id, value)) if id == append.event_id && value == append.value => {}
            Some((id, value)) => result.error(format!(
                "{what} acknowledged at revision {revision} with value {:?}, but the final stream has event {id} \
                 with value {value:?} there",
                append.value
            )),
            None => result.error(format!("{what} acknowledged at revision {revision} is not in the final stream")),
        }
    }
    let examined = result.counts.get("appends-ok").is_some_and(|&ok| ok > 0);
    result.finish(examined)
}

/// `stream-dense`: each final stream's revisions are 0, 1, 2... with no gap or repeat.
fn stream_dense(final_streams: &FinalStreams) -> CheckResult {
    let mut result = CheckResult::new("stream-dense");
    for (stream, events) in final_streams {
        let misplaced = events.iter().enumerate().find(|(position, (revision, _, _))| *revision != *position as u64);
        if let Some((position, (revision, id, _))) = misplaced {
            result.error(format!("stream {stream:?}: event {id} at position {position} has revision {revision}"));
        }
    }
    result.count("events", final_streams.values().map(|events| events.len() as u64).sum());
    let examined = final_streams.values().any(|events| !events.is_empty());
    result.finish(examined)
}

/// `event-id-once`: an event id appears at most once in each final stream.
fn event_id_once(final_streams: &FinalStreams) -> CheckResult {
    let mut result = CheckResult::new("event-id-once");
    for (stream, events) in final_streams {
        let mut revisions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (revision, id, _) in events {
            revisions.entry(id).or_default().push(*revision);
        }
        for (id, revisions) in revisions.iter().filter(|(_, revisions)| revisions.len() > 1) {
            result.error(format!("stream {stream:?}: event {id} is at revisions {revisions:?}"));
        }
    }
    let examined = final_streams.values().any(|events| !events.is_empty());
    result.finish(examined)
}

/// `expected-revision`: a conditional append that succeeded got the revision it expected
/// to follow; one that failed never landed.
fn expected_revision(
    appends: &[StreamAppend<'_>],
    reads: &[StreamRead<'_>],
    final_streams: &FinalStreams,
) -> CheckResult {
    let mut result = CheckResult::new("expected-revision");
    let mut seen: HashMap<(&str, &str), String> = HashMap::new();
    for (stream, events) in final_streams {
        for (revision, id, _) in events {
            seen.entry((stream, id)).or_insert_with(|| format!("in the final stream at revision {revision}"));
        }
    }
    for read in reads {
        for (revision, id, _) in read.events {
            seen.entry((read.stream, id))
                .or_insert_with(|| format!("read at revision {revision} ({})", describe(read.operation)));
        }
    }
    let may_have_landed: HashSet<(&str, &str)> = appends
        .iter()
        .filter(|append| append.operation.kind != Kind::Fail)
        .map(|append| (append.stream, append.event_id))
        .collect();
    let (mut examined, mut conflicts) = (0, 0);
    for append in appends {
        let what = format!("stream {:?}: event {} ({})", append.stream, append.event_id, describe(append.operation));
        match (append.operation.kind, append.expected, append.revision) {
            (Kind::Ok, Expected::Revision(expected), Some(revision)) => {
                examined += 1;
                if revision != expected + 1 {
                    result.error(format!("{what} expected revision {expected} yet got revision {revision}"));
                }
            }
            (Kind::Ok, Expected::NoStream, Some(revision)) => {
                examined += 1;
                if revision != 0 {
                    result.error(format!("{what} expected no stream yet got revision {revision}"));
                }
            }
            (Kind::Fail, _, _) => {
                examined += 1;
                let conflict =
                    matches!(&append.operation.reply, Some(Reply::Error { code, .. }) if code == "FailedPrecondition");
                conflicts += u64::from(conflict);
                if !may_have_landed.contains(&(append.stream, append.event_id))
                    && let Some(sighting) = seen.get(&(append.stream, append.event_id))
                {
                    result.error(format!("{what} was refused, yet it is {sighting}"));
                }
            }
            _ => {}
        }
    }
    result.count("conflicts", conflicts);
    result.count("appends-examined", examined);
    result.finish(examined > 0)
}

/// `stream-reads`: each read is a prefix of the final stream and holds every append to the
/// stream acknowledged before it was invoked. It is enough to find the highest such
/// revision: the prefix check and `stream-lost` vouch for the rest.
fn stream_reads(
    mut result: CheckResult,
    appends: &[StreamAppend<'_>],
    reads: &[StreamRead<'_>],
    final_streams: &FinalStreams,
) -> CheckResult {
    let mut by_stream: BTreeMap<&str, (Vec<&StreamAppend<'_>>, Vec<&StreamRead<'_>>)> = BTreeMap::new();
    for append in appends.iter().filter(|append| append.revision.is_some()) {
        by_stream.entry(append.stream).or_default().0.push(append);
    }
    for read in reads {
        by_stream.entry(read.stream).or_default().1.push(read);
    }
    for (stream, (appends, reads)) in by_stream {
        let final_events = final_streams.get(stream).map(Vec::as_slice).unwrap_or_default();
        for read in &reads {
            let what = format!("stream {stream:?}: read ({})", describe(read.operation));
            if read.events.len() > final_events.len() {
                result.error(format!(
                    "{what} returned {} events, the final stream holds {}",
                    read.events.len(),
                    final_events.len()
                ));
            } else if let Some((got, want)) = read.events.iter().zip(final_events).find(|(got, want)| got != want) {
                result.error(format!("{what} returned {got:?} where the final stream has {want:?}"));
            }
        }
        let completed: Vec<Completed> = appends
            .iter()
            .enumerate()
            .filter_map(|(id, append)| {
                let (complete_ns, value) = (append.operation.complete_ns?, append.revision?);
                Some(Completed { complete_ns, value, id })
            })
            .collect();
        let invoked: Vec<u64> = reads.iter().map(|read| read.operation.invoke_ns).collect();
        for (read, latest) in reads.iter().zip(max_completed_before(&completed, &invoked)) {
            let Some(latest) = latest else { continue };
            let append = appends[latest.id];
            if !read.events.iter().any(|(revision, id, _)| *revision == latest.value && id == append.event_id) {
                result.error(format!(
                    "stream {stream:?}: read ({}) lacks event {} acknowledged at revision {} ({}) before it was \
                     invoked",
                    describe(read.operation),
                    append.event_id,
                    latest.value,
                    describe(append.operation)
                ));
            }
        }
    }
    result.finish(!reads.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::checker::testkit::{TestHistory, error, stream_append, stream_events, stream_read};

    fn streams(events: &[(u64, &str, &str)]) -> FinalStreams {
        let events = events.iter().map(|&(revision, id, value)| (revision, id.to_owned(), value.to_owned())).collect();
        FinalStreams::from([("s".to_owned(), events)])
    }

    fn result<'r>(results: &'r [CheckResult], name: &str) -> &'r CheckResult {
        results.iter().find(|result| result.name == name).expect("the check ran")
    }

    fn appended(revision: u64) -> Reply {
        Reply::StreamAppended { revision }
    }

    /// e0 (no stream) and e1 (after 0) land; e2 (after 0 again) is refused; e3 times out;
    /// a read after e1 sees e0 and e1.
    fn history() -> TestHistory {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &stream_append("s", Expected::NoStream, "e0", "v0"), appended(0));
        history.run(1, Kind::Ok, &stream_append("s", Expected::Revision(0), "e1", "v1"), appended(1));
        history.run(2, Kind::Fail, &stream_append("s", Expected::Revision(0), "e2", "v2"), error("FailedPrecondition"));
        history.run(2, Kind::Info, &stream_append("s", Expected::Any, "e3", "v3"), error("timeout"));
        history.run(3, Kind::Ok, &stream_read("s"), stream_events(&[(0, "e0", "v0"), (1, "e1", "v1")]));
        history
    }

    const HEALTHY: [(u64, &str, &str); 3] = [(0, "e0", "v0"), (1, "e1", "v1"), (2, "e3", "v3")];

    #[test]
    fn a_consistent_event_store_passes() {
        let results = check(&history().operations(), &streams(&HEALTHY));
        assert!(results.iter().all(CheckResult::is_valid), "{results:?}");
        let lost = result(&results, "stream-lost");
        assert_eq!((lost.counts["appends-ok"], lost.counts["appends-fail"], lost.counts["appends-info"]), (2, 1, 1));
        assert_eq!(result(&results, "expected-revision").counts["conflicts"], 1);
        assert_eq!(result(&results, "stream-reads").counts["reads-ok"], 1);
    }

    #[test]
    fn an_acknowledged_event_replaced_in_the_final_stream_is_lost() {
        let results = check(&history().operations(), &streams(&[(0, "e0", "v0"), (1, "e9", "v9")]));
        let lost = result(&results, "stream-lost");
        assert_eq!((lost.validity, lost.error_count), (Validity::Invalid, 1));
        assert!(lost.errors[0].starts_with("stream \"s\": event e1 (process 1"), "{lost:?}");
        assert!(lost.errors[0].ends_with("but the final stream has event e9 with value \"v9\" there"), "{lost:?}");
    }

    #[test]
    fn a_gap_in_revisions_is_not_dense() {
        let results = check(&history().operations(), &streams(&[(0, "e0", "v0"), (1, "e1", "v1"), (3, "e3", "v3")]));
        let dense = result(&results, "stream-dense");
        assert_eq!(dense.validity, Validity::Invalid);
        assert_eq!(dense.errors, ["stream \"s\": event e3 at position 2 has revision 3"]);
    }

    #[test]
    fn an_event_id_twice_in_a_stream_is_reported() {
        let results = check(&history().operations(), &streams(&[(0, "e0", "v0"), (1, "e1", "v1"), (2, "e1", "v1")]));
        let once = result(&results, "event-id-once");
        assert_eq!(once.errors, ["stream \"s\": event e1 is at revisions [1, 2]"]);
    }

    #[test]
    fn a_wrong_revision_or_a_refused_event_that_landed_breaks_expected_revision() {
        let history = history();
        history.run(1, Kind::Ok, &stream_append("s", Expected::Revision(1), "e4", "v4"), appended(3));
        let final_streams = streams(&[(0, "e0", "v0"), (1, "e1", "v1"), (2, "e2", "v2"), (3, "e4", "v4")]);
        let results = check(&history.operations(), &final_streams);
        let expected = result(&results, "expected-revision");
        assert_eq!((expected.validity, expected.error_count), (Validity::Invalid, 2), "{expected:?}");
        assert!(expected.errors[0].starts_with("stream \"s\": event e2 (process 2"), "{expected:?}");
        assert!(expected.errors[0].ends_with("was refused, yet it is in the final stream at revision 2"));
        assert!(expected.errors[1].ends_with("expected revision 1 yet got revision 3"), "{expected:?}");
    }

    #[test]
    fn a_refused_event_whose_retry_may_have_landed_is_not_held_against_it() {
        let history = TestHistory::new();
        history.run(1, Kind::Info, &stream_append("s", Expected::NoStream, "e0", "v0"), error("timeout"));
        history.run(2, Kind::Fail, &stream_append("s", Expected::NoStream, "e0", "v0"), error("FailedPrecondition"));
        let results = check(&history.operations(), &streams(&[(0, "e0", "v0")]));
        assert!(result(&results, "expected-revision").is_valid(), "{results:?}");
        assert!(result(&results, "event-id-once").is_valid());
    }

    #[test]
    fn a_read_that_is_no_prefix_or_misses_an_acknowledged_event_is_reported() {
        let history = history();
        history.run(4, Kind::Ok, &stream_read("s"), stream_events(&[(0, "e0", "v0")]));
        history.run(4, Kind::Ok, &stream_read("s"), stream_events(&[(0, "e0", "v0"), (1, "e1", "other")]));
        let results = check(&history.operations(), &streams(&HEALTHY));
        let reads = result(&results, "stream-reads");
        assert_eq!((reads.validity, reads.error_count), (Validity::Invalid, 2), "{reads:?}");
        assert!(
            reads.errors[0].contains("returned (1, \"e1\", \"other\") where the final stream has (1, \"e1\", \"v1\")")
        );
        assert!(reads.errors[1].contains("lacks event e1 acknowledged at revision 1 (process 1"), "{reads:?}");
    }

    #[test]
    fn no_events_and_no_reads_are_vacuous() {
        let results = check(&[], &FinalStreams::new());
        assert!(results.iter().all(|result| result.validity == Validity::Vacuous), "{results:?}");
    }
}
