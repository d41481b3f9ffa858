//! Scripted answers to a producer's idempotent appends, for tests of pipelining and of
//! recovery after a failed batch.
//!
//! A batch is named by its first record's value. Unless scripted otherwise, an attempt is
//! served as the server would: applied when its sequence is the partition's next, answered
//! with the original positions when that sequence was applied already (a retry after a
//! lost answer), else refused with `FAILED_PRECONDITION` (a gap). The first attempts of
//! the first `pipelined` batches to arrive are held until all of them arrived, then answered in
//! sequence order (as the server proposes them): every batch is in flight at once, and
//! each one meets the partition its predecessors left.

use std::collections::{BTreeMap, HashMap, VecDeque};

use cairn_client::proto;
use tonic::{Code, Status};

/// What the fake does with one attempt of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// As the server would (see the module doc).
    Serve,
    /// Refused with this code, nothing applied.
    Refuse(Code),
    /// Served, but answered `UNAVAILABLE` when applied: the answer was lost.
    ApplyThenLoseReply,
    /// Applied whatever its sequence: a partition that disagrees with the producer.
    ApplyOutOfOrder,
}

/// One attempt the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendAttempt {
    pub batch: String,
    pub sequence: u64,
    /// 0 for the batch's first attempt.
    pub attempt: usize,
}

#[derive(Debug, Default)]
pub struct AppendScript {
    /// How many first attempts (the first ones to arrive, sequences `0..`) are held until
    /// all of them arrived.
    pub pipelined: usize,
    /// First attempts held so far.
    held: usize,
    /// By batch: answers to its attempts, in order; `Serve` once they run out.
    pub answers: HashMap<String, VecDeque<Answer>>,
    /// Every attempt, in the order they arrived.
    pub attempts: Vec<AppendAttempt>,
    /// The partition's next sequence for the producer.
    next_sequence: u64,
    /// Applied batches by sequence: their positions.
    applied: BTreeMap<u64, Vec<proto::RecordPosition>>,
}

/// Where the held first attempts are: how many arrived, and the sequence whose turn it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct Turns {
    pub arrived: usize,
    pub next_sequence: u64,
}

impl AppendScript {
    pub fn new(pipelined: usize, answers: HashMap<String, VecDeque<Answer>>) -> Self {
        AppendScript { pipelined, answers, ..AppendScript::default() }
    }

    /// Records the attempt; returns its batch name, and whether it is a held first attempt.
    pub(super) fn enter(&mut self, request: &proto::AppendRequest) -> (String, bool) {
        let batch = request
            .records
            .first()
            .map(|record| String::from_utf8_lossy(&record.value).into_owned())
            .unwrap_or_default();
        let sequence = request.sequence.unwrap_or_default();
        let attempt = self.attempts.iter().filter(|seen| seen.batch == batch).count();
        self.attempts.push(AppendAttempt { batch: batch.clone(), sequence, attempt });
        let held = attempt == 0 && self.held < self.pipelined;
        self.held += usize::from(held);
        (batch, held)
    }

    /// Answers an attempt of `batch` against `log`, the partition's records.
    pub(super) fn answer(
        &mut self,
        batch: &str,
        request: proto::AppendRequest,
        log: &mut Vec<proto::StoredRecord>,
    ) -> Result<proto::AppendResponse, Status> {
        let answer = self.answers.get_mut(batch).and_then(VecDeque::pop_front).unwrap_or(Answer::Serve);
        let sequence = request.sequence.unwrap_or_default();
        match answer {
            Answer::Refuse(code) => Err(Status::new(code, format!("scripted refusal of batch {batch}"))),
            Answer::Serve => self.serve(request, log),
            Answer::ApplyThenLoseReply => {
                self.serve(request, log)?;
                Err(Status::unavailable(format!("the answer to batch {batch} was lost")))
            }
            Answer::ApplyOutOfOrder => {
                self.next_sequence = sequence;
                self.serve(request, log)
            }
        }
    }

    fn serve(
        &mut self,
        request: proto::AppendRequest,
        log: &mut Vec<proto::StoredRecord>,
    ) -> Result<proto::AppendResponse, Status> {
        let sequence = request.sequence.unwrap_or_default();
        if let Some(positions) = self.applied.get(&sequence) {
            return Ok(proto::AppendResponse { positions: positions.clone(), tokens: Vec::new(), duplicate: true });
        }
        if sequence != self.next_sequence {
            return Err(Status::failed_precondition(format!(
                "sequence {sequence} is not the next one ({})",
                self.next_sequence
            )));
        }
        let partition = request.partition.unwrap_or(0);
        let positions = super::store(log, partition, request.records);
        self.next_sequence += positions.len() as u64;
        self.applied.insert(sequence, positions.clone());
        Ok(proto::AppendResponse { positions, tokens: Vec::new(), duplicate: false })
    }
}
