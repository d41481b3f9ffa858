//! After healing, every replica of every partition must converge: the suite waits until
//! all replicas of each partition report the same high watermark, then reads each replica
//! whole with local consistency (each node serves its own copy) for the replicas checker.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_client::CairnClient;

use crate::checker::replicas::ReplicaRecord;
use crate::checker::{CheckResult, Validity};
use crate::workload::{Clients, Members, ReplicaDump, TOPIC};

/// How long replicas get to converge after healing.
pub const CONVERGENCE_TIME: Duration = Duration::from_secs(60);
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Dump {
    pub replicas: ReplicaDump,
    /// `converged`: whether every replica caught up within `CONVERGENCE_TIME`.
    pub converged: CheckResult,
}

/// partition → node → high watermark, from every member that answers.
async fn watermarks(clients: &mut Clients, members: &Members) -> (BTreeMap<u32, BTreeMap<u64, u64>>, Vec<String>) {
    let mut by_partition: BTreeMap<u32, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut silent = Vec::new();
    for (node, address) in members.all() {
        let status = match clients.get(node, &address).await {
            Some(client) => {
                tokio::time::timeout(STATUS_TIMEOUT, client.cluster_status()).await.ok().and_then(Result::ok)
            }
            None => None,
        };
        let Some(status) = status else {
            silent.push(format!("node {node} did not answer its status"));
            continue;
        };
        for group in status.groups.iter().filter(|group| group.topic == TOPIC) {
            by_partition.entry(group.partition).or_default().insert(node, group.high_watermark);
        }
    }
    (by_partition, silent)
}

pub async fn wait_and_dump(members: &Members) -> Dump {
    let mut clients = Clients::default();
    let deadline = tokio::time::Instant::now() + CONVERGENCE_TIME;
    let (placement, problems) = loop {
        let (by_partition, silent) = watermarks(&mut clients, members).await;
        let lagging: Vec<String> = by_partition
            .iter()
            .filter(|(_, nodes)| nodes.values().min() != nodes.values().max())
            .map(|(partition, nodes)| format!("partition {partition}: high watermarks per node {nodes:?}"))
            .collect();
        let problems: Vec<String> = silent.into_iter().chain(lagging).collect();
        if problems.is_empty() || tokio::time::Instant::now() >= deadline {
            break (by_partition, problems);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut replicas: ReplicaDump = BTreeMap::new();
    let all = members.all();
    let mut problems = problems;
    for (partition, nodes) in &placement {
        for (node, high_watermark) in nodes {
            let Some(address) = all.get(node) else { continue };
            let Some(client) = clients.get(*node, address).await else { continue };
            match read_replica(&client, *partition, *high_watermark).await {
                Ok(records) => {
                    replicas.entry(*node).or_default().insert(*partition, records);
                }
                Err(error) => problems.push(format!("node {node} partition {partition}: {error}")),
            }
        }
    }
    let mut converged = CheckResult::from_reasons("converged", problems, Validity::Invalid);
    converged.counts.insert("partitions".into(), placement.len() as u64);
    converged.counts.insert("replicas".into(), placement.values().map(|nodes| nodes.len() as u64).sum());
    Dump { replicas, converged }
}

/// One replica's copy of `partition` up to `high_watermark`, read from that node only.
async fn read_replica(client: &CairnClient, partition: u32, high_watermark: u64) -> anyhow::Result<Vec<ReplicaRecord>> {
    let mut records = Vec::new();
    let mut from = 0;
    while from < high_watermark {
        let read = tokio::time::timeout(STATUS_TIMEOUT * 5, client.read(TOPIC, partition, from, 1_000, 0, 0)).await??;
        anyhow::ensure!(read.next_offset > from, "a read from offset {from} made no progress");
        records.extend(read.records.into_iter().map(|record| ReplicaRecord {
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key.map(|key| key.to_vec()),
            value: record.value.to_vec(),
            headers: record.headers.into_iter().map(|(name, value)| (name, value.to_vec())).collect(),
            event: record.event.map(|event| format!("{event:?}")),
        }));
        from = read.next_offset;
    }
    Ok(records)
}
