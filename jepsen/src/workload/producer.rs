//! The idempotent-producer workload: each process owns an `IdempotentProducer` (one
//! producer id) on one node and appends unique values to random partitions. An append that
//! fails is retried with the same record, and so the same sequence, until it is
//! acknowledged: across leader kills, pauses and partitions every value must land exactly
//! once, and each producer's values in each partition in the order it sent them. One
//! operation in the history is one value, however many attempts it took; it ends `Info`
//! only when the run stops before the value was acknowledged.

use std::time::Duration;

use bytes::Bytes;
use cairn_client::IdempotentProducer;
use cairn_types::Record;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::clients::CALL_TIMEOUT;
use super::{Clients, Context, TOPIC};
use crate::history::{Call, Kind, Reply};

/// Pause between attempts of one value.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub async fn run_worker(context: Context, worker: u32, workers: u32) {
    let mut rng = StdRng::seed_from_u64(context.seed.wrapping_mul(0xD1B5_4A32_D192_ED03).wrapping_add(worker as u64));
    let mut process = worker;
    let mut clients = Clients::default();
    while !context.stopped() {
        let Some((node, address)) = context.members.pick(&mut rng) else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let Some(client) = clients.get(node, &address).await else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let Ok(Ok(mut producer)) = tokio::time::timeout(CALL_TIMEOUT, IdempotentProducer::new(&client, TOPIC)).await
        else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let producer_id = producer.producer_id();
        for sent in 0u64.. {
            if context.stopped() {
                return;
            }
            let partition = rng.random_range(0..context.partitions);
            let value = format!("{process}-{sent}");
            let call = Call::Produce { node, producer: producer_id, partition, value: value.clone() };
            context.recorder.invoke(process, &call);
            match produce_until_acknowledged(&context, &mut producer, node, partition, &value).await {
                Ok(reply) => context.recorder.complete(process, Kind::Ok, &call, reply),
                Err(reply) => {
                    // The last attempt may still land: this process is done, and a new one
                    // (a new producer, maybe on another node) takes the slot.
                    context.recorder.complete(process, Kind::Info, &call, reply);
                    break;
                }
            }
            tokio::time::sleep(context.pause).await;
        }
        process += workers;
    }
}

/// Retries one value with the same record (the producer keeps its sequence) until it is
/// acknowledged; gives up only when the run stops or the producer's node left the cluster.
async fn produce_until_acknowledged(
    context: &Context,
    producer: &mut IdempotentProducer,
    node: u64,
    partition: u32,
    value: &str,
) -> Result<Reply, Reply> {
    loop {
        let record = Record { key: None, headers: Vec::new(), value: Bytes::from(value.to_owned()) };
        match producer.append(partition, vec![record]).await {
            Ok(batch) => return Ok(Reply::Appended { offset: batch.base_offset, token: batch.applied_index }),
            Err(error) if context.stopped() || !context.members.all().contains_key(&node) => {
                return Err(Reply::Error {
                    code: format!("{:?}", error.code().unwrap_or(cairn_client::Code::Unknown)),
                    message: format!("given up (run stopped or node {node} left): {error}"),
                });
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}
