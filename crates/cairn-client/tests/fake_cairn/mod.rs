//! An in-memory Cairn server for client tests: one node, no Raft, and scripted
//! failures (`UNAVAILABLE` answers, a lost create answer, a broken subscription, answers to
//! a producer's appends: see `append_script`).

// Each test binary uses a part of the fake.
#![allow(dead_code)]

pub mod append_script;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_client::proto::cairn_server::{Cairn, CairnServer};
use cairn_client::proto::{self, subscribe_request::Start};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use append_script::{AppendScript, Turns};

/// Batches a subscription sends per message.
const SUBSCRIBE_BATCH_RECORDS: usize = 2;

#[derive(Default)]
pub struct FakeState {
    pub topics: BTreeMap<String, Vec<Vec<proto::StoredRecord>>>,
    /// Per RPC name, how many calls to answer `UNAVAILABLE` before serving.
    pub unavailable_calls: HashMap<&'static str, u32>,
    /// Per RPC name, how many calls arrived.
    pub calls: HashMap<&'static str, u32>,
    /// Apply the next create, then answer `UNAVAILABLE` as if the answer was lost.
    pub lose_next_create_answer: bool,
    /// The next subscription breaks with `UNAVAILABLE` after this many messages.
    pub break_next_subscription_after: Option<usize>,
    pub subscribe_requests: Vec<proto::SubscribeRequest>,
    /// Subscriptions stay open after the stored records instead of ending.
    pub keep_subscriptions_open: bool,
    /// Appends are answered as scripted (and sequences checked) instead of applied as
    /// they come.
    pub append_script: Option<AppendScript>,
    /// Where the fake serves: `cluster_status` reports it as node 1's address, so that a
    /// producer routes to the partitions' leader here.
    address: Option<SocketAddr>,
}

#[derive(Clone)]
pub struct FakeCairn {
    state: Arc<Mutex<FakeState>>,
    /// The turns of held first attempts (see `append_script`).
    turns: Arc<watch::Sender<Turns>>,
}

impl Default for FakeCairn {
    fn default() -> Self {
        FakeCairn { state: Arc::default(), turns: Arc::new(watch::Sender::new(Turns::default())) }
    }
}

impl FakeCairn {
    /// Serves on a fresh localhost port; returns the server's address.
    pub async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind localhost");
        let address = listener.local_addr().expect("local address");
        self.state().address = Some(address);
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let connection = listener.accept().await.and_then(|(stream, _)| {
                stream.set_nodelay(true)?;
                Ok(stream)
            });
            Some((connection, listener))
        });
        let service = CairnServer::new(self.clone());
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        address
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state lock")
    }

    /// Counts the call and answers `UNAVAILABLE` when scripted to.
    fn enter(&self, method: &'static str) -> Result<MutexGuard<'_, FakeState>, Status> {
        let mut state = self.state();
        *state.calls.entry(method).or_default() += 1;
        if let Some(remaining) = state.unavailable_calls.get_mut(method)
            && *remaining > 0
        {
            *remaining -= 1;
            return Err(Status::unavailable(format!("{method}: no leader yet")));
        }
        Ok(state)
    }

    /// An append answered as `AppendScript` says; a held first attempt waits for its turn.
    async fn scripted_append(&self, request: proto::AppendRequest) -> Result<proto::AppendResponse, Status> {
        let sequence = request.sequence.unwrap_or_default();
        let record_count = request.records.len() as u64;
        let (batch, held, pipelined) = {
            let mut state = self.state();
            let script = state.append_script.as_mut().ok_or_else(|| Status::internal("no append script"))?;
            let (batch, held) = script.enter(&request);
            (batch, held, script.pipelined)
        };
        if held {
            self.turns.send_modify(|turns| turns.arrived += 1);
            let mut turns = self.turns.subscribe();
            turns
                .wait_for(|turns| turns.arrived >= pipelined && turns.next_sequence == sequence)
                .await
                .map_err(|_| Status::internal("the fake stopped"))?;
        }
        let answered = {
            let mut state = self.state();
            let mut script = state.append_script.take().ok_or_else(|| Status::internal("no append script"))?;
            let answered = partition_log(&mut state, &request.topic, request.partition.unwrap_or(0))
                .and_then(|log| script.answer(&batch, request, log));
            state.append_script = Some(script);
            answered
        };
        if held {
            self.turns.send_modify(|turns| turns.next_sequence = sequence + record_count);
        }
        answered
    }
}

/// Appends `records` to a partition's `log` as the server would: the next offsets, with
/// timestamps derived from them. Returns where each landed.
fn store(
    log: &mut Vec<proto::StoredRecord>,
    partition: u32,
    records: Vec<proto::Record>,
) -> Vec<proto::RecordPosition> {
    let mut positions = Vec::with_capacity(records.len());
    for record in records {
        let offset = log.len() as u64;
        log.push(proto::StoredRecord {
            offset,
            timestamp_ms: 1_000 + offset,
            key: record.key,
            headers: record.headers,
            value: record.value,
            event: None,
        });
        positions.push(proto::RecordPosition { partition, offset });
    }
    positions
}

