//! A peer's shared stream: `PeerStream` writes the queued requests of every group as
//! frames, `read_replies` hands each reply back to its caller through `Waiting`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::v1::{RaftEnvelope, RaftFrame};
use cairn_raft::TransportError;
use cairn_types::NodeId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tonic::Streaming;
use tonic::transport::Channel;

use super::client::Queued;
use super::{FRAME_BYTES_MAX, FRAME_ENVELOPES_MAX, failure, lock, raft_client};
use crate::cluster_identity::ClusterIdentity;

/// Frames handed to gRPC and not yet written.
const FRAMES_QUEUED_MAX: usize = 16;
/// How long opening a stream (connecting included) may take.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Frames and envelopes this node has sent on its streams, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct StreamCounters {
    pub frames: AtomicU64,
    pub envelopes: AtomicU64,
}

/// The writer of one peer's stream: opens a stream when there is something to send, and a
/// new one after the old one ends.
pub(super) struct PeerStream {
    pub(super) address: String,
    pub(super) channel: Channel,
    pub(super) node_id: NodeId,
    pub(super) cluster: ClusterIdentity,
    pub(super) counters: Arc<StreamCounters>,
    /// One permit per request sent and not yet answered.
    pub(super) pending_slots: Arc<Semaphore>,
    pub(super) next_id: u64,
}

impl PeerStream {
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Queued>) {
        while let Some(first) = queue.recv().await {
            let waiting = Arc::new(Waiting::new(self.address.clone()));
            let (frames, frames_out) = mpsc::channel(FRAMES_QUEUED_MAX);
            // The first frame is queued before the call, so opening the stream sends it.
            let frame = self.frame(first, &mut queue, &waiting).await;
            if frames.try_send(frame).is_err() {
                waiting.close("the stream's frame queue refused its first frame");
                continue;
            }
            let mut client = raft_client(self.channel.clone());
            let opened = tokio::time::timeout(
                STREAM_OPEN_TIMEOUT,
                client.exchange(tokio_stream::wrappers::ReceiverStream::new(frames_out)),
            )
            .await;
            let replies = match opened {
                Ok(Ok(replies)) => replies.into_inner(),
                Ok(Err(status)) => {
                    waiting.close(&format!("cannot open a stream: {}", status.message()));
                    continue;
                }
                Err(_) => {
                    waiting.close(&format!("no stream within {STREAM_OPEN_TIMEOUT:?}"));
                    continue;
                }
            };
            let mut reader = tokio::spawn(read_replies(replies, Arc::clone(&waiting)));
            loop {
                let next = tokio::select! {
                    biased;
                    _ = &mut reader => break,
                    next = queue.recv() => next,
                };
                let Some(next) = next else {
                    reader.abort();
                    waiting.close("this node's transport stopped");
                    return;
                };
                let sent = tokio::select! {
                    _ = &mut reader => false,
                    sent = async {
                        let frame = self.frame(next, &mut queue, &waiting).await;
                        frames.send(frame).await.is_ok()
                    } => sent,
                };
                if !sent {
                    break;
                }
            }
            reader.abort();
            waiting.close("the stream ended");
        }
    }

    /// `first` and whatever else is queued, up to a frame's limits, registered as waiting.
    async fn frame(&mut self, first: Queued, queue: &mut mpsc::Receiver<Queued>, waiting: &Waiting) -> RaftFrame {
        let mut envelopes = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(Queued { target, mut envelope, reply, .. }) = next.take() {
            let slot = match Arc::clone(&self.pending_slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    // Callers that gave up (timed out) still hold slots until the peer
                    // answers: free those before waiting for a reply.
                    waiting.forget_abandoned();
                    Arc::clone(&self.pending_slots).acquire_owned().await.ok()
                }
            };
            let Some(slot) = slot else {
                let _ = reply.send(Err(TransportError::Failed { node: target, detail: "transport closed".into() }));
                break;
            };
            self.next_id += 1;
            envelope.id = self.next_id;
            bytes += envelope.payload.len();
            if waiting.insert(envelope.id, Waiter { target, reply, _slot: slot }) {
                envelopes.push(envelope);
            }
            if envelopes.len() >= FRAME_ENVELOPES_MAX || bytes >= FRAME_BYTES_MAX {
                break;
            }
            next = queue.try_recv().ok();
        }
        self.counters.frames.fetch_add(1, Ordering::Relaxed);
        self.counters.envelopes.fetch_add(envelopes.len() as u64, Ordering::Relaxed);
        RaftFrame { cluster: self.cluster.get(), from_node: self.node_id, envelopes }
    }
}

/// Hands the replies of one stream to their callers; when the stream ends, fails the rest.
async fn read_replies(mut replies: Streaming<RaftFrame>, waiting: Arc<Waiting>) {
    let ended = loop {
        match replies.message().await {
            Ok(Some(frame)) => {
                for envelope in frame.envelopes {
                    waiting.answer(envelope);
                }
            }
            Ok(None) => break "the peer closed the stream".to_owned(),
            Err(status) => break format!("the stream failed: {}", status.message()),
        }
    };
    waiting.close(&ended);
}

struct Waiter {
    target: NodeId,
    reply: oneshot::Sender<Result<Bytes, TransportError>>,
    _slot: OwnedSemaphorePermit,
}

/// The requests of one stream waiting for replies; `None` once the stream ended, so a late
/// request fails at once instead of waiting for a reply that cannot come.
struct Waiting {
    waiters: Mutex<Option<HashMap<u64, Waiter>>>,
    address: String,
}

impl Waiting {
    fn new(address: String) -> Waiting {
        Waiting { waiters: Mutex::new(Some(HashMap::new())), address }
    }

    /// Whether `waiter` was registered; if the stream already ended it is failed instead.
    fn insert(&self, id: u64, waiter: Waiter) -> bool {
        let mut waiters = lock(&self.waiters);
        match waiters.as_mut() {
            Some(waiters) => {
                waiters.insert(id, waiter);
                true
            }
            None => {
                let _ = waiter.reply.send(Err(TransportError::Unreachable {
                    node: waiter.target,
                    address: self.address.clone(),
                    detail: "the stream ended".into(),
                }));
                false
            }
        }
    }

    fn answer(&self, envelope: RaftEnvelope) {
        let waiter = lock(&self.waiters).as_mut().and_then(|waiters| waiters.remove(&envelope.id));
        // A reply nobody waits for answered a caller that gave up: drop it.
        let Some(waiter) = waiter else { return };
        let result = if envelope.code == tonic::Code::Ok as i32 {
            Ok(envelope.payload)
        } else {
            Err(failure(waiter.target, &self.address, tonic::Code::from(envelope.code), &envelope.error))
        };
        let _ = waiter.reply.send(result);
    }

    fn forget_abandoned(&self) {
        if let Some(waiters) = lock(&self.waiters).as_mut() {
            waiters.retain(|_, waiter| !waiter.reply.is_closed());
        }
    }

    /// Ends the stream's bookkeeping: every request still waiting fails as unreachable.
    fn close(&self, detail: &str) {
        let Some(waiters) = lock(&self.waiters).take() else { return };
        for waiter in waiters.into_values() {
            let _ = waiter.reply.send(Err(TransportError::Unreachable {
                node: waiter.target,
                address: self.address.clone(),
                detail: detail.to_owned(),
            }));
        }
    }
}
