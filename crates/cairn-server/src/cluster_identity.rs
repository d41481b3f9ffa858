//! The cluster this node belongs to, as its data directory records it: known at start, or,
//! for a joining node, learnt from the member it joins through. Every Raft message carries it, and a message from
//! another cluster is refused, so two clusters that share an address range never mix.

use std::sync::{Arc, RwLock};

/// Read on every Raft message, set at most once: the check compares under a read lock,
/// without copying the name.
#[derive(Debug, Clone, Default)]
pub struct ClusterIdentity(Arc<RwLock<String>>);

impl ClusterIdentity {
    pub fn new(cluster: String) -> ClusterIdentity {
        ClusterIdentity(Arc::new(RwLock::new(cluster)))
    }

    /// The cluster's name; empty while this node is still joining one.
    pub fn get(&self) -> String {
        self.0.read().map(|name| name.clone()).unwrap_or_default()
    }

    pub fn set(&self, cluster: String) {
        if let Ok(mut name) = self.0.write() {
            *name = cluster;
        }
    }

    /// Whether a message stamped with `sender`'s cluster may be served here. A joining
    /// node learns its cluster from the member it joins through before it asks to join;
    /// only a node whose join was interrupted before that knows none, and takes what it is
    /// sent.
    pub fn admits(&self, sender: &str) -> bool {
        self.0.read().is_ok_and(|mine| mine.is_empty() || *mine == sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_its_own_cluster_once_known() {
        let identity = ClusterIdentity::default();
        assert!(identity.admits("1=a:1"), "a node that knows no cluster yet takes any");
        assert_eq!(identity.get(), "", "and adopts none");
        identity.set("1=a:1".into());
        assert!(identity.admits("1=a:1"));
        assert!(!identity.admits("1=b:1"));
        assert!(!identity.admits(""), "an unstamped message is refused once the cluster is known");
    }
}
