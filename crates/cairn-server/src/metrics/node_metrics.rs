//! The node's Prometheus registry: the gRPC request series (kept by `grpc_layer.rs`) and
//! one collector (`collector.rs`) that reads everything else when `/metrics` is scraped.

use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::collector::NodeCollector;
use crate::metrics::grpc_layer::GrpcMetrics;

/// A histogram with the buckets of `cairn_types::LatencyHistogram`, so every latency series
/// of the node has the same buckets.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(cairn_types::latency_histogram::LATENCY_BUCKETS_SECONDS)
}

/// Everything `/metrics` exposes.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
}

impl NodeMetrics {
    /// A registry with the gRPC series (returned, for the layer that keeps them) and the
    /// node's collector.
    pub fn new(collector: NodeCollector) -> (NodeMetrics, Arc<GrpcMetrics>) {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::register(&mut registry);
        registry.register_collector(Box::new(collector));
        (NodeMetrics { registry }, grpc)
    }

    /// The Prometheus text format (version 0.0.4) of every series.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
