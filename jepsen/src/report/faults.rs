//! When each fault was in place, from the nemesis's entries in the history: the report
//! shades these periods on its timeline and lists them in a table.

use std::collections::{HashMap, VecDeque};

use crate::history::{Call, Entry, FaultAction, Kind, Reply};

/// When one fault was in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultPeriod {
    pub nemesis: String,
    /// When it was in place (its start's `Ok`), or when it was invoked if that never came.
    pub start_ns: u64,
    /// When it was healed; None if it never was before the run ended.
    pub end_ns: Option<u64>,
    /// What was done, as carried out (or as asked).
    pub detail: String,
}

/// Fault periods in start order. A `Heal` that completed `Ok` ends the oldest open fault
/// of the same nemesis; a start that failed (`Fail`) is no fault.
pub(crate) fn fault_periods(history: &[Entry]) -> Vec<FaultPeriod> {
    let mut starting: HashMap<&str, VecDeque<(u64, &str)>> = HashMap::new();
    let mut open: HashMap<&str, VecDeque<usize>> = HashMap::new();
    let mut periods: Vec<FaultPeriod> = Vec::new();
    for entry in history {
        let Call::Fault { nemesis, action, detail } = &entry.call else { continue };
        let nemesis = nemesis.as_str();
        let mut begin = |start_ns: u64, detail: &str, periods: &mut Vec<FaultPeriod>| {
            open.entry(nemesis).or_default().push_back(periods.len());
            periods.push(FaultPeriod {
                nemesis: nemesis.to_owned(),
                start_ns,
                end_ns: None,
                detail: detail.to_owned(),
            });
        };
        match (action, entry.kind) {
            (FaultAction::Start, Kind::Invoke) => {
                starting.entry(nemesis).or_default().push_back((entry.time_ns, detail))
            }
            (FaultAction::Start, kind) => {
                let invoked = starting.get_mut(nemesis).and_then(VecDeque::pop_front);
                let (invoke_ns, asked) = invoked.unwrap_or((entry.time_ns, detail.as_str()));
                match (kind, &entry.reply) {
                    (Kind::Ok, Some(Reply::Done { detail })) => begin(entry.time_ns, detail, &mut periods),
                    (Kind::Ok, _) => begin(entry.time_ns, asked, &mut periods),
                    (Kind::Info, _) => begin(invoke_ns, asked, &mut periods),
                    _ => {}
                }
            }
            (FaultAction::Heal, Kind::Ok) => {
                if let Some(at) = open.get_mut(nemesis).and_then(VecDeque::pop_front) {
                    periods[at].end_ns = Some(entry.time_ns);
                }
            }
            (FaultAction::Heal, _) => {}
        }
    }
    for (nemesis, invoked) in starting {
        for (invoke_ns, detail) in invoked {
            periods.push(FaultPeriod {
                nemesis: nemesis.to_owned(),
                start_ns: invoke_ns,
                end_ns: None,
                detail: detail.to_owned(),
            });
        }
    }
    periods.sort_by(|a, b| (a.start_ns, &a.nemesis).cmp(&(b.start_ns, &b.nemesis)));
    periods
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::NEMESIS;

    fn fault(time_ns: u64, kind: Kind, nemesis: &str, action: FaultAction, done: Option<&str>) -> Entry {
        Entry {
            index: 0,
            time_ns,
            process: NEMESIS,
            kind,
            call: Call::Fault { nemesis: nemesis.into(), action, detail: format!("asked {nemesis}") },
            reply: done.map(|detail| Reply::Done { detail: detail.into() }),
        }
    }

    #[test]
    fn a_fault_runs_from_its_start_ok_to_its_heal_ok_or_the_end() {
        use FaultAction::{Heal, Start};
        let history = [
            fault(10, Kind::Invoke, "kill", Start, None),
            fault(12, Kind::Ok, "kill", Start, Some("killed n2")),
            fault(15, Kind::Invoke, "pause", Start, None),
            fault(16, Kind::Fail, "pause", Start, None),
            fault(20, Kind::Invoke, "kill", Heal, None),
            fault(25, Kind::Ok, "kill", Heal, Some("restarted n2")),
            fault(30, Kind::Invoke, "partition", Start, None),
            fault(40, Kind::Info, "partition", Start, None),
            fault(50, Kind::Invoke, "clock", Start, None),
        ];
        let periods = fault_periods(&history);
        let period = |nemesis: &str, start_ns, end_ns, detail: &str| FaultPeriod {
            nemesis: nemesis.into(),
            start_ns,
            end_ns,
            detail: detail.into(),
        };
        assert_eq!(
            periods,
            [
                period("kill", 12, Some(25), "killed n2"),
                period("partition", 30, None, "asked partition"),
                period("clock", 50, None, "asked clock"),
            ]
        );
    }
}
