//! Which member a group's partitions should go to: the **target** of each partition,
//! computed at apply time from the members' subscriptions and the partition counts the
//! command carries, so every replica computes the same.
//!
//! - `Range` (Kafka's `RangeAssignor`): per topic, the subscribers in name order each take a
//!   contiguous range of partitions, the first ones one more when the count does not divide.
//! - `CooperativeSticky`: every partition stays with the member that has it as long as that
//!   keeps the group balanced (member loads differ by at most one, for members with the same
//!   subscriptions); the rest go to the least loaded subscriber. A member joining or leaving
//!   therefore moves only the partitions balance needs.
//!
//! Moving a partition is not done here: the group keeps its current owner until that member
//! releases it (see `state.rs`), so no two members ever hold one partition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::{GroupMember, TopicPartition};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignor {
    Range,
    #[default]
    CooperativeSticky,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" | "" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }
}

/// The target member of every partition the members subscribe to. `previous` is each
/// partition's member before (its target, else its owner): only `CooperativeSticky` reads it.
pub fn targets(
    assignor: Assignor,
    members: &BTreeMap<String, GroupMember>,
    partition_counts: &BTreeMap<String, u32>,
    previous: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<TopicPartition, String> {
    let mut subscribers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (member_id, member) in members {
        for topic in &member.topics {
            subscribers.entry(topic.as_str()).or_default().push(member_id.as_str());
        }
    }
    let partitions = subscribers.keys().flat_map(|topic| {
        let count = partition_counts.get(*topic).copied().unwrap_or(0);
        (0..count).map(move |partition| TopicPartition { topic: topic.to_string(), partition })
    });
    match assignor {
        Assignor::Range => range(&subscribers, partitions),
        Assignor::CooperativeSticky => sticky(&subscribers, partitions.collect(), previous),
    }
}

fn range<'a>(
    subscribers: &BTreeMap<&'a str, Vec<&'a str>>,
    partitions: impl Iterator<Item = TopicPartition>,
) -> BTreeMap<TopicPartition, String> {
    let mut by_topic: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.topic.clone()).or_default().push(tp);
    }
    let mut targets = BTreeMap::new();
    for (topic, partitions) in by_topic {
        let members = &subscribers[topic.as_str()];
        let (base, extra) = (partitions.len() / members.len(), partitions.len() % members.len());
        let mut next = partitions.into_iter();
        for (i, member) in members.iter().enumerate() {
            let take = base + usize::from(i < extra);
            for tp in next.by_ref().take(take) {
                targets.insert(tp, member.to_string());
            }
        }
    }
    targets
}

