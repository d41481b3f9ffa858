//! Consumer group sessions: when the coordinator last heard from each member, and the loop
//! that expires members it has not heard from within their session timeout.
//!
//! Heartbeats are not written to Raft (a write per member per second, for nothing the
//! group needs to survive): the coordinator partition's leader keeps them in memory. A
//! leader that has just been elected has heard from nobody yet, so each member gets a
//! whole session from the moment this node saw it as leader: a failover never expires a
//! live member. Removing a member is a Raft write (`GroupCommand::Expire`), decided here
//! and applied alike on every replica. The same loop expires a member that keeps revoked
//! partitions past its rebalance timeout, and rebalances a group when a subscribed topic
//! grew.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_raft::group::GroupCommand;
use cairn_raft::{Host, PartitionCommand};
use cairn_types::{GroupId, now_ms};
use openraft::ServerState;

use crate::api::groups::GROUPS_TOPIC;

/// How often the leader of a coordinator partition looks for lapsed sessions.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub struct GroupSessions {
    coordinators: Mutex<HashMap<GroupId, Sessions>>,
}

/// One coordinator partition's sessions, as its leader at `term` saw them.
#[derive(Debug, Default)]
struct Sessions {
    term: u64,
    /// (group, member) → when last heard from.
    last_seen: HashMap<(String, String), Instant>,
}

impl GroupSessions {
    /// A member was heard from (it joined, or sent a heartbeat) at the leader of `term`.
    pub fn touch(&self, coordinator: GroupId, term: u64, group: &str, member: &str) {
        let Ok(mut coordinators) = self.coordinators.lock() else { return };
        let sessions = coordinators.entry(coordinator).or_default();
        if sessions.term != term {
            *sessions = Sessions { term, last_seen: HashMap::new() };
        }
        sessions.last_seen.insert((group.to_string(), member.to_string()), Instant::now());
    }

    /// The members of each group whose session lapsed, for a coordinator this node leads at
    /// `term`. A member not heard from at this term yet starts its session now; members no
    /// longer in `members` are forgotten.
    fn lapsed(
        &self,
        coordinator: GroupId,
        term: u64,
        members: &BTreeMap<String, Vec<(String, u32)>>,
        now: Instant,
    ) -> BTreeMap<String, Vec<String>> {
        let Ok(mut coordinators) = self.coordinators.lock() else { return BTreeMap::new() };
        let sessions = coordinators.entry(coordinator).or_default();
        if sessions.term != term {
            *sessions = Sessions { term, last_seen: HashMap::new() };
        }
        let mut seen = HashMap::with_capacity(sessions.last_seen.len());
        let mut lapsed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (group, members) in members {
            for (member, session_timeout_ms) in members {
                let key = (group.clone(), member.clone());
                let last = sessions.last_seen.get(&key).copied().unwrap_or(now);
                if now.saturating_duration_since(last) > Duration::from_millis(u64::from(*session_timeout_ms)) {
                    lapsed.entry(group.clone()).or_default().push(member.clone());
                }
                seen.insert(key, last);
            }
        }
        sessions.last_seen = seen;
        lapsed
    }

    fn forget(&self, coordinator: GroupId) {
        if let Ok(mut coordinators) = self.coordinators.lock() {
            coordinators.remove(&coordinator);
        }
    }
}

/// Runs until the process ends: every `EXPIRY_CHECK_INTERVAL`, on each coordinator
/// partition this node leads, expires lapsed members and refreshes groups whose topics grew.
pub async fn run_expiry(host: Arc<Host>, sessions: Arc<GroupSessions>) {
    let mut tick = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for replica in host.partitions().into_iter().filter(|r| r.topic == GROUPS_TOPIC) {
            let metrics = replica.metrics();
            if metrics.state != ServerState::Leader {
                sessions.forget(replica.group_id);
                continue;
            }
            let commands = match expiry_commands(&host, &sessions, &replica, metrics.current_term) {
                Ok(commands) => commands,
                Err(err) => {
                    tracing::warn!(group = replica.group_id, error = %err, "cannot read the coordinator's groups");
                    continue;
                }
            };
            for command in commands {
                let name = command.group().to_string();
                if let Err(err) = host.partition_write(replica.group_id, PartitionCommand::Group(command)).await {
                    tracing::debug!(group = %name, error = %err, "group expiry not written; trying again");
                }
            }
        }
    }
}

fn expiry_commands(
    host: &Host,
    sessions: &GroupSessions,
    replica: &cairn_raft::PartitionReplica,
    term: u64,
) -> std::io::Result<Vec<GroupCommand>> {
    let table = replica.groups.read()?;
    let members: BTreeMap<String, Vec<(String, u32)>> = table
        .iter()
        .map(|(name, group)| {
            (name.clone(), group.members.iter().map(|(id, m)| (id.clone(), m.session_timeout_ms)).collect())
        })
        .collect();
    let mut lapsed = sessions.lapsed(replica.group_id, term, &members, Instant::now());
    let now_ms = now_ms();
    let mut commands = Vec::new();
    for (name, group) in table.iter() {
        let expire = lapsed.entry(name.clone()).or_default();
        expire.extend(group.overdue_revocations(now_ms));
        expire.sort();
        expire.dedup();
        if !expire.is_empty() {
            tracing::info!(group = %name, members = ?expire, "expiring consumer group members");
            commands.push(GroupCommand::Expire { group: name.clone(), members: std::mem::take(expire), now_ms });
            continue;
        }
        // A subscribed topic grew: rebalance over its new partitions.
        let grown: BTreeMap<String, u32> = group
            .partition_counts
            .iter()
            .filter_map(|(topic, count)| {
                let now = host.topic(topic)?.config.partition_count;
                (now > *count).then(|| (topic.clone(), now))
            })
            .collect();
        if !grown.is_empty() && !group.members.is_empty() {
            commands.push(GroupCommand::Refresh { group: name.clone(), partition_counts: grown, now_ms });
        }
    }
    Ok(commands)
}
