//! The HTTP listener of a node: health checks, `/metrics`, and the status page with its
//! JSON (`/api/status`). A front door like `grpc/`: it reads the node through `CairnApi`
//! and the host, and serves what `crate::metrics` encodes.

pub mod health;
pub mod server;
pub mod status_page;

pub use server::serve;
