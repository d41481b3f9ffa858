//! The transport end to end: a `GrpcTransport` calling a `RaftTransportService`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::v1::raft_transport_server::RaftTransportServer;
use cairn_raft::network::BoxFuture;
use cairn_raft::{RpcKind, Transport, TransportError};
use cairn_types::{GroupId, NodeId};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::client::{PEER_PENDING_MAX, PEER_QUEUE_BYTES_MAX, PEER_QUEUE_MAX};
use super::*;
use crate::peers::{PeerSettings, Peers};

/// Answers with the payload reversed; group 13 is refused as not found, group 14 as
/// unavailable, group 15 after `release` is notified.
struct Echo {
    release: Arc<tokio::sync::Notify>,
}

impl RaftHandler for Echo {
    fn node_id(&self) -> NodeId {
        2
    }

    fn handle(&self, group: GroupId, to: NodeId, kind: RpcKind, payload: Bytes) -> BoxFuture<Result<Vec<u8>, Status>> {
        let release = Arc::clone(&self.release);
        Box::pin(async move {
            assert_eq!(to, 2);
            match group {
                13 => Err(Status::not_found("no group 13")),
                14 => Err(Status::unavailable("group 14 is electing")),
                15 => {
                    release.notified().await;
                    Ok(format!("{kind:?}").into_bytes())
                }
                _ => Ok(payload.iter().rev().copied().collect()),
            }
        })
    }
}

struct Server {
    address: SocketAddr,
    stopping: CancellationToken,
    served: tokio::task::JoinHandle<()>,
    release: Arc<tokio::sync::Notify>,
}

async fn serve(address: SocketAddr) -> Server {
    let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stopping = CancellationToken::new();
    let release = Arc::new(tokio::sync::Notify::new());
    let service = RaftTransportService {
        handler: Arc::new(Echo { release: Arc::clone(&release) }),
        cluster: ClusterIdentity::new("test-cluster".into()),
        stopping: stopping.clone(),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let shutdown = stopping.clone();
    let served = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(RaftTransportServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .expect("serve");
    });
    Server { address, stopping, served, release }
}

fn peers() -> Arc<Peers> {
    let ms = Duration::from_millis;
    let loopback = "127.0.0.1".parse().expect("ip");
    Arc::new(Peers::new(PeerSettings::from_failure_detection(ms(600), ms(900), ms(10_000), loopback)))
}

fn call(
    transport: &GrpcTransport,
    server: &Server,
    group: GroupId,
    kind: RpcKind,
    payload: Vec<u8>,
) -> BoxFuture<Result<Bytes, TransportError>> {
    transport.call(2, server.address.to_string(), group, kind, payload)
}

#[tokio::test]
async fn queued_messages_share_frames_and_each_reply_finds_its_caller() {
    let server = serve("127.0.0.1:0".parse().expect("address")).await;
    let transport = GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers());
    let calls =
        (0..300u64).map(|i| call(&transport, &server, 100 + i, RpcKind::AppendEntries, i.to_be_bytes().to_vec()));
    let replies = join_all(calls).await;
    for (i, reply) in (0..300u64).zip(replies) {
        let mut expected = i.to_be_bytes().to_vec();
        expected.reverse();
        assert_eq!(reply.expect("reply").to_vec(), expected, "call {i}");
    }
    let frames = transport.counters().frames.load(Ordering::Relaxed);
    let envelopes = transport.counters().envelopes.load(Ordering::Relaxed);
    assert_eq!(envelopes, 300);
    assert!(frames <= 3, "300 queued calls went out in {frames} frames (at most 256 a frame)");

    // Failures keep their meaning: unavailable means unreachable, the rest fail.
    let refused = call(&transport, &server, 13, RpcKind::Vote, vec![]).await;
    assert!(matches!(&refused, Err(TransportError::Failed { detail, .. }) if detail == "no group 13"), "{refused:?}");
    let electing = call(&transport, &server, 14, RpcKind::ReadIndex, vec![]).await;
    assert!(matches!(electing, Err(TransportError::Unreachable { .. })), "{electing:?}");

    // A slow reply holds up no other: later calls are answered while it waits.
    let slow = tokio::spawn(call(&transport, &server, 15, RpcKind::ReadIndex, vec![]));
    assert_eq!(call(&transport, &server, 1, RpcKind::PreVote, vec![1, 2]).await.expect("reply").to_vec(), vec![2, 1]);
    server.release.notify_one();
    assert_eq!(slow.await.expect("join").expect("reply").to_vec(), b"ReadIndex");

    // Snapshots and large payloads take unary calls, with the same answers.
    let big = vec![7u8; STREAM_PAYLOAD_MAX + 1];
    assert_eq!(call(&transport, &server, 1, RpcKind::AppendEntries, big.clone()).await.expect("reply").to_vec(), big);
    assert_eq!(
        call(&transport, &server, 1, RpcKind::SnapshotChunk, vec![1, 2, 3]).await.expect("reply").to_vec(),
        [3, 2, 1]
    );
    assert_eq!(transport.counters().envelopes.load(Ordering::Relaxed), 304, "only the small ones streamed");
}

