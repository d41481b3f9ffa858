//! The log-queue workload's checks (Jepsen's Kafka workload): clients append unique values
//! to partitions (`Append`, `Produce`) and poll them back (`Poll`); once every fault has
//! healed, the whole log is read linearizably from offset 0. This file checks what values
//! landed where (nothing acknowledged lost, nothing twice, one value per offset, nothing
//! invented, nothing refused yet written); `queue_order.rs` checks orders in time.
//!
//! An `Info` append is indeterminate: its value may be in the log (at most once) or not, so
//! it is never counted as lost nor as failed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{CheckResult, describe, queue_order};
use crate::history::{Call, Kind, Operation, ReadLevel, Reply};

/// The log read back after healing: per partition, `(offset, value)` from offset 0.
pub type FinalLog = BTreeMap<u32, Vec<(u64, String)>>;

/// An `Append` or `Produce` operation, with what its reply said.
pub(crate) struct Append<'a> {
    pub operation: &'a Operation,
    pub partition: u32,
    pub value: &'a str,
    /// The acknowledged offset and read-your-writes token (`Ok` appends only).
    pub acknowledged: Option<(u64, u64)>,
}

/// A `Poll` operation, with its reply if it completed `Ok`.
pub(crate) struct Poll<'a> {
    pub operation: &'a Operation,
    pub partition: u32,
    pub from: u64,
    pub level: ReadLevel,
    pub read: Option<PollRead<'a>>,
}

/// What an `Ok` poll returned.
pub(crate) struct PollRead<'a> {
    pub records: &'a [(u64, String)],
    pub next_offset: u64,
    pub high_watermark: u64,
}

/// Where a value was seen at a position.
#[derive(Clone, Copy)]
enum Sighting<'a> {
    Acknowledged(&'a Operation),
    Polled(&'a Operation),
    FinalLog,
}

impl Sighting<'_> {
    fn describe(&self) -> String {
        match self {
            Sighting::Acknowledged(operation) => format!("acknowledged ({})", describe(operation)),
            Sighting::Polled(operation) => format!("polled ({})", describe(operation)),
            Sighting::FinalLog => "in the final log".to_owned(),
        }
    }
}

/// Runs every queue check over `operations` (from `history::operations`) and the final log.
pub fn check(operations: &[Operation], final_log: &FinalLog) -> Vec<CheckResult> {
    let appends = appends(operations);
    let polls = polls(operations);
    let sightings = sightings(&appends, &polls, final_log);
    vec![
        lost(&appends, final_log),
        duplicated(&sightings),
        inconsistent_offsets(&sightings),
        unexpected(&appends, &sightings),
        failed_but_read(&appends, &sightings),
        queue_order::nonmonotonic_polls(&polls),
        queue_order::real_time_order(&appends),
        queue_order::linearizable_reads(&appends, &polls),
        queue_order::read_your_writes(&appends, &polls),
    ]
}

fn appends(operations: &[Operation]) -> Vec<Append<'_>> {
    let mut appends = Vec::new();
    for operation in operations {
        let (partition, value) = match &operation.call {
            Call::Append { partition, value, .. } | Call::Produce { partition, value, .. } => (*partition, value),
            _ => continue,
        };
        let acknowledged = match (&operation.kind, &operation.reply) {
            (Kind::Ok, Some(Reply::Appended { offset, token })) => Some((*offset, *token)),
            _ => None,
        };
        appends.push(Append { operation, partition, value, acknowledged });
    }
    appends
}

fn polls(operations: &[Operation]) -> Vec<Poll<'_>> {
    let mut polls = Vec::new();
    for operation in operations {
        let Call::Poll { partition, from, level, .. } = &operation.call else { continue };
        let read = match (&operation.kind, &operation.reply) {
            (Kind::Ok, Some(Reply::Polled { records, next_offset, high_watermark })) => {
                Some(PollRead { records, next_offset: *next_offset, high_watermark: *high_watermark })
            }
            _ => None,
        };
        polls.push(Poll { operation, partition: *partition, from: *from, level: *level, read });
    }
    polls
}

