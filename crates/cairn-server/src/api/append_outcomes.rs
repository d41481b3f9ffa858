//! The answer to an append whose records went to several partitions.
//!
//! Each partition's batch is a write of its own Raft group, so a request that spans
//! partitions is not atomic: some may be written while another fails. Answering with the
//! first failure alone would hide what was written, and a client that sends the request
//! again would write those partitions twice. So the append waits until every partition's
//! write has finished, and a failure carries every partition's outcome (`PartlyWritten`,
//! in `append_error.rs`: which were written, and where, and which failed), which the gRPC
//! adapter puts in the status details as an `AppendOutcomes`.

use cairn_types::{Offset, PartitionId};

use crate::api::{AppendError, PartitionWrite, PartlyWritten};

/// Where one record of an append was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordPosition {
    pub partition: PartitionId,
    pub offset: Offset,
}

/// The log index that applied a partition's batch: a read-your-writes token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionToken {
    pub partition: PartitionId,
    pub applied_index: u64,
}

/// An append written in full: each record's position, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendAnswer {
    pub positions: Vec<RecordPosition>,
    pub tokens: Vec<PartitionToken>,
    /// Some batch was a retry of one written before (answered with its first offsets).
    pub duplicate: bool,
}

/// The answer to an append of `record_count` records from the outcome of each partition's
/// batch: the positions when every batch was written; else the first failure, as it is
/// when the request went to one partition (it may say "not leader, nothing proposed"),
/// and every partition's outcome when it went to several.
pub fn combine(record_count: usize, mut writes: Vec<PartitionWrite>) -> Result<AppendAnswer, AppendError> {
    if writes.iter().any(|write| write.result.is_err()) {
        if writes.len() == 1
            && let Some(PartitionWrite { result: Err(err), .. }) = writes.pop()
        {
            return Err(err);
        }
        return Err(AppendError::PartlyWritten(PartlyWritten { writes }));
    }
    let mut positions = vec![RecordPosition::default(); record_count];
    let mut tokens = Vec::with_capacity(writes.len());
    let mut duplicate = false;
    for write in writes {
        let Ok(written) = write.result else { continue };
        for (n, &index) in write.record_indexes.iter().enumerate() {
            positions[index] = RecordPosition { partition: write.partition, offset: written.base_offset + n as u64 };
        }
        tokens.push(PartitionToken { partition: write.partition, applied_index: written.applied_index });
        duplicate |= written.duplicate;
    }
    Ok(AppendAnswer { positions, tokens, duplicate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiError, ErrorCode, NotLeader, RecordLimitError, RemoteError, Written};

    fn written(partition: PartitionId, record_indexes: Vec<usize>, base_offset: u64) -> PartitionWrite {
        let result = Ok(Written { base_offset, applied_index: base_offset + 100, duplicate: false });
        PartitionWrite { partition, record_indexes, result }
    }

    fn failed(partition: PartitionId, record_indexes: Vec<usize>, err: AppendError) -> PartitionWrite {
        PartitionWrite { partition, record_indexes, result: Err(err) }
    }

    fn unavailable(message: &str) -> AppendError {
        AppendError::Remote(RemoteError::local(ErrorCode::Unavailable, message.to_owned()))
    }

    #[test]
    fn every_partition_written_gives_every_position_in_request_order() {
        let answer = combine(4, vec![written(0, vec![1, 3], 10), written(2, vec![0, 2], 7)]).expect("written");
        let positions: Vec<(u32, u64)> = answer.positions.iter().map(|p| (p.partition, p.offset)).collect();
        assert_eq!(positions, [(2, 7), (0, 10), (2, 8), (0, 11)]);
        let tokens: Vec<(u32, u64)> = answer.tokens.iter().map(|t| (t.partition, t.applied_index)).collect();
        assert_eq!(tokens, [(0, 110), (2, 107)]);
    }

    #[test]
    fn one_partition_failing_keeps_its_error_as_is() {
        let mut not_leader = RemoteError::local(ErrorCode::Unavailable, "electing".to_owned());
        not_leader.not_leader = Some(NotLeader { leader_address: Some("127.0.0.1:1".to_owned()) });
        let err = combine(1, vec![failed(3, vec![0], AppendError::Remote(not_leader))]).expect_err("failed");
        assert_eq!(err.code(), ErrorCode::Unavailable);
        assert_eq!(err.not_leader(), Some(NotLeader { leader_address: Some("127.0.0.1:1".to_owned()) }));
        assert!(!matches!(err, AppendError::PartlyWritten(_)));
    }

    #[test]
    fn a_partial_failure_says_what_was_written_and_what_was_not() {
        let writes = vec![
            written(0, vec![0, 2], 5),
            failed(1, vec![1], unavailable("partition 1 has no leader")),
            failed(2, vec![3], AppendError::Limits(RecordLimitError::RequestTooLarge { bytes: 2, max: 1 })),
        ];
        let err = combine(4, writes).expect_err("partly failed");
        assert_eq!(err.code(), ErrorCode::Unavailable, "the first failure's code");
        // Not "nothing proposed": a forwarding node must not send it all again.
        assert_eq!(err.not_leader(), None);
        assert!(err.to_string().contains("written to 1 of 3 partitions"), "{err}");
        let AppendError::PartlyWritten(partly) = err else { panic!("every partition's outcome: {err:?}") };
        // Each partition, its records, its first offset if written, its code if not.
        type Summary = (u32, Vec<usize>, Option<u64>, Option<ErrorCode>);
        let summary: Vec<Summary> = partly
            .writes
            .iter()
            .map(|w| {
                let base = w.result.as_ref().ok().map(|written| written.base_offset);
                (w.partition, w.record_indexes.clone(), base, w.result.as_ref().err().map(ApiError::code))
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, vec![0, 2], Some(5), None),
                (1, vec![1], None, Some(ErrorCode::Unavailable)),
                (2, vec![3], None, Some(ErrorCode::ResourceExhausted)),
            ]
        );
    }
}
