//! The consumer-group workload: half the process slots append unique values to random
//! partitions (as the queue workload does, never retrying an unknown append); the other half
//! are members of one consumer group (`GroupConsumer`, joined through a random node) that
//! poll and commit what they polled after each batch. A member whose commit ends unknown,
//! or whose polls keep failing, stops without leaving (as a killed consumer would) and a
//! new member with a new id takes its slot: the group must expire the old one and hand its
//! partitions over from the last committed position.
//!
//! The final phase reads the log whole (the queue's final reads) and the group's committed
//! positions; `checker::groups` then checks that no commit skipped a record no member
//! polled, and that committed positions never moved back.

use std::time::Duration;

use anyhow::Context as _;
use cairn_client::{CairnClient, ClientError, GroupConsumer, GroupConsumerConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::clients::{CALL_TIMEOUT, error_reply, with_deadline, write_outcome};
use super::{Clients, Context, FinalState, TOPIC};
use crate::history::{Call, Kind, Reply};

/// The consumer group every member joins.
pub const GROUP: &str = "jepsen";
/// How long one poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(300);
/// Failed polls in a row after which a member gives up on its node.
const POLL_FAILURES_MAX: u32 = 5;
/// How long the final reads of the positions may take.
const FINAL_READ_TIME: Duration = Duration::from_secs(60);

pub async fn run_worker(context: Context, worker: u32, workers: u32) {
    let mut rng = StdRng::seed_from_u64(context.seed.wrapping_mul(0xD1B5_4A32_D192_ED03).wrapping_add(worker as u64));
    if worker.is_multiple_of(2) {
        append_loop(&context, &mut rng, worker, workers).await;
    } else {
        member_loop(&context, &mut rng, worker, workers).await;
    }
}

/// Plain appends of unique values; a process whose append ended unknown retires.
async fn append_loop(context: &Context, rng: &mut StdRng, worker: u32, workers: u32) {
    let mut process = worker;
    let mut appended = 0u64;
    let mut clients = Clients::default();
    while !context.stopped() {
        let Some((node, address)) = context.members.pick(rng) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(client) = clients.get(node, &address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let partition = rng.random_range(0..context.partitions);
        let value = format!("{process}-{appended}");
        appended += 1;
        let call = Call::Append { node, partition, value: value.clone() };
        context.recorder.invoke(process, &call);
        match with_deadline(super::queue::append(&client, partition, value)).await {
            Ok((offset, token)) => {
                context.recorder.complete(process, Kind::Ok, &call, Reply::Appended { offset, token })
            }
            Err(error) => {
                let kind = write_outcome(&error.0);
                context.recorder.complete(process, kind, &call, error_reply(error));
                if kind == Kind::Info {
                    process += workers;
                    appended = 0;
                }
            }
        }
        tokio::time::sleep(context.pause).await;
    }
}

fn member_config(member: &str) -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(GROUP, vec![TOPIC.to_owned()]);
    config.member_id = Some(member.to_owned());
    config.client_id = "jepsen".to_owned();
    config.session_timeout = Duration::from_secs(3);
    config.heartbeat_interval = Duration::from_millis(300);
    config.rebalance_timeout = Duration::from_secs(10);
    config
}

/// Group members, one after another in this slot: each joins through a random node, polls
/// and commits until the run stops (then it leaves) or until it gives up (then it just
/// stops, and the next member, a new process, joins).
async fn member_loop(context: &Context, rng: &mut StdRng, worker: u32, workers: u32) {
    let mut process = worker;
    let mut clients = Clients::default();
    while !context.stopped() {
        let Some((node, address)) = context.members.pick(rng) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(client) = clients.get(node, &address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let member = format!("member-{process}");
        let joined = tokio::time::timeout(CALL_TIMEOUT, GroupConsumer::join(client, member_config(&member))).await;
        let Ok(Ok(mut consumer)) = joined else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let retire = consume(context, &mut consumer, process, node, &member).await;
        if retire {
            // Dropped without leaving: the group expires it after its session timeout.
            drop(consumer);
            process += workers;
        } else {
            let _ = tokio::time::timeout(CALL_TIMEOUT, consumer.leave()).await;
        }
    }
}

/// Polls and commits until the run stops (false) or the member must give up (true).
async fn consume(context: &Context, consumer: &mut GroupConsumer, process: u32, node: u64, member: &str) -> bool {
    let mut failures = 0;
    while !context.stopped() {
        let call = Call::GroupPoll { node, member: member.to_owned() };
        context.recorder.invoke(process, &call);
        match with_deadline(consumer.poll(POLL_WAIT)).await {
            Ok(batch) => {
                failures = 0;
                let reply = match batch {
                    Some(batch) => Reply::GroupPolled {
                        partition: Some(batch.partition),
                        records: batch
                            .records
                            .iter()
                            .map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned()))
                            .collect(),
                    },
                    None => Reply::GroupPolled { partition: None, records: Vec::new() },
                };
                context.recorder.complete(process, Kind::Ok, &call, reply);
            }
            Err(error) => {
                // A poll changes nothing in the group: a failed one is just failed.
                context.recorder.complete(process, Kind::Fail, &call, error_reply(error));
                failures += 1;
                if failures >= POLL_FAILURES_MAX {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let call = Call::GroupCommit { node, member: member.to_owned() };
        context.recorder.invoke(process, &call);
        match tokio::time::timeout(CALL_TIMEOUT, consumer.commit()).await {
            Ok(Ok(committed)) => {
                let positions = committed.into_iter().map(|((_, partition), offset)| (partition, offset)).collect();
                context.recorder.complete(process, Kind::Ok, &call, Reply::GroupCommitted { positions });
            }
            // The group refused it: nothing was written.
            Ok(Err(ClientError::GroupRefused { code, message, .. })) => {
                let reply = Reply::Error { code: format!("{code:?}"), message };
                context.recorder.complete(process, Kind::Fail, &call, reply);
            }
            Ok(Err(error)) => {
                let code = error.code().map_or_else(|| "client".to_owned(), |code| format!("{code:?}"));
                let reply = Reply::Error { code, message: error.to_string() };
                context.recorder.complete(process, Kind::Info, &call, reply);
                return true;
            }
            Err(_) => {
                let reply =
                    Reply::Error { code: "timeout".into(), message: format!("no answer within {CALL_TIMEOUT:?}") };
                context.recorder.complete(process, Kind::Info, &call, reply);
                return true;
            }
        }
        tokio::time::sleep(context.pause).await;
    }
    false
}

/// The queue's final reads of the log, then the group's committed positions.
pub async fn final_reads(context: &Context) -> anyhow::Result<FinalState> {
    let mut state = super::queue::final_reads(context).await?;
    state.group_positions = final_positions(context).await?;
    Ok(state)
}

async fn final_positions(context: &Context) -> anyhow::Result<std::collections::BTreeMap<u32, u64>> {
    let deadline = tokio::time::Instant::now() + FINAL_READ_TIME;
    let mut clients = Clients::default();
    let mut attempt = 0usize;
    let mut last_error = String::new();
    while tokio::time::Instant::now() < deadline {
        let (node, address) = context.members.in_turn(attempt).context("no node to read from")?;
        attempt += 1;
        let Some(client) = clients.get(node, &address).await else { continue };
        match describe(&client).await {
            Ok(positions) => return Ok(positions),
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the group's positions could not be read within {FINAL_READ_TIME:?}: {last_error}")
}

async fn describe(client: &CairnClient) -> Result<std::collections::BTreeMap<u32, u64>, ClientError> {
    let description = tokio::time::timeout(CALL_TIMEOUT, client.describe_group(GROUP))
        .await
        .map_err(|_| ClientError::InvalidResponse("describe_group timed out".into()))??;
    Ok(description
        .partitions
        .iter()
        .filter(|p| p.topic == TOPIC && p.has_position)
        .filter_map(|p| p.position.as_ref().map(|position| (p.partition, position.offset)))
        .collect())
}
