//! Where each node is now: the controller's node table, for every group's messages.
//!
//! A group's Raft membership keeps each member's address as it was when the member was
//! added (openraft's `BasicNode`, empty when the founder did not know it yet), and openraft
//! never updates it. A node that comes back on a new address (a restart on another port, a
//! rescheduled pod) registers that address with the controller when it joins again. So
//! every Raft message, and every leader hint a client gets, takes the node's address from
//! here: the controller's node table as this node last applied it, or the membership's
//! address when the table does not know the node.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use cairn_types::NodeId;

#[derive(Debug, Default)]
pub struct NodeAddresses {
    nodes: RwLock<BTreeMap<NodeId, String>>,
}

impl NodeAddresses {
    /// Takes the controller's node table (as `ControllerState::all_nodes` lists it).
    pub fn replace(&self, nodes: BTreeMap<NodeId, String>) {
        *self.nodes.write().unwrap_or_else(PoisonError::into_inner) = nodes;
    }

    /// The address of `node`: the node table's, else `membership_address`.
    pub fn resolve(&self, node: NodeId, membership_address: &str) -> String {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        match nodes.get(&node) {
            Some(address) if !address.is_empty() => address.clone(),
            _ => membership_address.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_table_wins_over_the_membership() {
        let addresses = NodeAddresses::default();
        assert_eq!(addresses.resolve(4, "127.0.0.1:1"), "127.0.0.1:1", "unknown: the membership's");
        addresses.replace(BTreeMap::from([(4, "127.0.0.1:2".to_owned()), (5, String::new())]));
        assert_eq!(addresses.resolve(4, "127.0.0.1:1"), "127.0.0.1:2", "moved: the table's");
        assert_eq!(addresses.resolve(4, ""), "127.0.0.1:2", "unknown at creation: the table's");
        assert_eq!(addresses.resolve(5, "127.0.0.1:5"), "127.0.0.1:5", "an empty entry is no address");
        addresses.replace(BTreeMap::new());
        assert_eq!(addresses.resolve(4, "127.0.0.1:1"), "127.0.0.1:1", "removed: the membership's");
    }
}
