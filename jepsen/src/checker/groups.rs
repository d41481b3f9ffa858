//! The consumer-group workload's checks, over the members' polls and commits, the final log
//! and the group's committed positions read after healing.
//!
//! - `group-delivery`: a committed position says every record before it was processed, so
//!   each acknowledged append below its partition's final position must have been returned
//!   by some member's poll; and every record a member polled is the final log's record at
//!   that offset (no phantom or misplaced records).
//! - `group-commits`: positions never move back. A commit acknowledged before another
//!   commit of the same partition was invoked is not above it (fencing by generation and
//!   ownership is what makes this hold through rebalances and zombies), and no
//!   acknowledged commit is above the final position (an acknowledged commit is durable).

use std::collections::{BTreeMap, BTreeSet};

use super::queue::FinalLog;
use super::{CheckResult, describe};
use crate::history::{Call, Kind, Operation, Reply};

pub fn check(operations: &[Operation], final_log: &FinalLog, positions: &BTreeMap<u32, u64>) -> Vec<CheckResult> {
    vec![delivery(operations, final_log, positions), commits(operations, positions)]
}

/// `(partition, offset)` → value, of every record a member's poll returned.
fn polled(operations: &[Operation]) -> BTreeMap<(u32, u64), Vec<(&str, &Operation)>> {
    let mut polled: BTreeMap<(u32, u64), Vec<(&str, &Operation)>> = BTreeMap::new();
    for operation in operations {
        let (Call::GroupPoll { .. }, Kind::Ok, Some(Reply::GroupPolled { partition: Some(partition), records })) =
            (&operation.call, operation.kind, &operation.reply)
        else {
            continue;
        };
        for (offset, value) in records {
            polled.entry((*partition, *offset)).or_default().push((value.as_str(), operation));
        }
    }
    polled
}

fn delivery(operations: &[Operation], final_log: &FinalLog, positions: &BTreeMap<u32, u64>) -> CheckResult {
    let mut result = CheckResult::new("group-delivery");
    let polled = polled(operations);
    result.count("records-polled", polled.values().map(|seen| seen.len() as u64).sum());
    for ((partition, offset), seen) in &polled {
        let logged = final_log.get(partition).and_then(|records| {
            records.binary_search_by_key(offset, |(o, _)| *o).ok().map(|at| records[at].1.as_str())
        });
        for (value, operation) in seen {
            if logged != Some(*value) {
                result.error(format!(
                    "partition {partition} offset {offset}: polled {value:?} ({}), the log has {logged:?}",
                    describe(operation)
                ));
            }
        }
    }
    let mut below = 0;
    for operation in operations {
        let (Call::Append { partition, value, .. }, Kind::Ok, Some(Reply::Appended { offset, .. })) =
            (&operation.call, operation.kind, &operation.reply)
        else {
            continue;
        };
        let Some(position) = positions.get(partition) else { continue };
        if offset >= position {
            continue;
        }
        below += 1;
        if !polled.get(&(*partition, *offset)).is_some_and(|seen| seen.iter().any(|(v, _)| v == value)) {
            result.error(format!(
                "partition {partition} offset {offset}: {value:?} ({}) is below the committed position {position} \
                 but no member polled it",
                describe(operation)
            ));
        }
    }
    result.count("acknowledged-below-positions", below);
    for (partition, position) in positions {
        let end = final_log.get(partition).map_or(0, |records| records.last().map_or(0, |(offset, _)| offset + 1));
        if *position > end {
            result
                .error(format!("partition {partition}: the committed position {position} is past the log's end {end}"));
        }
    }
    result.finish(below > 0)
}

