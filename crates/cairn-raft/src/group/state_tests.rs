//! The group state machine: fencing, handover through release, and (proptest) ownership
//! invariants under random joins, leaves, expiries, commits and releases.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{Assignor, GroupCommand, GroupOutcome, GroupRefusal, GroupTable, PositionCommit, TopicPartition};

const GROUP: &str = "g";

fn tp(partition: u32) -> TopicPartition {
    TopicPartition { topic: "t".to_string(), partition }
}

fn join(member: &str, assignor: Assignor, partitions: u32) -> GroupCommand {
    GroupCommand::Join {
        group: GROUP.to_string(),
        member_id: member.to_string(),
        client_id: "test".to_string(),
        topics: vec!["t".to_string()],
        assignor,
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        partition_counts: BTreeMap::from([("t".to_string(), partitions)]),
        now_ms: 1,
    }
}

fn commit(member: &str, generation: u64, offsets: &[(u32, u64)], release: &[u32]) -> GroupCommand {
    GroupCommand::Commit {
        group: GROUP.to_string(),
        member_id: member.to_string(),
        generation,
        positions: offsets
            .iter()
            .map(|(p, offset)| PositionCommit { partition: tp(*p), offset: *offset, metadata: String::new() })
            .collect(),
        release: release.iter().map(|p| tp(*p)).collect(),
        now_ms: 2,
    }
}

fn leave(member: &str) -> GroupCommand {
    GroupCommand::Leave { group: GROUP.to_string(), member_id: member.to_string(), now_ms: 3 }
}

#[test]
fn a_partition_moves_only_once_its_owner_releases_it_with_its_final_position() {
    let mut table = GroupTable::default();
    table.apply(&join("a", Assignor::CooperativeSticky, 2));
    let a = table.get(GROUP).and_then(|g| g.assignment("a")).expect("a");
    assert_eq!((a.generation, a.owned.len()), (1, 2));
    table.apply(&join("b", Assignor::CooperativeSticky, 2));
    let group = table.get(GROUP).expect("group");
    let (a, b) = (group.assignment("a").expect("a"), group.assignment("b").expect("b"));
    assert_eq!(group.generation, 2);
    assert_eq!((a.owned.len(), a.revoking.len()), (1, 1), "a keeps one and gives one up");
    assert_eq!((b.owned.len(), b.pending.len()), (0, 1), "b waits for it");
    let moving = a.revoking[0].partition;
    // b cannot commit what it does not own yet.
    assert_eq!(
        table.apply(&commit("b", 2, &[(moving, 1)], &[])).0,
        GroupOutcome::Refused(GroupRefusal::NotOwned { partitions: vec![tp(moving)] })
    );
    assert_eq!(table.apply(&commit("a", 2, &[(moving, 40)], &[moving])).0, GroupOutcome::Committed { generation: 2 });
    let group = table.get(GROUP).expect("group");
    assert_eq!(group.assignment("b").expect("b").owned, vec![tp(moving)]);
    assert_eq!(group.positions[&tp(moving)].offset, 40, "b starts where a stopped");
    // a no longer owns it.
    assert!(matches!(table.apply(&commit("a", 2, &[(moving, 41)], &[])).0, GroupOutcome::Refused(_)));
}

#[test]
fn a_commit_of_a_stale_generation_is_refused() {
    let mut table = GroupTable::default();
    table.apply(&join("a", Assignor::Range, 4));
    table.apply(&join("b", Assignor::Range, 4));
    let outcome = table.apply(&commit("a", 1, &[(0, 10)], &[])).0;
    assert_eq!(outcome, GroupOutcome::Refused(GroupRefusal::StaleGeneration { current: 2 }));
    assert!(table.get(GROUP).expect("group").positions.is_empty(), "nothing was written");
    table.apply(&leave("a"));
    assert_eq!(table.apply(&commit("a", 3, &[(0, 10)], &[])).0, GroupOutcome::Refused(GroupRefusal::UnknownMember));
}

#[test]
fn an_owner_that_leaves_hands_its_partitions_over_at_once() {
    let mut table = GroupTable::default();
    table.apply(&join("a", Assignor::Range, 4));
    table.apply(&join("b", Assignor::Range, 4));
    table.apply(&leave("a"));
    let b = table.get(GROUP).and_then(|g| g.assignment("b")).expect("b");
    assert_eq!((b.owned.len(), b.revoking.len(), b.pending.len()), (4, 0, 0));
}

#[test]
fn a_group_with_members_is_neither_reset_nor_deleted() {
    let mut table = GroupTable::default();
    table.apply(&join("a", Assignor::Range, 1));
    let reset = GroupCommand::ResetPositions {
        group: GROUP.to_string(),
        positions: vec![PositionCommit { partition: tp(0), offset: 0, metadata: String::new() }],
        now_ms: 5,
    };
    assert!(matches!(table.apply(&reset).0, GroupOutcome::Refused(GroupRefusal::GroupNotEmpty { members: 1 })));
    let delete = GroupCommand::Delete { group: GROUP.to_string() };
    assert!(matches!(table.apply(&delete).0, GroupOutcome::Refused(GroupRefusal::GroupNotEmpty { .. })));
    table.apply(&leave("a"));
    assert_eq!(table.apply(&reset).0, GroupOutcome::Committed { generation: 2 });
    assert_eq!(table.apply(&delete).0, GroupOutcome::Deleted);
    assert!(table.get(GROUP).is_none());
}

