//! The public `cairn.v1.Cairn` service.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use cairn_proto::v1 as pb;
use cairn_proto::v1::cairn_client::CairnClient;
use cairn_raft::{
    CommandResponse, ControllerCommand, Host, HostError, Operation, OperationKind, PartitionCommand, PartitionReplica,
    ProducerSequence, RebalancePlan, RpcKind, TopicMeta, Transport,
};
use cairn_storage::{PartitionLogState, ReadLimits};
use cairn_types::partitioner::partition_for_key;
use cairn_types::{PartitionId, Record, StoredRecord, TopicConfig, now_ms, validate_topic_name};
use futures::{Stream, StreamExt as _};
use openraft::ServerState;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::append_outcomes::{self, PartitionWrite, Written};
use crate::cluster_identity::ClusterIdentity;
use crate::forward::{self, Forwarder, HOPS_MAX, LEADER_WAIT, hops, is_not_leader, not_leader};
use crate::status;

/// How long CreateTopic waits for the new partitions to elect leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an append waits for this node to learn of a freshly allocated producer id.
const PRODUCER_CHECK_WAIT: Duration = Duration::from_secs(2);
/// Records returned by a read that names no limit.
const READ_RECORDS_DEFAULT: usize = 1_000;
/// Bytes returned by a read that names no limit.
const READ_BYTES_DEFAULT: usize = 1024 * 1024;
/// Messages buffered per subscription before the server waits for the client.
const SUBSCRIPTION_BUFFER: usize = 8;

pub struct CairnService {
    host: Arc<Host>,
    /// The cluster this node's data directory belongs to.
    cluster: ClusterIdentity,
    transport: Arc<dyn Transport>,
    round_robin: AtomicU32,
    subscriptions: Arc<AtomicUsize>,
    forwarder: Forwarder,
}

impl CairnService {
    pub fn new(
        host: Arc<Host>,
        transport: Arc<dyn Transport>,
        forwarder: Forwarder,
        cluster: ClusterIdentity,
    ) -> CairnService {
        CairnService {
            host,
            cluster,
            transport,
            round_robin: AtomicU32::new(0),
            subscriptions: Arc::new(AtomicUsize::new(0)),
            forwarder,
        }
    }

    fn topic(&self, name: &str) -> Result<TopicMeta, Status> {
        validate_topic_name(name).map_err(status::from_topic)?;
        self.host.topic(name).ok_or_else(|| status::topic_not_found(name))
    }

    /// Where `topic`/`partition` can be read: from the replica on this node, or else from
    /// one of the nodes that hold one (their addresses, this node's pick first).
    fn locate(&self, topic: &str, partition: PartitionId) -> Result<ReplicaAt, Status> {
        let meta = self.topic(topic)?;
        let assignment = meta
            .partitions
            .get(partition as usize)
            .ok_or_else(|| status::partition_not_found(topic, partition, meta.config.partition_count))?;
        // A replica still copying (the target of a move) is not read from until it votes.
        let state = self.host.controller_state();
        if state.serves_reads(assignment, self.host.node_id())
            && let Some(replica) = self.host.partition(assignment.group_id)
        {
            return Ok(ReplicaAt::Here(replica));
        }
        let nodes = self.host.cluster_nodes();
        let mut addresses: Vec<String> = assignment
            .replicas
            .iter()
            .filter(|&&node| node != self.host.node_id() && state.serves_reads(assignment, node))
            .filter_map(|node| nodes.get(node).cloned())
            .collect();
        if addresses.is_empty() {
            return Err(Status::unavailable(format!(
                "partition {topic}/{partition} has no reachable replica (replicas: {:?}); retry shortly",
                assignment.replicas
            )));
        }
        // Spread forwarded reads over the replicas.
        let len = addresses.len();
        addresses.rotate_left(self.round_robin.fetch_add(1, Ordering::Relaxed) as usize % len);
        Ok(ReplicaAt::Elsewhere(addresses))
    }

    /// The replica of `topic`/`partition` on this node or, when there is none here, the
    /// answer of the first node holding one that answers `call` with `request` (a replica
    /// that is down, starting or behind on the controller's state is skipped).
    async fn replica_or_forward<Req, Resp, F, Fut>(
        &self,
        topic: &str,
        partition: PartitionId,
        hops: u32,
        request: &Req,
        mut call: F,
    ) -> Result<Result<Arc<PartitionReplica>, Resp>, Status>
    where
        Req: Clone,
        F: FnMut(CairnClient<Channel>, Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<Resp, Status>>,
    {
        let addresses = match self.locate(topic, partition)? {
            ReplicaAt::Here(replica) => return Ok(Ok(replica)),
            ReplicaAt::Elsewhere(addresses) => addresses,
        };
        if hops >= HOPS_MAX {
            return Err(Status::unavailable(format!(
                "node {} holds no replica of {topic}/{partition} and the request was forwarded {hops} times \
                 already; retry shortly",
                self.host.node_id()
            )));
        }
        let mut last = None;
        for address in &addresses {
            match call(self.forwarder.client(address)?, self.forwarder.request(request.clone(), hops)).await {
                // A replica still starting, or one whose view of the controller lags (it
                // does not know the topic yet): ask the next one.
                Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::NotFound) => {
                    last = Some(status)
                }
                result => return result.map(Err),
            }
        }
        Err(last.unwrap_or_else(|| Status::unavailable("no replica of this partition answered; retry shortly")))
    }

