//! Consumer group calls on `CairnClient`: the raw call every group operation is, and the
//! operator's calls (list, describe, reset positions, delete). A consumer that joins a
//! group is a `GroupConsumer` (`group_consumer.rs`).

use crate::proto::{self, group_request::Call};
use crate::{CairnClient, ClientError};

impl CairnClient {
    /// One call to group `group`'s coordinator (any node forwards it there), retried on
    /// `UNAVAILABLE` within the retry policy: every group call may be sent again (a join
    /// again with the same member id and topics, a commit again of the same positions,
    /// change nothing more). A refusal is `ClientError::GroupRefused`.
    pub async fn group_call(&self, group: &str, call: Call) -> Result<proto::GroupResponse, ClientError> {
        let request = proto::GroupRequest { group: group.to_string(), call: Some(call) };
        let response =
            self.call_idempotent(request, |mut client, request| async move { client.group(request).await }).await;
        let response = response.result?;
        if let Some(refusal) = &response.refusal {
            return Err(ClientError::GroupRefused {
                group: group.to_string(),
                code: proto::GroupRefusalCode::try_from(refusal.code).unwrap_or(proto::GroupRefusalCode::Unspecified),
                message: refusal.message.clone(),
            });
        }
        Ok(response)
    }

    /// Every consumer group of the cluster.
    pub async fn list_groups(&self) -> Result<Vec<proto::GroupSummary>, ClientError> {
        let request = proto::ListGroupsRequest { partition: None };
        let response =
            self.call_idempotent(request, |mut client, request| async move { client.list_groups(request).await }).await;
        Ok(response.result?.groups)
    }

    /// A group's members, partitions (owner, target) and committed positions.
    pub async fn describe_group(&self, group: &str) -> Result<proto::GroupDescription, ClientError> {
        let response = self.group_call(group, Call::Describe(proto::DescribeGroup {})).await?;
        response.description.ok_or_else(|| ClientError::InvalidResponse("the group description is missing".into()))
    }

    /// Sets a group's positions (the next offset to consume per partition); refused while
    /// the group has members.
    pub async fn reset_group_positions(
        &self,
        group: &str,
        positions: Vec<proto::GroupPosition>,
    ) -> Result<proto::GroupResponse, ClientError> {
        self.group_call(group, Call::Reset(proto::ResetPositions { positions })).await
    }

    /// Removes a group and its positions; refused while it has members.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        self.group_call(group, Call::Delete(proto::DeleteGroup {})).await.map(|_| ())
    }
}