/// Heartbeats do not queue behind data: with the peer's stream full of requests it has
/// not answered (so the writer can send nothing more on it), a heartbeat still goes
/// through, on its own lane.
#[tokio::test]
async fn a_heartbeat_is_answered_while_the_data_stream_is_full() {
    let server = serve("127.0.0.1:0".parse().expect("address")).await;
    let transport = GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers());
    let stuck: Vec<_> = (0..PEER_PENDING_MAX + 8)
        .map(|_| tokio::spawn(call(&transport, &server, 15, RpcKind::AppendEntries, vec![0; 64])))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while transport.counters().envelopes.load(Ordering::Relaxed) < PEER_PENDING_MAX as u64 {
        assert!(tokio::time::Instant::now() < deadline, "the stuck calls were not sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let vote = call(&transport, &server, 1, RpcKind::Vote, vec![1, 2]);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), vote).await.is_err(),
        "the data stream is full: a vote waits"
    );
    let beat = call(&transport, &server, 1, RpcKind::NodeHeartbeat, vec![5, 6]);
    let answered = tokio::time::timeout(Duration::from_secs(5), beat).await;
    assert_eq!(answered.expect("a heartbeat does not wait behind data").expect("reply").to_vec(), [6, 5]);
    for call in stuck {
        call.abort();
    }
}

/// A peer that takes no messages (its stream never opens) holds at most
/// `PEER_QUEUE_BYTES_MAX` of payloads in its queue: further callers wait. (The queue was
/// bounded only in messages: 4096 of 1 MiB.)
#[tokio::test(flavor = "current_thread")]
async fn a_stuck_peer_queues_bounded_bytes() {
    // Accepts connections and never answers: the writer waits to open its stream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let accepted = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    let transport = Arc::new(GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers()));
    let calls = 100;
    let callers: Vec<_> = (0..calls)
        .map(|group| {
            let call = transport.call(2, address.clone(), group, RpcKind::AppendEntries, vec![1; STREAM_PAYLOAD_MAX]);
            tokio::spawn(call)
        })
        .collect();
    // One thread: once every task waits, nothing moves until the stream times out.
    for _ in 0..10_000 {
        tokio::task::yield_now().await;
    }
    let queued = {
        let peers = lock(&transport.peers);
        let (queue, _) = peers.get(&address).expect("the peer's queue");
        PEER_QUEUE_MAX - queue.capacity()
    };
    assert!(
        queued * STREAM_PAYLOAD_MAX <= PEER_QUEUE_BYTES_MAX,
        "{queued} payloads of {STREAM_PAYLOAD_MAX} bytes queued, over {PEER_QUEUE_BYTES_MAX}"
    );
    assert!(queued > 0, "the queue takes what fits");
    for caller in callers {
        caller.abort();
    }
    accepted.abort();
}

#[tokio::test]
async fn another_clusters_messages_are_refused_on_the_stream() {
    let server = serve("127.0.0.1:0".parse().expect("address")).await;
    let stranger = GrpcTransport::new(1, ClusterIdentity::new("other-cluster".into()), peers());
    let refused = call(&stranger, &server, 1, RpcKind::AppendEntries, vec![1]).await;
    assert!(
        matches!(&refused, Err(TransportError::Failed { detail, .. }) if detail.contains("refused")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_stopped_peer_fails_calls_at_once_and_a_restarted_one_is_used_again() {
    let server = serve("127.0.0.1:0".parse().expect("address")).await;
    let address = server.address;
    let transport = GrpcTransport::new(1, ClusterIdentity::new("test-cluster".into()), peers());
    assert_eq!(call(&transport, &server, 1, RpcKind::Vote, vec![1, 2]).await.expect("reply").to_vec(), [2, 1]);

    // A call waiting on the stream when the peer shuts down fails; the shutdown is
    // not held up by the open stream.
    let waiting = tokio::spawn(call(&transport, &server, 15, RpcKind::Vote, vec![]));
    tokio::task::yield_now().await;
    server.stopping.cancel();
    server.release.notify_one();
    tokio::time::timeout(Duration::from_secs(10), server.served)
        .await
        .expect("graceful shutdown ends with a peer's stream open")
        .expect("join");
    let _ = waiting.await.expect("join");
    let down = transport.call(2, address.to_string(), 1, RpcKind::Vote, vec![1]).await;
    assert!(matches!(down, Err(TransportError::Unreachable { .. })), "{down:?}");

    let restarted = serve(address).await;
    let mut answered = None;
    for _ in 0..100 {
        match call(&transport, &restarted, 1, RpcKind::Vote, vec![3, 4]).await {
            Ok(reply) => {
                answered = Some(reply);
                break;
            }
            // The channel may still hold the old connection's failure for a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(answered.expect("the restarted peer answers").to_vec(), [4, 3]);
}
