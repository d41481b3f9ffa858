//! Everything on `/metrics` besides the gRPC series, read when it is scraped: the storage,
//! Raft, partition and api counters (atomics the lower crates keep) and gauges taken from
//! each group's current Raft metrics and partition view. Nothing runs between scrapes.
//!
//! Partition series are node-wide aggregates; with `--metrics-per-partition` each replica
//! also gets its own series, labelled `topic` and `partition` (a few per replica, so the
//! label count stays bounded by the partitions placed on the node).
//!
//! Consumer groups: the groups this node coordinates (it leads their `__groups`
//! partition) get a series each, labelled `group` (bounded by the groups' own limits).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cairn_raft::{Host, TypeConfig};
use cairn_storage::Store;
use cairn_types::HistogramSnapshot;
use openraft::{RaftMetrics, ServerState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::api::CairnApi;
use crate::raft_transport::GrpcTransport;
use crate::request_limits::RequestLimits;

/// What the collector reads.
pub struct NodeCollector {
    pub host: Arc<Host>,
    pub api: Arc<CairnApi>,
    pub store: Arc<Store>,
    pub transport: Arc<GrpcTransport>,
    pub request_limits: Arc<RequestLimits>,
    /// `--metrics-per-partition`.
    pub per_partition: bool,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").field("per_partition", &self.per_partition).finish_non_exhaustive()
    }
}

