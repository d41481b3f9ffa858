//! The nemesis: injects faults into a running cluster on a schedule and records each one
//! in the history (process `history::NEMESIS`): a `Start` invocation naming the planned
//! fault, completed `Ok` with what was done (or `Info` with the error), and later a `Heal`
//! invocation and completion.
//!
//! Every choice (which kind, which target, how long a skew) is drawn from one
//! `StdRng::seed_from_u64(seed)`, and only from it, never from timing or the cluster's
//! state: the same seed plans the same faults. A plan names its target abstractly ("the
//! leader of orders/3", "a node, pick 1234"); which node that is gets resolved when the
//! fault starts, and the completion's detail says.

mod clock;
mod disk;
mod fault;
mod kill;
mod kind;
mod loss;
mod membership;
mod partition;
mod pause;
mod power;
mod target;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::history::{Call, FaultAction, Kind, NEMESIS, Recorder, Reply};
use crate::hosts::Cluster;
use fault::Plan;
pub use kind::NemesisKind;

/// When faults happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Quiet time before each fault.
    pub interval: Duration,
    /// How long a fault stays before it is healed.
    pub fault_time: Duration,
}

/// What the nemesis did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NemesisReport {
    /// Faults started, per kind name.
    pub faults: BTreeMap<String, u64>,
    /// Faults that could not be injected or healed, and why.
    pub failures: Vec<String>,
}

/// Injects faults of `kinds` until `stop` is cancelled, then heals the one in place.
/// `topics` (name, partitions) are the workload's, for faults aimed at a partition.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    kinds: &[NemesisKind],
    schedule: Schedule,
    seed: u64,
    recorder: Recorder,
    topics: Vec<(String, u32)>,
    stop: CancellationToken,
) -> NemesisReport {
    let mut report = NemesisReport::default();
    let mut rng = StdRng::seed_from_u64(seed);
    if kinds.is_empty() {
        stop.cancelled().await;
        return report;
    }
    let order = turn_order(kinds, &mut rng);
    let mut turn = 0usize;
    loop {
        if wait_or_stop(schedule.interval, &stop).await {
            return report;
        }
        let kind = order[turn % order.len()];
        turn += 1;
        let plan = Plan::draw(kind, &mut rng, &topics);
        *report.faults.entry(kind.name().to_string()).or_default() += 1;
        tracing::info!(nemesis = kind.name(), plan = %plan, "fault starts");

        let started = step(&recorder, kind.name(), FaultAction::Start, plan.to_string(), plan.start(&cluster)).await;
        let pending = match started {
            Ok((_, pending)) => pending,
            Err(error) => {
                report.failures.push(format!("{kind} start ({plan}): {error:#}"));
                None
            }
        };

        let mut stopped = false;
        // A second step halfway (clocks jump) is a fault period of its own, named
        // "<kind>-jump", healed with the fault.
        let jump = format!("{}-jump", kind.name());
        let mut jumped = false;
        if plan.holds() {
            stopped = wait_or_stop(schedule.fault_time / 2, &stop).await;
            if !stopped && let Some(result) = plan.midpoint(&cluster).await {
                let detail = format!("midpoint of: {plan}");
                jumped = true;
                if let Err(error) = step(&recorder, &jump, FaultAction::Start, detail, async { result }).await {
                    report.failures.push(format!("{kind} midpoint ({plan}): {error:#}"));
                }
            }
            stopped = stopped || wait_or_stop(schedule.fault_time - schedule.fault_time / 2, &stop).await;
        }

        let description = plan.heal_description().to_string();
        let healed = step(&recorder, kind.name(), FaultAction::Heal, description, plan.heal(&cluster, pending)).await;
        if let Err(error) = healed {
            report.failures.push(format!("{kind} heal ({plan}): {error:#}"));
        } else if jumped {
            let _ = step(&recorder, &jump, FaultAction::Heal, "healed with the fault".into(), async {
                Ok::<_, anyhow::Error>(String::from("healed with the fault"))
            })
            .await;
        }
        tracing::info!(nemesis = kind.name(), "fault healed");
        if stopped {
            return report;
        }
    }
}

