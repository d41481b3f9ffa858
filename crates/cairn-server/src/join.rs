//! Joining a cluster: a new node asks a member to add it, until it is admitted.
//!
//! A refusal passes or stands. It passes when the member asked is unreachable or still
//! joining itself, when the controller is electing, or when another node is joining at the
//! same moment (openraft admits one membership change at a time, so of nodes started
//! together all but one are refused for a moment): such a refusal (`UNAVAILABLE`, or any
//! failure to get an answer) is retried for as long as it takes, each attempt bounded by
//! `ATTEMPT_TIMEOUT`, with an exponential backoff and jitter, so that nodes started together
//! do not retry in lockstep. It stands when this data directory belongs to another cluster,
//! the node id was removed or is another voter's, or the request is malformed
//! (`FAILED_PRECONDITION`, `INVALID_ARGUMENT`): the process then ends with the cluster's
//! message.

use std::path::PathBuf;
use std::time::Duration;

use cairn_proto::v1 as pb;
use cairn_proto::v1::cairn_client::CairnClient;
use cairn_types::retry_delays;

use crate::api::{ErrorCode, RemoteError};
use crate::cluster_identity::ClusterIdentity;
use crate::grpc::status::remote_error;
use crate::node_identity::{DATA_FORMAT_VERSION, NodeIdentity, write_identity};
use crate::peers::PeerSettings;

/// How long one attempt (connect, learn the cluster, ask to join) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Whether a refusal stands: asking again would be refused again.
pub fn refused_for_good(err: &RemoteError) -> bool {
    matches!(err.code, ErrorCode::FailedPrecondition | ErrorCode::InvalidArgument)
}

/// What a new node needs to join.
pub struct Joiner {
    /// Any member of the cluster (`host:port`).
    pub target: String,
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// Where the others reach this node.
    pub address: String,
    pub identity: ClusterIdentity,
    pub peers: PeerSettings,
}

impl Joiner {
    /// Asks `target` to add this node until it is admitted; records the cluster in the data
    /// directory. Exits the process when the cluster refuses this node for good.
    pub async fn run(self) {
        // Waits double from BACKOFF_INITIAL to BACKOFF_MAX, with jitter.
        let mut delays = retry_delays(BACKOFF_INITIAL, BACKOFF_MAX);
        let mut failures = 0u32;
        let recorded = !self.identity.get().is_empty();
        loop {
            let answer = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt()).await {
                Ok(answer) => answer,
                Err(_) => {
                    Err(RemoteError::local(ErrorCode::Unavailable, format!("no answer within {ATTEMPT_TIMEOUT:?}")))
                }
            };
            match answer {
                Ok(joined) => {
                    self.record(joined.cluster, recorded);
                    return;
                }
                Err(err) if refused_for_good(&err) => {
                    tracing::error!(message = %err, "the cluster refused this node");
                    eprintln!("cairn: cannot join through {}: {err}", self.target);
                    std::process::exit(2);
                }
                Err(err) => {
                    let wait = delays.next().unwrap_or(BACKOFF_MAX);
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        via = %self.target,
                        message = %err,
                        failures,
                        retry_in_ms = wait.as_millis() as u64,
                        "join not admitted yet; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self) -> Result<pb::JoinClusterResponse, RemoteError> {
        let endpoint = self
            .peers
            .endpoint(&self.target)
            .map_err(|err| RemoteError::local(ErrorCode::InvalidArgument, err.to_string()))?;
        let channel =
            endpoint.connect().await.map_err(|err| RemoteError::local(ErrorCode::Unavailable, err.to_string()))?;
        let mut client = CairnClient::new(channel);
        // Learn the cluster before becoming part of it, so that this node stamps and checks
        // it from the first Raft message on.
        if self.identity.get().is_empty() {
            let status = client.cluster_status(pb::ClusterStatusRequest {}).await.map_err(remote_error)?.into_inner();
            if status.cluster.is_empty() {
                return Err(RemoteError::local(
                    ErrorCode::Unavailable,
                    "the member asked is still joining the cluster itself".to_owned(),
                ));
            }
            self.identity.set(status.cluster);
        }
        let request = pb::JoinClusterRequest {
            node_id: self.node_id,
            address: self.address.clone(),
            cluster: self.identity.get(),
        };
        Ok(client.join_cluster(request).await.map_err(remote_error)?.into_inner())
    }

    /// Records the cluster joined in the data directory, unless it was `recorded` already.
    fn record(&self, cluster: String, recorded: bool) {
        let identity =
            NodeIdentity { node_id: self.node_id, data_format_version: DATA_FORMAT_VERSION, cluster: cluster.clone() };
        if !recorded && let Err(err) = write_identity(&self.data_dir, &identity) {
            tracing::error!(error = %err, "cannot record the cluster joined");
        }
        self.identity.set(cluster.clone());
        tracing::info!(via = %self.target, %cluster, "joined the cluster");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_for_good_stands() {
        let refusal = |code, message: &str| RemoteError::local(code, message.to_owned());
        let changing = refusal(
            ErrorCode::Unavailable,
            "group 0 is already changing its membership (the cluster is already undergoing a configuration change)",
        );
        assert!(!refused_for_good(&changing));
        assert!(!refused_for_good(&refusal(ErrorCode::DeadlineExceeded, "slow")));
        assert!(!refused_for_good(&refusal(ErrorCode::Internal, "stream reset")));
        assert!(refused_for_good(&refusal(ErrorCode::FailedPrecondition, "data directory belongs to cluster [x]")));
        assert!(refused_for_good(&refusal(ErrorCode::InvalidArgument, "node id 0")));
    }
}
