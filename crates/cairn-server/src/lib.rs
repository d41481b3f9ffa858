//! The Cairn server: configuration, the gRPC services (public API and node-to-node Raft
//! transport) and the process lifecycle. The only crate, with cairn-client, that knows gRPC.

pub mod append_outcomes;
pub mod cluster_identity;
pub mod config;
pub mod forward;
pub mod heartbeat_lane;
pub mod join;
pub mod node;
pub mod peers;
pub mod raft_transport;
pub mod request_limits;
pub mod service;
pub mod status;

pub use config::{ServeArgs, ServerConfig};
pub use node::run;
