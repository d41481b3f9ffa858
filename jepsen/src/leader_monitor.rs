//! Counts leader changes during a run: a run whose faults never moved a leader did not test
//! failover, and is reported as vacuous rather than passed. Asks the members in turn for
//! their cluster status (a paused or cut-off node just does not answer) and counts, per
//! Raft group, each time a different leader is seen in a higher term.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::workload::{Clients, Members};

/// How often the monitor asks.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long one status call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct LeaderMonitor {
    changes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderMonitor {
    pub fn start(members: Members) -> LeaderMonitor {
        let changes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(watch(members, Arc::clone(&changes), Arc::clone(&stop)));
        LeaderMonitor { changes, stop, task }
    }

    /// Stops watching; returns the leader changes seen.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        let _ = self.task.await;
        self.changes.load(Ordering::Acquire)
    }
}

async fn watch(members: Members, changes: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    // group → (term, leader) last seen.
    let mut leaders: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut clients = Clients::default();
    let mut turn = 0usize;
    while !stop.load(Ordering::Acquire) {
        if let Some((node, address)) = members.in_turn(turn) {
            turn += 1;
            if let Some(client) = clients.get(node, &address).await
                && let Ok(Ok(status)) = tokio::time::timeout(STATUS_TIMEOUT, client.cluster_status()).await
            {
                for group in status.groups {
                    let Some(leader) = group.leader else { continue };
                    let seen = leaders.entry(group.group_id).or_insert((group.term, leader));
                    if group.term > seen.0 {
                        if leader != seen.1 {
                            changes.fetch_add(1, Ordering::AcqRel);
                        }
                        *seen = (group.term, leader);
                    }
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
