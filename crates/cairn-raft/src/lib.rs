//! Raft for Cairn: the openraft type configuration, the RocksDB-backed Raft log store,
//! the partition and controller state machines, the network adapter (over a `Transport`
//! the server supplies) and the multi-group host that runs them all in one process.

pub mod apply_hold;
mod blocking;
pub mod command;
pub mod controller;
pub mod group;
pub mod host;
pub mod log_store;
pub mod network;
pub mod node_addresses;
pub mod partition;
pub mod stream_command;
pub mod type_config;

pub use command::{AppendOutcome, Command, CommandResponse, ControllerCommand, PartitionCommand, ProducerSequence};
pub use controller::{
    ControllerError, ControllerState, Move, Operation, OperationKind, PartitionAssignment, Phase, RebalancePlan,
    TopicMeta,
};
pub use host::{Host, HostConfig, HostError, HostStats, PartitionReplica};
pub use network::{RpcKind, Transport, TransportError};
pub use stream_command::{
    EventAppend, EventAppendRefusal, EventIdReuse, EventPosition, EventsAppended, StreamChange, StreamChangeKind,
    StreamChanged, StreamCheck, StreamWrite,
};
pub use type_config::TypeConfig;

/// Encodes a value for the Raft log, the wire or RocksDB metadata.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(std::io::Error::other)
}

/// Decodes what `encode` wrote. Errors on anything malformed, never panics.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}