/// The order in which `kinds` take turns, drawn from the seed: a mix of n kinds has had
/// each of them once after n faults (so a short CI run covers every kind it names).
fn turn_order(kinds: &[NemesisKind], rng: &mut StdRng) -> Vec<NemesisKind> {
    let mut order = kinds.to_vec();
    order.shuffle(rng);
    order
}

/// Heals every kind of fault at once (for the run's final phase): SIGCONT paused nodes,
/// delete the nft tables, reset the clocks, delete fillers, restart dead members. Every
/// step is tried; an error lists the ones that failed.
pub async fn heal_all(cluster: &Mutex<Cluster>) -> anyhow::Result<String> {
    let (done, errors) = fault::heal_everything(&mut *cluster.lock().await).await;
    anyhow::ensure!(errors.is_empty(), "healing failed: {}", errors.join("; "));
    Ok(done.join("; "))
}

/// Records one nemesis step around `work`: the invocation with `detail`, then `Ok` with
/// what was done or `Info` with the error.
async fn step<T>(
    recorder: &Recorder,
    nemesis: &str,
    action: FaultAction,
    detail: String,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T>
where
    T: Described,
{
    let call = Call::Fault { nemesis: nemesis.to_string(), action, detail };
    recorder.invoke(NEMESIS, &call);
    let result = work.await;
    match &result {
        Ok(done) => recorder.complete(NEMESIS, Kind::Ok, &call, Reply::Done { detail: done.detail().to_string() }),
        Err(error) => recorder.complete(
            NEMESIS,
            Kind::Info,
            &call,
            Reply::Error { code: "nemesis".into(), message: format!("{error:#}") },
        ),
    }
    result
}

/// A step's result as the history's detail.
trait Described {
    fn detail(&self) -> &str;
}

impl Described for String {
    fn detail(&self) -> &str {
        self
    }
}

impl<P> Described for (String, P) {
    fn detail(&self) -> &str {
        &self.0
    }
}

/// Sleeps for `time`; true if `stop` was cancelled first.
async fn wait_or_stop(time: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(time) => false,
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    fn plans(seed: u64) -> Vec<String> {
        let topics = vec![("orders".to_string(), 6), ("events".to_string(), 3)];
        let mut rng = StdRng::seed_from_u64(seed);
        (0..40)
            .map(|_| {
                let kind = NemesisKind::ALL[rng.random_range(0..NemesisKind::ALL.len())];
                let plan = Plan::draw(kind, &mut rng, &topics);
                format!("{kind}: {plan}")
            })
            .collect()
    }

    #[test]
    fn the_kinds_of_a_mix_take_turns_in_an_order_the_seed_decides() {
        let kinds = [NemesisKind::Kill, NemesisKind::Partition, NemesisKind::Clock];
        let order = |seed| turn_order(&kinds, &mut StdRng::seed_from_u64(seed));
        assert_eq!(order(3), order(3));
        let mut sorted = order(3);
        sorted.sort_by_key(|kind| kind.name());
        let mut expected = kinds.to_vec();
        expected.sort_by_key(|kind| kind.name());
        assert_eq!(sorted, expected, "each kind once per round");
        assert!((0..20).any(|seed| order(seed) != order(3)), "the seed changes the order");
    }

    #[test]
    fn a_seed_always_plans_the_same_faults() {
        assert_eq!(plans(7), plans(7));
        assert_ne!(plans(7), plans(8));
        let all = plans(7).join("\n");
        for kind in NemesisKind::ALL {
            assert!(all.contains(&format!("{kind}: ")), "{kind} drawn in 40 faults:\n{all}");
        }
    }
}
