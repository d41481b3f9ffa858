//! One consumer group as the coordinator's state machine keeps it: its members, the
//! generation, which member owns each partition and which should (the target), and the
//! committed positions. Everything here changes only by applying a `GroupCommand`, so
//! every replica of the coordinator partition holds the same group.
//!
//! **Ownership.** A rebalance (a member joins, leaves or is expired) bumps the generation and
//! computes every partition's target (`assignor.rs`). A partition whose owner is gone, or
//! that had none, goes to its target at once. One whose owner is still a member stays with
//! it, *revoking*, until that member releases it (a commit with `release`, which commits its
//! final position in the same entry) or is expired: only then does the target own it. So a
//! partition never has two owners, even for a moment, and the new owner starts from the
//! position the old one committed last.
//!
//! **Fencing.** A member's commit is accepted only at the current generation, and only for
//! partitions it owns at that point. A member that missed a rebalance (a zombie after a long
//! pause) is refused and learns the new generation from its next heartbeat; a commit can
//! therefore never overwrite the position of a partition's current owner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::assignor::{self, Assignor};
use super::command::{
    GroupCommand, GroupOutcome, GroupRefusal, MEMBERS_PER_GROUP_MAX, POSITIONS_PER_GROUP_MAX, PositionCommit,
};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub client_id: String,
    /// The topics it consumes, sorted.
    pub topics: Vec<String>,
    pub session_timeout_ms: u32,
    /// How long it may keep revoked partitions before it is expired.
    pub rebalance_timeout_ms: u32,
    pub joined_at_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// The member that may consume and commit the partition now.
    pub owner: Option<String>,
    /// The member the assignor gives it to; differs from `owner` while it is revoked.
    pub target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedPosition {
    /// The next offset to consume.
    pub offset: u64,
    pub metadata: String,
    pub committed_at_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub generation: u64,
    pub assignor: Assignor,
    pub members: BTreeMap<String, GroupMember>,
    pub partitions: BTreeMap<TopicPartition, Ownership>,
    pub positions: BTreeMap<TopicPartition, CommittedPosition>,
    /// The partition counts of the subscribed topics at the last rebalance.
    pub partition_counts: BTreeMap<String, u32>,
    /// The proposer's clock at the last rebalance (revocations are timed from it).
    pub rebalanced_at_ms: u64,
}

/// What one member holds, as a heartbeat answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAssignment {
    pub generation: u64,
    /// Partitions it owns and should keep consuming.
    pub owned: Vec<TopicPartition>,
    /// Partitions it owns but should release: commit their position with `release`.
    pub revoking: Vec<TopicPartition>,
    /// Partitions it will own once their current owner releases them.
    pub pending: Vec<TopicPartition>,
}

impl GroupState {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn assignment(&self, member_id: &str) -> Option<MemberAssignment> {
        self.members.get(member_id)?;
        let mut assignment = MemberAssignment { generation: self.generation, ..MemberAssignment::default() };
        for (tp, ownership) in &self.partitions {
            let owner = ownership.owner.as_deref() == Some(member_id);
            let target = ownership.target.as_deref() == Some(member_id);
            match (owner, target) {
                (true, true) => assignment.owned.push(tp.clone()),
                (true, false) => assignment.revoking.push(tp.clone()),
                (false, true) => assignment.pending.push(tp.clone()),
                (false, false) => {}
            }
        }
        Some(assignment)
    }

    /// Members that hold revoked partitions for longer than their rebalance timeout.
    pub fn overdue_revocations(&self, now_ms: u64) -> Vec<String> {
        let overdue = |member: &str| {
            self.members
                .get(member)
                .is_some_and(|m| now_ms.saturating_sub(self.rebalanced_at_ms) > u64::from(m.rebalance_timeout_ms))
        };
        let mut members: Vec<String> = self
            .partitions
            .values()
            .filter(|o| o.owner != o.target)
            .filter_map(|o| o.owner.clone())
            .filter(|m| overdue(m))
            .collect();
        members.sort();
        members.dedup();
        members
    }

