//! Consumer groups: each call goes to the group's **coordinator**, the leader of the
//! partition of the internal `__groups` topic the group's name hashes to (created with
//! the first group). A call that changes the group is a Raft write of that partition
//! (`GroupCommand`, applied by its state machine: `cairn_raft::group`); a heartbeat and a
//! description are answered from the leader's applied state. Any node forwards a call to
//! the coordinator, as it forwards a write to a partition's leader (`leader_write.rs`).
//!
//! Groups scale with the cluster: their partitions' leaders spread over the nodes, and a
//! commit is a write to one of them, never to the controller.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_raft::group::{
    GROUP_NAME_LEN_MAX, GroupCommand, GroupOutcome, GroupState, TOPICS_PER_MEMBER_MAX, TopicPartition,
};
use cairn_raft::{CommandResponse, HostError, PartitionCommand, TopicMeta};
use cairn_types::partitioner::partition_for_key;
use cairn_types::{GroupId, now_ms};
use openraft::ServerState;

use crate::api::group_messages::{
    GroupAnswer, GroupCall, GroupDescription, GroupMemberInfo, GroupPartitionInfo, GroupRequest, GroupSummary,
};
use crate::api::leader_write::LeaderWrite;
use crate::api::{
    AdminError, ApiError, AppendError, CairnApi, CreateTopicRequest, ErrorCode, NotLeader, ReadError, RemoteError,
};

/// The internal topic whose partitions hold the consumer groups.
pub const GROUPS_TOPIC: &str = "__groups";
/// Its partition count: how many coordinators the groups spread over.
pub const GROUPS_TOPIC_PARTITIONS: u32 = 8;
/// Its replication factor, at most (fewer on a smaller cluster).
const GROUPS_TOPIC_REPLICATION_MAX: u32 = 3;
pub const SESSION_TIMEOUT_DEFAULT_MS: u32 = 10_000;
pub const REBALANCE_TIMEOUT_DEFAULT_MS: u32 = 30_000;
const SESSION_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u32> = 1_000..=300_000;
/// Positions one commit or reset carries at most.
const POSITIONS_PER_CALL_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("invalid group call: {0}")]
    Invalid(String),
    #[error(transparent)]
    Call(AppendError),
    #[error("cannot create the internal {GROUPS_TOPIC} topic: {0}")]
    GroupsTopic(AdminError),
}

impl ApiError for GroupError {
    fn code(&self) -> ErrorCode {
        match self {
            GroupError::Invalid(_) => ErrorCode::InvalidArgument,
            GroupError::Call(err) => err.code(),
            GroupError::GroupsTopic(err) => err.code(),
        }
    }

    fn not_leader(&self) -> Option<NotLeader> {
        match self {
            GroupError::Call(err) => err.not_leader(),
            _ => None,
        }
    }
}

impl GroupError {
    /// The failure another node answered, when this is one (passed on as it came).
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            GroupError::Call(AppendError::Remote(err)) => Some(err),
            _ => None,
        }
    }
}

impl CairnApi {
    /// One call to a group's coordinator, forwarded `hops` times already.
    pub async fn group_call(&self, request: GroupRequest, hops: u32) -> Result<GroupAnswer, GroupError> {
        validate(&request)?;
        let partition_counts = match &request.call {
            GroupCall::Join { topics, .. } => {
                let mut counts = BTreeMap::new();
                for topic in topics {
                    let meta = self.topic(topic).map_err(|err| GroupError::Call(AppendError::Topic(err)))?;
                    counts.insert(topic.clone(), meta.config.partition_count);
                }
                counts
            }
            _ => BTreeMap::new(),
        };
        let topic = self.groups_topic(hops).await?;
        let partition = partition_for_key(request.group.as_bytes(), topic.config.partition_count);
        let coordinator = topic.partitions[partition as usize].group_id;
        let forward = |address: String, within: Duration| self.forward.group(address, request.clone(), hops, within);
        let answer = if request.call.writes() {
            let write = LeaderWrite {
                command: || PartitionCommand::Group(command(&request, &partition_counts)),
                applied: |response: CommandResponse| match response {
                    CommandResponse::Group(outcome) => self.applied_answer(coordinator, partition, &request, outcome),
                    other => Err(AppendError::UnexpectedOutcome(format!("{other:?}"))),
                },
                forward,
                forwarded: Ok,
                // A retry is harmless: joining again with the same member id and topics,
                // leaving again, committing the same positions again change nothing more (a
                // release already applied is refused, and the member learns its
                // assignment from its next heartbeat).
                retry_unanswered: true,
            };
            self.write_at_leader(&topic, partition, hops, write).await
        } else {
            let read = LeaderWrite {
                command: || async { self.answer_at_leader(coordinator, partition, &request) },
                applied: Ok,
                forward,
                forwarded: Ok,
                retry_unanswered: true,
            };
            self.call_at_leader(&topic, partition, hops, read).await
        };
        answer.map_err(GroupError::Call)
    }