/// Every (value, position) seen, first sighting kept, indexed both ways.
struct Sightings<'a> {
    by_value: HashMap<&'a str, BTreeMap<(u32, u64), Sighting<'a>>>,
    by_position: HashMap<(u32, u64), BTreeMap<&'a str, Sighting<'a>>>,
    /// Values seen in a read (a poll or the final log), with the first such sighting.
    read: HashMap<&'a str, ((u32, u64), Sighting<'a>)>,
    records_read: u64,
}

fn sightings<'a>(appends: &[Append<'a>], polls: &[Poll<'a>], final_log: &'a FinalLog) -> Sightings<'a> {
    let mut sightings =
        Sightings { by_value: HashMap::new(), by_position: HashMap::new(), read: HashMap::new(), records_read: 0 };
    let mut see = |value: &'a str, position: (u32, u64), sighting: Sighting<'a>| {
        sightings.by_value.entry(value).or_default().entry(position).or_insert(sighting);
        sightings.by_position.entry(position).or_default().entry(value).or_insert(sighting);
        if !matches!(sighting, Sighting::Acknowledged(_)) {
            sightings.records_read += 1;
            sightings.read.entry(value).or_insert((position, sighting));
        }
    };
    for append in appends {
        if let Some((offset, _)) = append.acknowledged {
            see(append.value, (append.partition, offset), Sighting::Acknowledged(append.operation));
        }
    }
    for poll in polls {
        for (offset, value) in poll.read.iter().flat_map(|read| read.records) {
            see(value, (poll.partition, *offset), Sighting::Polled(poll.operation));
        }
    }
    for (partition, records) in final_log {
        for (offset, value) in records {
            see(value, (*partition, *offset), Sighting::FinalLog);
        }
    }
    sightings
}

