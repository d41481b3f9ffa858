//! The idempotent-producer workload's checks: each producer (one process lineage, its id in
//! the call) retries an append with the same sequence across failovers until it is
//! acknowledged or it gives up, so the final log (read after healing, from offset 0) must
//! hold each acknowledged value exactly once, where it was acknowledged, each indeterminate
//! (`Info`) value at most once, no refused (`Fail`) value, and each producer's values in the
//! order it sent them. Retries happen inside the client and are not in the history.

use std::collections::{BTreeMap, HashMap};

use super::queue::{FinalLog, kind_name};
use super::{CheckResult, describe};
use crate::history::{Call, Kind, Operation, Reply};

/// A `Produce` operation with its acknowledged offset (`Ok` only).
struct Produced<'a> {
    operation: &'a Operation,
    producer: u64,
    partition: u32,
    value: &'a str,
    acknowledged: Option<u64>,
}

/// Runs the producer checks over `operations` (from `history::operations`) and the final log.
pub fn check(operations: &[Operation], final_log: &FinalLog) -> Vec<CheckResult> {
    let produced: Vec<Produced<'_>> = operations
        .iter()
        .filter_map(|operation| match &operation.call {
            Call::Produce { producer, partition, value, .. } => Some(Produced {
                operation,
                producer: *producer,
                partition: *partition,
                value,
                acknowledged: match (&operation.kind, &operation.reply) {
                    (Kind::Ok, Some(Reply::Appended { offset, .. })) => Some(*offset),
                    _ => None,
                },
            }),
            _ => None,
        })
        .collect();
    let mut positions: HashMap<&str, Vec<(u32, u64)>> = HashMap::new();
    for (partition, records) in final_log {
        for (offset, value) in records {
            positions.entry(value.as_str()).or_default().push((*partition, *offset));
        }
    }
    vec![exactly_once(&produced, &positions), producer_order(&produced, &positions)]
}

