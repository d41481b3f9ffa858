//! A member of a consumer group: it joins, keeps its session alive with heartbeats from a
//! background task, consumes the partitions the group assigns it, commits the positions of
//! what the application has polled, and hands partitions over when the group rebalances.
//!
//! Delivery is at least once. `poll` returns batches of records of the partitions this
//! member owns; `commit` records, for each, the offset after the last record polled. A
//! partition the group moves to another member is released inside `poll`: its fetching
//! stops, its position is committed and the partition released in one call, so the next
//! owner starts exactly after the last record this member returned. A member expired (no
//! heartbeat within its session timeout) joins again with the same member id; what it had
//! polled but not committed is consumed again by the partitions' new owners.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_types::{Offset, StoredRecord};
use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::proto::{self, group_request::Call};
use crate::{CairnClient, ClientError, StartPosition};

/// A topic's partition, as groups name them.
pub type GroupPartition = (String, u32);

#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub group: String,
    pub topics: Vec<String>,
    /// Chosen once per consumer; `None`: the client id and a random UUID.
    pub member_id: Option<String>,
    pub client_id: String,
    /// "cooperative-sticky" or "range"; every member of a group uses the same.
    pub assignor: String,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub rebalance_timeout: Duration,
    /// Where to start a partition the group has no position for.
    pub start_without_position: StartPosition,
    /// Batches fetched ahead of `poll`, over all partitions.
    pub buffered_batches: usize,
}

impl GroupConsumerConfig {
    pub fn new(group: impl Into<String>, topics: Vec<String>) -> GroupConsumerConfig {
        GroupConsumerConfig {
            group: group.into(),
            topics,
            member_id: None,
            client_id: "cairn-client".to_string(),
            assignor: "cooperative-sticky".to_string(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            rebalance_timeout: Duration::from_secs(30),
            start_without_position: StartPosition::Earliest,
            buffered_batches: 16,
        }
    }
}

/// Records of one partition, in offset order.
#[derive(Debug, Clone)]
pub struct GroupRecords {
    pub topic: String,
    pub partition: u32,
    pub records: Vec<StoredRecord>,
}

/// What the group last told this member.
#[derive(Debug, Clone, Default)]
struct Membership {
    generation: u64,
    owned: BTreeSet<GroupPartition>,
    revoking: BTreeSet<GroupPartition>,
    /// Committed positions of owned and revoking partitions.
    positions: BTreeMap<GroupPartition, Offset>,
    /// Counts the joins: a new one means the member was expired and everything it owned
    /// went to others meanwhile.
    joins: u64,
}

struct Fetcher {
    incarnation: u64,
    task: JoinHandle<()>,
}

type Fetched = (GroupPartition, u64, Result<Vec<StoredRecord>, ClientError>);

pub struct GroupConsumer {
    client: CairnClient,
    config: GroupConsumerConfig,
    member_id: String,
    membership: Membership,
    /// Joins so far, counted by whoever joins again (this consumer or its heartbeat task).
    joins: Arc<AtomicU64>,
    updates: watch::Receiver<Membership>,
    heartbeat: JoinHandle<()>,
    fetchers: BTreeMap<GroupPartition, Fetcher>,
    fetched_tx: mpsc::Sender<Fetched>,
    fetched_rx: mpsc::Receiver<Fetched>,
    next_incarnation: u64,
    /// The offset after the last record `poll` returned, per fetched partition.
    positions: BTreeMap<GroupPartition, Offset>,
    committed: BTreeMap<GroupPartition, Offset>,
    /// A release could not be sent (the coordinator was unreachable): try again.
    release_pending: bool,
}

impl GroupConsumer {
    /// Joins the group and starts heartbeating.
    pub async fn join(client: CairnClient, config: GroupConsumerConfig) -> Result<GroupConsumer, ClientError> {
        let member_id =
            config.member_id.clone().unwrap_or_else(|| format!("{}-{}", config.client_id, uuid::Uuid::new_v4()));
        let mut membership = membership_of(&join(&client, &config, &member_id).await?);
        membership.joins = 1;
        let joins = Arc::new(AtomicU64::new(1));
        let (sender, updates) = watch::channel(membership.clone());
        let task = heartbeats(client.clone(), config.clone(), member_id.clone(), Arc::clone(&joins), sender);
        let heartbeat = tokio::spawn(task);
        let (fetched_tx, fetched_rx) = mpsc::channel(config.buffered_batches.max(1));
        let mut consumer = GroupConsumer {
            client,
            config,
            member_id,
            membership: Membership::default(),
            joins,
            updates,
            heartbeat,
            fetchers: BTreeMap::new(),
            fetched_tx,
            fetched_rx,
            next_incarnation: 0,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            release_pending: false,
        };
        consumer.reconcile(membership).await?;
        Ok(consumer)
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation this member last heard of.
    pub fn generation(&self) -> u64 {
        self.membership.generation
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<GroupPartition> {
        self.membership.owned.iter().cloned().collect()
    }

    /// The next batch of records of a partition this member owns, waiting up to `timeout`;
    /// `None` when none came. Handles rebalances on the way (see the module's doc).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Option<GroupRecords>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.updates.has_changed().unwrap_or(false) {
                let membership = self.updates.borrow_and_update().clone();
                self.reconcile(membership).await?;
            } else if self.release_pending {
                self.reconcile(self.membership.clone()).await?;
            }
            tokio::select! {
                fetched = self.fetched_rx.recv() => {
                    let Some((partition, incarnation, result)) = fetched else { continue };
                    if self.fetchers.get(&partition).map(|f| f.incarnation) != Some(incarnation) {
                        continue;
                    }
                    match result {
                        Ok(records) => {
                            let Some(last) = records.last() else { continue };
                            self.positions.insert(partition.clone(), last.offset + 1);
                            let (topic, partition) = partition;
                            return Ok(Some(GroupRecords { topic, partition, records }));
                        }
                        Err(err) => {
                            // Its subscription gave up (the retry policy ran out): start it
                            // again from the last position polled.
                            tracing::warn!(topic = %partition.0, partition = partition.1, error = %err, "group fetch failed; restarting");
                            if let Some(fetcher) = self.fetchers.remove(&partition) {
                                fetcher.task.abort();
                            }
                            self.start_fetchers();
                        }
                    }
                }
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        return Err(ClientError::InvalidResponse("the group heartbeat task ended".into()));
                    }
                    // `changed` marked the update seen: reconcile with it here.
                    let membership = self.updates.borrow_and_update().clone();
                    self.reconcile(membership).await?;
                }
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    /// Moves the position of a partition this member owns to `offset`: the next `poll`
    /// returns its records from there, and `commit` records it. Ignored for a partition it
    /// does not own.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: Offset) {
        let key = (topic.to_string(), partition);
        if !self.membership.owned.contains(&key) {
            return;
        }
        if let Some(fetcher) = self.fetchers.remove(&key) {
            fetcher.task.abort();
        }
        self.positions.insert(key, offset);
        self.start_fetchers();
    }

