//! After every fault has healed, the cluster must take writes again within a bound: one
//! append per partition, through the members in turn, each recorded in the history (by
//! the final phase's process) so that its value is an expected one for the checkers.

use std::time::Duration;

use crate::checker::{CheckResult, Validity};
use crate::history::{Call, Kind, Reply};
use crate::workload::clients::{error_reply, with_deadline, write_outcome};
use crate::workload::queue::append as append_plain;
use crate::workload::{Clients, Context, FINAL};

/// How long after healing each partition must accept an append.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

pub async fn check(context: &Context) -> CheckResult {
    let mut clients = Clients::default();
    let mut errors = Vec::new();
    let mut slowest_ms = 0u64;
    for partition in 0..context.partitions {
        let started = tokio::time::Instant::now();
        let mut attempt = 0usize;
        let recovered = loop {
            if started.elapsed() > RECOVERY_BOUND {
                break false;
            }
            let Some((node, address)) = context.members.in_turn(attempt) else { break false };
            attempt += 1;
            let Some(client) = clients.get(node, &address).await else { continue };
            let value = format!("recovery-{partition}-{attempt}");
            let call = Call::Append { node, partition, value: value.clone() };
            context.recorder.invoke(FINAL, &call);
            match with_deadline(append_plain(&client, partition, value)).await {
                Ok((offset, token)) => {
                    context.recorder.complete(FINAL, Kind::Ok, &call, Reply::Appended { offset, token });
                    break true;
                }
                Err(error) => {
                    let kind = write_outcome(&error.0);
                    context.recorder.complete(FINAL, kind, &call, error_reply(error));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        slowest_ms = slowest_ms.max(elapsed_ms);
        if !recovered {
            errors.push(format!("partition {partition} took no append within {RECOVERY_BOUND:?} of healing"));
        }
    }
    let mut result = CheckResult::from_reasons("recovery", errors, Validity::Invalid);
    result.counts.insert("slowest-partition-ms".into(), slowest_ms);
    result
}
