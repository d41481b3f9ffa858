//! Subscriptions: a partition's records as they are applied, from a start position, served
//! by a task per subscription (at most `subscriptions_max` per node), or relayed from a
//! node that holds a replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn_types::Offset;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::read::{offset_for_timestamp_blocking, read_blocking};
use crate::api::{CairnApi, ReadError, StartPosition, SubscribeBatch, SubscribeRequest};

/// Messages buffered per subscription before the server waits for the client.
const SUBSCRIPTION_BUFFER: usize = 8;

/// A subscription's batches, until it fails or the client goes.
pub type Subscription = BoxStream<'static, Result<SubscribeBatch, ReadError>>;

impl CairnApi {
    pub async fn subscribe(&self, request: SubscribeRequest, hops: u32) -> Result<Subscription, ReadError> {
        // Without a replica here, relay the stream of a node that holds one; the relay
        // takes a subscription slot here too.
        let slot = SubscriptionSlot::take(&self.subscriptions, self.host.limits().subscriptions_max)?;
        let forwarded = request.clone();
        let replica = match self
            .replica_or_forward(&request.topic, request.partition, hops, |address| {
                self.forward.subscribe(address, forwarded.clone(), hops)
            })
            .await?
        {
            Ok(replica) => replica,
            Err(relayed) => {
                let relayed = relayed.map(move |message| {
                    let _held = &slot;
                    message.map_err(ReadError::Remote)
                });
                return Ok(relayed.boxed());
            }
        };
        self.make_consistent(&replica, request.consistency).await?;
        let state = replica.view.borrow().log;
        let mut from = match request.start {
            StartPosition::Earliest => state.log_start_offset,
            StartPosition::Latest => state.next_offset,
            StartPosition::Offset(offset) => offset,
            StartPosition::TimestampMs(timestamp_ms) => {
                offset_for_timestamp_blocking(&replica, timestamp_ms, state).await?.unwrap_or(state.next_offset)
            }
        };
        let outside = |offset: Offset, state: &cairn_storage::PartitionLogState| ReadError::OffsetOutside {
            offset,
            log_start_offset: state.log_start_offset,
            next_offset: state.next_offset,
        };
        if from < state.log_start_offset {
            return Err(outside(from, &state));
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
                    let message = read_blocking(&replica, from, state, limits).await.map(|read| {
                        from = read.next_offset;
                        SubscribeBatch { records: read.records, high_watermark: state.next_offset }
                    });
                    // Below the high watermark a read moves on or fails (see
                    // PartitionLog::read), so this loop cannot spin. A read that only
                    // passed over records compaction removed sends nothing.
                    if message.as_ref().is_ok_and(|batch| batch.records.is_empty()) {
                        continue;
                    }
                    let failed = message.is_err();
                    if sender.send(message).await.is_err() || failed {
                        break;
                    }
                    continue;
                }
                tokio::select! {
                    changed = view.changed() => if changed.is_err() {
                        let _ = sender.send(Err(ReadError::SubscribedReplicaStopped)).await;
                        break;
                    },
                    () = sender.closed() => break,
                    () = tokio::time::sleep_until(start_deadline), if from > state.next_offset => {
                        let _ = sender.send(Err(outside(from, &state))).await;
                        break;
                    }
                }
            }
        });
        Ok(ReceiverStream::new(receiver).boxed())
    }
}

/// One of the node's `subscriptions_max` subscriptions, given back when dropped.
struct SubscriptionSlot(Arc<AtomicUsize>);

impl SubscriptionSlot {
    fn take(subscriptions: &Arc<AtomicUsize>, subscriptions_max: usize) -> Result<SubscriptionSlot, ReadError> {
        if subscriptions.fetch_add(1, Ordering::AcqRel) >= subscriptions_max {
            subscriptions.fetch_sub(1, Ordering::AcqRel);
            return Err(ReadError::TooManySubscriptions(subscriptions_max));
        }
        Ok(SubscriptionSlot(Arc::clone(subscriptions)))
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
