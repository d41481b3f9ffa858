//! The Cairn server: configuration, the public API (the transport-neutral `api` behind
//! the gRPC front door `grpc`), the HTTP listener (`http`: health, `metrics`, status
//! page), the node-to-node Raft transport and the process lifecycle. The only crate, with cairn-client, that knows gRPC.

pub mod api;
pub mod cluster_identity;
pub mod config;
pub mod grpc;
pub mod heartbeat_lane;
pub mod http;
pub mod join;
pub mod metrics;
pub mod node;
pub mod node_identity;
pub mod peers;
pub mod raft_transport;
pub mod request_limits;

pub use config::{ServeArgs, ServerConfig};
/// The forwarding headers and limits, where tests and the request limits layer name them.
pub use grpc::forward;
/// The status mapping, where the Raft transport names it.
pub use grpc::status;
pub use node::run;
