//! Code generated from `proto/cairn/v1/cairn.proto`, and the one conversion of records
//! between it and `cairn_types`. Only the server and client crates depend on this: no
//! prost type leaks below them.

mod record_conversion;

#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("cairn.v1");
}

/// To encode and decode messages carried in status details (`AppendOutcomes`).
pub use prost::Message;
pub use record_conversion::{stored_records_from_proto, stored_records_to_proto};
