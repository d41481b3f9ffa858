//! Connections from client processes to nodes, and how an error becomes an operation's
//! outcome. Every call has a deadline: a node that is paused or cut off must not hold a
//! process forever (the operation ends `Info` instead).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_client::{CairnClient, ClientError, CreateTopicOptions, RetryPolicy};
use rand::Rng;
use rand::rngs::StdRng;

use super::{Context, TOPIC};
use crate::history::{Kind, Reply};

/// How long one client call may take before its outcome counts as unknown.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the client library retries calls that are safe to repeat (reads, event
/// appends with ids) while the cluster answers UNAVAILABLE: less than `CALL_TIMEOUT`, so a
/// call that keeps failing ends with the server's error rather than a timeout.
const CALL_RETRY: RetryPolicy = RetryPolicy { retry_total_ms: 3_000, backoff_initial_ms: 20, backoff_max_ms: 200 };
/// The replication factor of the workload's topic.
pub const REPLICATION_FACTOR: u32 = 3;

/// The nodes clients may talk to: node id → address. The runner updates it when nodes
/// join or leave.
#[derive(Clone, Default)]
pub struct Members {
    inner: Arc<RwLock<BTreeMap<u64, String>>>,
}

impl Members {
    pub fn new(members: BTreeMap<u64, String>) -> Members {
        Members { inner: Arc::new(RwLock::new(members)) }
    }

    pub fn set(&self, members: BTreeMap<u64, String>) {
        *self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = members;
    }

    pub fn all(&self) -> BTreeMap<u64, String> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The member at `turn`, counted round the members in id order: callers that retry
    /// through whichever node answers pass 0, 1, 2... (None when there is none).
    pub fn in_turn(&self, turn: usize) -> Option<(u64, String)> {
        let members = self.all();
        if members.is_empty() {
            return None;
        }
        let at = turn % members.len();
        members.into_iter().nth(at)
    }

    /// A node chosen by `rng` (None when there is none).
    pub fn pick(&self, rng: &mut StdRng) -> Option<(u64, String)> {
        let members = self.all();
        if members.is_empty() {
            return None;
        }
        let at = rng.random_range(0..members.len());
        members.into_iter().nth(at)
    }
}

/// One process's connections, one per node, made on first use.
#[derive(Default)]
pub struct Clients {
    connections: BTreeMap<u64, CairnClient>,
}

impl Clients {
    /// The connection to `node`, or None when it cannot be reached now.
    pub async fn get(&mut self, node: u64, address: &str) -> Option<CairnClient> {
        if let Some(client) = self.connections.get(&node) {
            return Some(client.clone());
        }
        let connect = CairnClient::connect_with(address, CALL_RETRY);
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.ok()?.ok()?;
        self.connections.insert(node, client.clone());
        Some(client)
    }
}

/// Runs `call` with the deadline; a timeout is an error with code "timeout".
pub async fn with_deadline<T>(call: impl Future<Output = Result<T, ClientError>>) -> Result<T, (String, String)> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err((code_name(&error), error.to_string())),
        Err(_) => Err(("timeout".into(), format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

fn code_name(error: &ClientError) -> String {
    match error.code() {
        Some(code) => format!("{code:?}"),
        None => match error {
            ClientError::Connect { .. } => "connect".into(),
            _ => "client".into(),
        },
    }
}

/// How a failed write ended: `Fail` only when the server's answer says nothing was
/// written (it refused the request as invalid, over a limit or against a condition);
/// anything else, timeouts and UNAVAILABLE included, may have been applied: `Info`.
pub fn write_outcome(code: &str) -> Kind {
    match code {
        "InvalidArgument" | "NotFound" | "AlreadyExists" | "FailedPrecondition" | "OutOfRange"
        | "ResourceExhausted" | "PermissionDenied" | "Unauthenticated" | "Unimplemented" | "connect" => Kind::Fail,
        _ => Kind::Info,
    }
}

pub fn error_reply((code, message): (String, String)) -> Reply {
    Reply::Error { code, message }
}

/// Creates the workload's topic through any node, retrying until the cluster takes it.
pub async fn create_topic(context: &Context) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last_error = String::new();
    while tokio::time::Instant::now() < deadline {
        for (_, address) in context.members.all() {
            let Ok(Ok(client)) =
                tokio::time::timeout(CONNECT_TIMEOUT, CairnClient::connect_with(&address, RetryPolicy::none())).await
            else {
                continue;
            };
            let mut options = CreateTopicOptions::new(TOPIC, context.partitions);
            options.replication_factor = REPLICATION_FACTOR;
            match tokio::time::timeout(Duration::from_secs(20), client.create_topic(options)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) if error.code() == Some(tonic::Code::AlreadyExists) => return Ok(()),
                Ok(Err(error)) => last_error = error.to_string(),
                Err(_) => last_error = "create_topic timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("could not create topic {TOPIC}: {last_error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_take_turns_in_id_order() {
        let members = Members::new(BTreeMap::from([(3, "c".to_owned()), (1, "a".to_owned())]));
        let turns: Vec<u64> = (0..5).filter_map(|turn| members.in_turn(turn)).map(|(node, _)| node).collect();
        assert_eq!(turns, [1, 3, 1, 3, 1]);
        assert_eq!(Members::default().in_turn(0), None);
    }

    #[test]
    fn only_refusals_are_definite_failures() {
        assert_eq!(write_outcome("FailedPrecondition"), Kind::Fail);
        assert_eq!(write_outcome("InvalidArgument"), Kind::Fail);
        assert_eq!(write_outcome("Unavailable"), Kind::Info);
        assert_eq!(write_outcome("timeout"), Kind::Info);
        assert_eq!(write_outcome("Internal"), Kind::Info);
        assert_eq!(write_outcome("Unknown"), Kind::Info);
    }
}