/// Writes one series after another.
struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    fn gauge(&mut self, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
        self.0.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&value)
    }

    /// `name` without `_total`: the encoder adds it.
    fn counter(&mut self, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
        self.0
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) -> Result<(), std::fmt::Error> {
        self.0.encode_descriptor(name, help, None, MetricType::Histogram)?.encode_histogram::<NoLabelSet>(
            snapshot.sum_seconds,
            snapshot.count,
            &snapshot.buckets,
            None,
        )
    }

    /// One gauge with a series per label set.
    fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (L, i64)>,
    ) -> Result<(), std::fmt::Error> {
        let mut metric = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in series {
            metric.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

const ROLES: [ServerState; 5] =
    [ServerState::Leader, ServerState::Follower, ServerState::Candidate, ServerState::Learner, ServerState::Shutdown];

fn index(index: Option<u64>) -> i64 {
    index.map_or(0, |index| index as i64)
}

/// How far the most behind replica of a group this node leads is, in entries.
fn replication_lag(metrics: &RaftMetrics<TypeConfig>) -> u64 {
    let last = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .iter()
        .flatten()
        .filter(|(node, _)| **node != metrics.id)
        .map(|(_, matched)| last.saturating_sub(matched.as_ref().map_or(0, |id| id.index)))
        .max()
        .unwrap_or(0)
}

/// One partition replica, as read for a scrape.
struct ReplicaSample {
    topic: String,
    partition: u32,
    metrics: RaftMetrics<TypeConfig>,
    view: cairn_raft::partition::PartitionView,
}

impl Collector for NodeCollector {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut out = Out(encoder);
        let host = &self.host;
        let node_id = host.node_id().to_string();

        // The node.
        out.gauges(
            "cairn_node_info",
            "This node: its id and version (always 1)",
            [([("node_id", node_id.clone()), ("version", env!("CARGO_PKG_VERSION").to_owned())], 1)],
        )?;
        let nodes = host.cluster_nodes();
        let live = nodes.keys().filter(|node| host.is_node_live(**node)).count();
        out.gauge("cairn_cluster_nodes", "Nodes of the cluster this node knows", nodes.len() as i64)?;
        out.gauge("cairn_cluster_nodes_live", "Nodes heard from within the failure detection time", live as i64)?;

        // Storage.
        out.histogram(
            "cairn_storage_wal_sync_duration_seconds",
            "How long each WAL fsync took (one per group commit of every Raft group's appends)",
            &self.store.wal_sync_latency().snapshot(),
        )?;
        out.counter(
            "cairn_storage_write_bytes",
            "Bytes of RocksDB write batches written since the node started",
            self.store.bytes_written(),
        )?;

        // Raft: counters of the host.
        let stats = host.stats();
        out.histogram(
            "cairn_raft_apply_duration_seconds",
            "How long each apply call of a partition state machine took (its entries in one write)",
            &stats.apply_latency.snapshot(),
        )?;
        out.counter(
            "cairn_raft_leader_changes",
            "Times a Raft group on this node saw its leader change",
            stats.leader_changes.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_raft_candidacies",
            "Times a Raft group on this node became a candidate",
            stats.candidacies.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_raft_elections_started",
            "Elections this node started for partition groups without a live leader",
            stats.elections_started.load(Ordering::Relaxed),
        )?;

        // Raft: the controller group.
        let controller = host.controller_metrics();
        out.gauge("cairn_raft_controller_term", "The controller group's term", controller.current_term as i64)?;
        out.gauge(
            "cairn_raft_controller_leader",
            "The node id of the controller group's leader (0: none known)",
            controller.current_leader.map_or(0, |leader| leader as i64),
        )?;
        out.gauge(
            "cairn_raft_controller_committed_index",
            "The controller group's committed log index",
            index(controller.cluster_committed.as_ref().map(|id| id.index)),
        )?;
        out.gauge(
            "cairn_raft_controller_applied_index",
            "The controller group's applied log index",
            index(controller.last_applied.as_ref().map(|id| id.index)),
        )?;

        // Raft and partitions: every replica on this node.
        let partitions = host.partitions();
        let replicas: Vec<ReplicaSample> = partitions
            .iter()
            .map(|replica| ReplicaSample {
                topic: replica.topic.clone(),
                partition: replica.partition,
                metrics: replica.metrics(),
                view: *replica.view.borrow(),
            })
            .collect();
        out.gauges(
            "cairn_raft_partition_groups",
            "Partition groups on this node, by this replica's Raft role",
            ROLES.iter().map(|state| {
                let count = replicas.iter().filter(|sample| sample.metrics.state == *state).count();
                ([("role", role(*state))], count as i64)
            }),
        )?;
        out.gauge(
            "cairn_raft_partition_groups_leaderless",
            "Partition groups on this node whose replica knows no leader",
            replicas.iter().filter(|sample| sample.metrics.current_leader.is_none()).count() as i64,
        )?;
        out.gauge(
            "cairn_raft_apply_lag_entries",
            "Committed entries not yet applied, summed over this node's partition replicas",
            replicas
                .iter()
                .map(|sample| {
                    index(sample.metrics.cluster_committed.as_ref().map(|id| id.index))
                        - index(sample.metrics.last_applied.as_ref().map(|id| id.index))
                })
                .map(|lag| lag.max(0))
                .sum(),
        )?;
        out.gauge(
            "cairn_raft_replication_lag_entries_max",
            "Of the groups this node leads, entries the most behind replica lacks",
            replicas.iter().map(|sample| replication_lag(&sample.metrics)).max().unwrap_or(0) as i64,
        )?;
        out.gauge(
            "cairn_partition_log_bytes",
            "Bytes of stored record batches, summed over this node's partition replicas",
            replicas.iter().map(|sample| sample.view.log.size_bytes as i64).sum(),
        )?;
        out.gauge(
            "cairn_partition_records",
            "Offsets retained (high watermark minus log start), summed over this node's partition replicas",
            replicas
                .iter()
                .map(|sample| sample.view.log.next_offset.saturating_sub(sample.view.log.log_start_offset) as i64)
                .sum(),
        )?;
        if self.per_partition {
            encode_per_partition(&mut out, &replicas)?;
        }
        encode_groups(&mut out, &partitions, &replicas)?;

        // The api.
        let api = self.api.stats();
        out.histogram(
            "cairn_api_append_duration_seconds",
            "How long client appends took on the node they reached, forwarding and retries included",
            &api.append_latency.snapshot(),
        )?;
        out.counter(
            "cairn_api_appends_failed",
            "Client appends answered with an error",
            api.appends_failed.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_api_records_appended",
            "Records of successful client appends",
            api.records_appended.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_api_bytes_appended",
            "Bytes (stored batch format) of the records of successful client appends",
            api.bytes_appended.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_api_records_read",
            "Records returned to client reads",
            api.records_read.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_api_bytes_read",
            "Bytes (keys, headers, values) of the records returned to client reads",
            api.bytes_read.load(Ordering::Relaxed),
        )?;
        out.gauge(
            "cairn_api_subscriptions",
            "Subscriptions this node serves or relays",
            self.api.subscriptions_active() as i64,
        )?;
        let (requests, request_bytes) = self.request_limits.node_usage();
        out.gauge("cairn_api_requests_in_flight", "Public API requests being served", requests as i64)?;
        out.gauge(
            "cairn_api_request_bytes_in_flight",
            "Message bytes of the public API requests being served",
            request_bytes as i64,
        )?;

        // The Raft transport.
        let (queued, queued_bytes) = self.transport.queued();
        out.gauge(
            "cairn_transport_queued_messages",
            "Raft messages queued for the peers' stream writers",
            queued as i64,
        )?;
        out.gauge(
            "cairn_transport_queued_bytes",
            "Payload bytes of the Raft messages queued for peers",
            queued_bytes as i64,
        )?;
        let counters = self.transport.counters();
        out.counter(
            "cairn_transport_frames_sent",
            "Frames sent on the Raft streams to peers",
            counters.frames.load(Ordering::Relaxed),
        )?;
        out.counter(
            "cairn_transport_messages_sent",
            "Raft messages sent in frames on the streams to peers",
            counters.envelopes.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

/// Members, generation and lag of every group whose coordinator partition this node
/// leads. Lag counts, over the partitions the group assigns or has a position for, the
/// records after its committed position (after the log start without one), from this
/// node's replica of each partition; a partition without a replica here is not counted.
fn encode_groups(
    out: &mut Out<'_>,
    partitions: &[Arc<cairn_raft::PartitionReplica>],
    replicas: &[ReplicaSample],
) -> Result<(), std::fmt::Error> {
    let logs: std::collections::BTreeMap<(&str, u32), cairn_storage::PartitionLogState> =
        replicas.iter().map(|sample| ((sample.topic.as_str(), sample.partition), sample.view.log)).collect();
    let mut members = Vec::new();
    let mut generations = Vec::new();
    let mut lags = Vec::new();
    let coordinated = partitions.iter().zip(replicas).filter(|(replica, sample)| {
        replica.topic == crate::api::GROUPS_TOPIC && sample.metrics.state == ServerState::Leader
    });
    for (replica, _) in coordinated {
        let Ok(table) = replica.groups.read() else { continue };
        for (name, group) in table.iter() {
            let labels = vec![("group", name.clone())];
            let assigned = group.partitions.keys().chain(group.positions.keys());
            let mut counted = std::collections::BTreeSet::new();
            let mut lag = 0u64;
            for tp in assigned {
                let Some(log) = logs.get(&(tp.topic.as_str(), tp.partition)) else { continue };
                if counted.insert(tp) {
                    let from = group.positions.get(tp).map_or(log.log_start_offset, |p| p.offset);
                    lag += log.next_offset.saturating_sub(from);
                }
            }
            members.push((labels.clone(), group.members.len() as i64));
            generations.push((labels.clone(), group.generation as i64));
            lags.push((labels, lag as i64));
        }
    }
    out.gauges("cairn_group_members", "Members of each consumer group this node coordinates", members)?;
    out.gauges("cairn_group_generation", "The generation of each consumer group this node coordinates", generations)?;
    out.gauges(
        "cairn_group_lag_records",
        "Records after the committed positions of each consumer group this node coordinates",
        lags,
    )
}

fn encode_per_partition(out: &mut Out<'_>, replicas: &[ReplicaSample]) -> Result<(), std::fmt::Error> {
    let labels =
        |sample: &ReplicaSample| [("topic", sample.topic.clone()), ("partition", sample.partition.to_string())];
    out.gauges(
        "cairn_partition_replica_high_watermark",
        "This replica's high watermark (the next offset)",
        replicas.iter().map(|sample| (labels(sample), sample.view.log.next_offset as i64)),
    )?;
    out.gauges(
        "cairn_partition_replica_log_start_offset",
        "This replica's first retained offset",
        replicas.iter().map(|sample| (labels(sample), sample.view.log.log_start_offset as i64)),
    )?;
    out.gauges(
        "cairn_partition_replica_log_bytes",
        "Bytes of this replica's stored record batches",
        replicas.iter().map(|sample| (labels(sample), sample.view.log.size_bytes as i64)),
    )?;
    out.gauges(
        "cairn_raft_replica_term",
        "This replica's Raft term",
        replicas.iter().map(|sample| (labels(sample), sample.metrics.current_term as i64)),
    )?;
    out.gauges(
        "cairn_raft_replica_is_leader",
        "1 when this replica leads its group",
        replicas.iter().map(|sample| (labels(sample), i64::from(sample.metrics.state == ServerState::Leader))),
    )?;
    out.gauges(
        "cairn_raft_replica_committed_index",
        "This replica's committed log index",
        replicas
            .iter()
            .map(|sample| (labels(sample), index(sample.metrics.cluster_committed.as_ref().map(|id| id.index)))),
    )?;
    out.gauges(
        "cairn_raft_replica_applied_index",
        "This replica's applied log index",
        replicas.iter().map(|sample| (labels(sample), index(sample.metrics.last_applied.as_ref().map(|id| id.index)))),
    )
}
