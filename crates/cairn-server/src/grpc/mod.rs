//! The gRPC front door: a thin tonic adapter over `api/`. The service's handlers
//! (`service`), the proto conversion of the api's types (`convert`), forwarding to other
//! nodes over gRPC (`forward`, the api's `Forward`), and the one mapping of errors to
//! statuses (`status`).

pub mod convert;
pub mod forward;
pub mod group_convert;
pub mod service;
pub mod status;
pub mod stream_convert;
