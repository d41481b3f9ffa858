//! The simulated hosts a run's nodes live on: one Linux network namespace per node on a
//! shared bridge, each node's disk (optionally a size-limited tmpfs, optionally behind
//! cairn-faultfs) and wall clock (optionally moved by libfaketime), and the `cairn serve`
//! processes themselves. Needs root.

mod clock;
mod cluster;
mod command;
mod disk;
mod firewall;
mod network;
mod node;

pub use clock::{CACHE_SECONDS, ClockFile, LIBFAKETIME_DEFAULT};
pub use cluster::{Cluster, ClusterConfig, FAST_RAFT, MAX_NODES, NODE_PORT, READY_TIMEOUT, STATUS_TIMEOUT};
pub use disk::{Disk, fill};
pub use firewall::{LOSS_TABLE, PARTITION_TABLE};
pub use network::{MAX_NODES_LIMIT, Network, NetworkConfig};
pub use node::{Node, NodeOptions, START_TIMEOUT};
