//! Cairn's fault-injection suite, built after Jepsen: client processes run a workload's
//! operations against real `cairn` nodes, each in its own network namespace, while a
//! nemesis injects faults; every invocation and completion is recorded in a history, which
//! checkers examine once the faults have healed.

pub mod checker;
pub mod convergence;
pub mod history;
pub mod hosts;
pub mod leader_monitor;
pub mod nemesis;
pub mod profile;
pub mod recovery;
pub mod report;
pub mod runner;
pub mod workload;
