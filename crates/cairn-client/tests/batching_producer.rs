//! `BatchingProducer`'s recovery after a failed pipelined batch, against the fake server
//! with scripted answers: which sends are acknowledged where, which fail and how, the
//! sequences retries carry (later batches renumbered past a batch refused for good), and
//! whether the partition stops (when going on could apply a batch twice).

mod fake_cairn;

use std::time::Duration;

use bytes::Bytes;
use cairn_client::{BatchingConfig, BatchingProducer, CairnClient, ClientError, Code, CreateTopicOptions, RetryPolicy};
use cairn_types::{PRODUCER_BATCHES_REMEMBERED, Record};
use fake_cairn::FakeCairn;
use fake_cairn::append_script::{Answer, AppendAttempt, AppendScript};

use Answer::{ApplyOutOfOrder, ApplyThenLoseReply, Refuse};

/// What one batch's send gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Acknowledged at this offset.
    Offset(u64),
    /// Failed with this status code.
    Failed(Code),
    /// Failed as an answer that breaks the contract.
    InvalidResponse,
}

/// What the partition does after the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// It refuses further sends (its next sequence is unknown).
    Stopped,
    /// The next send goes out with this sequence and is stored at this offset.
    Continues { sequence: u64, offset: u64 },
}

struct Row {
    name: &'static str,
    /// Per batch (one record each, sequences 0, 1, ...): the fake's answers to its
    /// attempts, then as the server would answer (see `append_script`).
    script: &'static [&'static [Answer]],
    /// Per batch: what its send gets.
    expected: &'static [Expect],
    /// The attempts after the first ones, in order: batch and sequence.
    retries: &'static [(usize, u64)],
    after: After,
}

use Expect::{Failed, InvalidResponse, Offset};

const ROWS: &[Row] = &[
    Row {
        name: "every batch applied",
        script: &[&[], &[], &[]],
        expected: &[Offset(0), Offset(1), Offset(2)],
        retries: &[],
        after: After::Continues { sequence: 3, offset: 3 },
    },
    Row {
        name: "refused for good: the later batches (refused as a gap) are renumbered and applied",
        script: &[&[], &[Refuse(Code::InvalidArgument)], &[], &[]],
        expected: &[Offset(0), Failed(Code::InvalidArgument), Offset(1), Offset(2)],
        retries: &[(2, 1), (3, 2)],
        after: After::Continues { sequence: 3, offset: 3 },
    },
    Row {
        name: "the first batch refused for good: every later one moves down",
        script: &[&[Refuse(Code::ResourceExhausted)], &[], &[]],
        expected: &[Failed(Code::ResourceExhausted), Offset(0), Offset(1)],
        retries: &[(1, 0), (2, 1)],
        after: After::Continues { sequence: 2, offset: 2 },
    },
    Row {
        name: "a sequence refusal is retried with the same sequence",
        script: &[&[], &[Refuse(Code::FailedPrecondition)], &[]],
        expected: &[Offset(0), Offset(1), Offset(2)],
        retries: &[(1, 1), (2, 2)],
        after: After::Continues { sequence: 3, offset: 3 },
    },
    Row {
        name: "an unknown outcome is retried with the same sequence",
        script: &[&[Refuse(Code::Unavailable)], &[], &[]],
        expected: &[Offset(0), Offset(1), Offset(2)],
        retries: &[(0, 0), (1, 1), (2, 2)],
        after: After::Continues { sequence: 3, offset: 3 },
    },
    Row {
        name: "a lost answer: the retry is answered with the original offset",
        script: &[&[ApplyThenLoseReply], &[], &[]],
        expected: &[Offset(0), Offset(1), Offset(2)],
        retries: &[(0, 0)],
        after: After::Continues { sequence: 3, offset: 3 },
    },
    Row {
        name: "an unknown outcome before a refusal for good is retried; the batches after the refusal move down",
        script: &[&[Refuse(Code::Unavailable)], &[Refuse(Code::InvalidArgument)], &[]],
        expected: &[Offset(0), Failed(Code::InvalidArgument), Offset(1)],
        retries: &[(0, 0), (2, 1)],
        after: After::Continues { sequence: 2, offset: 2 },
    },
    Row {
        name: "a sequence refusal, then refused for good on retry: the later batches move down",
        script: &[&[], &[Refuse(Code::FailedPrecondition), Refuse(Code::InvalidArgument)], &[]],
        expected: &[Offset(0), Failed(Code::InvalidArgument), Offset(1)],
        retries: &[(1, 1), (2, 1)],
        after: After::Continues { sequence: 2, offset: 2 },
    },
    Row {
        name: "an unknown outcome after a refusal for good: stop rather than risk a duplicate",
        script: &[&[], &[Refuse(Code::InvalidArgument)], &[Refuse(Code::Unavailable)], &[]],
        expected: &[Offset(0), Failed(Code::InvalidArgument), Failed(Code::Unavailable), Failed(Code::Unavailable)],
        retries: &[],
        after: After::Stopped,
    },
    Row {
        name: "a deadline after a refusal for good: stop rather than risk a duplicate",
        script: &[&[Refuse(Code::InvalidArgument)], &[Refuse(Code::DeadlineExceeded)], &[]],
        expected: &[Failed(Code::InvalidArgument), Failed(Code::DeadlineExceeded), Failed(Code::DeadlineExceeded)],
        retries: &[],
        after: After::Stopped,
    },
    Row {
        name: "an unknown outcome, then refused for good on retry: the first attempt may have been applied, stop",
        script: &[&[Refuse(Code::Unavailable), Refuse(Code::InvalidArgument)], &[], &[]],
        expected: &[Failed(Code::InvalidArgument), Failed(Code::InvalidArgument), Failed(Code::InvalidArgument)],
        retries: &[(0, 0)],
        after: After::Stopped,
    },
    Row {
        name: "a batch applied after a refused one: the partition and the producer disagree, stop",
        script: &[&[Refuse(Code::InvalidArgument)], &[ApplyOutOfOrder], &[]],
        expected: &[Failed(Code::InvalidArgument), Offset(0), InvalidResponse],
        retries: &[],
        after: After::Stopped,
    },
];