fn partition_log<'a>(
    state: &'a mut FakeState,
    topic: &str,
    partition: u32,
) -> Result<&'a mut Vec<proto::StoredRecord>, Status> {
    let partitions =
        state.topics.get_mut(topic).ok_or_else(|| Status::not_found(format!("topic '{topic}' not found")))?;
    partitions
        .get_mut(partition as usize)
        .ok_or_else(|| Status::not_found(format!("topic '{topic}' has no partition {partition}")))
}

fn description(name: &str, partitions: &[Vec<proto::StoredRecord>]) -> proto::TopicDescription {
    proto::TopicDescription {
        name: name.to_string(),
        replication_factor: 1,
        retention_ms: None,
        retention_bytes: None,
        partitions: partitions
            .iter()
            .enumerate()
            .map(|(index, log)| proto::PartitionDescription {
                partition: index as u32,
                group_id: index as u64 + 1,
                replicas: vec![1],
                leader: Some(1),
                high_watermark: log.len() as u64,
                log_start_offset: 0,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Cairn for FakeCairn {
    async fn append_to_streams(
        &self,
        _request: Request<proto::AppendToStreamsRequest>,
    ) -> Result<Response<proto::AppendToStreamsResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no streams"))
    }

    async fn delete_stream(
        &self,
        _request: Request<proto::DeleteStreamRequest>,
    ) -> Result<Response<proto::StreamChangedResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no streams"))
    }

    async fn set_stream_metadata(
        &self,
        _request: Request<proto::SetStreamMetadataRequest>,
    ) -> Result<Response<proto::StreamChangedResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no streams"))
    }

    async fn get_stream_info(
        &self,
        _request: Request<proto::GetStreamInfoRequest>,
    ) -> Result<Response<proto::StreamInfoResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no streams"))
    }

    async fn read_stream(
        &self,
        _request: Request<proto::ReadStreamRequest>,
    ) -> Result<Response<proto::ReadStreamResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no streams"))
    }

    async fn query_events(
        &self,
        _request: Request<proto::QueryEventsRequest>,
    ) -> Result<Response<proto::QueryEventsResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no events"))
    }

    async fn join_cluster(
        &self,
        _request: Request<proto::JoinClusterRequest>,
    ) -> Result<Response<proto::JoinClusterResponse>, Status> {
        Err(Status::unimplemented("the fake server is a single node"))
    }

    async fn alter_topic(
        &self,
        _request: Request<proto::AlterTopicRequest>,
    ) -> Result<Response<proto::AlterTopicResponse>, Status> {
        Err(Status::unimplemented("the fake server does not alter topics"))
    }

    async fn group(&self, _request: Request<proto::GroupRequest>) -> Result<Response<proto::GroupResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no consumer groups"))
    }

    async fn list_groups(
        &self,
        _request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        Err(Status::unimplemented("the fake server keeps no consumer groups"))
    }

    async fn transfer_leader(
        &self,
        _request: Request<proto::TransferLeaderRequest>,
    ) -> Result<Response<proto::TransferLeaderResponse>, Status> {
        Err(Status::unimplemented("the fake server is a single node"))
    }

    async fn remove_node(
        &self,
        _request: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::RemoveNodeResponse>, Status> {
        Err(Status::unimplemented("the fake server is a single node"))
    }

    async fn move_partition(
        &self,
        _request: Request<proto::MovePartitionRequest>,
    ) -> Result<Response<proto::OperationsResponse>, Status> {
        Err(Status::unimplemented("the fake server is a single node"))
    }

    async fn rebalance(
        &self,
        _request: Request<proto::RebalanceRequest>,
    ) -> Result<Response<proto::RebalanceResponse>, Status> {
        Err(Status::unimplemented("the fake server is a single node"))
    }

    async fn decommission_node(
        &self,
        _request: Request<proto::DecommissionNodeRequest>,
    ) -> Result<Response<proto::OperationsResponse>, Status> {
        Err(Status::unimplemented("the fake server is a single node"))
    }

    async fn list_operations(
        &self,
        _request: Request<proto::ListOperationsRequest>,
    ) -> Result<Response<proto::ListOperationsResponse>, Status> {
        Ok(Response::new(proto::ListOperationsResponse { operations: Vec::new() }))
    }

    async fn init_producer(
        &self,
        _request: Request<proto::InitProducerRequest>,
    ) -> Result<Response<proto::InitProducerResponse>, Status> {
        Ok(Response::new(proto::InitProducerResponse { producer_id: 1 }))
    }

    async fn append(&self, request: Request<proto::AppendRequest>) -> Result<Response<proto::AppendResponse>, Status> {
        let request = request.into_inner();
        if self.enter("append")?.append_script.is_some() {
            return self.scripted_append(request).await.map(Response::new);
        }
        let mut state = self.state();
        let partition = request.partition.unwrap_or(0);
        let log = partition_log(&mut state, &request.topic, partition)?;
        let positions = store(log, partition, request.records);
        Ok(Response::new(proto::AppendResponse { positions, tokens: Vec::new(), duplicate: false }))
    }

    async fn read(&self, request: Request<proto::ReadRequest>) -> Result<Response<proto::ReadResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.enter("read")?;
        let log = partition_log(&mut state, &request.topic, request.partition)?;
        let high_watermark = log.len() as u64;
        if request.from_offset > high_watermark {
            return Err(Status::out_of_range(format!("offset {} is past {high_watermark}", request.from_offset)));
        }
        let max_records = if request.max_records == 0 { usize::MAX } else { request.max_records as usize };
        let records: Vec<_> = log[request.from_offset as usize..].iter().take(max_records).cloned().collect();
        let next_offset = request.from_offset + records.len() as u64;
        Ok(Response::new(proto::ReadResponse { records, high_watermark, log_start_offset: 0, next_offset }))
    }

    type SubscribeStream = BoxStream<'static, Result<proto::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let mut state = self.enter("subscribe")?;
        state.subscribe_requests.push(request.clone());
        let break_after = state.break_next_subscription_after.take();
        let log = partition_log(&mut state, &request.topic, request.partition)?.clone();
        let high_watermark = log.len() as u64;
        let start = match request.start {
            Some(Start::Offset(offset)) => offset,
            Some(Start::Earliest(_)) | None => 0,
            Some(Start::Latest(_)) => high_watermark,
            Some(Start::TimestampMs(timestamp_ms)) => {
                log.iter().find(|record| record.timestamp_ms >= timestamp_ms).map_or(high_watermark, |r| r.offset)
            }
        };
        let mut messages: Vec<Result<proto::SubscribeResponse, Status>> = log
            .get(start as usize..)
            .unwrap_or_default()
            .chunks(SUBSCRIBE_BATCH_RECORDS)
            .map(|records| Ok(proto::SubscribeResponse { records: records.to_vec(), high_watermark }))
            .collect();
        if let Some(after) = break_after {
            messages.truncate(after);
            messages.push(Err(Status::unavailable("leader changed")));
        }
        let messages = futures::stream::iter(messages);
        if state.keep_subscriptions_open {
            return Ok(Response::new(Box::pin(messages.chain(futures::stream::pending()))));
        }
        Ok(Response::new(Box::pin(messages)))
    }

    async fn offset_for_timestamp(
        &self,
        request: Request<proto::OffsetForTimestampRequest>,
    ) -> Result<Response<proto::OffsetForTimestampResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.enter("offset_for_timestamp")?;
        let log = partition_log(&mut state, &request.topic, request.partition)?;
        let found = log.iter().find(|record| record.timestamp_ms >= request.timestamp_ms);
        Ok(Response::new(match found {
            Some(record) => proto::OffsetForTimestampResponse { offset: record.offset, found: true },
            None => proto::OffsetForTimestampResponse { offset: log.len() as u64, found: false },
        }))
    }

    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::CreateTopicResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.enter("create_topic")?;
        if state.topics.contains_key(&request.name) {
            return Err(Status::already_exists(format!("topic '{}' already exists", request.name)));
        }
        let partitions = vec![Vec::new(); request.partitions as usize];
        let topic = description(&request.name, &partitions);
        state.topics.insert(request.name, partitions);
        if std::mem::take(&mut state.lose_next_create_answer) {
            return Err(Status::unavailable("connection reset"));
        }
        Ok(Response::new(proto::CreateTopicResponse { topic: Some(topic) }))
    }

    async fn delete_topic(
        &self,
        request: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        let mut state = self.enter("delete_topic")?;
        match state.topics.remove(&name) {
            Some(_) => Ok(Response::new(proto::DeleteTopicResponse {})),
            None => Err(Status::not_found(format!("topic '{name}' not found"))),
        }
    }

    async fn list_topics(
        &self,
        _request: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        let state = self.enter("list_topics")?;
        let topics = state
            .topics
            .iter()
            .map(|(name, partitions)| proto::TopicSummary {
                name: name.clone(),
                partitions: partitions.len() as u32,
                replication_factor: 1,
            })
            .collect();
        Ok(Response::new(proto::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<proto::DescribeTopicRequest>,
    ) -> Result<Response<proto::DescribeTopicResponse>, Status> {
        let name = request.into_inner().name;
        let state = self.enter("describe_topic")?;
        let partitions =
            state.topics.get(&name).ok_or_else(|| Status::not_found(format!("topic '{name}' not found")))?;
        Ok(Response::new(proto::DescribeTopicResponse { topic: Some(description(&name, partitions)) }))
    }

    async fn cluster_status(
        &self,
        _request: Request<proto::ClusterStatusRequest>,
    ) -> Result<Response<proto::ClusterStatusResponse>, Status> {
        let state = self.enter("cluster_status")?;
        let address = state.address.map_or_else(|| "127.0.0.1:7070".to_string(), |address| address.to_string());
        Ok(Response::new(proto::ClusterStatusResponse {
            node_id: 1,
            nodes: vec![proto::NodeStatus { node_id: 1, address, live: true }],
            groups: Vec::new(),
            cluster: "single-node".to_string(),
            operations: Vec::new(),
        }))
    }
}