    /// Applies one command to this group (`None`: the group does not exist yet).
    pub fn apply(group: Option<&mut GroupState>, command: &GroupCommand) -> (Option<GroupState>, GroupOutcome) {
        match (group, command) {
            (None, GroupCommand::Join { .. }) => {
                let mut state = GroupState::default();
                let outcome = state.join(command);
                (Some(state), outcome)
            }
            (None, GroupCommand::ResetPositions { positions, now_ms, .. }) => {
                let mut state = GroupState::default();
                let outcome = state.reset(positions, *now_ms);
                (Some(state), outcome)
            }
            (None, _) => (None, GroupOutcome::Refused(GroupRefusal::UnknownGroup)),
            (Some(state), command) => {
                let outcome = match command {
                    GroupCommand::Join { .. } => state.join(command),
                    GroupCommand::Leave { member_id, now_ms, .. } => {
                        state.remove(std::slice::from_ref(member_id), *now_ms)
                    }
                    GroupCommand::Expire { members, now_ms, .. } => state.remove(members, *now_ms),
                    GroupCommand::Commit { member_id, generation, positions, release, now_ms, .. } => {
                        state.commit(member_id, *generation, positions, release, *now_ms)
                    }
                    GroupCommand::ResetPositions { positions, now_ms, .. } => state.reset(positions, *now_ms),
                    GroupCommand::Refresh { partition_counts, now_ms, .. } => {
                        if state.learn_counts(partition_counts) {
                            state.rebalance(*now_ms);
                        }
                        GroupOutcome::Refreshed { generation: state.generation }
                    }
                    GroupCommand::Delete { .. } => {
                        if !state.is_empty() {
                            GroupOutcome::Refused(GroupRefusal::GroupNotEmpty { members: state.members.len() as u32 })
                        } else {
                            GroupOutcome::Deleted
                        }
                    }
                };
                (None, outcome)
            }
        }
    }

    fn join(&mut self, command: &GroupCommand) -> GroupOutcome {
        let GroupCommand::Join {
            member_id,
            client_id,
            topics,
            assignor,
            session_timeout_ms,
            rebalance_timeout_ms,
            partition_counts,
            now_ms,
            ..
        } = command
        else {
            unreachable!("join is called with a Join")
        };
        if !self.members.is_empty() && self.assignor != *assignor {
            return GroupOutcome::Refused(GroupRefusal::AssignorMismatch { group: self.assignor.name().to_string() });
        }
        let mut topics = topics.clone();
        topics.sort();
        topics.dedup();
        let changed = match self.members.get(member_id) {
            Some(member) => member.topics != topics,
            None => {
                if self.members.len() >= MEMBERS_PER_GROUP_MAX {
                    return GroupOutcome::Refused(GroupRefusal::TooManyMembers { max: MEMBERS_PER_GROUP_MAX as u32 });
                }
                true
            }
        };
        let joined_at_ms = self.members.get(member_id).map_or(*now_ms, |m| m.joined_at_ms);
        self.assignor = *assignor;
        self.members.insert(
            member_id.clone(),
            GroupMember {
                client_id: client_id.clone(),
                topics,
                session_timeout_ms: *session_timeout_ms,
                rebalance_timeout_ms: *rebalance_timeout_ms,
                joined_at_ms,
            },
        );
        if self.learn_counts(partition_counts) || changed {
            self.rebalance(*now_ms);
        }
        GroupOutcome::Joined { member_id: member_id.clone(), generation: self.generation }
    }

    /// Takes the partition counts a command carries. They only grow: a count from a
    /// proposer that had not seen a topic grow yet must not take partitions away. Whether
    /// one grew.
    fn learn_counts(&mut self, partition_counts: &BTreeMap<String, u32>) -> bool {
        let mut grew = false;
        for (topic, count) in partition_counts {
            let known = self.partition_counts.entry(topic.clone()).or_insert(0);
            if *count > *known {
                *known = *count;
                grew = true;
            }
        }
        grew
    }

    fn remove(&mut self, members: &[String], now_ms: u64) -> GroupOutcome {
        let before = self.members.len();
        for member in members {
            self.members.remove(member);
        }
        if self.members.len() != before {
            self.rebalance(now_ms);
        }
        GroupOutcome::Left { generation: self.generation }
    }

