//! Code generated from `proto/cairn/v1/cairn.proto`. Only the server and client crates
//! depend on this: no prost type leaks below them.

#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("cairn.v1");
}

/// To encode and decode messages carried in status details (`AppendOutcomes`).
pub use prost::Message;
