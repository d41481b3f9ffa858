//! Checkers: each reads the recorded history (and what was read back once every fault had
//! healed) and looks for one kind of anomaly, reporting a `CheckResult`. They are pure
//! functions over data, so a recorded `history.jsonl` can be checked again later.
//!
//! A result says `Vacuous` rather than `Valid` when the check had nothing to examine (no
//! linearizable poll, no acknowledged append...): a run that tested nothing must not pass
//! for one that tested something and found it right.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{Kind, Operation};

pub mod groups;
mod precedence;
pub mod producer;
pub mod queue;
mod queue_order;
pub mod replicas;
pub mod streams;
#[cfg(test)]
mod testkit;

/// How many concrete examples a result keeps: enough to find the anomaly in
/// `history.jsonl`, few enough to read.
pub const EXAMPLES_MAX: usize = 10;

/// What a check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// It examined something and found no anomaly.
    Valid,
    /// It found at least one anomaly.
    Invalid,
    /// Too little happened to tell (nothing to examine).
    Vacuous,
}

/// One check's outcome over one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name, e.g. "lost".
    pub name: String,
    /// Settled by `finish` (or `from_reasons`).
    pub validity: Validity,
    /// What the check examined and found, by name (e.g. "appends-ok").
    pub counts: BTreeMap<String, u64>,
    /// Up to `EXAMPLES_MAX` anomalies, each naming the partition (or stream), offset,
    /// value, process and time, so that a person can find it in `history.jsonl`.
    pub errors: Vec<String>,
    /// How many anomalies there were in all.
    pub error_count: u64,
}

impl CheckResult {
    /// A result with no anomaly and no counts yet; `finish` settles its validity.
    pub fn new(name: &str) -> CheckResult {
        CheckResult {
            name: name.to_owned(),
            validity: Validity::Valid,
            counts: BTreeMap::new(),
            errors: Vec::new(),
            error_count: 0,
        }
    }

    /// A result from a list of problems found elsewhere (convergence, recovery, a run too
    /// short to tell): `Valid` when there are none, else `if_any` with them as the errors.
    pub fn from_reasons(name: &str, reasons: Vec<String>, if_any: Validity) -> CheckResult {
        let mut result = CheckResult::new(name);
        let any = !reasons.is_empty();
        for reason in reasons {
            result.error(reason);
        }
        if any {
            result.validity = if_any;
        }
        result
    }

    /// Records one anomaly, keeping its description if fewer than `EXAMPLES_MAX` are kept.
    pub fn error(&mut self, message: String) {
        self.error_count += 1;
        if self.errors.len() < EXAMPLES_MAX {
            self.errors.push(message);
        }
    }

    /// Sets a count.
    pub fn count(&mut self, name: &str, value: u64) {
        self.counts.insert(name.to_owned(), value);
    }

    /// Adds to a count (from 0).
    pub fn add(&mut self, name: &str, value: u64) {
        *self.counts.entry(name.to_owned()).or_insert(0) += value;
    }

    /// Settles the validity: `Invalid` on any anomaly, else `Vacuous` unless the check
    /// `examined` something, else `Valid`.
    pub fn finish(mut self, examined: bool) -> CheckResult {
        self.validity = if self.error_count > 0 {
            Validity::Invalid
        } else if examined {
            Validity::Valid
        } else {
            Validity::Vacuous
        };
        self
    }

    /// Whether the check examined something and found no anomaly.
    pub fn is_valid(&self) -> bool {
        self.validity == Validity::Valid
    }
}

/// The name of the run-level check that says whether enough happened (acknowledged
/// operations, faults, leader changes) for the verdicts to mean anything.
pub const ENOUGH_HAPPENED: &str = "enough-happened";

/// The run's verdict: `Invalid` if any check is; else `Vacuous` if the run-level check
/// (`ENOUGH_HAPPENED`) is, or there are no checks; else `Valid`. A single check with
/// nothing to examine (no refused append to look for, say) shows as vacuous in the report
/// but does not make a run that did enough vacuous.
pub fn overall(results: &[CheckResult]) -> Validity {
    if results.iter().any(|result| result.validity == Validity::Invalid) {
        Validity::Invalid
    } else if results.is_empty()
        || results.iter().any(|result| result.name == ENOUGH_HAPPENED && result.validity == Validity::Vacuous)
    {
        Validity::Vacuous
    } else {
        Validity::Valid
    }
}

/// A time in the history, as a person reads it: seconds since the run started.
pub(crate) fn seconds(time_ns: u64) -> String {
    format!("{:.3} s", time_ns as f64 / 1e9)
}