/// `lost`: an acknowledged append whose value is not at its offset in the final log.
fn lost(appends: &[Append<'_>], final_log: &FinalLog) -> CheckResult {
    let mut result = CheckResult::new("lost");
    let positions: HashMap<(u32, u64), &str> = final_log
        .iter()
        .flat_map(|(partition, records)| records.iter().map(|(offset, value)| ((*partition, *offset), value.as_str())))
        .collect();
    for append in appends {
        let kind = append.operation.kind;
        result.add(&format!("appends-{}", kind_name(kind)), 1);
        if kind != Kind::Ok {
            continue;
        }
        let Some((offset, _)) = append.acknowledged else {
            result.error(format!(
                "partition {}: value {:?} completed ok without an offset ({})",
                append.partition,
                append.value,
                describe(append.operation)
            ));
            continue;
        };
        match positions.get(&(append.partition, offset)) {
            Some(&found) if found == append.value => {}
            found => result.error(format!(
                "partition {} offset {offset}: value {:?} acknowledged ({}) but the final log has {}",
                append.partition,
                append.value,
                describe(append.operation),
                found.map_or("nothing there".to_owned(), |found| format!("{found:?} there")),
            )),
        }
    }
    result.count("final-log-records", final_log.values().map(|records| records.len() as u64).sum());
    let examined = result.counts.get("appends-ok").is_some_and(|&ok| ok > 0);
    result.finish(examined)
}

/// `duplicated`: a value seen at two positions (acknowledged at one and read at another,
/// or read at two).
fn duplicated(sightings: &Sightings<'_>) -> CheckResult {
    let mut result = CheckResult::new("duplicated");
    let mut values: Vec<_> = sightings.by_value.iter().map(|(value, positions)| (*value, positions)).collect();
    values.sort_unstable_by_key(|(value, _)| *value);
    for (value, positions) in values.iter().filter(|(_, positions)| positions.len() > 1) {
        let seen: Vec<String> = positions
            .iter()
            .map(|((partition, offset), sighting)| {
                format!("partition {partition} offset {offset} {}", sighting.describe())
            })
            .collect();
        result.error(format!("value {value:?} is at {} positions: {}", positions.len(), seen.join("; ")));
    }
    result.count("values", values.len() as u64);
    result.count("records-read", sightings.records_read);
    result.finish(!sightings.read.is_empty())
}

/// `inconsistent-offsets`: one position seen with two values.
fn inconsistent_offsets(sightings: &Sightings<'_>) -> CheckResult {
    let mut result = CheckResult::new("inconsistent-offsets");
    let mut positions: Vec<_> = sightings.by_position.iter().filter(|(_, values)| values.len() > 1).collect();
    positions.sort_unstable_by_key(|(position, _)| **position);
    for ((partition, offset), values) in positions {
        let seen: Vec<String> =
            values.iter().map(|(value, sighting)| format!("{value:?} {}", sighting.describe())).collect();
        result.error(format!(
            "partition {partition} offset {offset} holds {} values: {}",
            values.len(),
            seen.join("; ")
        ));
    }
    result.count("positions", sightings.by_position.len() as u64);
    result.finish(!sightings.by_position.is_empty())
}

/// `unexpected`: a value read that no operation ever invoked.
fn unexpected(appends: &[Append<'_>], sightings: &Sightings<'_>) -> CheckResult {
    let mut result = CheckResult::new("unexpected");
    let invoked: HashSet<&str> = appends.iter().map(|append| append.value).collect();
    let mut read: Vec<_> = sightings.read.iter().map(|(value, first)| (*value, first)).collect();
    read.sort_unstable_by_key(|(_, ((partition, offset), _))| (*partition, *offset));
    for (value, ((partition, offset), sighting)) in read {
        if !invoked.contains(value) {
            result.error(format!(
                "partition {partition} offset {offset}: value {value:?} was never appended, yet {}",
                sighting.describe()
            ));
        }
    }
    result.count("values-read", sightings.read.len() as u64);
    result.finish(!sightings.read.is_empty())
}

/// `failed-but-read`: the value of an append that failed (definitely not written) was read.
fn failed_but_read(appends: &[Append<'_>], sightings: &Sightings<'_>) -> CheckResult {
    let mut result = CheckResult::new("failed-but-read");
    let mut failed = 0;
    for append in appends.iter().filter(|append| append.operation.kind == Kind::Fail) {
        failed += 1;
        if let Some(((partition, offset), sighting)) = sightings.read.get(append.value) {
            result.error(format!(
                "partition {partition} offset {offset}: value {:?} failed ({}), yet {}",
                append.value,
                describe(append.operation),
                sighting.describe()
            ));
        }
    }
    result.count("appends-fail", failed);
    result.finish(failed > 0)
}

/// "ok", "fail" or "info", for count names.
pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Ok => "ok",
        Kind::Fail => "fail",
        Kind::Info | Kind::Invoke => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::checker::testkit::{TestHistory, append, appended, error, poll, polled, produce};

    fn log(partition: u32, values: &[&str]) -> FinalLog {
        let records = values.iter().enumerate().map(|(offset, value)| (offset as u64, value.to_string())).collect();
        FinalLog::from([(partition, records)])
    }

    fn result<'r>(results: &'r [CheckResult], name: &str) -> &'r CheckResult {
        results.iter().find(|result| result.name == name).expect("the check ran")
    }

    /// Three appends (one ok, one info that landed, one failed) and a poll, all consistent.
    fn healthy() -> TestHistory {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(0, 10));
        history.run(2, Kind::Info, &produce(7, 0, "b"), error("timeout"));
        history.run(3, Kind::Fail, &append(0, "c"), error("Unavailable"));
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::Local), polled(&[(0, "a"), (1, "b")], 2, 2));
        history
    }

    #[test]
    fn a_consistent_history_passes_every_value_check() {
        let results = check(&healthy().operations(), &log(0, &["a", "b"]));
        for name in ["lost", "duplicated", "inconsistent-offsets", "unexpected", "failed-but-read"] {
            assert_eq!(result(&results, name).validity, Validity::Valid, "{name}: {:?}", result(&results, name));
        }
        let lost = result(&results, "lost");
        assert_eq!((lost.counts["appends-ok"], lost.counts["appends-info"], lost.counts["appends-fail"]), (1, 1, 1));
        assert_eq!(result(&results, "duplicated").counts["records-read"], 4);
    }

    #[test]
    fn an_acknowledged_value_missing_from_the_final_log_is_lost() {
        let results = check(&healthy().operations(), &log(0, &["x", "b"]));
        let lost = result(&results, "lost");
        assert_eq!((lost.validity, lost.error_count), (Validity::Invalid, 1));
        assert!(lost.errors[0].starts_with("partition 0 offset 0: value \"a\" acknowledged (process 1"), "{lost:?}");
        assert!(lost.errors[0].ends_with("but the final log has \"x\" there"), "{lost:?}");
        let short = check(&healthy().operations(), &log(0, &[]));
        assert!(result(&short, "lost").errors[0].ends_with("nothing there"));
    }

    #[test]
    fn an_info_value_that_never_landed_is_not_lost() {
        let results = check(&healthy().operations(), &log(0, &["a"]));
        assert!(result(&results, "lost").is_valid());
    }

    #[test]
    fn a_value_read_at_a_second_offset_is_duplicated() {
        let results = check(&healthy().operations(), &log(0, &["a", "b", "a"]));
        let duplicated = result(&results, "duplicated");
        assert_eq!((duplicated.validity, duplicated.error_count), (Validity::Invalid, 1));
        assert!(duplicated.errors[0].starts_with("value \"a\" is at 2 positions: partition 0 offset 0 acknowledged"));
        assert!(duplicated.errors[0].ends_with("partition 0 offset 2 in the final log"), "{duplicated:?}");
    }

    #[test]
    fn two_values_at_one_offset_are_inconsistent() {
        let history = healthy();
        history.run(4, Kind::Ok, &poll(0, 1, ReadLevel::Local), polled(&[(1, "z")], 2, 2));
        let results = check(&history.operations(), &log(0, &["a", "b"]));
        let inconsistent = result(&results, "inconsistent-offsets");
        assert_eq!((inconsistent.validity, inconsistent.error_count), (Validity::Invalid, 1));
        assert!(inconsistent.errors[0].starts_with("partition 0 offset 1 holds 2 values: \"b\" polled (process 1"));
        assert_eq!(result(&results, "unexpected").error_count, 1, "z was never appended either");
    }

    #[test]
    fn a_value_nobody_appended_is_unexpected() {
        let results = check(&healthy().operations(), &log(0, &["a", "b", "ghost"]));
        let unexpected = result(&results, "unexpected");
        assert_eq!(unexpected.validity, Validity::Invalid);
        assert_eq!(
            unexpected.errors,
            ["partition 0 offset 2: value \"ghost\" was never appended, yet in the final log"]
        );
    }

    #[test]
    fn a_failed_value_that_was_read_is_reported() {
        let results = check(&healthy().operations(), &log(0, &["a", "b", "c"]));
        let failed = result(&results, "failed-but-read");
        assert_eq!((failed.validity, failed.error_count), (Validity::Invalid, 1));
        assert!(failed.errors[0].starts_with("partition 0 offset 2: value \"c\" failed (process 3"));
        assert!(result(&results, "unexpected").is_valid(), "c was appended, if refused");
    }

    #[test]
    fn checks_with_nothing_to_examine_are_vacuous() {
        let history = TestHistory::new();
        history.run(1, Kind::Info, &append(0, "a"), error("timeout"));
        let results = check(&history.operations(), &FinalLog::new());
        for result in &results {
            assert_eq!(result.validity, Validity::Vacuous, "{}", result.name);
        }
    }
}