    /// Commits, for every partition this member owns, the offset after the last record
    /// `poll` returned; answers the positions it committed (none when nothing was new). A
    /// commit refused because the group rebalanced meanwhile is sent again at the new
    /// generation for the partitions still owned.
    pub async fn commit(&mut self) -> Result<Vec<(GroupPartition, Offset)>, ClientError> {
        for _ in 0..3 {
            let positions: Vec<proto::GroupPosition> = self
                .positions
                .iter()
                .filter(|(partition, offset)| {
                    self.membership.owned.contains(*partition) && self.committed.get(*partition) != Some(*offset)
                })
                .map(|((topic, partition), offset)| position(topic, *partition, *offset))
                .collect();
            if positions.is_empty() {
                return Ok(Vec::new());
            }
            match self.commit_call(positions.clone(), Vec::new()).await {
                Ok(()) => {
                    let committed: Vec<(GroupPartition, Offset)> =
                        positions.into_iter().map(|p| ((p.topic, p.partition), p.offset)).collect();
                    self.committed.extend(committed.iter().cloned());
                    return Ok(committed);
                }
                Err(ClientError::GroupRefused { code, .. }) if is_rebalance(code) => {
                    let answer = self.client.group_call(&self.config.group, self.heartbeat_call()).await;
                    match answer {
                        Ok(answer) => {
                            let membership =
                                Membership { joins: self.joins.load(Ordering::SeqCst), ..membership_of(&answer) };
                            self.reconcile(membership).await?;
                        }
                        Err(ClientError::GroupRefused { code: proto::GroupRefusalCode::UnknownMember, .. }) => {
                            self.rejoin().await?;
                        }
                        Err(err) => return Err(err),
                    }
                }
                Err(ClientError::GroupRefused { code: proto::GroupRefusalCode::UnknownMember, .. }) => {
                    self.rejoin().await?;
                    return Ok(Vec::new());
                }
                Err(err) => return Err(err),
            }
        }
        Ok(Vec::new())
    }