fn sticky(
    subscribers: &BTreeMap<&str, Vec<&str>>,
    partitions: Vec<TopicPartition>,
    previous: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<TopicPartition, String> {
    let members: std::collections::BTreeSet<&str> = subscribers.values().flatten().copied().collect();
    if members.is_empty() {
        return BTreeMap::new();
    }
    let (base, extra) = (partitions.len() / members.len(), partitions.len() % members.len());
    let mut load: BTreeMap<&str, usize> = members.iter().map(|m| (*m, 0)).collect();
    let mut targets: BTreeMap<TopicPartition, String> = BTreeMap::new();
    let eligible = |tp: &TopicPartition, member: &str| subscribers[tp.topic.as_str()].contains(&member);
    // Keep up to `base` partitions per member, then let `extra` members keep one more.
    let mut extras_left = extra;
    for pass in 0..2 {
        for tp in &partitions {
            if targets.contains_key(tp) {
                continue;
            }
            let Some(member) = previous.get(tp).map(String::as_str).filter(|m| eligible(tp, m)) else { continue };
            let Some(count) = load.get_mut(member) else { continue };
            let keep = if pass == 0 { *count < base } else { *count == base && extras_left > 0 };
            if keep {
                if pass == 1 {
                    extras_left -= 1;
                }
                *count += 1;
                targets.insert(tp.clone(), member.to_string());
            }
        }
    }
    // The rest: the least loaded subscriber, the first by name on a tie.
    for tp in partitions {
        if targets.contains_key(&tp) {
            continue;
        }
        let member = subscribers[tp.topic.as_str()]
            .iter()
            .min_by_key(|m| (load[**m], **m))
            .copied()
            .expect("a topic in `subscribers` has a subscriber");
        if let Some(count) = load.get_mut(member) {
            *count += 1;
        }
        targets.insert(tp, member.to_string());
    }
    targets
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn member(topics: &[&str]) -> GroupMember {
        GroupMember { topics: topics.iter().map(|t| t.to_string()).collect(), ..GroupMember::default() }
    }

    fn loads(targets: &BTreeMap<TopicPartition, String>) -> BTreeMap<String, usize> {
        let mut loads = BTreeMap::new();
        for member in targets.values() {
            *loads.entry(member.clone()).or_insert(0) += 1;
        }
        loads
    }

    #[test]
    fn range_gives_contiguous_ranges_the_first_members_one_more() {
        let members: BTreeMap<_, _> = ["a", "b", "c"].iter().map(|m| (m.to_string(), member(&["t"]))).collect();
        let counts = BTreeMap::from([("t".to_string(), 7)]);
        let targets = targets(Assignor::Range, &members, &counts, &BTreeMap::new());
        let owners: Vec<&str> = targets.values().map(String::as_str).collect();
        assert_eq!(owners, ["a", "a", "a", "b", "b", "c", "c"]);
    }

    proptest! {
        /// Sticky: balanced within one, every partition assigned to a subscriber, and a
        /// member joining moves only what balance needs (each kept member loses at most its
        /// surplus over the new share).
        #[test]
        fn sticky_is_balanced_and_moves_little(members in 1usize..8, partitions in 0u32..40, joined in 1usize..4) {
            let topics = BTreeMap::from([("t".to_string(), partitions)]);
            let group = |n: usize| -> BTreeMap<String, GroupMember> {
                (0..n).map(|i| (format!("m{i:02}"), member(&["t"]))).collect()
            };
            let before = targets(Assignor::CooperativeSticky, &group(members), &topics, &BTreeMap::new());
            prop_assert_eq!(before.len(), partitions as usize);
            let after = targets(Assignor::CooperativeSticky, &group(members + joined), &topics, &before);
            prop_assert_eq!(after.len(), partitions as usize);
            let after_loads = loads(&after);
            let (min, max) = (0..members + joined)
                .map(|i| after_loads.get(&format!("m{i:02}")).copied().unwrap_or(0))
                .fold((usize::MAX, 0), |(lo, hi), l| (lo.min(l), hi.max(l)));
            prop_assert!(max - min <= 1, "unbalanced: {after_loads:?}");
            let moved = after.iter().filter(|(tp, m)| before.get(*tp) != Some(*m)).count();
            let share = (partitions as usize).div_ceil(members + joined);
            let surplus: usize = loads(&before).values().map(|l| l.saturating_sub(share)).sum();
            // Members keep at least floor(share): what moves is the surplus plus at most one
            // per kept member whose ceiling slot went to another.
            prop_assert!(moved <= surplus + members, "moved {moved}, surplus {surplus}");
        }
    }

    #[test]
    fn sticky_keeps_everything_when_nothing_changes() {
        let members: BTreeMap<_, _> = ["a", "b"].iter().map(|m| (m.to_string(), member(&["t", "u"]))).collect();
        let counts = BTreeMap::from([("t".to_string(), 5), ("u".to_string(), 3)]);
        let first = targets(Assignor::CooperativeSticky, &members, &counts, &BTreeMap::new());
        let again = targets(Assignor::CooperativeSticky, &members, &counts, &first);
        assert_eq!(first, again);
    }

    #[test]
    fn a_topic_nobody_subscribes_to_is_not_assigned() {
        let members = BTreeMap::from([("a".to_string(), member(&["t"]))]);
        let counts = BTreeMap::from([("t".to_string(), 2), ("u".to_string(), 3)]);
        for assignor in [Assignor::Range, Assignor::CooperativeSticky] {
            let targets = targets(assignor, &members, &counts, &BTreeMap::new());
            assert!(targets.keys().all(|tp| tp.topic == "t"), "{targets:?}");
            assert_eq!(targets.len(), 2);
        }
    }
}
