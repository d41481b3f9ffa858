//! The event-store workload: processes read a few contended streams (linearizable) and
//! append one event each time, mostly expecting the revision they just read (optimistic
//! concurrency: under contention most of these must be refused), sometimes with no
//! condition. Every event carries an id drawn from the run's seed. When an append's outcome
//! is unknown, its process retires and the next process sends the same event again (same
//! id, same expectation) through another node: the event must land once, whatever happened
//! to the first attempt. The client library itself also retries event appends on
//! UNAVAILABLE, relying on the same idempotence.

use std::time::Duration;

use anyhow::Context as _;
use cairn_client::{CairnClient, ClientError, Consistency, ExpectedRevision, RecordedEvent, json_event};
use cairn_types::stream::{format_event_id, parse_event_id};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::clients::{error_reply, with_deadline, write_outcome};
use super::{Clients, Context, FINAL, FinalState, TOPIC};
use crate::history::{Call, Expected, Kind, Reply};

/// Streams the processes contend on.
pub const STREAMS: u32 = 6;
/// How long the final reads may take in all.
const FINAL_READ_TIME: Duration = Duration::from_secs(90);

fn stream_name(index: u32) -> String {
    format!("account-{index}")
}

/// An event append a retired process left unknown, for its successor to send again.
struct Unfinished {
    stream: String,
    expected: Expected,
    event_id: String,
    value: String,
}

pub async fn run_worker(context: Context, worker: u32, workers: u32) {
    let mut rng = StdRng::seed_from_u64(context.seed.wrapping_mul(0xA24B_AED4_963E_E407).wrapping_add(worker as u64));
    let mut process = worker;
    let mut sent = 0u64;
    let mut clients = Clients::default();
    let mut unfinished: Option<Unfinished> = None;
    while !context.stopped() {
        let Some((node, address)) = context.members.pick(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(client) = clients.get(node, &address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let append = match unfinished.take() {
            Some(retry) => retry,
            None => {
                let stream = stream_name(rng.random_range(0..STREAMS));
                let unconditional = rng.random_bool(0.2);
                let event_id =
                    format_event_id(&uuid::Builder::from_random_bytes(rng.random()).into_uuid().into_bytes());
                let Some(last) = read(&context, &client, process, node, &stream).await else {
                    tokio::time::sleep(context.pause).await;
                    continue;
                };
                let expected = match (unconditional, last) {
                    (true, _) => Expected::Any,
                    (false, None) => Expected::NoStream,
                    (false, Some(revision)) => Expected::Revision(revision),
                };
                sent += 1;
                Unfinished { stream, expected, event_id, value: format!("{process}-{sent}") }
            }
        };
        let call = Call::StreamAppend {
            node,
            stream: append.stream.clone(),
            expected: append.expected,
            event_id: append.event_id.clone(),
            value: append.value.clone(),
        };
        context.recorder.invoke(process, &call);
        match with_deadline(append_event(&client, &append)).await {
            Ok(revision) => context.recorder.complete(process, Kind::Ok, &call, Reply::StreamAppended { revision }),
            Err(error) => {
                let kind = write_outcome(&error.0);
                context.recorder.complete(process, kind, &call, error_reply(error));
                if kind == Kind::Info {
                    process += workers;
                    unfinished = Some(append);
                }
            }
        }
        tokio::time::sleep(context.pause).await;
    }
}

async fn append_event(client: &CairnClient, append: &Unfinished) -> Result<u64, ClientError> {
    let expected = match append.expected {
        Expected::Any => ExpectedRevision::Any,
        Expected::NoStream => ExpectedRevision::NoStream,
        Expected::Revision(revision) => ExpectedRevision::Exact(revision),
    };
    let mut event = json_event("Deposited", append.value.clone());
    event.event_id = parse_event_id(&append.event_id)
        .ok_or_else(|| ClientError::InvalidResponse(format!("bad event id {}", append.event_id)))?;
    let appended = client.append_to_stream(TOPIC, &append.stream, expected, vec![event]).await?;
    appended.last_revision().ok_or_else(|| ClientError::InvalidResponse("append answered no revision".into()))
}

/// A recorded linearizable read of the whole stream; returns its last revision (None: no
/// events), or None (outer) when the read failed.
async fn read(context: &Context, client: &CairnClient, process: u32, node: u64, stream: &str) -> Option<Option<u64>> {
    let call = Call::StreamRead { node, stream: stream.to_owned() };
    context.recorder.invoke(process, &call);
    match with_deadline(client.read_whole_stream(TOPIC, stream, None, Consistency::Linearizable)).await {
        Ok(events) => {
            let last = events.last().map(|event| event.stream_revision);
            context.recorder.complete(process, Kind::Ok, &call, Reply::StreamEvents { events: summary(&events) });
            Some(last)
        }
        Err(error) => {
            context.recorder.complete(process, Kind::Fail, &call, error_reply(error));
            None
        }
    }
}

fn summary(events: &[RecordedEvent]) -> Vec<(u64, String, String)> {
    events
        .iter()
        .map(|event| {
            (event.stream_revision, event.event_id_string(), String::from_utf8_lossy(&event.data).into_owned())
        })
        .collect()
}

/// Reads every stream whole (linearizable) through whichever node answers.
pub async fn final_reads(context: &Context) -> anyhow::Result<FinalState> {
    let mut state = FinalState::default();
    let mut clients = Clients::default();
    let deadline = tokio::time::Instant::now() + FINAL_READ_TIME;
    let mut attempt = 0usize;
    for index in 0..STREAMS {
        let stream = stream_name(index);
        let events = loop {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "final stream reads took over {FINAL_READ_TIME:?}");
            let (node, address) = context.members.in_turn(attempt).context("no node to read from")?;
            attempt += 1;
            let Some(client) = clients.get(node, &address).await else { continue };
            let call = Call::StreamRead { node, stream: stream.clone() };
            context.recorder.invoke(FINAL, &call);
            match with_deadline(client.read_whole_stream(TOPIC, &stream, None, Consistency::Linearizable)).await {
                Ok(events) => {
                    let events = summary(&events);
                    context.recorder.complete(FINAL, Kind::Ok, &call, Reply::StreamEvents { events: events.clone() });
                    break events;
                }
                Err(error) => {
                    context.recorder.complete(FINAL, Kind::Fail, &call, error_reply(error));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        state.streams.insert(stream, events);
    }
    Ok(state)
}
