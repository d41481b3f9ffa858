//! Bounds on what the public API holds in memory at once: requests in flight and their
//! bytes, per node and per client connection.
//!
//! tonic decodes a whole request before the service sees it, so a limit checked in
//! `CairnService` comes too late: 500 clients each sending a 16 MiB append would have
//! 8 GiB decoded (and copied again into the Raft log) before any check. This tower layer
//! sits in front of the public service and, before a request's message is read:
//!
//! - counts it against `requests_in_flight_max` (node-wide);
//! - reads the gRPC message prefix (5 bytes: flag and length) and counts the message's
//!   length against `request_bytes_in_flight_max` (node-wide) and
//!   `connection_request_bytes_in_flight_max` (its connection);
//!
//! and refuses it at once with `RESOURCE_EXHAUSTED`, naming the limit, when that would
//! pass a limit. A refused request's message is never read: HTTP/2 flow control keeps what
//! a client sends unread at one connection window. An admitted request holds its share
//! until its response is ready, which for a unary call is when the handler is done with
//! the request (for `Subscribe`, when the subscription is set up; its stream is bounded by
//! `subscriptions_max`). The number of requests on one connection is bounded by HTTP/2
//! (`connection_streams_max`, set as the server's concurrent-stream limit): more wait in
//! the client, which is backpressure, not an error.
//!
//! The Raft transport between nodes is not counted here: it has bounds of its own, and
//! peers' messages must not be refused because clients fill the budget. A request another
//! node forwarded (`x-cairn-hops`) counts against the node's limits but not its
//! connection's: that connection carries the requests of all the forwarding node's
//! clients.
//!
//! Its refusals are the one `tonic::Status` built outside `grpc/status.rs`: they are
//! answered by this layer, on the raw HTTP request, before tonic or the api sees it, so no
//! api error exists to map; each is `RESOURCE_EXHAUSTED` with a message naming its limit.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use cairn_types::Limits;
use futures::future::BoxFuture;
use http_body::{Body as _, Frame};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

/// The public service's path prefix: only its requests are counted.
const COUNTED_PATH_PREFIX: &str = "/cairn.v1.Cairn/";
/// A gRPC message starts with a compression flag and a 4-byte big-endian length.
const GRPC_PREFIX_BYTES: usize = 5;

/// The limits this layer enforces (from `Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlightLimits {
    pub requests_in_flight_max: usize,
    pub request_bytes_in_flight_max: usize,
    pub connection_request_bytes_in_flight_max: usize,
}

