//! The log-queue workload (Jepsen's Kafka workload): each process appends unique values to
//! random partitions through random nodes, and polls partitions from where it last read (now
//! and then from an earlier offset) at every consistency level: local, read-your-writes
//! with the token of its own last append to the partition, and linearizable. Appends carry
//! no producer id, so an append whose outcome is unknown is never retried: its process
//! retires (Jepsen's rule) and a new process number takes the slot.
//!
//! The final phase reads every partition whole with linearizable reads; the producer
//! workload shares it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use cairn_client::{CairnClient, ClientError, Consistency, proto};
use cairn_types::Record;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::clients::{error_reply, with_deadline, write_outcome};
use super::{Clients, Context, FINAL, FinalState, TOPIC};
use crate::history::{Call, Kind, ReadLevel, Reply};

/// Records one poll asks for.
const POLL_RECORDS_MAX: u32 = 50;
/// How long the final reads may take per partition before the run fails.
const FINAL_READ_TIME: Duration = Duration::from_secs(90);

/// What one process remembers between operations.
struct ProcessState {
    process: u32,
    appended: u64,
    /// partition → where the next poll starts.
    positions: BTreeMap<u32, u64>,
    /// partition → the token of this process's last acknowledged append there.
    tokens: BTreeMap<u32, u64>,
}

impl ProcessState {
    fn new(process: u32) -> ProcessState {
        ProcessState { process, appended: 0, positions: BTreeMap::new(), tokens: BTreeMap::new() }
    }
}

pub async fn run_worker(context: Context, worker: u32, workers: u32) {
    let mut rng = StdRng::seed_from_u64(context.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(worker as u64));
    let mut state = ProcessState::new(worker);
    let mut clients = Clients::default();
    while !context.stopped() {
        let Some((node, address)) = context.members.pick(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let partition = rng.random_range(0..context.partitions);
        let append = rng.random_bool(0.5);
        let seek = rng.random_bool(0.1);
        let level_choice = rng.random_range(0..3u32);
        let Some(client) = clients.get(node, &address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if append {
            let value = format!("{}-{}", state.process, state.appended);
            state.appended += 1;
            let retired = append_once(&context, &client, &mut state, node, partition, value).await;
            if retired {
                state = ProcessState::new(state.process + workers);
            }
        } else {
            let position = state.positions.get(&partition).copied().unwrap_or(0);
            let from = if seek && position > 0 { rng.random_range(0..position) } else { position };
            let level = match (level_choice, state.tokens.get(&partition)) {
                (0, _) => ReadLevel::Local,
                (1, Some(&token)) => ReadLevel::ReadYourWrites(token),
                _ => ReadLevel::Linearizable,
            };
            if let Some(next_offset) = poll(&context, &client, state.process, node, partition, from, level).await {
                state.positions.insert(partition, next_offset);
            }
        }
        tokio::time::sleep(context.pause).await;
    }
}

/// One plain append; returns whether its outcome is unknown (the process must retire).
async fn append_once(
    context: &Context,
    client: &CairnClient,
    state: &mut ProcessState,
    node: u64,
    partition: u32,
    value: String,
) -> bool {
    let call = Call::Append { node, partition, value: value.clone() };
    context.recorder.invoke(state.process, &call);
    match with_deadline(append(client, partition, value)).await {
        Ok((offset, token)) => {
            state.tokens.insert(partition, token);
            context.recorder.complete(state.process, Kind::Ok, &call, Reply::Appended { offset, token });
            false
        }
        Err(error) => {
            let kind = write_outcome(&error.0);
            context.recorder.complete(state.process, kind, &call, error_reply(error));
            kind == Kind::Info
        }
    }
}

/// Appends one record without a producer id; returns its offset and read-your-writes token.
pub async fn append(client: &CairnClient, partition: u32, value: String) -> Result<(u64, u64), ClientError> {
    let record = Record { key: None, headers: Vec::new(), value: Bytes::from(value) };
    let request = proto::AppendRequest {
        topic: TOPIC.to_owned(),
        partition: Some(partition),
        records: vec![proto::Record::from(record)],
        producer_id: None,
        sequence: None,
    };
    let response = client.proto_client().append(request).await.map_err(ClientError::from)?.into_inner();
    let offset = response
        .positions
        .first()
        .map(|position| position.offset)
        .ok_or_else(|| ClientError::InvalidResponse("append answered no position".into()))?;
    let token = response
        .tokens
        .iter()
        .find(|token| token.partition == partition)
        .map(|token| token.applied_index)
        .ok_or_else(|| ClientError::InvalidResponse("append answered no token".into()))?;
    Ok((offset, token))
}

/// One recorded poll; returns where the next one starts when it succeeded. A failed read
/// changes nothing, so every error is `Fail` and the process goes on.
async fn poll(
    context: &Context,
    client: &CairnClient,
    process: u32,
    node: u64,
    partition: u32,
    from: u64,
    level: ReadLevel,
) -> Option<u64> {
    let call = Call::Poll { node, partition, from, level };
    context.recorder.invoke(process, &call);
    let consistency = match level {
        ReadLevel::Local => Consistency::Local,
        ReadLevel::ReadYourWrites(token) => Consistency::ReadYourWrites(token),
        ReadLevel::Linearizable => Consistency::Linearizable,
    };
    let read = client.read_consistent(TOPIC, partition, from, POLL_RECORDS_MAX, 0, 0, consistency);
    match with_deadline(read).await {
        Ok(read) => {
            let records =
                read.records.iter().map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned())).collect();
            let reply = Reply::Polled { records, next_offset: read.next_offset, high_watermark: read.high_watermark };
            context.recorder.complete(process, Kind::Ok, &call, reply);
            Some(read.next_offset)
        }
        Err(error) => {
            context.recorder.complete(process, Kind::Fail, &call, error_reply(error));
            None
        }
    }
}

/// Reads every partition whole with linearizable reads through whichever node answers.
pub async fn final_reads(context: &Context) -> anyhow::Result<FinalState> {
    let mut state = FinalState::default();
    let mut clients = Clients::default();
    for partition in 0..context.partitions {
        let deadline = tokio::time::Instant::now() + FINAL_READ_TIME;
        let mut records: Vec<(u64, String)> = Vec::new();
        let mut from = 0;
        let mut attempt = 0usize;
        loop {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "partition {partition}: final reads did not finish within {FINAL_READ_TIME:?}"
            );
            let (node, address) = context.members.in_turn(attempt).context("no node to read from")?;
            attempt += 1;
            let Some(client) = clients.get(node, &address).await else { continue };
            let call = Call::Poll { node, partition, from, level: ReadLevel::Linearizable };
            context.recorder.invoke(FINAL, &call);
            let read = client.read_consistent(TOPIC, partition, from, 1_000, 0, 0, Consistency::Linearizable);
            match with_deadline(read).await {
                Ok(read) => {
                    let batch: Vec<(u64, String)> = read
                        .records
                        .iter()
                        .map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned()))
                        .collect();
                    let reply = Reply::Polled {
                        records: batch.clone(),
                        next_offset: read.next_offset,
                        high_watermark: read.high_watermark,
                    };
                    context.recorder.complete(FINAL, Kind::Ok, &call, reply);
                    records.extend(batch);
                    if read.next_offset >= read.high_watermark {
                        break;
                    }
                    anyhow::ensure!(read.next_offset > from, "partition {partition}: a final read made no progress");
                    from = read.next_offset;
                }
                Err(error) => {
                    context.recorder.complete(FINAL, Kind::Fail, &call, error_reply(error));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        state.log.insert(partition, records);
    }
    Ok(state)
}
