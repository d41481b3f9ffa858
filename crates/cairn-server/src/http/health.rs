//! `/health/live` and `/health/ready`: what a load balancer, systemd or a Kubernetes probe
//! asks. Live: the process serves HTTP. Ready: the node is a member of a cluster whose
//! controller leader it knows, and runs every partition replica the controller places on it.

use cairn_raft::Host;

/// Why a node is not ready, or `None` when it is.
pub fn not_ready_reason(host: &Host) -> Option<String> {
    let node_id = host.node_id();
    let controller = host.controller_metrics();
    if !controller.membership_config.membership().nodes().any(|(id, _)| *id == node_id) {
        return Some(format!("node {node_id} is not (yet) a member of the cluster's controller group"));
    }
    if controller.current_leader.is_none() {
        return Some("no controller leader known".to_owned());
    }
    let state = host.controller_state();
    let missing = state
        .topics
        .values()
        .flat_map(|topic| topic.partitions.iter().map(move |assignment| (topic, assignment)))
        .filter(|(_, assignment)| assignment.replicas.contains(&node_id))
        .filter(|(_, assignment)| host.partition(assignment.group_id).is_none())
        .count();
    if missing > 0 {
        return Some(format!("{missing} partition replicas placed on this node are not started yet"));
    }
    None
}