/// `exactly-once`: each `Ok` value once, at its acknowledged offset; each `Info` value at
/// most once, in its partition; no `Fail` value.
fn exactly_once(produced: &[Produced<'_>], positions: &HashMap<&str, Vec<(u32, u64)>>) -> CheckResult {
    let mut result = CheckResult::new("exactly-once");
    let mut present = 0;
    for produce in produced {
        let kind = produce.operation.kind;
        result.add(&format!("produced-{}", kind_name(kind)), 1);
        let found = positions.get(produce.value).map(Vec::as_slice).unwrap_or_default();
        present += u64::from(!found.is_empty());
        let at = format!(
            "producer {} partition {}: value {:?} ({})",
            produce.producer,
            produce.partition,
            produce.value,
            describe(produce.operation)
        );
        let listed = || {
            let found: Vec<String> =
                found.iter().map(|(partition, offset)| format!("partition {partition} offset {offset}")).collect();
            found.join(", ")
        };
        match kind {
            Kind::Ok => match produce.acknowledged {
                Some(offset) if found == [(produce.partition, offset)] => {}
                Some(offset) if found.is_empty() => {
                    result.error(format!("{at} acknowledged at offset {offset} is not in the final log"))
                }
                Some(offset) => {
                    result.error(format!("{at} acknowledged at offset {offset} is in the final log at {}", listed()))
                }
                None => result.error(format!("{at} completed ok without an offset")),
            },
            Kind::Info if found.len() > 1 || found.iter().any(|(partition, _)| *partition != produce.partition) => {
                result.error(format!("{at} is in the final log at {}", listed()))
            }
            Kind::Fail if !found.is_empty() => result.error(format!("{at} is in the final log at {}", listed())),
            _ => {}
        }
    }
    result.count("values-present", present);
    let examined = result.counts.get("produced-ok").is_some_and(|&ok| ok > 0);
    result.finish(examined)
}

/// `producer-order`: per producer and partition, each `Ok` value lands after every value
/// (`Ok`, or `Info` that landed) the producer invoked before it.
fn producer_order(produced: &[Produced<'_>], positions: &HashMap<&str, Vec<(u32, u64)>>) -> CheckResult {
    let mut result = CheckResult::new("producer-order");
    // The latest-landed value so far of each producer and partition, in invocation order.
    let mut furthest: BTreeMap<(u64, u32), (u64, &Produced<'_>)> = BTreeMap::new();
    let mut compared = 0;
    for produce in produced {
        let landed = positions
            .get(produce.value)
            .and_then(|found| found.iter().filter(|(partition, _)| *partition == produce.partition).min());
        let Some(&(_, offset)) = landed else { continue };
        let key = (produce.producer, produce.partition);
        if produce.operation.kind == Kind::Ok
            && let Some((earlier_offset, earlier)) = furthest.get(&key)
        {
            compared += 1;
            if *earlier_offset >= offset {
                result.error(format!(
                    "producer {} partition {}: value {:?} ({}) is at offset {offset}, not after value {:?} \
                     invoked before it ({}) at offset {earlier_offset}",
                    produce.producer,
                    produce.partition,
                    produce.value,
                    describe(produce.operation),
                    earlier.value,
                    describe(earlier.operation),
                ));
            }
        }
        let entry = furthest.entry(key).or_insert((offset, produce));
        if offset > entry.0 {
            *entry = (offset, produce);
        }
    }
    result.count("values-compared", compared);
    result.finish(compared > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::checker::testkit::{TestHistory, appended, error, produce};

    fn log(records: &[(u32, &str)]) -> FinalLog {
        let mut log = FinalLog::new();
        for (partition, value) in records {
            let records = log.entry(*partition).or_default();
            records.push((records.len() as u64, value.to_string()));
        }
        log
    }

    /// Producer 1 sends a (ok), b (info), c (ok), d (fail) to partition 0; producer 2 sends
    /// e (ok) to partition 0.
    fn history() -> TestHistory {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &produce(1, 0, "a"), appended(0, 1));
        history.run(1, Kind::Info, &produce(1, 0, "b"), error("timeout"));
        history.run(2, Kind::Ok, &produce(2, 0, "e"), appended(2, 2));
        history.run(3, Kind::Ok, &produce(1, 0, "c"), appended(3, 3));
        history.run(3, Kind::Fail, &produce(1, 0, "d"), error("InvalidArgument"));
        history
    }

    fn run(history: &TestHistory, log: &FinalLog) -> Vec<CheckResult> {
        check(&history.operations(), log)
    }

    #[test]
    fn each_value_once_in_order_passes() {
        let results = run(&history(), &log(&[(0, "a"), (0, "b"), (0, "e"), (0, "c")]));
        assert!(results.iter().all(CheckResult::is_valid), "{results:?}");
        let counts = &results[0].counts;
        assert_eq!((counts["produced-ok"], counts["produced-info"], counts["produced-fail"]), (3, 1, 1));
        assert_eq!(counts["values-present"], 4);
        assert_eq!(results[1].counts["values-compared"], 1, "c after a and b");
    }

    #[test]
    fn an_info_value_may_be_missing() {
        let results = run(&history(), &log(&[(0, "a"), (0, "x"), (0, "e"), (0, "c")]));
        assert!(results.iter().all(CheckResult::is_valid), "{results:?}");
    }

    #[test]
    fn a_value_twice_missing_or_refused_is_not_exactly_once() {
        let results = run(&history(), &log(&[(0, "a"), (0, "b"), (0, "b"), (0, "c"), (0, "d")]));
        let exactly_once = &results[0];
        assert_eq!((exactly_once.validity, exactly_once.error_count), (Validity::Invalid, 3), "{exactly_once:?}");
        assert!(exactly_once.errors[0].starts_with("producer 1 partition 0: value \"b\" (process 1"));
        assert!(exactly_once.errors[0].ends_with("is in the final log at partition 0 offset 1, partition 0 offset 2"));
        assert!(exactly_once.errors[1].ends_with("acknowledged at offset 2 is not in the final log"));
        assert!(exactly_once.errors[1].starts_with("producer 2 partition 0: value \"e\""));
        assert!(exactly_once.errors[2].starts_with("producer 1 partition 0: value \"d\" (process 3"));
        assert!(exactly_once.errors[2].ends_with("is in the final log at partition 0 offset 4"));
        assert_eq!(results.len(), 2);
    }

    #[test]
    fn an_acknowledged_value_at_another_offset_is_not_exactly_once() {
        let results = run(&history(), &log(&[(0, "a"), (0, "b"), (0, "c"), (0, "e")]));
        let exactly_once = &results[0];
        assert_eq!(exactly_once.error_count, 2, "{exactly_once:?}");
        assert!(
            exactly_once.errors[0].ends_with("acknowledged at offset 2 is in the final log at partition 0 offset 3")
        );
        assert!(
            exactly_once.errors[1].ends_with("acknowledged at offset 3 is in the final log at partition 0 offset 2")
        );
    }

    #[test]
    fn a_value_landing_before_one_sent_earlier_breaks_producer_order() {
        // c (ok) before b (info, invoked before c): b landed out of order.
        let results = run(&history(), &log(&[(0, "a"), (0, "c"), (0, "e"), (0, "b")]));
        let order = &results[1];
        assert_eq!((order.validity, order.error_count), (Validity::Invalid, 1), "{order:?}");
        assert!(order.errors[0].starts_with("producer 1 partition 0: value \"c\" (process 3"));
        assert!(order.errors[0].contains("is at offset 1, not after value \"b\" invoked before it"));
    }

    #[test]
    fn no_acknowledged_value_is_vacuous() {
        let history = TestHistory::new();
        history.run(1, Kind::Info, &produce(1, 0, "a"), error("timeout"));
        let results = run(&history, &log(&[(0, "a")]));
        assert!(results.iter().all(|result| result.validity == Validity::Vacuous), "{results:?}");
    }
}
