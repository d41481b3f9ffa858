//! A subscription that survives `UNAVAILABLE`: it reopens at the offset after the last
//! record it delivered (a leader change or a node restart), within the retry policy.

use cairn_proto::v1::cairn_client::CairnClient as ProtoClient;
use cairn_types::StoredRecord;
use futures::Stream;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::proto::{SubscribeRequest, SubscribeResponse, subscribe_request::Start};
use crate::{ClientError, RetryPolicy};
use cairn_proto::stored_records_from_proto;

struct Subscription {
    client: ProtoClient<Channel>,
    retry_policy: RetryPolicy,
    /// Starts where the next reopen should start.
    request: SubscribeRequest,
    responses: Option<tonic::Streaming<SubscribeResponse>>,
    /// Set when a stream broke; cleared when a message arrives.
    failing_since: Option<Instant>,
    finished: bool,
}

pub(crate) fn subscribe(
    client: ProtoClient<Channel>,
    retry_policy: RetryPolicy,
    request: SubscribeRequest,
) -> impl Stream<Item = Result<Vec<StoredRecord>, ClientError>> {
    let subscription =
        Subscription { client, retry_policy, request, responses: None, failing_since: None, finished: false };
    futures::stream::unfold(subscription, |mut subscription| async move {
        if subscription.finished {
            return None;
        }
        match subscription.next_records().await {
            Ok(Some(records)) => Some((Ok(records), subscription)),
            Ok(None) => None,
            Err(error) => {
                subscription.finished = true;
                Some((Err(error), subscription))
            }
        }
    })
}

impl Subscription {
    /// The next non-empty batch; `None` when the server ended the stream.
    async fn next_records(&mut self) -> Result<Option<Vec<StoredRecord>>, ClientError> {
        loop {
            let responses = match &mut self.responses {
                Some(responses) => responses,
                None => self.responses.insert(self.open().await?),
            };
            match responses.message().await {
                Ok(Some(response)) => {
                    self.failing_since = None;
                    let Some(last) = response.records.last() else { continue };
                    let next_offset = last.offset.checked_add(1).ok_or_else(|| {
                        ClientError::InvalidResponse(format!("record offset {} overflows", last.offset))
                    })?;
                    self.request.start = Some(Start::Offset(next_offset));
                    return Ok(Some(stored_records_from_proto(response.records)));
                }
                Ok(None) => return Ok(None),
                Err(status) if status.code() == tonic::Code::Unavailable && self.may_resume() => {
                    self.responses = None;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }

    async fn open(&self) -> Result<tonic::Streaming<SubscribeResponse>, ClientError> {
        let outcome = self
            .retry_policy
            .run(|| {
                let mut client = self.client.clone();
                let request = self.request.clone();
                async move { client.subscribe(request).await.map(tonic::Response::into_inner) }
            })
            .await;
        Ok(outcome.result?)
    }

    /// Whether a broken stream may be reopened: not when it has been failing for longer
    /// than the retry policy allows.
    fn may_resume(&mut self) -> bool {
        let now = Instant::now();
        let failing_since = *self.failing_since.get_or_insert(now);
        now.duration_since(failing_since).as_millis() < u128::from(self.retry_policy.retry_total_ms)
    }
}
