//! The answer to an append whose records went to several partitions.
//!
//! Each partition's batch is a write of its own Raft group, so a request that spans
//! partitions is not atomic: some may be written while another fails. Answering with the
//! first failure alone would hide what was written, and a client that sends the request
//! again would write those partitions twice. So the append waits until every partition's
//! write has finished, and a failure carries, in its status details, an
//! `AppendOutcomes` that says which partitions were written (and where) and which failed.

use cairn_proto::Message as _;
use cairn_proto::v1 as pb;
use cairn_types::PartitionId;
use tonic::Status;

/// How one partition's batch of an append ended.
pub struct PartitionWrite {
    pub partition: PartitionId,
    /// The positions, in the request, of the partition's records, in order.
    pub record_indexes: Vec<usize>,
    pub result: Result<Written, Status>,
}

/// A batch written: its first record's offset, the log index that applied it, and whether
/// it was a retry of a batch written before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub base_offset: u64,
    pub applied_index: u64,
    pub duplicate: bool,
}

/// The answer to an append of `record_count` records from the outcome of each partition's
/// batch: the positions when every batch was written; else the first failure, as it is
/// when the request went to one partition (its status may say "not leader, nothing
/// proposed"), and with every partition's outcome in its details when it went to several.
pub fn combine(record_count: usize, writes: Vec<PartitionWrite>) -> Result<pb::AppendResponse, Status> {
    if writes.iter().any(|write| write.result.is_err()) {
        return Err(failure(writes));
    }
    let mut positions = vec![pb::RecordPosition::default(); record_count];
    let mut tokens = Vec::with_capacity(writes.len());
    let mut duplicate = false;
    for write in writes {
        let Ok(written) = write.result else { continue };
        for (n, &index) in write.record_indexes.iter().enumerate() {
            positions[index] =
                pb::RecordPosition { partition: write.partition, offset: written.base_offset + n as u64 };
        }
        tokens.push(pb::PartitionToken { partition: write.partition, applied_index: written.applied_index });
        duplicate |= written.duplicate;
    }
    Ok(pb::AppendResponse { positions, tokens, duplicate })
}

fn failure(mut writes: Vec<PartitionWrite>) -> Status {
    if writes.len() == 1
        && let Some(PartitionWrite { result: Err(status), .. }) = writes.pop()
    {
        return status;
    }
    let written: Vec<PartitionId> =
        writes.iter().filter(|write| write.result.is_ok()).map(|write| write.partition).collect();
    let failed: Vec<String> = writes
        .iter()
        .filter_map(|write| write.result.as_ref().err().map(|status| (write.partition, status)))
        .map(|(partition, status)| format!("partition {partition}: {}", status.message()))
        .collect();
    let code = writes.iter().find_map(|write| write.result.as_ref().err()).map_or(tonic::Code::Internal, Status::code);
    let message = format!(
        "the append was written to {} of {} partitions (written: {written:?}); {}. Send only the failed \
         partitions' records again: the status details (AppendOutcomes) list them",
        written.len(),
        writes.len(),
        failed.join("; ")
    );
    let outcomes = pb::AppendOutcomes {
        partitions: writes
            .into_iter()
            .map(|write| {
                let mut outcome = pb::PartitionOutcome {
                    partition: write.partition,
                    record_indexes: write.record_indexes.iter().map(|&index| index as u32).collect(),
                    ..Default::default()
                };
                match write.result {
                    Ok(written) => {
                        outcome.base_offset = Some(written.base_offset);
                        outcome.applied_index = written.applied_index;
                    }
                    Err(status) => {
                        outcome.code = status.code() as i32;
                        outcome.message = status.message().to_owned();
                    }
                }
                outcome
            })
            .collect(),
    };
    Status::with_details(code, message, outcomes.encode_to_vec().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(partition: PartitionId, record_indexes: Vec<usize>, base_offset: u64) -> PartitionWrite {
        let result = Ok(Written { base_offset, applied_index: base_offset + 100, duplicate: false });
        PartitionWrite { partition, record_indexes, result }
    }

    fn failed(partition: PartitionId, record_indexes: Vec<usize>, status: Status) -> PartitionWrite {
        PartitionWrite { partition, record_indexes, result: Err(status) }
    }

    #[test]
    fn every_partition_written_gives_every_position_in_request_order() {
        let response = combine(4, vec![written(0, vec![1, 3], 10), written(2, vec![0, 2], 7)]).expect("written");
        let positions: Vec<(u32, u64)> = response.positions.iter().map(|p| (p.partition, p.offset)).collect();
        assert_eq!(positions, [(2, 7), (0, 10), (2, 8), (0, 11)]);
        let tokens: Vec<(u32, u64)> = response.tokens.iter().map(|t| (t.partition, t.applied_index)).collect();
        assert_eq!(tokens, [(0, 110), (2, 107)]);
    }

    #[test]
    fn one_partition_failing_keeps_its_status_as_is() {
        let not_leader = crate::forward::not_leader(Status::unavailable("electing"), Some("127.0.0.1:1"));
        let status = combine(1, vec![failed(3, vec![0], not_leader)]).expect_err("failed");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(crate::forward::is_not_leader(&status), Some(Some("127.0.0.1:1".to_owned())));
        assert!(status.details().is_empty());
    }

    #[test]
    fn a_partial_failure_says_what_was_written_and_what_was_not() {
        let writes = vec![
            written(0, vec![0, 2], 5),
            failed(1, vec![1], Status::unavailable("partition 1 has no leader")),
            failed(2, vec![3], Status::resource_exhausted("too big")),
        ];
        let status = combine(4, writes).expect_err("partly failed");
        assert_eq!(status.code(), tonic::Code::Unavailable, "the first failure's code");
        // Not "nothing proposed": a forwarding node must not send it all again.
        assert_eq!(crate::forward::is_not_leader(&status), None);
        assert!(status.message().contains("written to 1 of 3 partitions"), "{}", status.message());
        let outcomes: pb::AppendOutcomes = cairn_proto::Message::decode(status.details()).expect("details decode");
        let summary: Vec<(u32, Vec<u32>, Option<u64>, i32)> = outcomes
            .partitions
            .iter()
            .map(|p| (p.partition, p.record_indexes.clone(), p.base_offset, p.code))
            .collect();
        assert_eq!(
            summary,
            [
                (0, vec![0, 2], Some(5), 0),
                (1, vec![1], None, tonic::Code::Unavailable as i32),
                (2, vec![3], None, tonic::Code::ResourceExhausted as i32),
            ]
        );
        assert_eq!(outcomes.partitions[0].applied_index, 105);
        assert_eq!(outcomes.partitions[1].message, "partition 1 has no leader");
    }
}
