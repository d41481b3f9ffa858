//! Consumer group calls and answers to and from the proto messages, both ways: a call is
//! forwarded to the coordinator and its answer comes back.

use cairn_proto::v1 as pb;
use cairn_raft::group::{Assignor, CommittedPosition, GroupRefusal, MemberAssignment, PositionCommit, TopicPartition};

use crate::api::{
    GroupAnswer, GroupCall, GroupDescription, GroupMemberInfo, GroupPartitionInfo, GroupRequest, GroupSummary,
    REBALANCE_TIMEOUT_DEFAULT_MS, SESSION_TIMEOUT_DEFAULT_MS,
};

/// A group request that is not well formed.
#[derive(Debug, thiserror::Error)]
pub enum GroupMessageError {
    #[error("a group request names one call (join, heartbeat, leave, commit, reset, describe or delete)")]
    NoCall,
    #[error("unknown assignor {0:?}: use \"cooperative-sticky\" or \"range\"")]
    UnknownAssignor(String),
}

impl TryFrom<pb::GroupRequest> for GroupRequest {
    type Error = GroupMessageError;

    fn try_from(request: pb::GroupRequest) -> Result<GroupRequest, GroupMessageError> {
        use pb::group_request::Call;
        let call = match request.call.ok_or(GroupMessageError::NoCall)? {
            Call::Join(join) => GroupCall::Join {
                assignor: Assignor::from_name(&join.assignor)
                    .ok_or_else(|| GroupMessageError::UnknownAssignor(join.assignor.clone()))?,
                member_id: join.member_id,
                client_id: join.client_id,
                topics: join.topics,
                session_timeout_ms: nonzero_or(join.session_timeout_ms, SESSION_TIMEOUT_DEFAULT_MS),
                rebalance_timeout_ms: nonzero_or(join.rebalance_timeout_ms, REBALANCE_TIMEOUT_DEFAULT_MS),
            },
            Call::Heartbeat(heartbeat) => GroupCall::Heartbeat { member_id: heartbeat.member_id },
            Call::Leave(leave) => GroupCall::Leave { member_id: leave.member_id },
            Call::Commit(commit) => GroupCall::Commit {
                member_id: commit.member_id,
                generation: commit.generation,
                positions: commit.positions.into_iter().map(position_commit).collect(),
                release: commit.release.into_iter().map(topic_partition).collect(),
            },
            Call::Reset(reset) => {
                GroupCall::Reset { positions: reset.positions.into_iter().map(position_commit).collect() }
            }
            Call::Describe(_) => GroupCall::Describe,
            Call::Delete(_) => GroupCall::Delete,
        };
        Ok(GroupRequest { group: request.group, call })
    }
}

impl From<GroupRequest> for pb::GroupRequest {
    fn from(request: GroupRequest) -> pb::GroupRequest {
        use pb::group_request::Call;
        let call = match request.call {
            GroupCall::Join { member_id, client_id, topics, assignor, session_timeout_ms, rebalance_timeout_ms } => {
                Call::Join(pb::JoinGroup {
                    member_id,
                    client_id,
                    topics,
                    assignor: assignor.name().to_string(),
                    session_timeout_ms,
                    rebalance_timeout_ms,
                })
            }
            GroupCall::Heartbeat { member_id } => Call::Heartbeat(pb::GroupHeartbeat { member_id }),
            GroupCall::Leave { member_id } => Call::Leave(pb::LeaveGroup { member_id }),
            GroupCall::Commit { member_id, generation, positions, release } => Call::Commit(pb::CommitPositions {
                member_id,
                generation,
                positions: positions.into_iter().map(position_message).collect(),
                release: release.into_iter().map(topic_partition_message).collect(),
            }),
            GroupCall::Reset { positions } => {
                Call::Reset(pb::ResetPositions { positions: positions.into_iter().map(position_message).collect() })
            }
            GroupCall::Describe => Call::Describe(pb::DescribeGroup {}),
            GroupCall::Delete => Call::Delete(pb::DeleteGroup {}),
        };
        pb::GroupRequest { group: request.group, call: Some(call) }
    }
}

