//! A snapshot chunk is imported only from the replica's current leader (or a newer one):
//! a late chunk of a deposed leader must not overwrite committed records.

mod harness;

use bytes::Bytes;
use cairn_client::{CairnClient, CreateTopicOptions, proto};
use cairn_raft::partition::SnapshotChunk;
use cairn_raft::type_config::Vote;
use cairn_types::{Record, encode_batch};
use harness::{FAST_RAFT, Node};

fn record(value: &'static [u8]) -> Record {
    Record { key: None, headers: Vec::new(), value: Bytes::from_static(value) }
}

/// A chunk stamped with a vote older than the group's (term 0, while the node leads in a
/// later term) carries a different batch at offset 0. Before chunks were checked, it was
/// written over the committed record at offset 0, which reads then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_snapshot_chunk_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = tokio::task::block_in_place(|| Node::start(&dir.path().join("node1"), &FAST_RAFT));
    let client = CairnClient::connect(&node.address).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("t", 1)).await.expect("create topic");
    client.append("t", Some(0), vec![record(b"committed")]).await.expect("append");

    let description = client.describe_topic("t").await.expect("describe");
    let group_id = description.partitions[0].group_id;
    let status = client.cluster_status().await.expect("cluster status");
    let chunk = SnapshotChunk {
        vote: Vote::new_committed(0, 9),
        last_log_id: None,
        batches: vec![(0, encode_batch(0, &[record(b"forged")], &[], &[1]).to_vec())],
        retired_heads: Vec::new(),
    };
    let mut raft = proto::raft_transport_client::RaftTransportClient::connect(node.endpoint()).await.expect("raft");
    let answer = raft
        .snapshot_chunk(proto::RaftMessage {
            group_id,
            from_node: 9,
            to_node: 1,
            payload: cairn_raft::encode(&chunk).expect("encode").into(),
            cluster: status.cluster,
        })
        .await
        .expect("the transport answers")
        .into_inner();
    let refusal: Result<(), String> = cairn_raft::decode(&answer.payload).expect("reply");
    let refusal = refusal.expect_err("a stale chunk is refused");
    assert!(refusal.contains("stale leader"), "{refusal}");

    let read = client.read("t", 0, 0, 0, 0, 0).await.expect("read");
    assert_eq!(read.records[0].value, Bytes::from_static(b"committed"), "the committed record is intact");
}
