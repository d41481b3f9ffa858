use std::future::Future;
use std::time::Duration;

use cairn_proto::v1::cairn_client::CairnClient as ProtoClient;
use cairn_types::{Offset, PartitionId, Record, StoredRecord};
use futures::Stream;
use tonic::transport::{Channel, Endpoint};

use crate::client_error::error_chain;
use crate::retry_policy::RetryOutcome;
use crate::{ClientError, CreateTopicOptions, ReadResult, RetryPolicy, StartPosition};
use crate::{Consistency, proto};
use cairn_proto::stored_records_from_proto;

/// Largest gRPC message this client sends or accepts, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// How long one TCP connect attempt may take.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How often an idle connection is checked with an HTTP/2 ping.
const KEEP_ALIVE_INTERVAL_MS: u64 = 10_000;
/// How long a ping may go unanswered before the connection counts as dead.
const KEEP_ALIVE_TIMEOUT_MS: u64 = 5_000;

/// A connection to one Cairn node. Cheap to clone: clones share the connection.
#[derive(Debug, Clone)]
pub struct CairnClient {
    inner: ProtoClient<Channel>,
    retry_policy: RetryPolicy,
}

impl CairnClient {
    /// Connects to `address` (`host:port` or `http://host:port`), retrying refused
    /// connections for the default retry policy's time.
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        Self::connect_with(address, RetryPolicy::default()).await
    }

    /// Connects with a given retry policy, used for connecting and for idempotent calls.
    pub async fn connect_with(address: &str, retry_policy: RetryPolicy) -> Result<Self, ClientError> {
        let uri = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|error| ClientError::InvalidAddress { address: address.to_string(), message: error.to_string() })?
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            // Find a dead connection (a crashed or cut-off node) by HTTP/2 pings, so that
            // calls on it fail and the channel reconnects, instead of waiting forever.
            .http2_keep_alive_interval(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS))
            .keep_alive_timeout(Duration::from_millis(KEEP_ALIVE_TIMEOUT_MS))
            .keep_alive_while_idle(true);
        let outcome = retry_policy
            .run(|| async { endpoint.connect().await.map_err(|error| tonic::Status::unavailable(error_chain(&error))) })
            .await;
        let channel = outcome.result.map_err(|status| ClientError::Connect {
            address: address.to_string(),
            message: status.message().to_string(),
        })?;
        Ok(Self::from_channel(channel, retry_policy))
    }

    /// Wraps an existing channel (for tests and for callers that tune the transport).
    pub fn from_channel(channel: Channel, retry_policy: RetryPolicy) -> Self {
        let inner = ProtoClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        CairnClient { inner, retry_policy }
    }

    /// The generated client underneath, for calls this type does not wrap.
    pub fn proto_client(&self) -> ProtoClient<Channel> {
        self.inner.clone()
    }

    /// Appends `records` to `topic`, to `partition` when given, else by key (or round
    /// robin for keyless records). Returns each record's (partition, offset), in order.
    /// Never retried: a lost answer would otherwise duplicate records. Records bound for
    /// several partitions are not written atomically: when some partitions fail, the error
    /// is `ClientError::PartlyWritten`, which says which records were stored.
    pub async fn append(
        &self,
        topic: &str,
        partition: Option<PartitionId>,
        records: Vec<Record>,
    ) -> Result<Vec<(PartitionId, Offset)>, ClientError> {
        let record_count = records.len();
        let request = proto::AppendRequest {
            topic: topic.to_string(),
            partition,
            records: records.into_iter().map(proto::Record::from).collect(),
            producer_id: None,
            sequence: None,
        };
        let response = match self.inner.clone().append(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(crate::client_error::from_append_status(status)),
        };
        if response.positions.len() != record_count {
            return Err(ClientError::InvalidResponse(format!(
                "append of {record_count} records returned {} positions",
                response.positions.len()
            )));
        }
        Ok(response.positions.into_iter().map(|position| (position.partition, position.offset)).collect())
    }

    /// Reads committed records of one partition from `from_offset`. Zero for
    /// `max_records` or `max_bytes` means the server's default; `wait_ms` is how long to
    /// wait when nothing is there yet.
    pub async fn read(
        &self,
        topic: &str,
        partition: PartitionId,
        from_offset: Offset,
        max_records: u32,
        max_bytes: u32,
        wait_ms: u64,
    ) -> Result<ReadResult, ClientError> {
        self.read_consistent(topic, partition, from_offset, max_records, max_bytes, wait_ms, Consistency::Local).await
    }

    /// `read` at a chosen consistency: `ReadYourWrites(applied_index)` waits for the token
    /// an append returned, `Linearizable` sees every append acknowledged before the call.
    #[allow(clippy::too_many_arguments)]
    pub async fn read_consistent(
        &self,
        topic: &str,
        partition: PartitionId,
        from_offset: Offset,
        max_records: u32,
        max_bytes: u32,
        wait_ms: u64,
        consistency: Consistency,
    ) -> Result<ReadResult, ClientError> {
        let (consistency, min_applied_index) = consistency.to_proto();
        let request = proto::ReadRequest {
            topic: topic.to_string(),
            partition,
            from_offset,
            max_records,
            max_bytes,
            wait_ms,
            consistency,
            min_applied_index,
        };
        let response =
            self.call_idempotent(request, |mut client, request| async move { client.read(request).await }).await;
        let response = response.result?;
        Ok(ReadResult {
            records: stored_records_from_proto(response.records),
            high_watermark: response.high_watermark,
            log_start_offset: response.log_start_offset,
            next_offset: response.next_offset,
        })
    }

    /// Follows one partition from `start`: the records there, then new ones as they are
    /// committed, in batches. Reopens at the next offset after `UNAVAILABLE`, within the
    /// retry policy; ends when the server ends the stream.
    pub fn subscribe(
        &self,
        topic: &str,
        partition: PartitionId,
        start: StartPosition,
    ) -> impl Stream<Item = Result<Vec<StoredRecord>, ClientError>> + Send + 'static {
        self.subscribe_consistent(topic, partition, start, Consistency::Local)
    }

    /// `subscribe` at a chosen consistency, checked each time the stream (re)opens: with
    /// `Linearizable` the first batch includes every append acknowledged before the call.
    pub fn subscribe_consistent(
        &self,
        topic: &str,
        partition: PartitionId,
        start: StartPosition,
        consistency: Consistency,
    ) -> impl Stream<Item = Result<Vec<StoredRecord>, ClientError>> + Send + 'static {
        let (consistency, min_applied_index) = consistency.to_proto();
        let request = proto::SubscribeRequest {
            topic: topic.to_string(),
            partition,
            start: Some(start.to_proto()),
            max_bytes_per_message: 0,
            consistency,
            min_applied_index,
        };
        crate::subscription::subscribe(self.inner.clone(), self.retry_policy, request)
    }

    /// The first offset whose timestamp is at or after `timestamp_ms`; `None` when no
    /// stored record is that recent.
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: PartitionId,
        timestamp_ms: u64,
    ) -> Result<Option<Offset>, ClientError> {
        let request = proto::OffsetForTimestampRequest { topic: topic.to_string(), partition, timestamp_ms };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.offset_for_timestamp(request).await })
            .await
            .result?;
        Ok(response.found.then_some(response.offset))
    }

    /// A cluster-unique producer id for idempotent appends (see `IdempotentProducer`).
    pub async fn init_producer(&self) -> Result<u64, ClientError> {
        let response = self
            .call_idempotent(proto::InitProducerRequest {}, |mut client, request| async move {
                client.init_producer(request).await
            })
            .await
            .result?;
        Ok(response.producer_id)
    }

    /// Creates a topic. When a retry after `UNAVAILABLE` finds the topic already there
    /// with the requested shape, the earlier attempt created it and this succeeds.
    pub async fn create_topic(&self, options: CreateTopicOptions) -> Result<proto::TopicDescription, ClientError> {
        let request = proto::CreateTopicRequest {
            name: options.name.clone(),
            partitions: options.partitions,
            replication_factor: options.replication_factor,
            retention_ms: options.retention_ms,
            retention_bytes: options.retention_bytes,
        };
        let outcome = self
            .call_idempotent(request, |mut client, request| async move { client.create_topic(request).await })
            .await;
        match outcome.result {
            Ok(response) => response.topic.ok_or_else(|| missing_field("CreateTopicResponse.topic")),
            Err(status) if outcome.retried && status.code() == tonic::Code::AlreadyExists => {
                let topic = self.describe_topic(&options.name).await?;
                if created_as_requested(&topic, &options) { Ok(topic) } else { Err(status.into()) }
            }
            Err(status) => Err(status.into()),
        }
    }

    /// Deletes a topic and its records. When a retry after `UNAVAILABLE` finds the
    /// topic gone, the earlier attempt deleted it and this succeeds.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = proto::DeleteTopicRequest { name: name.to_string() };
        let outcome = self
            .call_idempotent(request, |mut client, request| async move { client.delete_topic(request).await })
            .await;
        match outcome.result {
            Ok(_) => Ok(()),
            Err(status) if outcome.retried && status.code() == tonic::Code::NotFound => Ok(()),
            Err(status) => Err(status.into()),
        }
    }

    /// Grows `name` to `partitions` partitions. Keyed records of existing keys may map to
    /// new partitions afterwards. When a retry after `UNAVAILABLE` finds the topic already
    /// grown to that count, the earlier attempt did it and this succeeds.
    pub async fn alter_topic_partitions(
        &self,
        name: &str,
        partitions: u32,
    ) -> Result<proto::TopicDescription, ClientError> {
        let request = proto::AlterTopicRequest { name: name.to_string(), partitions };
        let outcome =
            self.call_idempotent(request, |mut client, request| async move { client.alter_topic(request).await }).await;
        match outcome.result {
            Ok(response) => response.topic.ok_or_else(|| missing_field("AlterTopicResponse.topic")),
            Err(status) if outcome.retried && status.code() == tonic::Code::InvalidArgument => {
                let topic = self.describe_topic(name).await?;
                if topic.partitions.len() as u32 == partitions { Ok(topic) } else { Err(status.into()) }
            }
            Err(status) => Err(status.into()),
        }
    }

    /// Moves the leadership of `topic`/`partition` to `to_node`, one of its replicas;
    /// returns once that node leads. Safe to retry.
    pub async fn transfer_leader(&self, topic: &str, partition: u32, to_node: u64) -> Result<u64, ClientError> {
        let request = proto::TransferLeaderRequest { topic: topic.to_string(), partition, to_node };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.transfer_leader(request).await })
            .await
            .result?;
        Ok(response.leader)
    }

    /// Takes a node out of the cluster; returns the partition replicas it still held (only
    /// with `force`). Refused while it holds replicas, unless `force`. Retrying a removal
    /// that went through answers NOT_FOUND, which counts as done.
    pub async fn remove_node(&self, node_id: u64, force: bool) -> Result<u32, ClientError> {
        let request = proto::RemoveNodeRequest { node_id, force };
        let outcome =
            self.call_idempotent(request, |mut client, request| async move { client.remove_node(request).await }).await;
        match outcome.result {
            Ok(response) => Ok(response.replicas_left),
            Err(status) if outcome.retried && status.code() == tonic::Code::NotFound => Ok(0),
            Err(status) => Err(status.into()),
        }
    }

    /// Queues a move of `topic`/`partition`'s replica on `from_node` to `to_node`; returns
    /// the move's operation id at once (`list_operations` follows it). A retry that finds
    /// the move queued by an earlier attempt answers that move.
    pub async fn move_partition(
        &self,
        topic: &str,
        partition: u32,
        from_node: u64,
        to_node: u64,
    ) -> Result<u64, ClientError> {
        let request = proto::MovePartitionRequest { topic: topic.to_string(), partition, from_node, to_node };
        let outcome = self
            .call_idempotent(request, |mut client, request| async move { client.move_partition(request).await })
            .await;
        match outcome.result {
            Ok(response) => {
                response.operation_ids.first().copied().ok_or_else(|| missing_field("OperationsResponse.operation_ids"))
            }
            Err(status) if outcome.retried && status.code() == tonic::Code::Aborted => {
                let queued = self.list_operations(false).await?.into_iter().find(|op| {
                    op.kind == "move"
                        && op.topic == topic
                        && op.partition == partition
                        && op.from_node == from_node
                        && op.to_node == to_node
                });
                queued.map(|op| op.id).ok_or_else(|| status.into())
            }
            Err(status) => Err(status.into()),
        }
    }

    /// Plans the moves and leader changes that even out replicas and leaders per node and,
    /// unless `dry_run`, queues them.
    pub async fn rebalance(&self, dry_run: bool) -> Result<proto::RebalanceResponse, ClientError> {
        let request = proto::RebalanceRequest { dry_run };
        let response =
            self.call_idempotent(request, |mut client, request| async move { client.rebalance(request).await }).await;
        Ok(response.result?)
    }

    /// Starts moving every replica off `node_id`, then removing it; returns the
    /// decommission's operation id, then its moves' ids. Asking again answers the same.
    pub async fn decommission_node(&self, node_id: u64) -> Result<Vec<u64>, ClientError> {
        let request = proto::DecommissionNodeRequest { node_id };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.decommission_node(request).await })
            .await
            .result?;
        Ok(response.operation_ids)
    }

    /// Replica moves and decommissions under way (and, with `all`, recently finished).
    pub async fn list_operations(&self, all: bool) -> Result<Vec<proto::OperationStatus>, ClientError> {
        let request = proto::ListOperationsRequest { all };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.list_operations(request).await })
            .await
            .result?;
        Ok(response.operations)
    }

    /// All topics, by name.
    pub async fn list_topics(&self) -> Result<Vec<proto::TopicSummary>, ClientError> {
        let response = self
            .call_idempotent(proto::ListTopicsRequest {}, |mut client, request| async move {
                client.list_topics(request).await
            })
            .await
            .result?;
        Ok(response.topics)
    }

    /// A topic's configuration and, per partition, its replicas, leader and offsets.
    pub async fn describe_topic(&self, name: &str) -> Result<proto::TopicDescription, ClientError> {
        let request = proto::DescribeTopicRequest { name: name.to_string() };
        let response = self
            .call_idempotent(request, |mut client, request| async move { client.describe_topic(request).await })
            .await
            .result?;
        response.topic.ok_or_else(|| missing_field("DescribeTopicResponse.topic"))
    }

    /// The answering node's view of the cluster: nodes and Raft groups.
    pub async fn cluster_status(&self) -> Result<proto::ClusterStatusResponse, ClientError> {
        let outcome = self
            .call_idempotent(proto::ClusterStatusRequest {}, |mut client, request| async move {
                client.cluster_status(request).await
            })
            .await;
        Ok(outcome.result?)
    }

    /// Runs a call that is safe to repeat under the retry policy.
    pub(crate) async fn call_idempotent<Req, Resp, F, Fut>(&self, request: Req, call: F) -> RetryOutcome<Resp>
    where
        Req: Clone,
        F: Fn(ProtoClient<Channel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let outcome = self.retry_policy.run(|| call(self.inner.clone(), request.clone())).await;
        RetryOutcome { result: outcome.result.map(tonic::Response::into_inner), retried: outcome.retried }
    }
}

fn missing_field(field: &str) -> ClientError {
    ClientError::InvalidResponse(format!("{field} is missing"))
}

fn created_as_requested(topic: &proto::TopicDescription, options: &CreateTopicOptions) -> bool {
    let partitions_match = u32::try_from(topic.partitions.len()).ok() == Some(options.partitions);
    let replication_matches = options.replication_factor == 0 || topic.replication_factor == options.replication_factor;
    partitions_match && replication_matches
}