impl From<GroupAnswer> for pb::GroupResponse {
    fn from(answer: GroupAnswer) -> pb::GroupResponse {
        pb::GroupResponse {
            refusal: answer.refusal.map(refusal_message),
            generation: answer.generation,
            member_id: answer.member_id,
            assignment: answer.assignment.map(|a| pb::MemberAssignment {
                owned: a.owned.into_iter().map(topic_partition_message).collect(),
                revoking: a.revoking.into_iter().map(topic_partition_message).collect(),
                pending: a.pending.into_iter().map(topic_partition_message).collect(),
            }),
            positions: answer.positions.into_iter().map(|(tp, p)| committed_message(tp, p)).collect(),
            description: answer.description.map(|d| pb::GroupDescription {
                generation: d.generation,
                assignor: d.assignor.name().to_string(),
                members: d
                    .members
                    .into_iter()
                    .map(|m| pb::GroupMemberInfo {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        topics: m.topics,
                        joined_at_ms: m.joined_at_ms,
                    })
                    .collect(),
                partitions: d
                    .partitions
                    .into_iter()
                    .map(|p| pb::GroupPartitionInfo {
                        topic: p.partition.topic.clone(),
                        partition: p.partition.partition,
                        owner: p.owner.unwrap_or_default(),
                        target: p.target.unwrap_or_default(),
                        has_position: p.position.is_some(),
                        position: p.position.map(|position| committed_message(p.partition, position)),
                    })
                    .collect(),
                coordinator_partition: d.coordinator_partition,
                coordinator_node: d.coordinator_node,
            }),
        }
    }
}

/// A forwarded answer.
impl From<pb::GroupResponse> for GroupAnswer {
    fn from(response: pb::GroupResponse) -> GroupAnswer {
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        GroupAnswer {
            refusal: response.refusal.map(refusal_of),
            generation: response.generation,
            member_id: response.member_id,
            assignment: response.assignment.map(|a| MemberAssignment {
                generation: response.generation,
                owned: a.owned.into_iter().map(topic_partition).collect(),
                revoking: a.revoking.into_iter().map(topic_partition).collect(),
                pending: a.pending.into_iter().map(topic_partition).collect(),
            }),
            positions: response.positions.into_iter().map(committed).collect(),
            description: response.description.map(|d| GroupDescription {
                generation: d.generation,
                assignor: Assignor::from_name(&d.assignor).unwrap_or_default(),
                members: d
                    .members
                    .into_iter()
                    .map(|m| GroupMemberInfo {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        topics: m.topics,
                        joined_at_ms: m.joined_at_ms,
                    })
                    .collect(),
                partitions: d
                    .partitions
                    .into_iter()
                    .map(|p| GroupPartitionInfo {
                        partition: TopicPartition { topic: p.topic, partition: p.partition },
                        owner: nonempty(p.owner),
                        target: nonempty(p.target),
                        position: p.position.filter(|_| p.has_position).map(|position| committed(position).1),
                    })
                    .collect(),
                coordinator_partition: d.coordinator_partition,
                coordinator_node: d.coordinator_node,
            }),
        }
    }
}

impl From<GroupSummary> for pb::GroupSummary {
    fn from(summary: GroupSummary) -> pb::GroupSummary {
        pb::GroupSummary {
            group: summary.group,
            generation: summary.generation,
            members: summary.members,
            positions: summary.positions,
            assignor: summary.assignor.name().to_string(),
        }
    }
}

impl From<pb::GroupSummary> for GroupSummary {
    fn from(summary: pb::GroupSummary) -> GroupSummary {
        GroupSummary {
            group: summary.group,
            generation: summary.generation,
            members: summary.members,
            positions: summary.positions,
            assignor: Assignor::from_name(&summary.assignor).unwrap_or_default(),
        }
    }
}

fn nonzero_or(value: u32, default: u32) -> u32 {
    if value == 0 { default } else { value }
}

