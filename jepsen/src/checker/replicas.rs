//! Convergence after healing: once every fault has healed and replication has caught up,
//! every replica of a partition must hold exactly the same records (offset, timestamp,
//! key, value, headers, event fields). Replicas move between nodes during a run, so nodes hold different
//! sets of partitions; only partitions held by two nodes or more can be compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CheckResult;

/// One record as a replica holds it, read with local consistency from that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub offset: u64,
    /// The timestamp the leader stamped; replicas must agree on it too.
    pub timestamp_ms: u64,
    /// None: a record without a key (not the same as an empty one).
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// `(name, value)` in the order written.
    pub headers: Vec<(String, Vec<u8>)>,
    /// An event's fields (id, stream revision, type, content type, metadata, tags) as
    /// text; None for a plain record.
    pub event: Option<String>,
}

/// Per node, per partition, the records it holds, in offset order.
pub type Replicas = BTreeMap<u64, BTreeMap<u32, Vec<ReplicaRecord>>>;

/// `replicas-identical`: every pair of nodes holding a partition holds the same records;
/// reports the first difference of each partition and pair.
pub fn check(replicas: &Replicas) -> CheckResult {
    let mut result = CheckResult::new("replicas-identical");
    let mut holders: BTreeMap<u32, Vec<(u64, &[ReplicaRecord])>> = BTreeMap::new();
    for (node, partitions) in replicas {
        for (partition, records) in partitions {
            holders.entry(*partition).or_default().push((*node, records));
        }
    }
    let (mut compared, mut single) = (0, 0);
    for (partition, holders) in &holders {
        if holders.len() < 2 {
            single += 1;
            continue;
        }
        compared += 1;
        for (at, (node, records)) in holders.iter().enumerate() {
            for (other, other_records) in &holders[at + 1..] {
                if let Some(difference) = first_difference(records, other_records) {
                    result.error(format!("partition {partition}: node {node} and node {other} differ {difference}"));
                }
            }
        }
    }
    result.count("nodes", replicas.len() as u64);
    result.count("partitions-compared", compared);
    result.count("partitions-on-one-node", single);
    result.count(
        "records",
        holders.values().filter_map(|holders| holders.first()).map(|(_, records)| records.len() as u64).sum(),
    );
    result.finish(compared > 0)
}

/// Where two replicas' records first differ, as "at offset N: ...", or None.
fn first_difference(left: &[ReplicaRecord], right: &[ReplicaRecord]) -> Option<String> {
    for (left, right) in left.iter().zip(right) {
        let field = if left.offset != right.offset {
            Some(format!("offset {} against {}", left.offset, right.offset))
        } else if left.timestamp_ms != right.timestamp_ms {
            Some(format!("timestamp {} ms against {} ms", left.timestamp_ms, right.timestamp_ms))
        } else if left.key != right.key {
            Some(format!("key {} against {}", shown(left.key.as_deref()), shown(right.key.as_deref())))
        } else if left.value != right.value {
            Some(format!("value {} against {}", shown(Some(&left.value)), shown(Some(&right.value))))
        } else if left.headers != right.headers {
            Some("headers".to_owned())
        } else if left.event != right.event {
            Some(format!("event {:?} against {:?}", left.event, right.event))
        } else {
            None
        };
        if let Some(field) = field {
            return Some(format!("at offset {}: {field}", left.offset.min(right.offset)));
        }
    }
    if left.len() == right.len() {
        return None;
    }
    let ends = |records: &[ReplicaRecord]| {
        records.last().map_or("holds no record".to_owned(), |last| format!("ends at offset {}", last.offset))
    };
    Some(format!("in length: {} records ({}) against {} ({})", left.len(), ends(left), right.len(), ends(right)))
}

/// Bytes as text when they are UTF-8 (values and keys usually are), else their length.
fn shown(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "none".to_owned(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("<{} bytes>", bytes.len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;

    fn record(offset: u64, value: &str) -> ReplicaRecord {
        ReplicaRecord {
            offset,
            timestamp_ms: 1_000 + offset,
            key: Some(b"k".to_vec()),
            value: value.as_bytes().to_vec(),
            headers: vec![("h".to_owned(), b"1".to_vec())],
            event: None,
        }
    }

    fn log(values: &[&str]) -> Vec<ReplicaRecord> {
        values.iter().enumerate().map(|(offset, value)| record(offset as u64, value)).collect()
    }

    /// Partition 0 on nodes 1, 2, 3; partition 1 on node 1 only; partition 2 on nodes 2, 3.
    fn replicas(node_3_partition_0: Vec<ReplicaRecord>) -> Replicas {
        Replicas::from([
            (1, BTreeMap::from([(0, log(&["a", "b"])), (1, log(&["x"]))])),
            (2, BTreeMap::from([(0, log(&["a", "b"])), (2, log(&["y"]))])),
            (3, BTreeMap::from([(0, node_3_partition_0), (2, log(&["y"]))])),
        ])
    }

    #[test]
    fn identical_replicas_pass() {
        let result = check(&replicas(log(&["a", "b"])));
        assert_eq!(result.validity, Validity::Valid, "{result:?}");
        assert_eq!((result.counts["partitions-compared"], result.counts["partitions-on-one-node"]), (2, 1));
        assert_eq!(result.counts["records"], 4);
    }

    #[test]
    fn a_replica_with_another_value_is_reported_against_each_other_node() {
        let result = check(&replicas(log(&["a", "c"])));
        assert_eq!(result.validity, Validity::Invalid);
        assert_eq!(
            result.errors,
            [
                "partition 0: node 1 and node 3 differ at offset 1: value \"b\" against \"c\"",
                "partition 0: node 2 and node 3 differ at offset 1: value \"b\" against \"c\"",
            ]
        );
    }

    #[test]
    fn a_shorter_replica_or_one_with_other_headers_or_timestamps_is_reported() {
        let result = check(&replicas(log(&["a"])));
        assert_eq!(result.error_count, 2);
        assert_eq!(
            result.errors[0],
            "partition 0: node 1 and node 3 differ in length: 2 records (ends at offset 1) against 1 (ends at offset 0)"
        );
        let mut headers = log(&["a", "b"]);
        headers[0].headers.clear();
        assert!(check(&replicas(headers)).errors[0].ends_with("differ at offset 0: headers"));
        let mut timestamps = log(&["a", "b"]);
        timestamps[1].timestamp_ms = 7;
        assert!(check(&replicas(timestamps)).errors[0].ends_with("differ at offset 1: timestamp 1001 ms against 7 ms"));
    }

    #[test]
    fn partitions_on_one_node_each_are_vacuous() {
        let replicas =
            Replicas::from([(1, BTreeMap::from([(0, log(&["a"]))])), (2, BTreeMap::from([(1, log(&["b"]))]))]);
        assert_eq!(check(&replicas).validity, Validity::Vacuous);
    }
}