    /// The log index this replica must have applied before it serves a read at
    /// `consistency`.
    async fn required_applied_index(
        &self,
        replica: &PartitionReplica,
        consistency: i32,
        min_applied_index: u64,
    ) -> Result<u64, Status> {
        match pb::Consistency::try_from(consistency) {
            Ok(pb::Consistency::Local) => Ok(0),
            Ok(pb::Consistency::ReadYourWrites) => Ok(min_applied_index),
            Ok(pb::Consistency::Linearizable) => self.read_index(replica).await,
            Err(_) => Err(Status::invalid_argument(format!(
                "unknown consistency {consistency}: use LOCAL (0), READ_YOUR_WRITES (1) or LINEARIZABLE (2)"
            ))),
        }
    }

    fn read_limits(&self, max_records: u32, max_bytes: u32) -> ReadLimits {
        let limits = self.host.limits();
        let max_records = if max_records == 0 { READ_RECORDS_DEFAULT } else { max_records as usize };
        let max_bytes = if max_bytes == 0 { READ_BYTES_DEFAULT } else { max_bytes as usize };
        ReadLimits {
            max_records: max_records.min(limits.read_records_max),
            max_bytes: max_bytes.min(limits.read_bytes_max),
        }
    }

    fn validate_records(&self, records: &[pb::Record]) -> Result<(), Status> {
        let limits = self.host.limits();
        if records.is_empty() {
            return Err(Status::invalid_argument("an append needs at least one record"));
        }
        if records.len() > limits.records_per_request_max {
            return Err(Status::resource_exhausted(format!(
                "{} records in one append; the limit is {} (records_per_request_max): split the batch",
                records.len(),
                limits.records_per_request_max
            )));
        }
        let mut total = 0usize;
        for (i, record) in records.iter().enumerate() {
            if record.value.len() > limits.record_value_bytes_max {
                return Err(Status::resource_exhausted(format!(
                    "record {i} has a {} byte value; the limit is {} bytes (record_value_bytes_max)",
                    record.value.len(),
                    limits.record_value_bytes_max
                )));
            }
            let key_len = record.key.as_ref().map_or(0, |k| k.len());
            if key_len > limits.record_key_bytes_max {
                return Err(Status::resource_exhausted(format!(
                    "record {i} has a {key_len} byte key; the limit is {} bytes",
                    limits.record_key_bytes_max
                )));
            }
            if record.headers.len() > limits.record_headers_max {
                return Err(Status::resource_exhausted(format!(
                    "record {i} has {} headers; the limit is {}",
                    record.headers.len(),
                    limits.record_headers_max
                )));
            }
            total += record.value.len()
                + key_len
                + record.headers.iter().map(|h| h.name.len() + h.value.len()).sum::<usize>();
        }
        if total > limits.request_bytes_max {
            return Err(Status::resource_exhausted(format!(
                "the append carries {total} bytes; the limit is {} bytes per request (request_bytes_max): split it",
                limits.request_bytes_max
            )));
        }
        Ok(())
    }

