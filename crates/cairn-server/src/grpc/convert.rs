//! The api's domain types to and from the proto messages, both ways where a message is
//! forwarded to another node and its answer comes back. Records convert in `cairn-proto`
//! (one conversion for the server and the client).

use cairn_proto::v1 as pb;
use cairn_proto::{stored_records_from_proto, stored_records_to_proto};
use cairn_raft::{Operation, OperationKind, TopicMeta};
use cairn_types::Record;

use crate::api::{
    AppendAnswer, AppendRequest, ClusterStatus, Consistency, CreateTopicRequest, GroupStatus, MovePartitionRequest,
    OffsetForTimestampRequest, PartitionDescription, PartitionToken, PlannedLeader, PlannedMove, ReadBatch,
    ReadRequest, RebalanceAnswer, RecordPosition, StartPosition, SubscribeBatch, SubscribeRequest, TopicDescription,
};

impl From<pb::AppendRequest> for AppendRequest {
    fn from(request: pb::AppendRequest) -> AppendRequest {
        AppendRequest {
            topic: request.topic,
            partition: request.partition,
            records: request.records.into_iter().map(Record::from).collect(),
            producer_id: request.producer_id,
            sequence: request.sequence,
        }
    }
}

impl From<AppendRequest> for pb::AppendRequest {
    fn from(request: AppendRequest) -> pb::AppendRequest {
        pb::AppendRequest {
            topic: request.topic,
            partition: request.partition,
            records: request.records.into_iter().map(pb::Record::from).collect(),
            producer_id: request.producer_id,
            sequence: request.sequence,
        }
    }
}

impl From<AppendAnswer> for pb::AppendResponse {
    fn from(answer: AppendAnswer) -> pb::AppendResponse {
        pb::AppendResponse {
            positions: answer
                .positions
                .into_iter()
                .map(|p| pb::RecordPosition { partition: p.partition, offset: p.offset })
                .collect(),
            tokens: answer
                .tokens
                .into_iter()
                .map(|t| pb::PartitionToken { partition: t.partition, applied_index: t.applied_index })
                .collect(),
            duplicate: answer.duplicate,
        }
    }
}

impl From<pb::AppendResponse> for AppendAnswer {
    fn from(response: pb::AppendResponse) -> AppendAnswer {
        AppendAnswer {
            positions: response
                .positions
                .into_iter()
                .map(|p| RecordPosition { partition: p.partition, offset: p.offset })
                .collect(),
            tokens: response
                .tokens
                .into_iter()
                .map(|t| PartitionToken { partition: t.partition, applied_index: t.applied_index })
                .collect(),
            duplicate: response.duplicate,
        }
    }
}

/// A proto consistency (and the index a read-your-writes read needs) as the api's.
pub(crate) fn consistency(value: i32, min_applied_index: u64) -> Consistency {
    match pb::Consistency::try_from(value) {
        Ok(pb::Consistency::Local) => Consistency::Local,
        Ok(pb::Consistency::ReadYourWrites) => Consistency::ReadYourWrites { min_applied_index },
        Ok(pb::Consistency::Linearizable) => Consistency::Linearizable,
        Err(_) => Consistency::Unknown(value),
    }
}

/// The api's consistency as the proto's value and read-your-writes index.
pub(crate) fn consistency_to_proto(consistency: Consistency) -> (i32, u64) {
    match consistency {
        Consistency::Local => (pb::Consistency::Local as i32, 0),
        Consistency::ReadYourWrites { min_applied_index } => {
            (pb::Consistency::ReadYourWrites as i32, min_applied_index)
        }
        Consistency::Linearizable => (pb::Consistency::Linearizable as i32, 0),
        Consistency::Unknown(value) => (value, 0),
    }
}

impl From<pb::ReadRequest> for ReadRequest {
    fn from(request: pb::ReadRequest) -> ReadRequest {
        ReadRequest {
            topic: request.topic,
            partition: request.partition,
            from_offset: request.from_offset,
            max_records: request.max_records,
            max_bytes: request.max_bytes,
            wait_ms: request.wait_ms,
            consistency: consistency(request.consistency, request.min_applied_index),
        }
    }
}

impl From<ReadRequest> for pb::ReadRequest {
    fn from(request: ReadRequest) -> pb::ReadRequest {
        let (consistency, min_applied_index) = consistency_to_proto(request.consistency);
        pb::ReadRequest {
            topic: request.topic,
            partition: request.partition,
            from_offset: request.from_offset,
            max_records: request.max_records,
            max_bytes: request.max_bytes,
            wait_ms: request.wait_ms,
            consistency,
            min_applied_index,
        }
    }
}