#[test]
fn members_must_agree_on_the_assignor() {
    let mut table = GroupTable::default();
    table.apply(&join("a", Assignor::Range, 1));
    assert!(matches!(
        table.apply(&join("b", Assignor::CooperativeSticky, 1)).0,
        GroupOutcome::Refused(GroupRefusal::AssignorMismatch { .. })
    ));
}

#[derive(Debug, Clone)]
enum Step {
    Join(u8),
    Leave(u8),
    Expire(u8),
    /// The member commits what it owns at the generation it knows (maybe a stale one) and
    /// releases what it is asked to.
    CommitAndRelease {
        member: u8,
        stale: bool,
    },
    Grow(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..5).prop_map(Step::Join),
        (0u8..5).prop_map(Step::Leave),
        (0u8..5).prop_map(Step::Expire),
        ((0u8..5), any::<bool>()).prop_map(|(member, stale)| Step::CommitAndRelease { member, stale }),
        (1u32..12).prop_map(Step::Grow),
    ]
}

proptest! {
    /// Whatever happens: every owner and target is a member; a partition with a target has
    /// an owner; a commit is applied only at the current generation for owned partitions;
    /// committed positions of a partition only grow when each owner commits past the last
    /// position; and once every member releases what it is asked to, ownership equals the
    /// targets.
    #[test]
    fn ownership_stays_consistent(
        assignor in prop_oneof![Just(Assignor::Range), Just(Assignor::CooperativeSticky)],
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut table = GroupTable::default();
        let mut partitions = 6u32;
        let mut offsets: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for step in steps {
            let generation = table.get(GROUP).map_or(0, |g| g.generation);
            match step {
                Step::Join(m) => { table.apply(&join(&format!("m{m}"), assignor, partitions)); }
                Step::Leave(m) => { table.apply(&leave(&format!("m{m}"))); }
                Step::Expire(m) => {
                    table.apply(&GroupCommand::Expire { group: GROUP.to_string(), members: vec![format!("m{m}")], now_ms: 4 });
                }
                Step::Grow(more) => {
                    partitions += more;
                    let counts = BTreeMap::from([("t".to_string(), partitions)]);
                    table.apply(&GroupCommand::Refresh { group: GROUP.to_string(), partition_counts: counts, now_ms: 5 });
                }
                Step::CommitAndRelease { member, stale } => {
                    let member = format!("m{member}");
                    let Some(assignment) = table.get(GROUP).and_then(|g| g.assignment(&member)) else { continue };
                    let held: Vec<(u32, u64)> = assignment.owned.iter().chain(&assignment.revoking)
                        .map(|tp| (tp.partition, offsets.get(tp).copied().unwrap_or(0) + 1)).collect();
                    let release: Vec<u32> = assignment.revoking.iter().map(|tp| tp.partition).collect();
                    let at = if stale { generation.saturating_sub(1) } else { generation };
                    let outcome = table.apply(&commit(&member, at, &held, &release)).0;
                    if at == generation {
                        prop_assert_eq!(outcome, GroupOutcome::Committed { generation });
                        for (p, offset) in held {
                            let last = offsets.insert(tp(p), offset);
                            prop_assert!(last.is_none_or(|last| last < offset));
                        }
                    } else {
                        let refused = matches!(outcome, GroupOutcome::Refused(GroupRefusal::StaleGeneration { .. }));
                        prop_assert!(refused);
                    }
                }
            }
            let Some(group) = table.get(GROUP) else { continue };
            for (tp, ownership) in &group.partitions {
                for member in ownership.owner.iter().chain(&ownership.target) {
                    prop_assert!(group.members.contains_key(member), "{tp:?} held by non-member {member}");
                }
                prop_assert!(ownership.target.is_none() || ownership.owner.is_some(), "{tp:?} has a target and no owner");
            }
            for (tp, position) in &group.positions {
                prop_assert_eq!(Some(position.offset), offsets.get(tp).copied());
            }
        }
        // Everybody releases what it is asked to: ownership settles on the targets.
        let Some(group) = table.get(GROUP).cloned() else { return Ok(()) };
        for member in group.members.keys() {
            let assignment = group.assignment(member).expect("member");
            let release: Vec<u32> = assignment.revoking.iter().map(|tp| tp.partition).collect();
            table.apply(&commit(member, group.generation, &[], &release));
        }
        let group = table.get(GROUP).expect("group");
        for (tp, ownership) in &group.partitions {
            prop_assert_eq!(&ownership.owner, &ownership.target, "{:?} did not settle", tp);
        }
        if !group.members.is_empty() {
            prop_assert_eq!(group.partitions.len() as u32, partitions, "every partition has an owner");
        }
    }
}