fn commits(operations: &[Operation], positions: &BTreeMap<u32, u64>) -> CheckResult {
    let mut result = CheckResult::new("group-commits");
    // partition → (operation, offset) of each acknowledged commit.
    let mut by_partition: BTreeMap<u32, Vec<(&Operation, u64)>> = BTreeMap::new();
    for operation in operations {
        let (Call::GroupCommit { .. }, Kind::Ok, Some(Reply::GroupCommitted { positions })) =
            (&operation.call, operation.kind, &operation.reply)
        else {
            continue;
        };
        for (partition, offset) in positions {
            by_partition.entry(*partition).or_default().push((operation, *offset));
        }
    }
    let mut examined = 0;
    let mut partitions = BTreeSet::new();
    for (partition, commits) in &by_partition {
        partitions.insert(*partition);
        examined += commits.len() as u64;
        for (later, later_offset) in commits {
            let moved_back = commits
                .iter()
                .filter(|(earlier, offset)| earlier.precedes(later) && offset > later_offset)
                .max_by_key(|(_, offset)| *offset);
            if let Some((earlier, offset)) = moved_back {
                result.error(format!(
                    "partition {partition}: commit of {later_offset} ({}) after a commit of {offset} ({})",
                    describe(later),
                    describe(earlier)
                ));
            }
        }
        let highest = commits.iter().map(|(_, offset)| *offset).max().unwrap_or(0);
        let last = positions.get(partition).copied().unwrap_or(0);
        if last < highest {
            result.error(format!(
                "partition {partition}: the final position {last} is below an acknowledged commit of {highest}"
            ));
        }
    }
    result.count("commits-acknowledged", examined);
    result.count("partitions-committed", partitions.len() as u64);
    result.finish(examined > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(process: u32, invoke_ns: u64, complete_ns: u64, call: Call, reply: Reply) -> Operation {
        Operation { process, invoke_ns, complete_ns: Some(complete_ns), kind: Kind::Ok, call, reply: Some(reply) }
    }

    fn append(partition: u32, offset: u64, value: &str) -> Operation {
        let call = Call::Append { node: 1, partition, value: value.into() };
        operation(0, 0, 1, call, Reply::Appended { offset, token: 1 })
    }

    fn poll(partition: u32, records: &[(u64, &str)]) -> Operation {
        let records = records.iter().map(|(offset, value)| (*offset, value.to_string())).collect();
        let call = Call::GroupPoll { node: 1, member: "m".into() };
        operation(1, 2, 3, call, Reply::GroupPolled { partition: Some(partition), records })
    }

    fn commit(at: u64, partition: u32, offset: u64) -> Operation {
        let call = Call::GroupCommit { node: 1, member: "m".into() };
        operation(1, at, at + 1, call, Reply::GroupCommitted { positions: vec![(partition, offset)] })
    }

    fn log(values: &[&str]) -> FinalLog {
        BTreeMap::from([(0, values.iter().enumerate().map(|(i, v)| (i as u64, v.to_string())).collect())])
    }

    #[test]
    fn a_position_past_a_record_nobody_polled_is_caught() {
        let operations = vec![append(0, 0, "a"), append(0, 1, "b"), poll(0, &[(0, "a")])];
        let positions = BTreeMap::from([(0, 2)]);
        let result = delivery(&operations, &log(&["a", "b"]), &positions);
        assert_eq!(result.error_count, 1, "{:?}", result.errors);
        assert!(result.errors[0].contains("offset 1"), "{:?}", result.errors);
        let fine = delivery(&operations, &log(&["a", "b"]), &BTreeMap::from([(0, 1)]));
        assert!(fine.is_valid(), "{:?}", fine.errors);
    }

    #[test]
    fn a_polled_record_that_is_not_the_logs_is_caught() {
        let operations = vec![append(0, 0, "a"), poll(0, &[(0, "x")])];
        let result = delivery(&operations, &log(&["a"]), &BTreeMap::from([(0, 0)]));
        assert_eq!(result.error_count, 1, "{:?}", result.errors);
    }

    #[test]
    fn a_position_that_moves_back_or_is_lost_is_caught() {
        let operations = vec![commit(10, 0, 5), commit(20, 0, 3)];
        let result = commits(&operations, &BTreeMap::from([(0, 5)]));
        assert_eq!(result.error_count, 1, "{:?}", result.errors);
        let lost = commits(&[commit(10, 0, 5)], &BTreeMap::from([(0, 4)]));
        assert_eq!(lost.error_count, 1, "{:?}", lost.errors);
        let fine = commits(&[commit(10, 0, 3), commit(20, 0, 5)], &BTreeMap::from([(0, 5)]));
        assert!(fine.is_valid(), "{:?}", fine.errors);
    }
}
