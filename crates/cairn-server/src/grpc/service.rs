//! The public `cairn.v1.Cairn` gRPC service: a thin adapter over `api::CairnApi`. Each
//! handler reads the hop count, converts the message (`convert`), calls the api and
//! converts the answer back, and maps a failure to a status (`status`).

use std::pin::Pin;
use std::sync::Arc;

use cairn_proto::v1 as pb;
use futures::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use crate::api::{CairnApi, RemoveNodeRequest, TransferLeaderRequest};
use crate::grpc::convert::{operation_status, topic_summary};
use crate::grpc::forward::hops;
use crate::grpc::group_convert::GroupMessageError;
use crate::grpc::status;
use crate::grpc::stream_convert::PartitionNotNamed;

pub struct CairnService {
    api: Arc<CairnApi>,
}

impl CairnService {
    /// Serves `api`, which the HTTP listener shares.
    pub fn new(api: Arc<CairnApi>) -> CairnService {
        CairnService { api }
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::cairn_server::Cairn for CairnService {
    async fn append(&self, request: Request<pb::AppendRequest>) -> Result<Response<pb::AppendResponse>, Status> {
        let hops = hops(&request);
        let answer = self.api.append(request.into_inner().into(), hops).await.map_err(status::from_append)?;
        Ok(Response::new(answer.into()))
    }

    async fn append_to_streams(
        &self,
        request: Request<pb::AppendToStreamsRequest>,
    ) -> Result<Response<pb::AppendToStreamsResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner().try_into().map_err(status::from_bad_event_id)?;
        let answer = self.api.append_to_streams(request, hops).await.map_err(status::from_append)?;
        Ok(Response::new(answer.into()))
    }

    async fn read_stream(
        &self,
        request: Request<pb::ReadStreamRequest>,
    ) -> Result<Response<pb::ReadStreamResponse>, Status> {
        let hops = hops(&request);
        let read = self.api.read_stream(request.into_inner().into(), hops).await.map_err(status::from_read)?;
        Ok(Response::new(read.into()))
    }

    async fn query_events(
        &self,
        request: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<pb::QueryEventsResponse>, Status> {
        let hops = hops(&request);
        let request = request
            .into_inner()
            .try_into()
            .map_err(|err: PartitionNotNamed| Status::invalid_argument(err.to_string()))?;
        let read = self.api.query_events(request, hops).await.map_err(status::from_read)?;
        Ok(Response::new(read.into()))
    }

    async fn delete_stream(
        &self,
        request: Request<pb::DeleteStreamRequest>,
    ) -> Result<Response<pb::StreamChangedResponse>, Status> {
        let hops = hops(&request);
        let answer = self.api.change_stream(request.into_inner().into(), hops).await.map_err(status::from_append)?;
        Ok(Response::new(answer.into()))
    }

    async fn set_stream_metadata(
        &self,
        request: Request<pb::SetStreamMetadataRequest>,
    ) -> Result<Response<pb::StreamChangedResponse>, Status> {
        let hops = hops(&request);
        let answer = self.api.change_stream(request.into_inner().into(), hops).await.map_err(status::from_append)?;
        Ok(Response::new(answer.into()))
    }

    async fn get_stream_info(
        &self,
        request: Request<pb::GetStreamInfoRequest>,
    ) -> Result<Response<pb::StreamInfoResponse>, Status> {
        let hops = hops(&request);
        let info = self.api.stream_info(request.into_inner().into(), hops).await.map_err(status::from_read)?;
        Ok(Response::new(info.into()))
    }

    async fn read(&self, request: Request<pb::ReadRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        let hops = hops(&request);
        let batch = self.api.read(request.into_inner().into(), hops).await.map_err(status::from_read)?;
        Ok(Response::new(batch.into()))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        let hops = hops(&request);
        let subscription = self.api.subscribe(request.into_inner().into(), hops).await.map_err(status::from_read)?;
        let messages = subscription.map(|batch| batch.map(pb::SubscribeResponse::from).map_err(status::from_read));
        Ok(Response::new(Box::pin(messages)))
    }

    async fn offset_for_timestamp(
        &self,
        request: Request<pb::OffsetForTimestampRequest>,
    ) -> Result<Response<pb::OffsetForTimestampResponse>, Status> {
        let hops = hops(&request);
        let found =
            self.api.offset_for_timestamp(request.into_inner().into(), hops).await.map_err(status::from_read)?;
        Ok(Response::new(pb::OffsetForTimestampResponse { offset: found.offset, found: found.found }))
    }

    async fn init_producer(
        &self,
        request: Request<pb::InitProducerRequest>,
    ) -> Result<Response<pb::InitProducerResponse>, Status> {
        let producer_id = self.api.init_producer(hops(&request)).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::InitProducerResponse { producer_id }))
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let hops = hops(&request);
        let topic = self.api.create_topic(request.into_inner().into(), hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::CreateTopicResponse { topic: Some(topic.into()) }))
    }

    async fn alter_topic(
        &self,
        request: Request<pb::AlterTopicRequest>,
    ) -> Result<Response<pb::AlterTopicResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let alter = crate::api::AlterTopicRequest { name: request.name, partitions: request.partitions };
        let topic = self.api.alter_topic(alter, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::AlterTopicResponse { topic: Some(topic.into()) }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let hops = hops(&request);
        self.api.delete_topic(request.into_inner().name, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let transfer =
            TransferLeaderRequest { topic: request.topic, partition: request.partition, to_node: request.to_node };
        let leader = self.api.transfer_leader(transfer, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::TransferLeaderResponse { leader }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let remove = RemoveNodeRequest { node_id: request.node_id, force: request.force };
        let replicas_left = self.api.remove_node(remove, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::RemoveNodeResponse { replicas_left }))
    }

    async fn move_partition(
        &self,
        request: Request<pb::MovePartitionRequest>,
    ) -> Result<Response<pb::OperationsResponse>, Status> {
        let hops = hops(&request);
        let operation_ids =
            self.api.move_partition(request.into_inner().into(), hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::OperationsResponse { operation_ids }))
    }

    async fn rebalance(
        &self,
        request: Request<pb::RebalanceRequest>,
    ) -> Result<Response<pb::RebalanceResponse>, Status> {
        let hops = hops(&request);
        let answer = self.api.rebalance(request.into_inner().dry_run, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(answer.into()))
    }

    async fn decommission_node(
        &self,
        request: Request<pb::DecommissionNodeRequest>,
    ) -> Result<Response<pb::OperationsResponse>, Status> {
        let hops = hops(&request);
        let operation_ids =
            self.api.decommission_node(request.into_inner().node_id, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::OperationsResponse { operation_ids }))
    }

    async fn list_operations(
        &self,
        request: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        let operations = self.api.list_operations(request.into_inner().all).iter().map(operation_status).collect();
        Ok(Response::new(pb::ListOperationsResponse { operations }))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let topics = self.api.list_topics().into_iter().map(topic_summary).collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::DescribeTopicResponse>, Status> {
        let topic = self.api.describe_topic(&request.into_inner().name).map_err(status::from_admin)?;
        Ok(Response::new(pb::DescribeTopicResponse { topic: Some(topic.into()) }))
    }

    async fn join_cluster(
        &self,
        request: Request<pb::JoinClusterRequest>,
    ) -> Result<Response<pb::JoinClusterResponse>, Status> {
        let hops = hops(&request);
        let request = request.into_inner();
        let join =
            crate::api::JoinRequest { node_id: request.node_id, address: request.address, cluster: request.cluster };
        let cluster = self.api.join_cluster(join, hops).await.map_err(status::from_admin)?;
        Ok(Response::new(pb::JoinClusterResponse { cluster }))
    }

    async fn group(&self, request: Request<pb::GroupRequest>) -> Result<Response<pb::GroupResponse>, Status> {
        let hops = hops(&request);
        let request = request
            .into_inner()
            .try_into()
            .map_err(|err: GroupMessageError| Status::invalid_argument(err.to_string()))?;
        let answer = self.api.group_call(request, hops).await.map_err(status::from_group)?;
        Ok(Response::new(answer.into()))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let hops = hops(&request);
        let groups = match request.into_inner().partition {
            Some(partition) => self.api.list_groups_in(partition),
            None => self.api.list_groups(hops).await,
        }
        .map_err(status::from_read)?;
        Ok(Response::new(pb::ListGroupsResponse { groups: groups.into_iter().map(Into::into).collect() }))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Ok(Response::new(self.api.cluster_status().into()))
    }
}