    /// Commits what was polled, leaves the group (its partitions go to the other members at
    /// once) and stops.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        let committed = self.commit().await;
        self.stop_tasks();
        let leave = Call::Leave(proto::LeaveGroup { member_id: self.member_id.clone() });
        self.client.group_call(&self.config.group, leave).await?;
        committed.map(|_| ())
    }

    fn heartbeat_call(&self) -> Call {
        Call::Heartbeat(proto::GroupHeartbeat { member_id: self.member_id.clone() })
    }

    async fn commit_call(
        &self,
        positions: Vec<proto::GroupPosition>,
        release: Vec<proto::GroupTopicPartition>,
    ) -> Result<(), ClientError> {
        let commit = Call::Commit(proto::CommitPositions {
            member_id: self.member_id.clone(),
            generation: self.membership.generation,
            positions,
            release,
        });
        self.client.group_call(&self.config.group, commit).await.map(|_| ())
    }

    /// Expired: everything it had went to others. Join again with the same member id.
    async fn rejoin(&mut self) -> Result<(), ClientError> {
        let answer = join(&self.client, &self.config, &self.member_id).await?;
        let joins = self.joins.fetch_add(1, Ordering::SeqCst) + 1;
        self.reconcile(Membership { joins, ..membership_of(&answer) }).await
    }

    /// Brings fetching in line with `membership`: releases revoked partitions (committing
    /// their final position), stops what is no longer owned, starts what newly is.
    async fn reconcile(&mut self, membership: Membership) -> Result<(), ClientError> {
        if membership.joins != self.membership.joins {
            // A new join: nothing of before is ours any more.
            self.drop_all();
        }
        self.membership = membership;
        let held: BTreeSet<GroupPartition> = self.membership.owned.union(&self.membership.revoking).cloned().collect();
        for partition in self.fetchers.keys().filter(|p| !held.contains(*p)).cloned().collect::<Vec<_>>() {
            self.stop(&partition);
        }
        let revoking: Vec<GroupPartition> = self.membership.revoking.iter().cloned().collect();
        if !revoking.is_empty() {
            for partition in &revoking {
                if let Some(fetcher) = self.fetchers.remove(partition) {
                    fetcher.task.abort();
                }
            }
            let positions = revoking
                .iter()
                .filter_map(|p| self.positions.get(p).map(|offset| position(&p.0, p.1, *offset)))
                .collect();
            let release = revoking
                .iter()
                .map(|(topic, partition)| proto::GroupTopicPartition { topic: topic.clone(), partition: *partition })
                .collect();
            self.release_pending = false;
            match self.commit_call(positions, release).await {
                // Released; or the group moved on meanwhile and it is no longer ours.
                Ok(()) | Err(ClientError::GroupRefused { .. }) => {}
                Err(err) => {
                    // The coordinator is unreachable: keep the positions and try again
                    // from the next poll (its fetching stays stopped).
                    tracing::warn!(group = %self.config.group, error = %err, "release failed; retrying");
                    self.release_pending = true;
                    self.start_fetchers();
                    return Ok(());
                }
            }
            for partition in &revoking {
                self.stop(partition);
                self.membership.revoking.remove(partition);
            }
        }
        self.start_fetchers();
        Ok(())
    }

    fn start_fetchers(&mut self) {
        let owned: Vec<GroupPartition> = self.membership.owned.iter().cloned().collect();
        for partition in owned {
            if self.fetchers.contains_key(&partition) {
                continue;
            }
            let start = match self.positions.get(&partition).or(self.membership.positions.get(&partition)) {
                Some(offset) => StartPosition::Offset(*offset),
                None => self.config.start_without_position,
            };
            if let Some(offset) = self.membership.positions.get(&partition) {
                self.committed.insert(partition.clone(), *offset);
            }
            self.next_incarnation += 1;
            let incarnation = self.next_incarnation;
            let (client, sender, key) = (self.client.clone(), self.fetched_tx.clone(), partition.clone());
            let task = tokio::spawn(async move {
                let mut records = std::pin::pin!(client.subscribe(&key.0, key.1, start));
                while let Some(batch) = records.next().await {
                    let failed = batch.is_err();
                    if sender.send((key.clone(), incarnation, batch)).await.is_err() || failed {
                        return;
                    }
                }
            });
            self.fetchers.insert(partition, Fetcher { incarnation, task });
        }
    }

    fn stop(&mut self, partition: &GroupPartition) {
        if let Some(fetcher) = self.fetchers.remove(partition) {
            fetcher.task.abort();
        }
        self.positions.remove(partition);
        self.committed.remove(partition);
    }

    fn drop_all(&mut self) {
        for (_, fetcher) in std::mem::take(&mut self.fetchers) {
            fetcher.task.abort();
        }
        self.positions.clear();
        self.committed.clear();
    }

    fn stop_tasks(&mut self) {
        self.heartbeat.abort();
        self.drop_all();
    }
}

