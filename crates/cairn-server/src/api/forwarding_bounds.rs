//! How far and how long a request is passed between nodes before it is answered
//! UNAVAILABLE: the bounds every forwarding path (appends, reads, admin) shares.

use std::time::Duration;

/// Most times one client request is passed between nodes, so two nodes with stale leader
/// views cannot bounce it forever.
pub const HOPS_MAX: u32 = 2;
/// How long a write waits for a leader (elections, forwarding) before UNAVAILABLE.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
