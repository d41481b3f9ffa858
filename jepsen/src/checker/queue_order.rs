//! The log-queue workload's checks of order (see `queue.rs` for the workload): polls read
//! dense, rising offsets and never step back; appends get offsets in real-time order;
//! linearizable polls see every append acknowledged before them and never go back in
//! time; read-your-writes polls see their process's own append.
//!
//! The real-time checks use `precedence::max_completed_before`, O(n log n) in the history.

use std::collections::{BTreeMap, HashMap};

use super::precedence::{Completed, max_completed_before};
use super::queue::{Append, Poll, PollRead, kind_name};
use super::{CheckResult, describe};
use crate::history::ReadLevel;

/// `nonmonotonic-polls`: within one poll, offsets start at `from` and rise by 1 and
/// `next_offset` follows the last; across a process's successive polls of a partition that
/// continue where the last one ended, no offset goes backwards.
pub(crate) fn nonmonotonic_polls(polls: &[Poll<'_>]) -> CheckResult {
    let mut result = CheckResult::new("nonmonotonic-polls");
    let mut last: HashMap<(u32, u32), (&Poll<'_>, &PollRead<'_>)> = HashMap::new();
    let mut examined = false;
    for poll in polls {
        result.add(&format!("polls-{}-{}", level_name(poll.level), kind_name(poll.operation.kind)), 1);
        let Some(read) = &poll.read else { continue };
        examined = true;
        result.add("records-read", read.records.len() as u64);
        let at = format!("partition {} poll from {} ({})", poll.partition, poll.from, describe(poll.operation));
        if let Some((first, _)) = read.records.first()
            && poll.from < read.high_watermark
            && *first != poll.from
        {
            result.error(format!("{at}: the first record is at offset {first}"));
        }
        if let Some(pair) = read.records.windows(2).find(|pair| pair[1].0 != pair[0].0 + 1) {
            result.error(format!("{at}: offset {} is followed by offset {}", pair[0].0, pair[1].0));
        }
        let expected_next = read.records.last().map_or(poll.from, |(offset, _)| offset + 1);
        if read.next_offset != expected_next {
            result.error(format!("{at}: next offset is {}, expected {expected_next}", read.next_offset));
        }
        let key = (poll.operation.process, poll.partition);
        if let Some((previous, previous_read)) = last.get(&key)
            && poll.from == previous_read.next_offset
        {
            let went_back = read.records.first().map(|(offset, _)| *offset).filter(|&first| first < poll.from);
            if let Some(first) = went_back {
                result.error(format!(
                    "{at}: went back to offset {first} after the process's previous poll ({}) ended at {}",
                    describe(previous.operation),
                    previous_read.next_offset
                ));
            } else if read.next_offset < previous_read.next_offset {
                result.error(format!(
                    "{at}: next offset {} is behind the process's previous poll ({}), which ended at {}",
                    read.next_offset,
                    describe(previous.operation),
                    previous_read.next_offset
                ));
            }
        }
        last.insert(key, (poll, read));
    }
    result.finish(examined)
}

/// `real-time-order`: an append acknowledged before another was invoked (same partition)
/// has the lower offset.
pub(crate) fn real_time_order(appends: &[Append<'_>]) -> CheckResult {
    let mut result = CheckResult::new("real-time-order");
    let mut examined: u64 = 0;
    for (partition, group) in acknowledged_by_partition(appends) {
        let completed = completions(&group);
        let invoked: Vec<u64> = group.iter().map(|(append, _)| append.operation.invoke_ns).collect();
        for ((later, offset), earlier) in group.iter().zip(max_completed_before(&completed, &invoked)) {
            let Some(earlier) = earlier else { continue };
            examined += 1;
            if earlier.value >= *offset {
                let (first, _) = group[earlier.id];
                result.error(format!(
                    "partition {partition}: value {:?} got offset {} ({}) and completed before value {:?} \
                     was invoked, which got offset {offset} ({})",
                    first.value,
                    earlier.value,
                    describe(first.operation),
                    later.value,
                    describe(later.operation),
                ));
            }
        }
    }
    result.count("appends-compared", examined);
    result.finish(examined > 0)
}

/// `linearizable-reads`: a linearizable poll's high watermark covers every append
/// acknowledged before the poll was invoked, and is no lower than that of any linearizable
/// poll that completed before it was invoked.
pub(crate) fn linearizable_reads(appends: &[Append<'_>], polls: &[Poll<'_>]) -> CheckResult {
    let mut result = CheckResult::new("linearizable-reads");
    let acknowledged = acknowledged_by_partition(appends);
    let mut by_partition: BTreeMap<u32, Vec<(&Poll<'_>, &PollRead<'_>)>> = BTreeMap::new();
    for poll in polls.iter().filter(|poll| poll.level == ReadLevel::Linearizable) {
        if let Some(read) = &poll.read {
            by_partition.entry(poll.partition).or_default().push((poll, read));
        }
    }
    let mut examined: u64 = 0;
    for (partition, group) in by_partition {
        examined += group.len() as u64;
        let invoked: Vec<u64> = group.iter().map(|(poll, _)| poll.operation.invoke_ns).collect();
        let appended = acknowledged.get(&partition).map(Vec::as_slice).unwrap_or_default();
        let mut completed = completions(appended);
        for done in &mut completed {
            done.value += 1;
        }
        for ((poll, read), append) in group.iter().zip(max_completed_before(&completed, &invoked)) {
            if let Some(append) = append.filter(|append| read.high_watermark < append.value) {
                let (append, offset) = appended[append.id];
                result.error(format!(
                    "partition {partition}: linearizable poll ({}) saw high watermark {}, yet value {:?} was \
                     acknowledged at offset {offset} ({}) before it was invoked",
                    describe(poll.operation),
                    read.high_watermark,
                    append.value,
                    describe(append.operation),
                ));
            }
        }
        let completed: Vec<Completed> = group
            .iter()
            .enumerate()
            .filter_map(|(id, (poll, read))| {
                poll.operation.complete_ns.map(|complete_ns| Completed { complete_ns, value: read.high_watermark, id })
            })
            .collect();
        for ((poll, read), earlier) in group.iter().zip(max_completed_before(&completed, &invoked)) {
            if let Some(earlier) = earlier.filter(|earlier| read.high_watermark < earlier.value) {
                result.error(format!(
                    "partition {partition}: linearizable poll ({}) saw high watermark {}, lower than {} seen by \
                     an earlier linearizable poll ({})",
                    describe(poll.operation),
                    read.high_watermark,
                    earlier.value,
                    describe(group[earlier.id].0.operation),
                ));
            }
        }
    }
    result.count("polls-linearizable-ok", examined);
    result.finish(examined > 0)
}

/// `read-your-writes`: a read-your-writes poll sees the append of its own process whose
/// token it carries.
pub(crate) fn read_your_writes(appends: &[Append<'_>], polls: &[Poll<'_>]) -> CheckResult {
    let mut result = CheckResult::new("read-your-writes");
    let mut by_token = HashMap::new();
    for append in appends {
        if let Some((offset, token)) = append.acknowledged {
            by_token
                .entry((append.operation.process, append.partition, token))
                .or_insert_with(Vec::new)
                .push((append, offset));
        }
    }
    let (mut examined, mut unmatched) = (0, 0);
    for poll in polls {
        let (ReadLevel::ReadYourWrites(token), Some(read)) = (poll.level, &poll.read) else { continue };
        let Some(written) = by_token.get(&(poll.operation.process, poll.partition, token)) else {
            unmatched += 1;
            continue;
        };
        examined += 1;
        for (append, offset) in written {
            let at = format!(
                "partition {}: read-your-writes poll from {} ({}) after value {:?} was acknowledged at offset \
                 {offset} ({})",
                poll.partition,
                poll.from,
                describe(poll.operation),
                append.value,
                describe(append.operation)
            );
            if read.high_watermark <= *offset {
                result.error(format!("{at} saw high watermark {}", read.high_watermark));
            }
            if (poll.from..read.next_offset).contains(offset) {
                match read.records.iter().find(|(read_offset, _)| read_offset == offset) {
                    Some((_, value)) if value == append.value => {}
                    Some((_, value)) => result.error(format!("{at} read {value:?} there")),
                    None => result.error(format!("{at} did not return that offset")),
                }
            }
        }
    }
    result.count("polls-read-your-writes-ok", examined + unmatched);
    result.count("polls-with-unknown-token", unmatched);
    result.finish(examined > 0)
}

/// Acknowledged appends with their offsets, per partition, in invocation order.
fn acknowledged_by_partition<'p, 'a>(appends: &'p [Append<'a>]) -> BTreeMap<u32, Vec<(&'p Append<'a>, u64)>> {
    let mut by_partition: BTreeMap<u32, Vec<(&Append<'_>, u64)>> = BTreeMap::new();
    for append in appends {
        if let Some((offset, _)) = append.acknowledged {
            by_partition.entry(append.partition).or_default().push((append, offset));
        }
    }
    by_partition
}

/// Each acknowledged append's completion with its offset; `id` indexes `group`.
fn completions(group: &[(&Append<'_>, u64)]) -> Vec<Completed> {
    group
        .iter()
        .enumerate()
        .filter_map(|(id, (append, offset))| {
            append.operation.complete_ns.map(|complete_ns| Completed { complete_ns, value: *offset, id })
        })
        .collect()
}

fn level_name(level: ReadLevel) -> &'static str {
    match level {
        ReadLevel::Local => "local",
        ReadLevel::ReadYourWrites(_) => "read-your-writes",
        ReadLevel::Linearizable => "linearizable",
    }
}

#[cfg(test)]
mod tests {
    use crate::checker::queue::{FinalLog, check};
    use crate::checker::testkit::{TestHistory, append, appended, error, poll, polled, produce};
    use crate::checker::{CheckResult, Validity};
    use crate::history::{Kind, ReadLevel};

    fn run(history: &TestHistory, name: &str) -> CheckResult {
        let results = check(&history.operations(), &FinalLog::new());
        results.into_iter().find(|result| result.name == name).expect("the check ran")
    }

    #[test]
    fn dense_polls_that_continue_where_they_ended_are_monotonic() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::Local), polled(&[(0, "a"), (1, "b")], 2, 3));
        history.run(1, Kind::Ok, &poll(0, 2, ReadLevel::Local), polled(&[(2, "c")], 3, 3));
        history.run(1, Kind::Ok, &poll(0, 3, ReadLevel::Local), polled(&[], 3, 3));
        history.run(2, Kind::Info, &poll(0, 0, ReadLevel::Linearizable), error("timeout"));
        let result = run(&history, "nonmonotonic-polls");
        assert_eq!(result.validity, Validity::Valid, "{result:?}");
        assert_eq!((result.counts["polls-local-ok"], result.counts["polls-linearizable-info"]), (3, 1));
        assert_eq!(result.counts["records-read"], 3);
    }

    #[test]
    fn a_poll_with_a_gap_a_wrong_start_or_a_wrong_next_offset_is_nonmonotonic() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::Local), polled(&[(0, "a"), (2, "c")], 3, 3));
        history.run(2, Kind::Ok, &poll(0, 1, ReadLevel::Local), polled(&[(2, "c")], 3, 3));
        history.run(3, Kind::Ok, &poll(0, 0, ReadLevel::Local), polled(&[(0, "a")], 5, 3));
        let result = run(&history, "nonmonotonic-polls");
        assert_eq!((result.validity, result.error_count), (Validity::Invalid, 3), "{result:?}");
        assert!(result.errors[0].ends_with(": offset 0 is followed by offset 2"), "{result:?}");
        assert!(result.errors[1].ends_with(": the first record is at offset 2"), "{result:?}");
        assert!(result.errors[2].ends_with(": next offset is 5, expected 1"), "{result:?}");
    }

    #[test]
    fn a_process_whose_next_poll_goes_back_is_nonmonotonic() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::Local), polled(&[(0, "a"), (1, "b")], 2, 2));
        // From 2 (where the last poll ended) at or past the high watermark, yet offset 1 again.
        history.run(1, Kind::Ok, &poll(0, 2, ReadLevel::Local), polled(&[(1, "b")], 2, 2));
        let result = run(&history, "nonmonotonic-polls");
        assert_eq!(result.error_count, 1, "{result:?}");
        assert!(result.errors[0].contains("went back to offset 1 after the process's previous poll"), "{result:?}");
    }

    #[test]
    fn appends_in_real_time_order_get_rising_offsets() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(0, 1));
        // Concurrent with each other: either order is fine.
        history.invoke(2, &append(0, "b"));
        history.invoke(3, &produce(9, 0, "c"));
        history.complete(3, Kind::Ok, &produce(9, 0, "c"), appended(1, 2));
        history.complete(2, Kind::Ok, &append(0, "b"), appended(2, 3));
        history.run(1, Kind::Ok, &append(1, "d"), appended(0, 4));
        let result = run(&history, "real-time-order");
        assert_eq!(result.validity, Validity::Valid, "{result:?}");
        assert_eq!(result.counts["appends-compared"], 2);
    }

    #[test]
    fn an_append_acknowledged_first_with_the_higher_offset_breaks_real_time_order() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(5, 1));
        history.run(2, Kind::Ok, &append(0, "b"), appended(4, 2));
        let result = run(&history, "real-time-order");
        assert_eq!((result.validity, result.error_count), (Validity::Invalid, 1));
        assert!(result.errors[0].starts_with("partition 0: value \"a\" got offset 5 (process 1"), "{result:?}");
        assert!(result.errors[0].contains("before value \"b\" was invoked, which got offset 4"), "{result:?}");
        assert_eq!(run(&TestHistory::new(), "real-time-order").validity, Validity::Vacuous);
    }

    #[test]
    fn a_linearizable_poll_sees_earlier_appends_and_never_goes_back() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(0, 1));
        history.run(1, Kind::Ok, &append(0, "b"), appended(1, 2));
        history.run(2, Kind::Ok, &poll(0, 0, ReadLevel::Linearizable), polled(&[(0, "a"), (1, "b")], 2, 2));
        // A local poll may lag; it is not held to this.
        history.run(3, Kind::Ok, &poll(0, 0, ReadLevel::Local), polled(&[], 0, 0));
        let result = run(&history, "linearizable-reads");
        assert_eq!(result.validity, Validity::Valid, "{result:?}");
        assert_eq!(result.counts["polls-linearizable-ok"], 1);
    }

    #[test]
    fn a_linearizable_poll_missing_an_acknowledged_append_or_going_back_is_reported() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(0, 1));
        history.run(1, Kind::Ok, &append(0, "b"), appended(1, 2));
        history.run(2, Kind::Ok, &poll(0, 0, ReadLevel::Linearizable), polled(&[(0, "a"), (1, "b")], 2, 2));
        history.run(3, Kind::Ok, &poll(0, 0, ReadLevel::Linearizable), polled(&[(0, "a")], 1, 1));
        let result = run(&history, "linearizable-reads");
        assert_eq!((result.validity, result.error_count), (Validity::Invalid, 2), "{result:?}");
        assert!(result.errors[0].contains("saw high watermark 1, yet value \"b\" was acknowledged at offset 1"));
        assert!(result.errors[1].contains("saw high watermark 1, lower than 2 seen by an earlier linearizable poll"));
        assert_eq!(run(&TestHistory::new(), "linearizable-reads").validity, Validity::Vacuous);
    }

    #[test]
    fn a_read_your_writes_poll_sees_its_own_append() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(0, 40));
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::ReadYourWrites(40)), polled(&[(0, "a")], 1, 1));
        // Another process's token is not this process's write: not examined.
        history.run(2, Kind::Ok, &poll(0, 0, ReadLevel::ReadYourWrites(40)), polled(&[], 0, 0));
        let result = run(&history, "read-your-writes");
        assert_eq!(result.validity, Validity::Valid, "{result:?}");
        assert_eq!((result.counts["polls-read-your-writes-ok"], result.counts["polls-with-unknown-token"]), (2, 1));
    }

    #[test]
    fn a_read_your_writes_poll_missing_its_own_append_is_reported() {
        let history = TestHistory::new();
        history.run(1, Kind::Ok, &append(0, "a"), appended(0, 40));
        history.run(1, Kind::Ok, &append(0, "b"), appended(1, 41));
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::ReadYourWrites(41)), polled(&[(0, "a")], 1, 1));
        history.run(1, Kind::Ok, &poll(0, 0, ReadLevel::ReadYourWrites(40)), polled(&[(0, "x")], 1, 2));
        let result = run(&history, "read-your-writes");
        assert_eq!((result.validity, result.error_count), (Validity::Invalid, 2), "{result:?}");
        assert!(result.errors[0].ends_with("saw high watermark 1"), "{result:?}");
        assert!(result.errors[0].contains("after value \"b\" was acknowledged at offset 1 (process 1"));
        assert!(result.errors[1].ends_with("read \"x\" there"), "{result:?}");
    }
}