impl InFlightLimits {
    pub fn from_limits(limits: &Limits) -> InFlightLimits {
        InFlightLimits {
            requests_in_flight_max: limits.requests_in_flight_max,
            request_bytes_in_flight_max: limits.request_bytes_in_flight_max,
            connection_request_bytes_in_flight_max: limits.connection_request_bytes_in_flight_max,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Usage {
    requests: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct InFlight {
    node: Usage,
    /// Only connections with something in flight have an entry.
    connections: HashMap<SocketAddr, Usage>,
}

/// What the node's public requests hold right now, against the limits.
#[derive(Debug)]
pub struct RequestLimits {
    limits: InFlightLimits,
    in_flight: Mutex<InFlight>,
}

/// An admitted request's share; given back on drop.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<RequestLimits>,
    connection: Option<SocketAddr>,
    bytes: usize,
}

impl RequestLimits {
    pub fn new(limits: InFlightLimits) -> Arc<RequestLimits> {
        Arc::new(RequestLimits { limits, in_flight: Mutex::new(InFlight::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        // The counters stay consistent under every panic-free path; a poisoned lock only
        // means another thread panicked while holding it, and the numbers are still usable.
        self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Requests in flight and their message bytes, node-wide.
    pub fn node_usage(&self) -> (usize, usize) {
        let in_flight = self.lock();
        (in_flight.node.requests, in_flight.node.bytes)
    }

    /// Admits one more request from `connection`, or refuses it.
    pub fn admit(self: &Arc<Self>, connection: Option<SocketAddr>) -> Result<Admitted, Status> {
        let mut in_flight = self.lock();
        if in_flight.node.requests >= self.limits.requests_in_flight_max {
            return Err(Status::resource_exhausted(format!(
                "this node is serving {} requests, its limit (requests_in_flight_max): retry later",
                self.limits.requests_in_flight_max
            )));
        }
        in_flight.node.requests += 1;
        if let Some(connection) = connection {
            in_flight.connections.entry(connection).or_default().requests += 1;
        }
        Ok(Admitted { limits: Arc::clone(self), connection, bytes: 0 })
    }

    /// What is in flight: node-wide, and on `connection`.
    pub fn usage(&self, connection: SocketAddr) -> ((usize, usize), (usize, usize)) {
        let in_flight = self.lock();
        let on_connection = in_flight.connections.get(&connection).copied().unwrap_or_default();
        ((in_flight.node.requests, in_flight.node.bytes), (on_connection.requests, on_connection.bytes))
    }
}

impl Admitted {
    /// Counts `bytes` more for this request, or refuses them (and the request).
    pub fn add_bytes(&mut self, bytes: usize) -> Result<(), Status> {
        let limits = self.limits.limits;
        let mut in_flight = self.limits.lock();
        if in_flight.node.bytes.saturating_add(bytes) > limits.request_bytes_in_flight_max {
            return Err(Status::resource_exhausted(format!(
                "this node holds {} bytes of requests in flight and this one has {bytes}; the limit is {} \
                 (request_bytes_in_flight_max): retry later",
                in_flight.node.bytes, limits.request_bytes_in_flight_max
            )));
        }
        if let Some(connection) = self.connection {
            let on_connection = in_flight.connections.entry(connection).or_default();
            if on_connection.bytes.saturating_add(bytes) > limits.connection_request_bytes_in_flight_max {
                return Err(Status::resource_exhausted(format!(
                    "this connection has {} bytes of requests in flight and this one has {bytes}; the limit is {} \
                     per connection (connection_request_bytes_in_flight_max): wait for answers, or retry later",
                    on_connection.bytes, limits.connection_request_bytes_in_flight_max
                )));
            }
            on_connection.bytes += bytes;
        }
        in_flight.node.bytes += bytes;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut in_flight = self.limits.lock();
        in_flight.node.requests -= 1;
        in_flight.node.bytes -= self.bytes;
        if let Some(connection) = self.connection
            && let Some(usage) = in_flight.connections.get_mut(&connection)
        {
            usage.requests -= 1;
            usage.bytes -= self.bytes;
            if usage.requests == 0 {
                in_flight.connections.remove(&connection);
            }
        }
    }
}

/// The tower layer that puts `RequestLimits` in front of a service.
#[derive(Clone)]
pub struct RequestLimitsLayer {
    limits: Arc<RequestLimits>,
}

impl RequestLimitsLayer {
    pub fn new(limits: Arc<RequestLimits>) -> RequestLimitsLayer {
        RequestLimitsLayer { limits }
    }
}

impl<S> tower::Layer<S> for RequestLimitsLayer {
    type Service = RequestLimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLimitsService { inner, limits: Arc::clone(&self.limits) }
    }
}

#[derive(Clone)]
pub struct RequestLimitsService<S> {
    inner: S,
    limits: Arc<RequestLimits>,
}

impl<S> tower::Service<http::Request<Body>> for RequestLimitsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !request.uri().path().starts_with(COUNTED_PATH_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        // The ready service answers this call; a clone takes its place for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limits = Arc::clone(&self.limits);
        Box::pin(async move {
            let forwarded = request.headers().contains_key(crate::forward::HOPS_HEADER);
            let connection = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
                .filter(|_| !forwarded);
            let mut admitted = match limits.admit(connection) {
                Ok(admitted) => admitted,
                Err(status) => return Ok(status.into_http()),
            };
            let (parts, body) = request.into_parts();
            let (message_bytes, body) = match read_message_length(body).await {
                Ok(read) => read,
                Err(status) => return Ok(status.into_http()),
            };
            if let Err(status) = admitted.add_bytes(message_bytes) {
                tracing::debug!(path = parts.uri.path(), message_bytes, message = status.message(), "request refused");
                return Ok(status.into_http());
            }
            let response = inner.call(http::Request::from_parts(parts, Body::new(body))).await;
            drop(admitted);
            response
        })
    }
}

/// Reads frames of `body` until the gRPC message prefix is in; returns the message's
/// length (0 if the body ends first: tonic then answers the malformed request) and a body
/// that yields everything again, the frames read first.
async fn read_message_length(mut body: Body) -> Result<(usize, Replayed), Status> {
    let mut read = VecDeque::new();
    let mut prefix = Vec::with_capacity(GRPC_PREFIX_BYTES);
    while prefix.len() < GRPC_PREFIX_BYTES {
        let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await else { break };
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            let wanted = GRPC_PREFIX_BYTES - prefix.len();
            prefix.extend_from_slice(&data.chunk()[..wanted.min(data.len())]);
        }
        read.push_back(frame);
    }
    let length = match prefix.get(1..GRPC_PREFIX_BYTES) {
        Some(length) => u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize,
        None => 0,
    };
    Ok((length, Replayed { read, rest: body }))
}

/// A request body whose first frames were already read: yields them, then the rest.
struct Replayed {
    read: VecDeque<Frame<Bytes>>,
    rest: Body,
}

impl http_body::Body for Replayed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(frame) = self.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Arc<RequestLimits> {
        RequestLimits::new(InFlightLimits {
            requests_in_flight_max: 3,
            request_bytes_in_flight_max: 100,
            connection_request_bytes_in_flight_max: 60,
        })
    }

    fn address(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn requests_and_bytes_are_bounded_per_node_and_connection() {
        let limits = limits();
        let mut first = limits.admit(address(1)).expect("first");
        first.add_bytes(50).expect("50 of 60 on connection 1");
        let mut second = limits.admit(address(1)).expect("second");
        let refused = second.add_bytes(20).expect_err("70 > 60 on connection 1");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("connection_request_bytes_in_flight_max"), "{}", refused.message());
        let mut third = limits.admit(address(2)).expect("third");
        third.add_bytes(50).expect("100 of 100 on the node");
        let refused = limits.admit(address(3)).expect_err("a fourth request");
        assert!(refused.message().contains("requests_in_flight_max"), "{}", refused.message());
        drop(second);
        let mut fourth = limits.admit(address(3)).expect("room again");
        let refused = fourth.add_bytes(1).expect_err("the node is full");
        assert!(refused.message().contains("request_bytes_in_flight_max"), "{}", refused.message());
        drop((first, third, fourth));
        assert_eq!(limits.usage(SocketAddr::from(([127, 0, 0, 1], 1))), ((0, 0), (0, 0)), "all given back");
        assert!(limits.lock().connections.is_empty(), "idle connections leave no entry");
    }

    #[tokio::test]
    async fn the_message_length_is_read_and_the_body_replayed() {
        let message: &[u8] = &[0, 0, 0, 1, 2, 9, 9];
        // The prefix split over two frames.
        let frames: Vec<Result<Frame<Bytes>, Status>> = vec![
            Ok(Frame::data(Bytes::copy_from_slice(&message[..3]))),
            Ok(Frame::data(Bytes::copy_from_slice(&message[3..]))),
        ];
        let body = Body::new(http_body_util_stream(frames));
        let (length, mut replayed) = read_message_length(body).await.expect("read");
        assert_eq!(length, 258);
        let mut all = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut replayed).poll_frame(cx)).await {
            all.extend_from_slice(frame.expect("frame").data_ref().expect("data"));
        }
        assert_eq!(all, message, "every byte is passed on, in order");
    }

    /// A body yielding `frames`.
    fn http_body_util_stream(
        frames: Vec<Result<Frame<Bytes>, Status>>,
    ) -> impl http_body::Body<Data = Bytes, Error = Status> {
        struct Frames(VecDeque<Result<Frame<Bytes>, Status>>);
        impl http_body::Body for Frames {
            type Data = Bytes;
            type Error = Status;
            fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
                Poll::Ready(self.0.pop_front())
            }
        }
        Frames(frames.into())
    }
}
