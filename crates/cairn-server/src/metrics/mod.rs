//! What `/metrics` exposes: the gRPC request series (a tower layer in front of the tonic
//! services) and a collector that reads the node's counters and gauges at scrape time.
//! Names follow `cairn_<subsystem>_<name>_<unit>`.

mod collector;
mod grpc_layer;
mod node_metrics;

pub use collector::NodeCollector;
pub use grpc_layer::{GrpcMetrics, GrpcMetricsLayer};
pub use node_metrics::NodeMetrics;