impl From<ReadBatch> for pb::ReadResponse {
    fn from(batch: ReadBatch) -> pb::ReadResponse {
        pb::ReadResponse {
            records: stored_records_to_proto(batch.records),
            high_watermark: batch.high_watermark,
            log_start_offset: batch.log_start_offset,
            next_offset: batch.next_offset,
        }
    }
}

impl From<pb::ReadResponse> for ReadBatch {
    fn from(response: pb::ReadResponse) -> ReadBatch {
        ReadBatch {
            records: stored_records_from_proto(response.records),
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
            next_offset: response.next_offset,
        }
    }
}

impl From<pb::SubscribeRequest> for SubscribeRequest {
    fn from(request: pb::SubscribeRequest) -> SubscribeRequest {
        use pb::subscribe_request::Start;
        let start = match request.start {
            None | Some(Start::Earliest(_)) => StartPosition::Earliest,
            Some(Start::Latest(_)) => StartPosition::Latest,
            Some(Start::Offset(offset)) => StartPosition::Offset(offset),
            Some(Start::TimestampMs(timestamp_ms)) => StartPosition::TimestampMs(timestamp_ms),
        };
        SubscribeRequest {
            topic: request.topic,
            partition: request.partition,
            start,
            max_bytes_per_message: request.max_bytes_per_message,
            consistency: consistency(request.consistency, request.min_applied_index),
        }
    }
}

impl From<SubscribeRequest> for pb::SubscribeRequest {
    fn from(request: SubscribeRequest) -> pb::SubscribeRequest {
        use pb::subscribe_request::Start;
        let start = match request.start {
            StartPosition::Earliest => Start::Earliest(true),
            StartPosition::Latest => Start::Latest(true),
            StartPosition::Offset(offset) => Start::Offset(offset),
            StartPosition::TimestampMs(timestamp_ms) => Start::TimestampMs(timestamp_ms),
        };
        let (consistency, min_applied_index) = consistency_to_proto(request.consistency);
        pb::SubscribeRequest {
            topic: request.topic,
            partition: request.partition,
            start: Some(start),
            max_bytes_per_message: request.max_bytes_per_message,
            consistency,
            min_applied_index,
        }
    }
}

impl From<SubscribeBatch> for pb::SubscribeResponse {
    fn from(batch: SubscribeBatch) -> pb::SubscribeResponse {
        pb::SubscribeResponse { records: stored_records_to_proto(batch.records), high_watermark: batch.high_watermark }
    }
}

impl From<pb::SubscribeResponse> for SubscribeBatch {
    fn from(response: pb::SubscribeResponse) -> SubscribeBatch {
        SubscribeBatch { records: stored_records_from_proto(response.records), high_watermark: response.high_watermark }
    }
}

impl From<pb::OffsetForTimestampRequest> for OffsetForTimestampRequest {
    fn from(request: pb::OffsetForTimestampRequest) -> OffsetForTimestampRequest {
        OffsetForTimestampRequest {
            topic: request.topic,
            partition: request.partition,
            timestamp_ms: request.timestamp_ms,
        }
    }
}

impl From<OffsetForTimestampRequest> for pb::OffsetForTimestampRequest {
    fn from(request: OffsetForTimestampRequest) -> pb::OffsetForTimestampRequest {
        pb::OffsetForTimestampRequest {
            topic: request.topic,
            partition: request.partition,
            timestamp_ms: request.timestamp_ms,
        }
    }
}

impl From<pb::CreateTopicRequest> for CreateTopicRequest {
    fn from(request: pb::CreateTopicRequest) -> CreateTopicRequest {
        CreateTopicRequest {
            name: request.name,
            partitions: request.partitions,
            replication_factor: request.replication_factor,
            retention_ms: request.retention_ms,
            retention_bytes: request.retention_bytes,
        }
    }
}

impl From<CreateTopicRequest> for pb::CreateTopicRequest {
    fn from(request: CreateTopicRequest) -> pb::CreateTopicRequest {
        pb::CreateTopicRequest {
            name: request.name,
            partitions: request.partitions,
            replication_factor: request.replication_factor,
            retention_ms: request.retention_ms,
            retention_bytes: request.retention_bytes,
        }
    }
}

impl From<TopicDescription> for pb::TopicDescription {
    fn from(topic: TopicDescription) -> pb::TopicDescription {
        pb::TopicDescription {
            name: topic.name,
            replication_factor: topic.replication_factor,
            retention_ms: topic.retention_ms,
            retention_bytes: topic.retention_bytes,
            partitions: topic
                .partitions
                .into_iter()
                .map(|p| pb::PartitionDescription {
                    partition: p.partition,
                    group_id: p.group_id,
                    replicas: p.replicas,
                    leader: p.leader,
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                })
                .collect(),
        }
    }
}

