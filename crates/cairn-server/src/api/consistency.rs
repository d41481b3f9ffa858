//! How fresh a read must be: the levels a read or subscription can ask for. How a replica
//! makes sure of them is `read_consistency.rs`.

/// The consistency a read or subscription asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// What the replica asked has applied.
    Local,
    /// At least up to this applied index (an append's token).
    ReadYourWrites { min_applied_index: u64 },
    /// Every append acknowledged before the read began.
    Linearizable,
    /// A value this node does not know (a newer client): refused once the replica is found.
    Unknown(i32),
}