/// Who ran an operation and when, to find it in `history.jsonl`.
pub(crate) fn describe(operation: &Operation) -> String {
    let outcome = match operation.kind {
        Kind::Ok => "ok",
        Kind::Fail => "failed",
        Kind::Info | Kind::Invoke => "info",
    };
    match operation.complete_ns {
        Some(complete_ns) => format!(
            "process {}, invoked {}, {outcome} {}",
            operation.process,
            seconds(operation.invoke_ns),
            seconds(complete_ns)
        ),
        None => format!("process {}, invoked {}, never completed", operation.process, seconds(operation.invoke_ns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Call;

    fn result(name: &str, errors: u64, examined: bool) -> CheckResult {
        let mut result = CheckResult::new(name);
        for n in 0..errors {
            result.error(format!("anomaly {n}"));
        }
        result.finish(examined)
    }

    #[test]
    fn a_result_keeps_ten_examples_and_counts_all() {
        let result = result("lost", 25, true);
        assert_eq!(result.validity, Validity::Invalid);
        assert_eq!(result.error_count, 25);
        assert_eq!(result.errors.len(), EXAMPLES_MAX);
        assert_eq!(result.errors[9], "anomaly 9");
        assert!(!result.is_valid());
    }

    #[test]
    fn a_check_that_examined_nothing_is_vacuous_unless_it_found_something() {
        assert_eq!(result("a", 0, false).validity, Validity::Vacuous);
        assert_eq!(result("a", 0, true).validity, Validity::Valid);
        assert!(result("a", 0, true).is_valid());
        assert_eq!(result("a", 1, false).validity, Validity::Invalid);
    }

    #[test]
    fn the_verdict_is_invalid_on_any_anomaly_and_vacuous_when_too_little_happened() {
        let valid = result("v", 0, true);
        let nothing_to_examine = result("e", 0, false);
        let invalid = result("i", 3, true);
        let too_little = CheckResult::from_reasons(ENOUGH_HAPPENED, vec!["no fault".into()], Validity::Vacuous);
        let enough = CheckResult::from_reasons(ENOUGH_HAPPENED, Vec::new(), Validity::Vacuous);
        assert_eq!(overall(&[valid.clone(), valid.clone()]), Validity::Valid);
        assert_eq!(overall(&[valid.clone(), nothing_to_examine.clone(), enough]), Validity::Valid);
        assert_eq!(overall(&[valid.clone(), too_little.clone()]), Validity::Vacuous);
        assert_eq!(overall(&[nothing_to_examine, invalid, valid, too_little]), Validity::Invalid);
        assert_eq!(overall(&[]), Validity::Vacuous);
    }

    #[test]
    fn a_result_from_reasons_takes_the_given_validity_only_when_there_are_some() {
        let vacuous = CheckResult::from_reasons("enough-happened", vec!["no leader changed".into()], Validity::Vacuous);
        assert_eq!((vacuous.validity, vacuous.error_count), (Validity::Vacuous, 1));
        assert_eq!(vacuous.errors, ["no leader changed"]);
        let reasons: Vec<String> = (0..12).map(|n| format!("partition {n} diverged")).collect();
        let invalid = CheckResult::from_reasons("converged", reasons, Validity::Invalid);
        assert_eq!((invalid.validity, invalid.error_count, invalid.errors.len()), (Validity::Invalid, 12, 10));
        assert!(CheckResult::from_reasons("recovery", Vec::new(), Validity::Invalid).is_valid());
    }

    #[test]
    fn a_result_serializes_with_lowercase_validity() {
        let mut result = CheckResult::new("lost");
        result.count("appends-ok", 3);
        result.add("appends-ok", 2);
        let json = serde_json::to_value(result.finish(true)).expect("serializes");
        assert_eq!(json["validity"], "valid");
        assert_eq!(json["counts"]["appends-ok"], 5);
    }

    #[test]
    fn describe_names_process_and_times() {
        let call = Call::Append { node: 1, partition: 0, value: "a".into() };
        let mut operation = Operation {
            process: 7,
            invoke_ns: 1_500_000_000,
            complete_ns: Some(2_000_000_000),
            kind: Kind::Ok,
            call,
            reply: None,
        };
        assert_eq!(describe(&operation), "process 7, invoked 1.500 s, ok 2.000 s");
        operation.complete_ns = None;
        assert_eq!(describe(&operation), "process 7, invoked 1.500 s, never completed");
    }
}