    /// Appends one partition's batch: here when this node leads the partition, else at
    /// the leader (found through the local replica, or asked of a replica). Returns the
    /// base offset and the applied index.
    async fn append_partition(
        &self,
        topic: &TopicMeta,
        partition: PartitionId,
        records: Vec<Record>,
        producer: Option<ProducerSequence>,
        hops: u32,
    ) -> Result<(u64, u64, bool), Status> {
        let assignment = &topic.partitions[partition as usize];
        let group = assignment.group_id;
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut backoff = Duration::from_millis(20);
        // The leader a forwarded attempt's "not leader" answer named: tried next.
        let mut named_leader = None;
        // The producer's later batches wait for this one while it is tried here.
        let _arrival = producer.and_then(|producer| self.host.arrive(group, producer));
        for attempt in 0usize.. {
            let target = if self.host.partition(group).is_some() {
                let command = PartitionCommand::Append { records: records.clone(), timestamp_ms: now_ms(), producer };
                match self.host.partition_write(group, command).await {
                    Ok(CommandResponse::Appended(outcome)) => {
                        return Ok((outcome.base_offset, outcome.applied_index, outcome.duplicate));
                    }
                    Ok(CommandResponse::SequenceError { producer_id, sequence, expected }) => {
                        return Err(Status::failed_precondition(format!(
                            "producer {producer_id} sent sequence {sequence} to {}/{partition}, but the next \
                             sequence there is {expected}: a gap, or a batch too old to be remembered",
                            topic.name
                        )));
                    }
                    Ok(other) => return Err(Status::internal(format!("unexpected append outcome {other:?}"))),
                    // The last hop cannot forward: it names the leader at once (nothing was
                    // proposed), and the hop before it or the client goes there.
                    Err(err @ HostError::NotLeader { leader: Some(leader), leader_address: Some(_), .. })
                        if hops >= HOPS_MAX && leader != self.host.node_id() =>
                    {
                        return Err(status::from_host(err));
                    }
                    // A replica that cannot name its leader asks the live nodes' claims, as a
                    // node without a replica does: it may be out of the group's membership (a
                    // move's source once promoted, until it leaves), and nobody tells it
                    // who leads the new voters.
                    Err(HostError::NotLeader { leader, leader_address, .. }) if leader != Some(self.host.node_id()) => {
                        leader_address.or_else(|| self.host.claimed_leader(group).map(|(_, address)| address))
                    }
                    Err(HostError::NotLeader { .. }) => None,
                    Err(err) => return Err(status::from_host(err)),
                }
            } else if hops >= HOPS_MAX {
                return Err(status::last_hop_without_replica(self.host.node_id(), &topic.name, partition, hops));
            } else {
                // No replica here: the live node that claims to lead the group, else a live
                // replica (a replica knows its leader), else any replica.
                self.host.claimed_leader(group).map(|(_, address)| address).or_else(|| {
                    let live: Vec<cairn_types::NodeId> =
                        assignment.replicas.iter().copied().filter(|node| self.host.is_node_live(*node)).collect();
                    let candidates = if live.is_empty() { &assignment.replicas } else { &live };
                    let replica = candidates[attempt % candidates.len()];
                    self.host.cluster_nodes().get(&replica).cloned()
                })
            };
            if let Some(address) = named_leader.take().or(target).filter(|_| hops < HOPS_MAX) {
                let request = pb::AppendRequest {
                    topic: topic.name.clone(),
                    partition: Some(partition),
                    records: records.iter().cloned().map(to_proto_record).collect(),
                    producer_id: producer.map(|p| p.producer_id),
                    sequence: producer.map(|p| p.sequence),
                };
                let within = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.forwarder.append(&address, request, hops, within).await {
                    Ok(response) => {
                        let base = response.positions.first().map(|p| p.offset);
                        let applied = response.tokens.first().map_or(0, |t| t.applied_index);
                        return base
                            .map(|b| (b, applied, response.duplicate))
                            .ok_or_else(|| Status::internal("forwarded append returned no offsets"));
                    }
                    // "Not leader": not proposed there, so safe to try again, at the leader
                    // it named.
                    Err(status) if is_not_leader(&status).is_some() => {
                        named_leader = is_not_leader(&status).flatten();
                    }
                    // The peer went silent (its connection was closed for an unanswered
                    // ping) or did not answer in time: the append may have been proposed
                    // there, so only one with a producer sequence, which cannot be applied
                    // twice, is tried again, at the leader the others elect meanwhile.
                    Err(status) if producer.is_some() && forward::peer_failed(&status) => {
                        tracing::debug!(%address, message = status.message(), "forwarded append failed; retrying");
                    }
                    Err(status) => return Err(status),
                }
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                break;
            }
            tokio::time::sleep(backoff).await;
            // Checking again is cheap; a new leader is usually there within a second.
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
        Err(not_leader(
            Status::unavailable(format!(
                "partition {}/{partition} has no reachable leader after {} s; retry shortly",
                topic.name,
                LEADER_WAIT.as_secs()
            )),
            None,
        ))
    }

    /// Proposes a controller command when this node leads the controller (waiting out an
    /// election), or names the leader to forward the request to.
    async fn controller_write(
        &self,
        command: ControllerCommand,
        hops: u32,
    ) -> Result<Result<CommandResponse, String>, Status> {
        self.at_controller_leader(hops, || self.host.controller_write(command.clone())).await
    }

    /// Writes a command that creates or changes a topic, then waits until the topic's
    /// partitions with a replica here have leaders, and describes it; `Err(address)` names
    /// the controller leader to forward the request to.
    async fn write_topic(
        &self,
        command: ControllerCommand,
        hops: u32,
    ) -> Result<Result<pb::TopicDescription, String>, Status> {
        match self.controller_write(command, hops).await? {
            Ok(CommandResponse::Topic(result)) => {
                let topic = result.map_err(status::from_controller)?;
                self.host.wait_topic_ready(&topic, TOPIC_READY_TIMEOUT).await.map_err(status::from_host)?;
                Ok(Ok(self.describe(&topic)))
            }
            Ok(other) => Err(Status::internal(format!("unexpected controller outcome {other:?}"))),
            Err(leader) => Ok(Err(leader)),
        }
    }

    /// Runs `operation` (which needs the controller leader) here, waiting out an election;
    /// `Err(address)` names the leader to forward the request to instead.
    async fn at_controller_leader<T, F, Fut>(&self, hops: u32, mut operation: F) -> Result<Result<T, String>, Status>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HostError>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut backoff = Duration::from_millis(20);
        loop {
            match operation().await {
                Ok(done) => return Ok(Ok(done)),
                Err(HostError::NotLeader { leader, leader_address: Some(address), .. })
                    if leader != Some(self.host.node_id()) && hops < HOPS_MAX =>
                {
                    return Ok(Err(address));
                }
                // The last hop names the leader at once instead of waiting here.
                Err(err @ HostError::NotLeader { leader: Some(leader), leader_address: Some(_), .. })
                    if leader != self.host.node_id() =>
                {
                    return Err(status::from_host(err));
                }
                Err(HostError::NotLeader { .. } | HostError::NoLeader { .. }) => {}
                Err(err) => return Err(status::from_host(err)),
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(not_leader(
                    Status::unavailable("the controller has no reachable leader; retry shortly"),
                    None,
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// The index a linearizable read must see applied: from this node if it leads the
    /// partition, else from the leader (a `ReadIndex` call), so followers serve it too.
    async fn read_index(&self, replica: &PartitionReplica) -> Result<u64, Status> {
        let group = replica.group_id;
        match self.host.read_index(group).await {
            Ok(index) => return Ok(index),
            Err(HostError::NotLeader { .. }) => {}
            Err(err) => return Err(status::from_host(err)),
        }
        let (leader, address) = self
            .host
            .partition_leader(group)
            .ok_or_else(|| Status::unavailable(format!("group {group} is electing a leader; retry shortly")))?;
        let call = self.transport.call(leader, address, group, RpcKind::ReadIndex, Vec::new());
        let reply = tokio::time::timeout(LEADER_WAIT, call)
            .await
            .map_err(|_| {
                Status::unavailable(format!("the leader of group {group} did not answer a read index request"))
            })?
            .map_err(|err| Status::unavailable(format!("read index from the leader: {err}")))?;
        let index: Result<u64, String> =
            cairn_raft::decode(&reply).map_err(|err| Status::internal(format!("read index reply: {err}")))?;
        index.map_err(|message| Status::unavailable(format!("the leader could not confirm a read index: {message}")))
    }

    /// Waits until this replica has applied `index`.
    async fn wait_applied(&self, replica: &PartitionReplica, index: u64) -> Result<(), Status> {
        let mut view = replica.view.clone();
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let applied = view.borrow_and_update().applied_index;
            if applied >= index {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, view.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Status::unavailable("the partition replica stopped; retry")),
                Err(_) => {
                    return Err(Status::unavailable(format!(
                        "this replica has applied up to index {applied}, the read needs {index}; retry or ask another node"
                    )));
                }
            }
        }
    }

    /// Refuses producer ids the controller never handed out. This node's view of the
    /// controller may lag the leader that allocated the id: wait for it briefly, then
    /// answer that it is not known yet (retryable).
    async fn check_producer(&self, producer_id: u64) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + PRODUCER_CHECK_WAIT;
        while !self.host.controller_state().knows_producer(producer_id) {
            if tokio::time::Instant::now() >= deadline {
                return Err(status::unknown_producer(producer_id, self.host.controller_state().next_producer_id));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn describe(&self, topic: &TopicMeta) -> pb::TopicDescription {
        pb::TopicDescription {
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
                    pb::PartitionDescription {
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

/// Reads on a blocking thread: RocksDB calls stay off the async workers.
async fn read_blocking(
    replica: &PartitionReplica,
    from: u64,
    state: PartitionLogState,
    limits: ReadLimits,
) -> Result<Vec<StoredRecord>, Status> {
    let log = replica.log.clone();
    tokio::task::spawn_blocking(move || log.read(from, &state, state.next_offset, limits))
        .await
        .map_err(|err| Status::internal(format!("read task failed: {err}")))?
        .map_err(status::from_storage)
}

fn to_proto(record: StoredRecord) -> pb::StoredRecord {
    pb::StoredRecord {
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        headers: record.headers.into_iter().map(|(name, value)| pb::Header { name, value }).collect(),
        value: record.value,
    }
}

fn to_proto_record(record: Record) -> pb::Record {
    pb::Record {
        key: record.key,
        headers: record.headers.into_iter().map(|(name, value)| pb::Header { name, value }).collect(),
        value: record.value,
    }
}

fn from_proto(record: pb::Record) -> Record {
    Record {
        key: record.key,
        headers: record.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        value: record.value,
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// Where a partition's reads are served.
enum ReplicaAt {
    Here(Arc<PartitionReplica>),
    /// Addresses of nodes holding a replica.
    Elsewhere(Vec<String>),
}

/// One of the node's `subscriptions_max` subscriptions, given back when dropped.
struct SubscriptionSlot(Arc<AtomicUsize>);

impl SubscriptionSlot {
    fn take(subscriptions: &Arc<AtomicUsize>, subscriptions_max: usize) -> Result<SubscriptionSlot, Status> {
        if subscriptions.fetch_add(1, Ordering::AcqRel) >= subscriptions_max {
            subscriptions.fetch_sub(1, Ordering::AcqRel);
            return Err(Status::resource_exhausted(format!(
                "this node already serves {subscriptions_max} subscriptions (subscriptions_max); retry later or use another replica"
            )));
        }
        Ok(SubscriptionSlot(Arc::clone(subscriptions)))
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[tonic::async_trait]
impl pb::cairn_server::Cairn for CairnService {
    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let topic = self.topic(&request.topic)?;
        let producer = match (request.producer_id, request.sequence) {
            (None, None) => None,
            (Some(producer_id), Some(sequence)) => {
                if request.partition.is_none() {
                    return Err(Status::invalid_argument(
                        "an idempotent append (producer_id) must name its partition: sequences count per partition",
                    ));
                }
                self.check_producer(producer_id).await?;
                Some(ProducerSequence { producer_id, sequence })
            }
            _ => return Err(Status::invalid_argument("producer_id and sequence go together")),
        };
        self.validate_records(&request.records)?;
        let partition_count = topic.config.partition_count;
        if let Some(partition) = request.partition
            && partition >= partition_count
        {
            return Err(status::partition_not_found(&topic.name, partition, partition_count));
        }
        // Unkeyed records of one request stick to one round-robin partition.
        let sticky = self.round_robin.fetch_add(1, Ordering::Relaxed) % partition_count;
        let mut by_partition: BTreeMap<PartitionId, Vec<(usize, Record)>> = BTreeMap::new();
        for (i, record) in request.records.into_iter().enumerate() {
            let partition = match (request.partition, &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => partition_for_key(key, partition_count),
                (None, None) => sticky,
            };
            by_partition.entry(partition).or_default().push((i, from_proto(record)));
        }
        let record_count: usize = by_partition.values().map(Vec::len).sum();
        let topic = &topic;
        let writes = by_partition.into_iter().map(|(partition, records)| {
            let (record_indexes, records): (Vec<usize>, Vec<Record>) = records.into_iter().unzip();
            async move {
                let result = self.append_partition(topic, partition, records, producer, hops).await;
                let result = result.map(|(base_offset, applied_index, duplicate)| Written {
                    base_offset,
                    applied_index,
                    duplicate,
                });
                PartitionWrite { partition, record_indexes, result }
            }
        });
        // Every partition's write runs to its end, so the answer can say what was written.
        let writes = futures::future::join_all(writes).await;
        append_outcomes::combine(record_count, writes).map(Response::new)
    }

    async fn read(&self, request: Request<pb::ReadRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let read = |mut client: CairnClient<Channel>, forwarded| async move { client.read(forwarded).await };
        let replica = match self.replica_or_forward(&request.topic, request.partition, hops, &request, read).await? {
            Ok(replica) => replica,
            Err(answer) => return Ok(answer),
        };
        let limits = self.read_limits(request.max_records, request.max_bytes);
        let wait = Duration::from_millis(request.wait_ms.min(self.host.limits().read_wait_ms_max));
        let must_apply = self.required_applied_index(&replica, request.consistency, request.min_applied_index).await?;
        self.wait_applied(&replica, must_apply).await?;
        let mut view = replica.view.clone();
        let mut state = view.borrow_and_update().log;
        // A lagging replica may not have reached `from_offset` yet: wait for it too.
        if request.from_offset >= state.next_offset && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while state.next_offset <= request.from_offset {
                match tokio::time::timeout_at(deadline, view.changed()).await {
                    Ok(Ok(())) => state = view.borrow_and_update().log,
                    Ok(Err(_)) => return Err(Status::unavailable("the partition replica stopped; retry")),
                    Err(_) => break,
                }
            }
        }
        let records = read_blocking(&replica, request.from_offset, state, limits).await?;
        let next_offset = records.last().map_or(request.from_offset, |r| r.offset + 1);
        Ok(Response::new(pb::ReadResponse {
            records: records.into_iter().map(to_proto).collect(),
            high_watermark: state.next_offset,
            log_start_offset: state.log_start_offset,
            next_offset,
        }))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        // Without a replica here, relay the stream of a node that holds one; the relay
        // takes a subscription slot here too.
        let slot = SubscriptionSlot::take(&self.subscriptions, self.host.limits().subscriptions_max)?;
        let subscribe = |mut client: CairnClient<Channel>, forwarded| async move { client.subscribe(forwarded).await };
        let replica =
            match self.replica_or_forward(&request.topic, request.partition, hops, &request, subscribe).await? {
                Ok(replica) => replica,
                Err(answer) => {
                    let relayed = answer.into_inner().map(move |message| {
                        let _held = &slot;
                        message
                    });
                    return Ok(Response::new(Box::pin(relayed)));
                }
            };
        let must_apply = self.required_applied_index(&replica, request.consistency, request.min_applied_index).await?;
        self.wait_applied(&replica, must_apply).await?;
        let state = replica.view.borrow().log;
        let mut from = match request.start {
            None | Some(pb::subscribe_request::Start::Earliest(_)) => state.log_start_offset,
            Some(pb::subscribe_request::Start::Latest(_)) => state.next_offset,
            Some(pb::subscribe_request::Start::Offset(offset)) => offset,
            Some(pb::subscribe_request::Start::TimestampMs(timestamp_ms)) => {
                let log = replica.log.clone();
                tokio::task::spawn_blocking(move || log.offset_for_timestamp(timestamp_ms, &state))
                    .await
                    .map_err(|err| Status::internal(err.to_string()))?
                    .map_err(status::from_storage)?
                    .unwrap_or(state.next_offset)
            }
        };
        if from < state.log_start_offset {
            return Err(status::offset_outside(from, &state));
        }
        // A start past the high watermark (a subscription resumed at a replica that lags,
        // say after a failover) waits for the replica to get there, as a read does, for up
        // to `read_wait_ms_max`.
        let start_deadline = tokio::time::Instant::now() + Duration::from_millis(self.host.limits().read_wait_ms_max);
        let limits = self.read_limits(0, request.max_bytes_per_message);
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(async move {
            let _slot = slot;
            let mut view = replica.view.clone();
            loop {
                let state = view.borrow_and_update().log;
                if from < state.next_offset {
                    let message = read_blocking(&replica, from, state, limits).await.map(|records| {
                        from = records.last().map_or(from, |r| r.offset + 1);
                        pb::SubscribeResponse {
                            records: records.into_iter().map(to_proto).collect(),
                            high_watermark: state.next_offset,
                        }
                    });
                    // Below the high watermark a read returns records or an error (never an
                    // empty answer: see PartitionLog::read), so this loop cannot spin.
                    let failed = message.is_err();
                    if sender.send(message).await.is_err() || failed {
                        break;
                    }
                    continue;
                }
                tokio::select! {
                    changed = view.changed() => if changed.is_err() {
                        let _ = sender.send(Err(Status::unavailable("the partition replica stopped; subscribe again"))).await;
                        break;
                    },
                    () = sender.closed() => break,
                    () = tokio::time::sleep_until(start_deadline), if from > state.next_offset => {
                        let _ = sender.send(Err(status::offset_outside(from, &state))).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn offset_for_timestamp(
        &self,
        request: Request<pb::OffsetForTimestampRequest>,
    ) -> Result<Response<pb::OffsetForTimestampResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let find =
            |mut client: CairnClient<Channel>, forwarded| async move { client.offset_for_timestamp(forwarded).await };
        let replica = match self.replica_or_forward(&request.topic, request.partition, hops, &request, find).await? {
            Ok(replica) => replica,
            Err(answer) => return Ok(answer),
        };
        let state = replica.view.borrow().log;
        let log = replica.log.clone();
        let found = tokio::task::spawn_blocking(move || log.offset_for_timestamp(request.timestamp_ms, &state))
            .await
            .map_err(|err| Status::internal(err.to_string()))?
            .map_err(status::from_storage)?;
        Ok(Response::new(pb::OffsetForTimestampResponse {
            offset: found.unwrap_or(state.next_offset),
            found: found.is_some(),
        }))
    }

    async fn init_producer(
        &self,
        request: Request<pb::InitProducerRequest>,
    ) -> Result<Response<pb::InitProducerResponse>, Status> {
        let hops = hops(&request);
        match self.controller_write(ControllerCommand::AllocateProducerId, hops).await? {
            Ok(CommandResponse::ProducerId(producer_id)) => Ok(Response::new(pb::InitProducerResponse { producer_id })),
            Ok(other) => Err(Status::internal(format!("unexpected controller outcome {other:?}"))),
            Err(leader) => {
                let forwarded = self.forwarder.request(pb::InitProducerRequest {}, hops);
                self.forwarder.client(&leader)?.init_producer(forwarded).await
            }
        }
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        validate_topic_name(&request.name).map_err(status::from_topic)?;
        let config = TopicConfig {
            partition_count: request.partitions,
            replication_factor: request.replication_factor.max(1),
            retention_ms: request.retention_ms,
            retention_bytes: request.retention_bytes,
        };
        // Whether there are enough nodes for the replication factor is decided by the
        // controller at apply time (committed membership), not by this node's view.
        config.validate(self.host.limits().partitions_per_topic_max, usize::MAX).map_err(status::from_topic)?;
        let command = ControllerCommand::CreateTopic {
            name: request.name.clone(),
            config,
            topics_max: self.host.limits().topics_max,
        };
        match self.write_topic(command, hops).await? {
            Ok(topic) => Ok(Response::new(pb::CreateTopicResponse { topic: Some(topic) })),
            Err(leader) => self.forwarder.client(&leader)?.create_topic(self.forwarder.request(request, hops)).await,
        }
    }

    async fn alter_topic(
        &self,
        request: Request<pb::AlterTopicRequest>,
    ) -> Result<Response<pb::AlterTopicResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let current = self.topic(&request.name)?;
        let grown = TopicConfig { partition_count: request.partitions, ..current.config.clone() };
        grown.validate(self.host.limits().partitions_per_topic_max, usize::MAX).map_err(status::from_topic)?;
        let command =
            ControllerCommand::AddPartitions { name: request.name.clone(), partition_count: request.partitions };
        match self.write_topic(command, hops).await? {
            Ok(topic) => Ok(Response::new(pb::AlterTopicResponse { topic: Some(topic) })),
            Err(leader) => self.forwarder.client(&leader)?.alter_topic(self.forwarder.request(request, hops)).await,
        }
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let hops = hops(&request);
        let name = request.into_inner().name;
        validate_topic_name(&name).map_err(status::from_topic)?;
        match self.controller_write(ControllerCommand::DeleteTopic { name: name.clone() }, hops).await? {
            Ok(CommandResponse::TopicDeleted(result)) => result.map_err(status::from_controller)?,
            Ok(other) => return Err(Status::internal(format!("unexpected controller outcome {other:?}"))),
            Err(leader) => {
                let forwarded = self.forwarder.request(pb::DeleteTopicRequest { name }, hops);
                return self.forwarder.client(&leader)?.delete_topic(forwarded).await;
            }
        }
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let topic = self.topic(&request.topic)?;
        let assignment = topic.partitions.get(request.partition as usize).ok_or_else(|| {
            status::partition_not_found(&request.topic, request.partition, topic.config.partition_count)
        })?;
        if !assignment.replicas.contains(&request.to_node) {
            return Err(Status::failed_precondition(format!(
                "node {} holds no replica of {}/{} (replicas: {:?}): only a replica can lead",
                request.to_node, request.topic, request.partition, assignment.replicas
            )));
        }
        let (group, to) = (assignment.group_id, request.to_node);
        let leader_address = if self.host.partition(group).is_some() {
            match self.host.transfer_leader(group, to).await {
                Ok(()) => return Ok(Response::new(pb::TransferLeaderResponse { leader: to })),
                Err(HostError::NotLeader { leader_address: Some(address), leader, .. })
                    if leader != Some(self.host.node_id()) =>
                {
                    Some(address)
                }
                Err(err) => return Err(status::from_host(err)),
            }
        } else {
            None
        };
        if hops >= HOPS_MAX {
            return Err(Status::unavailable("the partition's leader moved while the request was forwarded; retry"));
        }
        // Ask the leader, or a replica (which knows the leader) when this node has none.
        let address = match leader_address {
            Some(address) => address,
            None => {
                let nodes = self.host.cluster_nodes();
                assignment
                    .replicas
                    .iter()
                    .find_map(|replica| nodes.get(replica).cloned())
                    .ok_or_else(|| Status::unavailable("no replica of the partition is reachable; retry"))?
            }
        };
        self.forwarder.client(&address)?.transfer_leader(self.forwarder.request(request, hops)).await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        if request.node_id == 0 {
            return Err(Status::invalid_argument("node ids start at 1"));
        }
        let (node_id, force) = (request.node_id, request.force);
        match self.at_controller_leader(hops, || self.host.remove_node(node_id, force)).await? {
            Ok(result) => {
                let replicas_left = result.map_err(status::from_controller)?;
                Ok(Response::new(pb::RemoveNodeResponse { replicas_left }))
            }
            Err(leader) => {
                let forwarded = self.forwarder.request(request, hops);
                self.forwarder.client(&leader)?.remove_node(forwarded).await
            }
        }
    }

    async fn move_partition(
        &self,
        request: Request<pb::MovePartitionRequest>,
    ) -> Result<Response<pb::OperationsResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        if request.from_node == request.to_node {
            return Err(Status::invalid_argument("--from and --to name the same node: nothing to move"));
        }
        self.topic(&request.topic)?;
        let command = ControllerCommand::MovePartition {
            topic: request.topic.clone(),
            partition: request.partition,
            from: request.from_node,
            to: request.to_node,
            created_ms: now_ms(),
            moves_active_max: self.host.config().moves_active_max,
        };
        match self.controller_write(command, hops).await? {
            Ok(response) => Ok(Response::new(pb::OperationsResponse { operation_ids: operation_ids(response)? })),
            Err(leader) => self.forwarder.client(&leader)?.move_partition(self.forwarder.request(request, hops)).await,
        }
    }

    async fn rebalance(
        &self,
        request: Request<pb::RebalanceRequest>,
    ) -> Result<Response<pb::RebalanceResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        if request.dry_run {
            let plan = self.host.plan_rebalance();
            return Ok(Response::new(rebalance_response(&plan, Vec::new())));
        }
        let command = ControllerCommand::Rebalance {
            created_ms: now_ms(),
            moves_active_max: self.host.config().moves_active_max,
        };
        match self.controller_write(command, hops).await? {
            Ok(CommandResponse::Rebalanced { plan, operations }) => {
                Ok(Response::new(rebalance_response(&plan, operations)))
            }
            Ok(other) => Err(Status::internal(format!("unexpected controller outcome {other:?}"))),
            Err(leader) => self.forwarder.client(&leader)?.rebalance(self.forwarder.request(request, hops)).await,
        }
    }

    async fn decommission_node(
        &self,
        request: Request<pb::DecommissionNodeRequest>,
    ) -> Result<Response<pb::OperationsResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        if request.node_id == 0 {
            return Err(Status::invalid_argument("node ids start at 1"));
        }
        let command = ControllerCommand::Decommission {
            node_id: request.node_id,
            created_ms: now_ms(),
            moves_active_max: self.host.config().moves_active_max,
        };
        match self.controller_write(command, hops).await? {
            Ok(response) => Ok(Response::new(pb::OperationsResponse { operation_ids: operation_ids(response)? })),
            Err(leader) => {
                self.forwarder.client(&leader)?.decommission_node(self.forwarder.request(request, hops)).await
            }
        }
    }

    async fn list_operations(
        &self,
        request: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        let all = request.into_inner().all;
        let state = self.host.controller_state();
        let operations =
            state.operations.values().filter(|op| all || op.phase.is_active()).map(operation_status).collect();
        Ok(Response::new(pb::ListOperationsResponse { operations }))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let state = self.host.controller_state();
        let topics = state
            .topics
            .values()
            .map(|t| pb::TopicSummary {
                name: t.name.clone(),
                partitions: t.config.partition_count,
                replication_factor: t.config.replication_factor,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let topic = self.topic(&request.into_inner().name)?;
        Ok(Response::new(pb::DescribeTopicResponse { topic: Some(self.describe(&topic)) }))
    }

    async fn join_cluster(
        &self,
        request: Request<pb::JoinClusterRequest>,
    ) -> Result<Response<pb::JoinClusterResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        if request.node_id == 0 || request.address.is_empty() {
            return Err(Status::invalid_argument("a joining node needs a node id of at least 1 and an address"));
        }
        let cluster = self.cluster.get();
        if cluster.is_empty() {
            return Err(Status::unavailable(format!(
                "node {} is still joining the cluster itself; join through another member or retry shortly",
                self.host.node_id()
            )));
        }
        if !request.cluster.is_empty() && request.cluster != cluster {
            return Err(Status::failed_precondition(format!(
                "node {}'s data directory belongs to cluster [{}], not this cluster [{cluster}]: start it with a new --data-dir",
                request.node_id, request.cluster
            )));
        }
        if self.host.controller_state().removed.contains(&request.node_id) {
            return Err(Status::failed_precondition(format!(
                "node id {} was removed from the cluster and ids are never reused: start the node with a new \
                 --node-id and an empty --data-dir",
                request.node_id
            )));
        }
        if let Some(address) = self.host.cluster_nodes().get(&request.node_id)
            && *address != request.address
            && self.host.controller_metrics().membership_config.membership().voter_ids().any(|id| id == request.node_id)
        {
            return Err(Status::failed_precondition(format!(
                "node id {} is already a voter at {address}; pick another --node-id",
                request.node_id
            )));
        }
        let (node_id, address) = (request.node_id, request.address.clone());
        match self.at_controller_leader(hops, || self.host.add_node(node_id, address.clone())).await? {
            Ok(()) => Ok(Response::new(pb::JoinClusterResponse { cluster })),
            Err(leader) => {
                let forwarded = self.forwarder.request(request, hops);
                self.forwarder.client(&leader)?.join_cluster(forwarded).await
            }
        }
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let nodes = self
            .host
            .cluster_nodes()
            .into_iter()
            .map(|(node_id, address)| pb::NodeStatus { node_id, address, live: self.host.is_node_live(node_id) })
            .collect();
        let controller = self.host.controller_metrics();
        let mut groups = vec![group_status(cairn_types::CONTROLLER_GROUP_ID, &controller, String::new(), 0, 0)];
        for replica in self.host.partitions() {
            let high_watermark = replica.view.borrow().high_watermark();
            groups.push(group_status(
                replica.group_id,
                &replica.metrics(),
                replica.topic.clone(),
                replica.partition,
                high_watermark,
            ));
        }
        let operations = self
            .host
            .controller_state()
            .operations
            .values()
            .filter(|op| op.phase.is_active())
            .map(operation_status)
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            node_id: self.host.node_id(),
            nodes,
            groups,
            cluster: self.cluster.get(),
            operations,
        }))
    }
}

fn group_status(
    group_id: u64,
    metrics: &openraft::RaftMetrics<cairn_raft::TypeConfig>,
    topic: String,
    partition: PartitionId,
    high_watermark: u64,
) -> pb::GroupStatus {
    let state = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    };
    pb::GroupStatus {
        group_id,
        topic,
        partition,
        leader: metrics.current_leader,
        term: metrics.current_term,
        voters: metrics.membership_config.membership().voter_ids().collect(),
        committed_index: metrics.cluster_committed.map(|id| id.index),
        applied_index: metrics.last_applied.map(|id| id.index),
        high_watermark,
        state: state.to_owned(),
        replica_lag: replica_lag(metrics),
    }
}

/// On a leader: each replica's matched index and how many entries it is behind.
fn replica_lag(metrics: &openraft::RaftMetrics<cairn_raft::TypeConfig>) -> Vec<pb::ReplicaLag> {
    let last_log_index = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .iter()
        .flatten()
        .map(|(node_id, matched)| {
            let matched_index = matched.as_ref().map(|log_id| log_id.index);
            pb::ReplicaLag {
                node_id: *node_id,
                matched_index,
                lag_entries: last_log_index.saturating_sub(matched_index.unwrap_or(0)),
            }
        })
        .collect()
}

/// The operation ids a move or decommission answered.
fn operation_ids(response: CommandResponse) -> Result<Vec<u64>, Status> {
    match response {
        CommandResponse::Operations(result) => result.map_err(status::from_controller),
        other => Err(Status::internal(format!("unexpected controller outcome {other:?}"))),
    }
}

fn rebalance_response(plan: &RebalancePlan, operation_ids: Vec<u64>) -> pb::RebalanceResponse {
    pb::RebalanceResponse {
        moves: plan
            .moves
            .iter()
            .map(|m| pb::PlannedMove {
                topic: m.topic.clone(),
                partition: m.partition,
                from_node: m.from,
                to_node: m.to,
                leader: m.leader,
            })
            .collect(),
        leaders: plan
            .leaders
            .iter()
            .map(|l| pb::PlannedLeader {
                topic: l.topic.clone(),
                partition: l.partition,
                from_node: l.from,
                to_node: l.to,
            })
            .collect(),
        operation_ids,
    }
}

fn operation_status(op: &Operation) -> pb::OperationStatus {
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
