//! Topics: created, grown and deleted through the controller (forwarded to its leader),
//! listed and described from this node's view of it.

use std::time::Duration;

use cairn_raft::{CommandResponse, ControllerCommand, TopicMeta};
use cairn_types::{TopicConfig, validate_topic_name};

use crate::api::controller_leader::unexpected;
use crate::api::{AdminError, AlterTopicRequest, CairnApi, CreateTopicRequest, PartitionDescription, TopicDescription};

/// How long CreateTopic waits for the new partitions to elect leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);

impl CairnApi {
    pub async fn create_topic(&self, request: CreateTopicRequest, hops: u32) -> Result<TopicDescription, AdminError> {
        validate_topic_name(&request.name).map_err(AdminError::TopicConfig)?;
        let config = TopicConfig {
            partition_count: request.partitions,
            replication_factor: request.replication_factor.max(1),
            retention_ms: request.retention_ms,
            retention_bytes: request.retention_bytes,
        };
        // Whether there are enough nodes for the replication factor is decided by the
        // controller at apply time (committed membership), not by this node's view.
        config.validate(self.host.limits().partitions_per_topic_max, usize::MAX).map_err(AdminError::TopicConfig)?;
        let command = ControllerCommand::CreateTopic {
            name: request.name.clone(),
            config,
            topics_max: self.host.limits().topics_max,
        };
        match self.write_topic(command, hops).await? {
            Ok(topic) => Ok(topic),
            Err(leader) => self.forward.create_topic(leader, request, hops).await.map_err(AdminError::Remote),
        }
    }

    pub async fn alter_topic(&self, request: AlterTopicRequest, hops: u32) -> Result<TopicDescription, AdminError> {
        let current = self.topic(&request.name)?;
        let grown = TopicConfig { partition_count: request.partitions, ..current.config.clone() };
        grown.validate(self.host.limits().partitions_per_topic_max, usize::MAX).map_err(AdminError::TopicConfig)?;
        let command =
            ControllerCommand::AddPartitions { name: request.name.clone(), partition_count: request.partitions };
        match self.write_topic(command, hops).await? {
            Ok(topic) => Ok(topic),
            Err(leader) => self.forward.alter_topic(leader, request, hops).await.map_err(AdminError::Remote),
        }
    }

    pub async fn delete_topic(&self, name: String, hops: u32) -> Result<(), AdminError> {
        validate_topic_name(&name).map_err(AdminError::TopicConfig)?;
        if name == crate::api::GROUPS_TOPIC {
            return Err(AdminError::InternalTopic(name));
        }
        match self.controller_write(ControllerCommand::DeleteTopic { name: name.clone() }, hops).await? {
            Ok(CommandResponse::TopicDeleted(result)) => result.map_err(AdminError::Controller),
            Ok(other) => Err(unexpected(other)),
            Err(leader) => self.forward.delete_topic(leader, name, hops).await.map_err(AdminError::Remote),
        }
    }

    /// Every topic, as this node's view of the controller has it.
    pub fn list_topics(&self) -> Vec<TopicMeta> {
        self.host.controller_state().topics.values().cloned().collect()
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, AdminError> {
        Ok(self.describe(&self.topic(name)?))
    }

    /// Writes a command that creates or changes a topic, then waits until the topic's
    /// partitions with a replica here have leaders, and describes it; `Err(address)` names
    /// the controller leader to forward the request to.
    async fn write_topic(
        &self,
        command: ControllerCommand,
        hops: u32,
    ) -> Result<Result<TopicDescription, String>, AdminError> {
        match self.controller_write(command, hops).await? {
            Ok(CommandResponse::Topic(result)) => {
                let topic = result.map_err(AdminError::Controller)?;
                self.host.wait_topic_ready(&topic, TOPIC_READY_TIMEOUT).await.map_err(AdminError::Host)?;
                Ok(Ok(self.describe(&topic)))
            }
            Ok(other) => Err(unexpected(other)),
            Err(leader) => Ok(Err(leader)),
        }
    }

    fn describe(&self, topic: &TopicMeta) -> TopicDescription {
        TopicDescription {
            name: topic.name.clone(),
            replication_factor: topic.config.replication_factor,
            retention_ms: topic.config.retention_ms,
            retention_bytes: topic.config.retention_bytes,
            partitions: topic
                .partitions
                .iter()
                .map(|assignment| {
                    let local = self.host.partition(assignment.group_id);
                    let view = local.as_ref().map(|r| *r.view.borrow()).unwrap_or_default();
                    PartitionDescription {
                        partition: assignment.partition,
                        group_id: assignment.group_id,
                        replicas: assignment.replicas.clone(),
                        leader: local.as_ref().and_then(|r| r.metrics().current_leader),
                        high_watermark: view.high_watermark(),
                        log_start_offset: view.log.log_start_offset,
                    }
                })
                .collect(),
        }
    }
}