    /// A new generation: targets computed afresh, and partitions whose owner is gone handed
    /// to their target.
    fn rebalance(&mut self, now_ms: u64) {
        self.generation += 1;
        self.rebalanced_at_ms = now_ms;
        let previous: BTreeMap<TopicPartition, String> = self
            .partitions
            .iter()
            .filter_map(|(tp, o)| o.target.clone().or_else(|| o.owner.clone()).map(|m| (tp.clone(), m)))
            .collect();
        let mut targets = assignor::targets(self.assignor, &self.members, &self.partition_counts, &previous);
        let members = &self.members;
        for (tp, ownership) in self.partitions.iter_mut() {
            ownership.target = targets.remove(tp);
            if ownership.owner.as_ref().is_some_and(|owner| !members.contains_key(owner)) {
                ownership.owner = None;
            }
        }
        for (tp, target) in targets {
            self.partitions.insert(tp, Ownership { owner: None, target: Some(target) });
        }
        for ownership in self.partitions.values_mut() {
            if ownership.owner.is_none() {
                ownership.owner = ownership.target.clone();
            }
        }
        self.partitions.retain(|_, o| o.owner.is_some() || o.target.is_some());
    }

    fn commit(
        &mut self,
        member_id: &str,
        generation: u64,
        positions: &[PositionCommit],
        release: &[TopicPartition],
        now_ms: u64,
    ) -> GroupOutcome {
        if !self.members.contains_key(member_id) {
            return GroupOutcome::Refused(GroupRefusal::UnknownMember);
        }
        if generation != self.generation {
            return GroupOutcome::Refused(GroupRefusal::StaleGeneration { current: self.generation });
        }
        let owns = |tp: &TopicPartition| self.partitions.get(tp).is_some_and(|o| o.owner.as_deref() == Some(member_id));
        let not_owned: Vec<TopicPartition> =
            positions.iter().map(|p| &p.partition).chain(release).filter(|tp| !owns(tp)).cloned().collect();
        if !not_owned.is_empty() {
            return GroupOutcome::Refused(GroupRefusal::NotOwned { partitions: not_owned });
        }
        if let Some(refusal) = self.record_positions(positions.iter().map(|p| (&p.partition, p)), now_ms) {
            return refusal;
        }
        for tp in release {
            if let Some(ownership) = self.partitions.get_mut(tp) {
                ownership.owner = ownership.target.clone();
            }
        }
        self.partitions.retain(|_, o| o.owner.is_some() || o.target.is_some());
        GroupOutcome::Committed { generation: self.generation }
    }

    /// Sets positions by hand (`cairn group reset-offsets`): only while the group has no
    /// member, as Kafka requires, so no consumer overwrites them at once.
    fn reset(&mut self, positions: &[PositionCommit], now_ms: u64) -> GroupOutcome {
        if !self.is_empty() {
            return GroupOutcome::Refused(GroupRefusal::GroupNotEmpty { members: self.members.len() as u32 });
        }
        if let Some(refusal) = self.record_positions(positions.iter().map(|p| (&p.partition, p)), now_ms) {
            return refusal;
        }
        GroupOutcome::Committed { generation: self.generation }
    }

    fn record_positions<'a>(
        &mut self,
        positions: impl Iterator<Item = (&'a TopicPartition, &'a PositionCommit)> + Clone,
        now_ms: u64,
    ) -> Option<GroupOutcome> {
        let new = positions.clone().filter(|(tp, _)| !self.positions.contains_key(*tp)).count();
        if self.positions.len() + new > POSITIONS_PER_GROUP_MAX {
            return Some(GroupOutcome::Refused(GroupRefusal::TooManyPositions { max: POSITIONS_PER_GROUP_MAX as u32 }));
        }
        for (tp, commit) in positions {
            let position =
                CommittedPosition { offset: commit.offset, metadata: commit.metadata.clone(), committed_at_ms: now_ms };
            self.positions.insert(tp.clone(), position);
        }
        None
    }
}