    /// The groups every coordinator partition holds, read from a replica of each.
    pub async fn list_groups(&self, hops: u32) -> Result<Vec<GroupSummary>, ReadError> {
        let Some(topic) = self.host.topic(GROUPS_TOPIC) else { return Ok(Vec::new()) };
        let mut groups = Vec::new();
        for assignment in &topic.partitions {
            match self.host.partition(assignment.group_id) {
                Some(replica) => {
                    let table = replica.groups.read().map_err(|err| ReadError::Host(HostError::Storage(err)))?;
                    groups.extend(table.iter().map(|(name, group)| summary(name, group)));
                }
                None => {
                    let address = self.replica_address(&topic, assignment.partition)?;
                    let remote = self.forward.list_groups(address, assignment.partition, hops).await;
                    groups.extend(remote.map_err(ReadError::Remote)?);
                }
            }
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(groups)
    }

    /// The groups of one coordinator partition, from this node's replica (a forwarded
    /// `list_groups`).
    pub fn list_groups_in(&self, partition: u32) -> Result<Vec<GroupSummary>, ReadError> {
        let no_replica =
            |replicas: Vec<u64>| ReadError::NoReachableReplica { topic: GROUPS_TOPIC.to_string(), partition, replicas };
        let topic = self.host.topic(GROUPS_TOPIC).ok_or_else(|| no_replica(Vec::new()))?;
        let assignment = topic.partitions.get(partition as usize).ok_or_else(|| no_replica(Vec::new()))?;
        let replica =
            self.host.partition(assignment.group_id).ok_or_else(|| no_replica(assignment.replicas.clone()))?;
        let table = replica.groups.read().map_err(|err| ReadError::Host(HostError::Storage(err)))?;
        Ok(table.iter().map(|(name, group)| summary(name, group)).collect())
    }

    fn replica_address(&self, topic: &TopicMeta, partition: u32) -> Result<String, ReadError> {
        let assignment = &topic.partitions[partition as usize];
        let nodes = self.host.cluster_nodes();
        let live = assignment.replicas.iter().find(|node| self.host.is_node_live(**node));
        live.or(assignment.replicas.first()).and_then(|node| nodes.get(node).cloned()).ok_or_else(|| {
            ReadError::NoReachableReplica {
                topic: GROUPS_TOPIC.to_string(),
                partition,
                replicas: assignment.replicas.clone(),
            }
        })
    }

    /// The internal groups topic, created on first use.
    async fn groups_topic(&self, hops: u32) -> Result<TopicMeta, GroupError> {
        if let Some(topic) = self.host.topic(GROUPS_TOPIC) {
            return Ok(topic);
        }
        let nodes = self.host.cluster_nodes().len().max(1) as u32;
        let request = CreateTopicRequest {
            name: GROUPS_TOPIC.to_string(),
            partitions: GROUPS_TOPIC_PARTITIONS,
            replication_factor: nodes.min(GROUPS_TOPIC_REPLICATION_MAX),
            retention_ms: None,
            retention_bytes: None,
        };
        match self.create_topic(request, hops).await {
            Ok(_) => {}
            // Another node created it meanwhile.
            Err(AdminError::Controller(cairn_raft::ControllerError::TopicExists(_))) => {}
            Err(AdminError::Remote(err)) if err.code == ErrorCode::AlreadyExists => {}
            Err(err) => return Err(GroupError::GroupsTopic(err)),
        }
        // The controller answered once it applied the topic; this node's view follows.
        for _ in 0..100 {
            if let Some(topic) = self.host.topic(GROUPS_TOPIC) {
                return Ok(topic);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(GroupError::Call(AppendError::Topic(crate::api::TopicLookupError::TopicNotFound(GROUPS_TOPIC.into()))))
    }

    /// A heartbeat or a description, answered here if this node leads the coordinator.
    fn answer_at_leader(
        &self,
        coordinator: GroupId,
        partition: u32,
        request: &GroupRequest,
    ) -> Result<GroupAnswer, HostError> {
        let replica = self.host.partition(coordinator).ok_or(HostError::UnknownGroup(coordinator))?;
        let metrics = replica.metrics();
        if metrics.state != ServerState::Leader {
            let leader = metrics.current_leader.filter(|leader| *leader != self.host.node_id());
            let leader_address = leader.and_then(|leader| self.host.cluster_nodes().get(&leader).cloned());
            return Err(HostError::NotLeader { group: coordinator, leader, leader_address });
        }
        let table = replica.groups.read().map_err(HostError::Storage)?;
        let group = table.get(&request.group);
        let mut answer = GroupAnswer::default();
        match &request.call {
            GroupCall::Heartbeat { member_id } => {
                let Some(assignment) = group.and_then(|g| g.assignment(member_id)) else {
                    answer.refusal = Some(cairn_raft::group::GroupRefusal::UnknownMember);
                    return Ok(answer);
                };
                self.group_sessions.touch(coordinator, metrics.current_term, &request.group, member_id);
                fill_member(&mut answer, group, member_id, assignment);
            }
            GroupCall::Describe => {
                let Some(group) = group else {
                    answer.refusal = Some(cairn_raft::group::GroupRefusal::UnknownGroup);
                    return Ok(answer);
                };
                answer.generation = group.generation;
                answer.description = Some(describe(group, partition, self.host.node_id()));
            }
            _ => unreachable!("only reads are answered at the leader without a write"),
        }
        Ok(answer)
    }

    /// The answer to an applied group write, read from this node's (the leader's) state.
    fn applied_answer(
        &self,
        coordinator: GroupId,
        partition: u32,
        request: &GroupRequest,
        outcome: GroupOutcome,
    ) -> Result<GroupAnswer, AppendError> {
        let replica =
            self.host.partition(coordinator).ok_or(AppendError::Host(HostError::UnknownGroup(coordinator)))?;
        let term = replica.metrics().current_term;
        let table = replica.groups.read().map_err(|err| AppendError::Host(HostError::Storage(err)))?;
        let group = table.get(&request.group);
        let mut answer = GroupAnswer::default();
        match outcome {
            GroupOutcome::Refused(refusal) => answer.refusal = Some(refusal),
            GroupOutcome::Joined { member_id, generation } => {
                answer.generation = generation;
                self.group_sessions.touch(coordinator, term, &request.group, &member_id);
                if let Some(assignment) = group.and_then(|g| g.assignment(&member_id)) {
                    fill_member(&mut answer, group, &member_id, assignment);
                }
            }
            GroupOutcome::Committed { generation }
            | GroupOutcome::Left { generation }
            | GroupOutcome::Refreshed { generation } => {
                answer.generation = generation;
                if let GroupCall::Commit { member_id, .. } = &request.call
                    && let Some(assignment) = group.and_then(|g| g.assignment(member_id))
                {
                    fill_member(&mut answer, group, member_id, assignment);
                }
            }
            GroupOutcome::Deleted => {}
        }
        if let (Some(group), GroupCall::Reset { .. }) = (group, &request.call) {
            answer.description = Some(describe(group, partition, self.host.node_id()));
        }
        Ok(answer)
    }
}

fn fill_member(
    answer: &mut GroupAnswer,
    group: Option<&GroupState>,
    member_id: &str,
    assignment: cairn_raft::group::MemberAssignment,
) {
    answer.generation = assignment.generation;
    answer.member_id = member_id.to_string();
    if let Some(group) = group {
        answer.positions = assignment
            .owned
            .iter()
            .chain(&assignment.revoking)
            .filter_map(|tp| group.positions.get(tp).map(|p| (tp.clone(), p.clone())))
            .collect();
    }
    answer.assignment = Some(assignment);
}

fn describe(group: &GroupState, coordinator_partition: u32, coordinator_node: u64) -> GroupDescription {
    let members = group
        .members
        .iter()
        .map(|(id, m)| GroupMemberInfo {
            member_id: id.clone(),
            client_id: m.client_id.clone(),
            topics: m.topics.clone(),
            joined_at_ms: m.joined_at_ms,
        })
        .collect();
    let mut partitions: BTreeMap<TopicPartition, GroupPartitionInfo> = BTreeMap::new();
    for (tp, ownership) in &group.partitions {
        partitions.insert(
            tp.clone(),
            GroupPartitionInfo {
                partition: tp.clone(),
                owner: ownership.owner.clone(),
                target: ownership.target.clone(),
                position: None,
            },
        );
    }
    for (tp, position) in &group.positions {
        partitions
            .entry(tp.clone())
            .or_insert_with(|| GroupPartitionInfo { partition: tp.clone(), owner: None, target: None, position: None })
            .position = Some(position.clone());
    }
    GroupDescription {
        generation: group.generation,
        assignor: group.assignor,
        members,
        partitions: partitions.into_values().collect(),
        coordinator_partition,
        coordinator_node,
    }
}

fn summary(name: &str, group: &GroupState) -> GroupSummary {
    GroupSummary {
        group: name.to_string(),
        generation: group.generation,
        members: group.members.len() as u32,
        positions: group.positions.len() as u32,
        assignor: group.assignor,
    }
}

/// The Raft command of a write call (made again for each attempt: its clock is the
/// proposer's).
fn command(request: &GroupRequest, partition_counts: &BTreeMap<String, u32>) -> GroupCommand {
    let group = request.group.clone();
    let now_ms = now_ms();
    match &request.call {
        GroupCall::Join { member_id, client_id, topics, assignor, session_timeout_ms, rebalance_timeout_ms } => {
            GroupCommand::Join {
                group,
                member_id: member_id.clone(),
                client_id: client_id.clone(),
                topics: topics.clone(),
                assignor: *assignor,
                session_timeout_ms: *session_timeout_ms,
                rebalance_timeout_ms: *rebalance_timeout_ms,
                partition_counts: partition_counts.clone(),
                now_ms,
            }
        }
        GroupCall::Leave { member_id } => GroupCommand::Leave { group, member_id: member_id.clone(), now_ms },
        GroupCall::Commit { member_id, generation, positions, release } => GroupCommand::Commit {
            group,
            member_id: member_id.clone(),
            generation: *generation,
            positions: positions.clone(),
            release: release.clone(),
            now_ms,
        },
        GroupCall::Reset { positions } => GroupCommand::ResetPositions { group, positions: positions.clone(), now_ms },
        GroupCall::Delete => GroupCommand::Delete { group },
        GroupCall::Heartbeat { .. } | GroupCall::Describe => unreachable!("reads are not written"),
    }
}

fn validate(request: &GroupRequest) -> Result<(), GroupError> {
    let invalid = |message: String| Err(GroupError::Invalid(message));
    let check_len = |what: &str, value: &str| {
        if value.len() > GROUP_NAME_LEN_MAX {
            return Err(GroupError::Invalid(format!(
                "{what} is {} bytes long; the maximum is {GROUP_NAME_LEN_MAX}",
                value.len()
            )));
        }
        Ok(())
    };
    if request.group.is_empty() {
        return invalid("the group name is empty".into());
    }
    check_len("the group name", &request.group)?;
    let member = match &request.call {
        GroupCall::Join { member_id, client_id, topics, session_timeout_ms, rebalance_timeout_ms, .. } => {
            check_len("the client id", client_id)?;
            if topics.is_empty() {
                return invalid("a member must consume at least one topic".into());
            }
            if topics.len() > TOPICS_PER_MEMBER_MAX {
                return invalid(format!("{} topics; a member consumes at most {TOPICS_PER_MEMBER_MAX}", topics.len()));
            }
            if !SESSION_TIMEOUT_RANGE_MS.contains(session_timeout_ms) {
                return invalid(format!(
                    "session timeout {session_timeout_ms} ms is outside {}..={} ms",
                    SESSION_TIMEOUT_RANGE_MS.start(),
                    SESSION_TIMEOUT_RANGE_MS.end()
                ));
            }
            if *rebalance_timeout_ms < *session_timeout_ms.min(&1_000) || *rebalance_timeout_ms > 600_000 {
                return invalid(format!("rebalance timeout {rebalance_timeout_ms} ms is outside 1000..=600000 ms"));
            }
            Some(member_id)
        }
        GroupCall::Heartbeat { member_id } | GroupCall::Leave { member_id } => Some(member_id),
        GroupCall::Commit { member_id, positions, release, .. } => {
            if positions.len() + release.len() > POSITIONS_PER_CALL_MAX {
                return invalid(format!("a commit carries at most {POSITIONS_PER_CALL_MAX} positions"));
            }
            for position in positions {
                check_len("commit metadata", &position.metadata)?;
            }
            Some(member_id)
        }
        GroupCall::Reset { positions } => {
            if positions.len() > POSITIONS_PER_CALL_MAX {
                return invalid(format!("a reset carries at most {POSITIONS_PER_CALL_MAX} positions"));
            }
            None
        }
        GroupCall::Describe | GroupCall::Delete => None,
    };
    if let Some(member_id) = member {
        if member_id.is_empty() {
            return invalid("the member id is empty (a client chooses one when it first joins)".into());
        }
        check_len("the member id", member_id)?;
    }
    Ok(())
}