/// The description another node answered (empty if it sent none).
pub fn topic_description(topic: Option<pb::TopicDescription>) -> TopicDescription {
    let topic = topic.unwrap_or_default();
    TopicDescription {
        name: topic.name,
        replication_factor: topic.replication_factor,
        retention_ms: topic.retention_ms,
        retention_bytes: topic.retention_bytes,
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionDescription {
                partition: p.partition,
                group_id: p.group_id,
                replicas: p.replicas,
                leader: p.leader,
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
            })
            .collect(),
    }
}

pub fn topic_summary(topic: TopicMeta) -> pb::TopicSummary {
    pb::TopicSummary {
        name: topic.name,
        partitions: topic.config.partition_count,
        replication_factor: topic.config.replication_factor,
    }
}

impl From<pb::MovePartitionRequest> for MovePartitionRequest {
    fn from(request: pb::MovePartitionRequest) -> MovePartitionRequest {
        MovePartitionRequest {
            topic: request.topic,
            partition: request.partition,
            from_node: request.from_node,
            to_node: request.to_node,
        }
    }
}

impl From<MovePartitionRequest> for pb::MovePartitionRequest {
    fn from(request: MovePartitionRequest) -> pb::MovePartitionRequest {
        pb::MovePartitionRequest {
            topic: request.topic,
            partition: request.partition,
            from_node: request.from_node,
            to_node: request.to_node,
        }
    }
}

impl From<RebalanceAnswer> for pb::RebalanceResponse {
    fn from(answer: RebalanceAnswer) -> pb::RebalanceResponse {
        pb::RebalanceResponse {
            moves: answer
                .moves
                .into_iter()
                .map(|m| pb::PlannedMove {
                    topic: m.topic,
                    partition: m.partition,
                    from_node: m.from_node,
                    to_node: m.to_node,
                    leader: m.leader,
                })
                .collect(),
            leaders: answer
                .leaders
                .into_iter()
                .map(|l| pb::PlannedLeader {
                    topic: l.topic,
                    partition: l.partition,
                    from_node: l.from_node,
                    to_node: l.to_node,
                })
                .collect(),
            operation_ids: answer.operation_ids,
        }
    }
}

impl From<pb::RebalanceResponse> for RebalanceAnswer {
    fn from(response: pb::RebalanceResponse) -> RebalanceAnswer {
        RebalanceAnswer {
            moves: response
                .moves
                .into_iter()
                .map(|m| PlannedMove {
                    topic: m.topic,
                    partition: m.partition,
                    from_node: m.from_node,
                    to_node: m.to_node,
                    leader: m.leader,
                })
                .collect(),
            leaders: response
                .leaders
                .into_iter()
                .map(|l| PlannedLeader {
                    topic: l.topic,
                    partition: l.partition,
                    from_node: l.from_node,
                    to_node: l.to_node,
                })
                .collect(),
            operation_ids: response.operation_ids,
        }
    }
}

pub fn operation_status(op: &Operation) -> pb::OperationStatus {
    let mut status = pb::OperationStatus {
        id: op.id,
        phase: op.phase.name().to_owned(),
        bytes_copied: op.bytes_copied,
        bytes_total: op.bytes_total,
        created_ms: op.created_ms,
        detail: op.detail.clone(),
        ..Default::default()
    };
    match &op.kind {
        OperationKind::Move(m) => {
            status.kind = "move".into();
            status.topic = m.topic.clone();
            status.partition = m.partition;
            status.from_node = m.from;
            status.to_node = m.to;
        }
        OperationKind::Decommission { node } => {
            status.kind = "decommission".into();
            status.node_id = *node;
        }
    }
    status
}

impl From<ClusterStatus> for pb::ClusterStatusResponse {
    fn from(status: ClusterStatus) -> pb::ClusterStatusResponse {
        pb::ClusterStatusResponse {
            node_id: status.node_id,
            nodes: status
                .nodes
                .into_iter()
                .map(|n| pb::NodeStatus { node_id: n.node_id, address: n.address, live: n.live })
                .collect(),
            groups: status.groups.into_iter().map(group_status).collect(),
            cluster: status.cluster,
            operations: status.operations.iter().map(operation_status).collect(),
        }
    }
}

fn group_status(group: GroupStatus) -> pb::GroupStatus {
    pb::GroupStatus {
        group_id: group.group_id,
        topic: group.topic,
        partition: group.partition,
        leader: group.leader,
        term: group.term,
        voters: group.voters,
        committed_index: group.committed_index,
        applied_index: group.applied_index,
        high_watermark: group.high_watermark,
        state: group.state.to_owned(),
        replica_lag: group
            .replica_lag
            .into_iter()
            .map(|lag| pb::ReplicaLag {
                node_id: lag.node_id,
                matched_index: lag.matched_index,
                lag_entries: lag.lag_entries,
            })
            .collect(),
    }
}