impl Drop for GroupConsumer {
    /// Stops heartbeating without leaving: the group expires this member after its session
    /// timeout (as when its process dies).
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

fn is_rebalance(code: proto::GroupRefusalCode) -> bool {
    matches!(code, proto::GroupRefusalCode::StaleGeneration | proto::GroupRefusalCode::NotOwned)
}

fn position(topic: &str, partition: u32, offset: Offset) -> proto::GroupPosition {
    proto::GroupPosition { topic: topic.to_string(), partition, offset, metadata: String::new(), committed_at_ms: 0 }
}

async fn join(
    client: &CairnClient,
    config: &GroupConsumerConfig,
    member_id: &str,
) -> Result<proto::GroupResponse, ClientError> {
    let join = Call::Join(proto::JoinGroup {
        member_id: member_id.to_string(),
        client_id: config.client_id.clone(),
        topics: config.topics.clone(),
        assignor: config.assignor.clone(),
        session_timeout_ms: millis(config.session_timeout),
        rebalance_timeout_ms: millis(config.rebalance_timeout),
    });
    client.group_call(&config.group, join).await
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn membership_of(response: &proto::GroupResponse) -> Membership {
    let partitions = |list: &[proto::GroupTopicPartition]| -> BTreeSet<GroupPartition> {
        list.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect()
    };
    let assignment = response.assignment.clone().unwrap_or_default();
    Membership {
        generation: response.generation,
        owned: partitions(&assignment.owned),
        revoking: partitions(&assignment.revoking),
        positions: response.positions.iter().map(|p| ((p.topic.clone(), p.partition), p.offset)).collect(),
        joins: 0,
    }
}

/// Sends a heartbeat every `heartbeat_interval` and publishes what the group answers; an
/// expired member joins again (same member id). Ends when the consumer is dropped.
async fn heartbeats(
    client: CairnClient,
    config: GroupConsumerConfig,
    member_id: String,
    joins: Arc<AtomicU64>,
    updates: watch::Sender<Membership>,
) {
    let heartbeat = Call::Heartbeat(proto::GroupHeartbeat { member_id: member_id.clone() });
    loop {
        tokio::time::sleep(config.heartbeat_interval).await;
        let answer = match client.group_call(&config.group, heartbeat.clone()).await {
            Err(ClientError::GroupRefused { code: proto::GroupRefusalCode::UnknownMember, .. }) => {
                tracing::info!(group = %config.group, %member_id, "expired from the group; joining again");
                let answer = join(&client, &config, &member_id).await;
                if answer.is_ok() {
                    joins.fetch_add(1, Ordering::SeqCst);
                }
                answer
            }
            answer => answer,
        };
        match answer {
            Ok(answer) => {
                let membership = Membership { joins: joins.load(Ordering::SeqCst), ..membership_of(&answer) };
                let changed = {
                    let current = updates.borrow();
                    current.generation != membership.generation
                        || current.owned != membership.owned
                        || current.revoking != membership.revoking
                        || current.joins != membership.joins
                };
                if changed && updates.send(membership).is_err() {
                    return;
                }
            }
            Err(err) => tracing::debug!(group = %config.group, error = %err, "heartbeat failed; trying again"),
        }
        if updates.is_closed() {
            return;
        }
    }
}
