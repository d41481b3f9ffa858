//! The cluster this node belongs to, as its data directory records it: known at start, or
//! once a joining node has been accepted. Every Raft message carries it, and a message from
//! another cluster is refused, so two clusters that share an address range never mix.

use std::sync::{Arc, RwLock};

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

    /// Whether a message stamped with `sender`'s cluster may be served here. A node that
    /// has not finished joining knows no cluster yet: the first cluster whose members talk
    /// to it is the one that accepted it (the join answer, which may arrive later, records
    /// it on disk), and from then on it stamps and checks that one.
    pub fn admits(&self, sender: &str) -> bool {
        let mine = self.get();
        if mine.is_empty() && !sender.is_empty() {
            self.set(sender.to_owned());
            return true;
        }
        mine == sender
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_its_own_cluster_once_known() {
        let identity = ClusterIdentity::default();
        assert!(identity.admits("1=a:1"), "a joining node takes the first cluster that talks to it");
        assert_eq!(identity.get(), "1=a:1");
        assert!(identity.admits("1=a:1"));
        assert!(!identity.admits("1=b:1"));
        assert!(!identity.admits(""), "an unstamped message is refused once the cluster is known");
    }
}
