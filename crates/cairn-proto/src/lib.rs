//! Code generated from `proto/cairn/v1/cairn.proto`, and the one conversion of records
//! and events between it and `cairn_types`. Only the server and client crates depend on this: no
//! prost type leaks below them.

mod event_conversion;
mod query_conversion;
mod record_conversion;

#[allow(clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod v1 {
    tonic::include_proto!("cairn.v1");
}

pub use event_conversion::{BadEventId, expected_from_proto, new_event_from_proto};
/// To encode and decode messages carried in status details (`AppendOutcomes`).
pub use prost::Message;
pub use query_conversion::query_from_proto;
pub use record_conversion::{stored_records_from_proto, stored_records_to_proto};
