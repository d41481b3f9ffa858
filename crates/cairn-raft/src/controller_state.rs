use std::collections::{BTreeMap, BTreeSet};

use cairn_types::{GroupId, NodeId, PartitionId, TopicConfig};
use serde::{Deserialize, Serialize};

use crate::command::{ControllerCommand, ControllerError};

/// Cluster metadata, replicated by the controller group. Small: bounded by the topic and
/// partition limits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControllerState {
    pub nodes: BTreeMap<NodeId, String>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// The next Raft group id to hand out. Group ids are never reused.
    pub next_group_id: GroupId,
    /// The next producer id to hand out (ids start at 1). Never reused.
    #[serde(default)]
    pub next_producer_id: u64,
    /// Nodes removed from the cluster: never placed on, even while still controller members
    /// (their membership change may not have happened yet), and never registered again:
    /// node ids are not reused, so a new machine cannot take over a removed node's replicas
    /// with an empty disk.
    #[serde(default)]
    pub removed: BTreeSet<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<PartitionAssignment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionAssignment {
    pub partition: PartitionId,
    pub group_id: GroupId,
    /// The nodes that hold a replica; the first one bootstraps the group.
    pub replicas: Vec<NodeId>,
}

#[derive(Debug, Clone)]
pub enum ControllerOutcome {
    Topic(Result<TopicMeta, ControllerError>),
    TopicDeleted(Result<(), ControllerError>),
    NodeRegistered,
    ProducerId(u64),
    NodeRemoved(Result<u32, ControllerError>),
}

impl ControllerState {
    /// Applies `command`. `members` are the controller group's members at this entry
    /// (replicated state, so every replica passes the same): they can hold replicas even
    /// before their registration is applied.
    pub fn apply(&mut self, command: &ControllerCommand, members: &BTreeMap<NodeId, String>) -> ControllerOutcome {
        match command {
            // A removed id stays removed: ids are never reused.
            ControllerCommand::RegisterNode { node_id, .. } if self.removed.contains(node_id) => {
                ControllerOutcome::NodeRegistered
            }
            ControllerCommand::RegisterNode { node_id, address } => {
                self.nodes.insert(*node_id, address.clone());
                ControllerOutcome::NodeRegistered
            }
            ControllerCommand::CreateTopic { name, config, topics_max } => {
                ControllerOutcome::Topic(self.create_topic(name, config, *topics_max, members))
            }
            ControllerCommand::AllocateProducerId => {
                let id = self.next_producer_id.max(1);
                self.next_producer_id = id + 1;
                ControllerOutcome::ProducerId(id)
            }
            ControllerCommand::DeleteTopic { name } => ControllerOutcome::TopicDeleted(
                self.topics.remove(name).map(|_| ()).ok_or_else(|| ControllerError::TopicNotFound(name.clone())),
            ),
            ControllerCommand::AddPartitions { name, partition_count } => {
                ControllerOutcome::Topic(self.add_partitions(name, *partition_count, members))
            }
            ControllerCommand::RemoveNode { node_id, force } => {
                ControllerOutcome::NodeRemoved(self.remove_node(*node_id, *force, members))
            }
        }
    }

    /// Deregisters `node`; the caller then removes it from the controller group.
    fn remove_node(
        &mut self,
        node: NodeId,
        force: bool,
        members: &BTreeMap<NodeId, String>,
    ) -> Result<u32, ControllerError> {
        if !self.all_nodes(members).contains_key(&node) {
            return Err(ControllerError::NodeNotFound(node));
        }
        let replicas = self.groups_of(node).count() as u32;
        if replicas > 0 && !force {
            return Err(ControllerError::NodeHoldsReplicas { node, replicas });
        }
        self.nodes.remove(&node);
        self.removed.insert(node);
        Ok(replicas)
    }

    fn create_topic(
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
    fn add_partitions(
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
        let nodes: Vec<NodeId> = self.all_nodes(members).into_keys().collect();
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
                PartitionAssignment { partition, group_id, replicas }
            })
            .collect())
    }

    /// Whether `producer_id` was handed out by this controller.
    pub fn knows_producer(&self, producer_id: u64) -> bool {
        producer_id >= 1 && producer_id < self.next_producer_id
    }

    /// Registered nodes and controller members, with their addresses; removed nodes are
    /// left out.
    pub fn all_nodes(&self, members: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, String> {
        let mut nodes = members.clone();
        nodes.extend(self.nodes.iter().map(|(id, address)| (*id, address.clone())));
        nodes.retain(|id, _| !self.removed.contains(id));
        nodes
    }

    /// Every partition group `node` holds a replica of.
    pub fn groups_of(&self, node: NodeId) -> impl Iterator<Item = (&TopicMeta, &PartitionAssignment)> {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions.iter().map(move |p| (topic, p)))
            .filter(move |(_, p)| p.replicas.contains(&node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(partitions: u32, rf: u32) -> TopicConfig {
        TopicConfig { partition_count: partitions, replication_factor: rf, retention_ms: None, retention_bytes: None }
    }

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
    fn remove_node_refuses_while_it_holds_replicas_unless_forced() {
        let mut state = ControllerState::default();
        let members = BTreeMap::from([(1, "a".to_string()), (2, "b".to_string()), (3, "c".to_string())]);
        state.apply(&ControllerCommand::RegisterNode { node_id: 4, address: "d".into() }, &members);
        state.apply(
            &ControllerCommand::CreateTopic { name: "t".into(), config: config(1, 3), topics_max: 10 },
            &members,
        );
        let holder = state.topics["t"].partitions[0].replicas[0];
        let remove = |state: &mut ControllerState, node_id, force| match state
            .apply(&ControllerCommand::RemoveNode { node_id, force }, &members)
        {
            ControllerOutcome::NodeRemoved(result) => result,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(remove(&mut state, 9, false), Err(ControllerError::NodeNotFound(9)));
        assert_eq!(
            remove(&mut state, holder, false),
            Err(ControllerError::NodeHoldsReplicas { node: holder, replicas: 1 })
        );
        let idle = (1..=4).find(|n| !state.topics["t"].partitions[0].replicas.contains(n)).expect("an idle node");
        assert_eq!(remove(&mut state, idle, false), Ok(0));
        assert!(!state.all_nodes(&members).contains_key(&idle), "a removed node is never placed on");
        assert_eq!(remove(&mut state, holder, true), Ok(1));
        let created = state.apply(
            &ControllerCommand::CreateTopic { name: "u".into(), config: config(1, 3), topics_max: 10 },
            &members,
        );
        assert!(
            matches!(created, ControllerOutcome::Topic(Err(ControllerError::NotEnoughNodes { nodes: 2, .. }))),
            "{created:?}"
        );
        state.apply(&ControllerCommand::RegisterNode { node_id: idle, address: "again".into() }, &members);
        assert!(!state.all_nodes(&members).contains_key(&idle), "a removed id never comes back");
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
