//! Topic placement: creating a topic, growing it, deleting it, and choosing a partition's
//! preferred leader. New partitions get fresh group ids and `replication_factor` distinct
//! placeable nodes, spread round-robin so that leaders spread too.

use std::collections::BTreeMap;

use cairn_types::{NodeId, PartitionId, TopicConfig};

use super::error::ControllerError;
use super::operation::Phase;
use super::state::ControllerState;
use super::topic::{PartitionAssignment, TopicMeta, prefer};

impl ControllerState {
    pub(super) fn create_topic(
        &mut self,
        name: &str,
        config: &TopicConfig,
        topics_max: usize,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<TopicMeta, ControllerError> {
        if self.topics.contains_key(name) {
            return Err(ControllerError::TopicExists(name.to_owned()));
        }
        if self.topics.len() >= topics_max {
            return Err(ControllerError::TooManyTopics { max: topics_max });
        }
        let partitions = self.place(0..config.partition_count, config.replication_factor, members)?;
        let topic = TopicMeta { name: name.to_owned(), config: config.clone(), partitions };
        self.topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    /// Grows `name` to `partition_count` partitions, placed like a new topic's; existing
    /// partitions (their groups, replicas and records) are untouched.
    pub(super) fn add_partitions(
        &mut self,
        name: &str,
        partition_count: u32,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<TopicMeta, ControllerError> {
        let topic = self.topics.get(name).ok_or_else(|| ControllerError::TopicNotFound(name.to_owned()))?;
        let current = topic.config.partition_count;
        if partition_count <= current {
            return Err(ControllerError::PartitionsCanOnlyGrow {
                topic: name.to_owned(),
                current,
                requested: partition_count,
            });
        }
        let replication_factor = topic.config.replication_factor;
        let added = self.place(current..partition_count, replication_factor, members)?;
        let topic = self.topics.get_mut(name).ok_or_else(|| ControllerError::TopicNotFound(name.to_owned()))?;
        topic.partitions.extend(added);
        topic.config.partition_count = partition_count;
        Ok(topic.clone())
    }

    /// Assignments for `partitions`: `replication_factor` distinct nodes each, spread
    /// round-robin (so initial leaders, the first replicas, spread too), starting after the
    /// replicas already placed so that topics do not pile onto one node. Fresh group ids.
    fn place(
        &mut self,
        partitions: std::ops::Range<u32>,
        replication_factor: u32,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<Vec<PartitionAssignment>, ControllerError> {
        let nodes: Vec<NodeId> = self.placeable_nodes(members).into_keys().collect();
        let rf = replication_factor as usize;
        if rf == 0 || rf > nodes.len() {
            return Err(ControllerError::NotEnoughNodes { requested: replication_factor, nodes: nodes.len() });
        }
        let placed: usize = self.topics.values().map(|t| t.partitions.len()).sum();
        Ok(partitions
            .enumerate()
            .map(|(n, partition)| {
                let first = (placed + n) % nodes.len();
                let replicas = (0..rf).map(|r| nodes[(first + r) % nodes.len()]).collect();
                let group_id = self.next_group_id.max(1);
                self.next_group_id = group_id + 1;
                PartitionAssignment { partition, group_id, replicas, operation: None, reassigned: false }
            })
            .collect())
    }

    pub(super) fn delete_topic(&mut self, name: &str) -> Result<(), ControllerError> {
        let topic = self.topics.remove(name).ok_or_else(|| ControllerError::TopicNotFound(name.to_owned()))?;
        for id in topic.partitions.iter().filter_map(|p| p.operation) {
            if let Some(op) = self.operations.get_mut(&id) {
                op.phase = Phase::Cancelled;
                op.detail = "the topic was deleted".into();
            }
        }
        self.activate_queued_moves();
        self.forget_finished_operations();
        Ok(())
    }

    pub(super) fn prefer_leader(
        &mut self,
        topic: &str,
        partition: PartitionId,
        node: NodeId,
    ) -> Result<(), ControllerError> {
        let assignment = self.assignment(topic, partition)?;
        if !assignment.replicas.contains(&node) {
            return Err(ControllerError::NotAReplica { node, topic: topic.to_owned(), partition });
        }
        if let Some(operation) = assignment.operation {
            return Err(ControllerError::PartitionBusy { topic: topic.to_owned(), partition, operation });
        }
        if let Some(assignment) = self.assignment_mut(topic, partition) {
            prefer(&mut assignment.replicas, node);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_types::GroupId;

    use super::*;
    use crate::command::ControllerCommand;
    use crate::controller::apply::ControllerOutcome;
    use crate::controller::error::ControllerError;
    use crate::controller::test_support::*;

    #[test]
    fn create_topic_places_replicas_on_distinct_nodes_and_spreads_leaders() {
        let mut state = ControllerState::default();
        for node in 1..=3 {
            state.apply(
                &ControllerCommand::RegisterNode { node_id: node, address: format!("n{node}") },
                &BTreeMap::new(),
            );
        }
        let ControllerOutcome::Topic(Ok(topic)) = state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(6, 3), topics_max: 10 },
            &BTreeMap::new(),
        ) else {
            panic!("topic not created")
        };
        let mut leaders = [0; 4];
        for p in &topic.partitions {
            let mut replicas = p.replicas.clone();
            replicas.sort_unstable();
            replicas.dedup();
            assert_eq!(replicas.len(), 3);
            leaders[p.replicas[0] as usize] += 1;
        }
        assert_eq!(&leaders[1..], &[2, 2, 2]);
        let groups: Vec<GroupId> = topic.partitions.iter().map(|p| p.group_id).collect();
        assert_eq!(groups, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn controller_members_count_before_registration() {
        let mut state = ControllerState::default();
        let members = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string())]);
        let created = state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(2, 2), topics_max: 10 },
            &members,
        );
        assert!(matches!(created, ControllerOutcome::Topic(Ok(_))), "{created:?}");
    }

    #[test]
    fn partitions_grow_only_and_keep_existing_assignments() {
        let mut state = ControllerState::default();
        let members = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string()), (3, "c".to_string())]);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(2, 2), topics_max: 10 },
            &members,
        );
        let before = state.topics["t"].partitions.clone();
        let grow = |state: &mut ControllerState, partition_count| match state
            .apply(&ControllerCommand::AddPartitions { name: "t".into(), partition_count }, &members)
        {
            ControllerOutcome::Topic(result) => result,
            other => panic!("unexpected {other:?}"),
        };
        let grown = grow(&mut state, 5).expect("grows");
        assert_eq!(grown.config.partition_count, 5);
        assert_eq!(&grown.partitions[..2], &before[..], "existing partitions untouched");
        let ids: Vec<u32> = grown.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
        let groups: Vec<GroupId> = grown.partitions.iter().map(|p| p.group_id).collect();
        assert_eq!(groups, [1, 2, 3, 4, 5], "fresh group ids");
        assert!(grown.partitions.iter().all(|p| p.replicas.len() == 2));
        assert_eq!(
            grow(&mut state, 5),
            Err(ControllerError::PartitionsCanOnlyGrow { topic: "t".into(), current: 5, requested: 5 })
        );
        assert!(matches!(
            state.apply(&ControllerCommand::AddPartitions { name: "u".into(), partition_count: 3 }, &members),
            ControllerOutcome::Topic(Err(ControllerError::TopicNotFound(_)))
        ));
    }

    #[test]
    fn create_topic_errors() {
        let mut state = ControllerState::default();
        state.apply(&ControllerCommand::RegisterNode { node_id: 1, address: "n1".into() }, &BTreeMap::new());
        let create = |state: &mut ControllerState, name: &str, rf| match state.apply(
            &ControllerCommand::CreateTopic { name: name.into(), config: config(1, rf), topics_max: 2 },
            &BTreeMap::new(),
        ) {
            ControllerOutcome::Topic(result) => result.map(|_| ()),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(create(&mut state, "a", 2), Err(ControllerError::NotEnoughNodes { requested: 2, nodes: 1 }));
        assert_eq!(create(&mut state, "a", 1), Ok(()));
        assert_eq!(create(&mut state, "a", 1), Err(ControllerError::TopicExists("a".into())));
        assert_eq!(create(&mut state, "b", 1), Ok(()));
        assert_eq!(create(&mut state, "c", 1), Err(ControllerError::TooManyTopics { max: 2 }));
    }
}