fn topic_partition(tp: pb::GroupTopicPartition) -> TopicPartition {
    TopicPartition { topic: tp.topic, partition: tp.partition }
}

fn topic_partition_message(tp: TopicPartition) -> pb::GroupTopicPartition {
    pb::GroupTopicPartition { topic: tp.topic, partition: tp.partition }
}

fn position_commit(position: pb::GroupPosition) -> PositionCommit {
    PositionCommit {
        partition: TopicPartition { topic: position.topic, partition: position.partition },
        offset: position.offset,
        metadata: position.metadata,
    }
}

fn position_message(commit: PositionCommit) -> pb::GroupPosition {
    pb::GroupPosition {
        topic: commit.partition.topic,
        partition: commit.partition.partition,
        offset: commit.offset,
        metadata: commit.metadata,
        committed_at_ms: 0,
    }
}

fn committed_message(tp: TopicPartition, position: CommittedPosition) -> pb::GroupPosition {
    pb::GroupPosition {
        topic: tp.topic,
        partition: tp.partition,
        offset: position.offset,
        metadata: position.metadata,
        committed_at_ms: position.committed_at_ms,
    }
}

fn committed(position: pb::GroupPosition) -> (TopicPartition, CommittedPosition) {
    (
        TopicPartition { topic: position.topic, partition: position.partition },
        CommittedPosition {
            offset: position.offset,
            metadata: position.metadata,
            committed_at_ms: position.committed_at_ms,
        },
    )
}

fn refusal_message(refusal: GroupRefusal) -> pb::GroupRefusal {
    use pb::GroupRefusalCode as Code;
    let mut message = pb::GroupRefusal { message: refusal.to_string(), ..pb::GroupRefusal::default() };
    let code = match refusal {
        GroupRefusal::UnknownGroup => Code::UnknownGroup,
        GroupRefusal::UnknownMember => Code::UnknownMember,
        GroupRefusal::StaleGeneration { current } => {
            message.current_generation = current;
            Code::StaleGeneration
        }
        GroupRefusal::NotOwned { partitions } => {
            message.partitions = partitions.into_iter().map(topic_partition_message).collect();
            Code::NotOwned
        }
        GroupRefusal::GroupNotEmpty { members } => {
            message.count = members;
            Code::GroupNotEmpty
        }
        GroupRefusal::AssignorMismatch { group } => {
            message.assignor = group;
            Code::AssignorMismatch
        }
        GroupRefusal::TooManyMembers { max } => {
            message.count = max;
            Code::TooManyMembers
        }
        GroupRefusal::TooManyPositions { max } => {
            message.count = max;
            Code::TooManyPositions
        }
        GroupRefusal::TooManyGroups { max } => {
            message.count = max;
            Code::TooManyGroups
        }
    };
    message.code = code as i32;
    message
}

/// A refusal another node answered. A code this node does not know reads as an unknown
/// member's refusal: the caller joins again.
fn refusal_of(refusal: pb::GroupRefusal) -> GroupRefusal {
    use pb::GroupRefusalCode as Code;
    match Code::try_from(refusal.code).unwrap_or(Code::Unspecified) {
        Code::UnknownGroup => GroupRefusal::UnknownGroup,
        Code::StaleGeneration => GroupRefusal::StaleGeneration { current: refusal.current_generation },
        Code::NotOwned => {
            GroupRefusal::NotOwned { partitions: refusal.partitions.into_iter().map(topic_partition).collect() }
        }
        Code::GroupNotEmpty => GroupRefusal::GroupNotEmpty { members: refusal.count },
        Code::AssignorMismatch => GroupRefusal::AssignorMismatch { group: refusal.assignor },
        Code::TooManyMembers => GroupRefusal::TooManyMembers { max: refusal.count },
        Code::TooManyPositions => GroupRefusal::TooManyPositions { max: refusal.count },
        Code::TooManyGroups => GroupRefusal::TooManyGroups { max: refusal.count },
        Code::UnknownMember | Code::Unspecified => GroupRefusal::UnknownMember,
    }
}