/// Every row runs even when one fails; the failures are reported together.
#[tokio::test]
async fn recovery_after_a_failed_batch() {
    let mut failures = Vec::new();
    for row in ROWS {
        if let Err(failure) = run(row).await {
            failures.push(format!("{}:\n{failure}", row.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n\n{}", failures.len(), ROWS.len(), failures.join("\n\n"));
}

/// How long a row may take: a batcher that does not pipeline leaves the held first
/// attempts waiting forever.
const ROW_TIMEOUT: Duration = Duration::from_secs(20);

fn record(value: String) -> Record {
    Record { key: None, headers: Vec::new(), value: Bytes::from(value) }
}

fn expect_of(result: &Result<u64, ClientError>) -> Expect {
    match result {
        Ok(offset) => Offset(*offset),
        Err(ClientError::InvalidResponse(_)) => InvalidResponse,
        Err(error) => match error.code() {
            Some(code) => Failed(code),
            None => panic!("an error without a code: {error:?}"),
        },
    }
}

/// Runs one row on a fresh fake: sends one record per batch at once (so that every batch
/// is in flight together), then one more. Returns what differs from the row.
async fn run(row: &Row) -> Result<(), String> {
    let fake = FakeCairn::default();
    let address = fake.start().await;
    let policy = RetryPolicy { retry_total_ms: 3_000, backoff_initial_ms: 5, backoff_max_ms: 20 };
    let client = CairnClient::connect_with(&address.to_string(), policy).await.expect("connect");
    client.create_topic(CreateTopicOptions::new("orders", 1)).await.expect("create topic");
    let batches = row.script.len();
    assert!(batches <= PRODUCER_BATCHES_REMEMBERED, "{}: more batches than may be in flight", row.name);
    let answers = row
        .script
        .iter()
        .enumerate()
        .map(|(batch, answers)| (batch.to_string(), answers.iter().copied().collect()))
        .collect();
    fake.state().append_script = Some(AppendScript::new(batches, answers));
    let config =
        BatchingConfig { batch_records_max: 1, in_flight_max: PRODUCER_BATCHES_REMEMBERED, ..Default::default() };
    let producer = BatchingProducer::new(&client, "orders", config).await.expect("producer");

    // Queued in one poll, before the partition's sender runs: each is a full batch waiting,
    // so all go out together.
    let sends = (0..batches).map(|batch| producer.send(0, vec![record(batch.to_string())]));
    let results = tokio::time::timeout(ROW_TIMEOUT, futures::future::join_all(sends))
        .await
        .map_err(|_| "the sends were not answered in time (not pipelined?)".to_string())?;
    let after = tokio::time::timeout(ROW_TIMEOUT, producer.send(0, vec![record("after".to_string())]))
        .await
        .map_err(|_| "the send after the batches was not answered in time".to_string())?;

    let mut differences = Vec::new();
    if producer.pipelined_appends() != batches as u64 - 1 {
        differences.push(format!(
            "premise: {} of {} batches were pipelined",
            producer.pipelined_appends(),
            batches - 1
        ));
    }
    let attempts = fake.state().append_script.as_ref().expect("script").attempts.clone();
    let (first, retried): (Vec<&AppendAttempt>, Vec<&AppendAttempt>) =
        attempts.iter().filter(|attempt| attempt.batch != "after").partition(|attempt| attempt.attempt == 0);
    let mut first: Vec<(String, u64)> = first.iter().map(|attempt| (attempt.batch.clone(), attempt.sequence)).collect();
    first.sort_by_key(|&(_, sequence)| sequence);
    let first_expected: Vec<(String, u64)> = (0..batches).map(|batch| (batch.to_string(), batch as u64)).collect();
    if first != first_expected {
        differences.push(format!("premise: first attempts {first:?}, expected {first_expected:?}"));
    }

    let got: Vec<Expect> = results.iter().map(expect_of).collect();
    if got != row.expected {
        differences.push(format!("sends got {got:?}\n  expected {:?}\n  (results {results:?})", row.expected));
    }
    let retries: Vec<(usize, u64)> =
        retried.iter().map(|attempt| (attempt.batch.parse().expect("a batch number"), attempt.sequence)).collect();
    if retries != row.retries {
        differences.push(format!("retries (batch, sequence) {retries:?}, expected {:?}", row.retries));
    }

    let after_sequences: Vec<u64> =
        attempts.iter().filter(|attempt| attempt.batch == "after").map(|attempt| attempt.sequence).collect();
    match row.after {
        After::Stopped => {
            if after.is_ok() || !after_sequences.is_empty() {
                differences.push(format!(
                    "expected the partition stopped; the next send got {after:?}, sent with sequences {after_sequences:?}"
                ));
            }
        }
        After::Continues { sequence, offset } => {
            if after != Ok(offset) || after_sequences != [sequence] {
                differences.push(format!(
                    "the next send got {after:?} sent with sequences {after_sequences:?}; expected offset {offset} \
                     with sequence {sequence}"
                ));
            }
        }
    }
    if differences.is_empty() { Ok(()) } else { Err(format!("  {}", differences.join("\n  "))) }
}
