//! Counts every gRPC request the node serves (public API and Raft transport) by method and
//! status code, and how long each took: a tower layer in front of the tonic services.
//!
//! The code is read from the response's `grpc-status`: in its headers for an answer without
//! a body (errors), else in the body's trailers. A call counts when its response body ends
//! or is dropped, so a stream (`Subscribe`, the Raft `Exchange`) counts once, at its end,
//! with its whole life as its duration. Labels are bounded: a method is named only when
//! the call reached one (any path tonic answers `UNIMPLEMENTED` counts as `unknown`), and
//! codes are gRPC's 17.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::body::Body;

use crate::metrics::node_metrics::latency_histogram;

type MethodCode = [(&'static str, String); 2];
type Method = [(&'static str, String); 1];

/// The gRPC request series, registered in the node's registry.
#[derive(Debug)]
pub struct GrpcMetrics {
    requests: Family<MethodCode, Counter>,
    durations: Family<Method, Histogram, fn() -> Histogram>,
}

impl GrpcMetrics {
    pub fn register(registry: &mut Registry) -> Arc<GrpcMetrics> {
        let metrics = GrpcMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "cairn_grpc_requests",
            "gRPC requests served, by method (service/method) and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "cairn_grpc_request_duration_seconds",
            "How long gRPC requests took, by method: until the response ended (streams: their whole life)",
            metrics.durations.clone(),
        );
        Arc::new(metrics)
    }

    fn record(&self, method: &str, code: tonic::Code, started: Instant) {
        let method = if code == tonic::Code::Unimplemented { "unknown" } else { method };
        self.requests.get_or_create(&[("method", method.to_owned()), ("code", format!("{code:?}"))]).inc();
        self.durations.get_or_create(&[("method", method.to_owned())]).observe(started.elapsed().as_secs_f64());
    }
}

/// `service/method` of a gRPC path (`/cairn.v1.Cairn/Append`: `Cairn/Append`).
fn method_of(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    let service = service.rsplit('.').next().unwrap_or(service);
    format!("{service}/{method}")
}

#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<GrpcMetrics>,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Arc<GrpcMetrics>) -> GrpcMetricsLayer {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService { inner, metrics: Arc::clone(&self.metrics) }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S> tower::Service<http::Request<Body>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let method = method_of(request.uri().path());
        let metrics = Arc::clone(&self.metrics);
        let response = self.inner.call(request);
        Box::pin(async move {
            let (parts, body) = response.await?.into_parts();
            let code = parts.headers.get("grpc-status").and_then(code_of);
            let body = CountedBody { inner: body, metrics, method, started, code };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}

fn code_of(value: &http::HeaderValue) -> Option<tonic::Code> {
    let code: i32 = value.to_str().ok()?.trim().parse().ok()?;
    Some(tonic::Code::from_i32(code))
}

/// A response body that records its call when it ends (or is dropped).
struct CountedBody {
    inner: Body,
    metrics: Arc<GrpcMetrics>,
    method: String,
    started: Instant,
    /// From the headers or the trailers, once seen.
    code: Option<tonic::Code>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(code) = frame.trailers_ref().and_then(|trailers| trailers.get("grpc-status")).and_then(code_of)
        {
            self.code = Some(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        // No status seen: the client went away before the call ended.
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.metrics.record(&self.method, code, self.started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_named_by_service_and_method() {
        assert_eq!(method_of("/cairn.v1.Cairn/Append"), "Cairn/Append");
        assert_eq!(method_of("/cairn.v1.RaftTransport/Exchange"), "RaftTransport/Exchange");
        assert_eq!(method_of("/"), "/");
    }
}
