//! A checked write workload: idempotent writers append unique values while the cluster is
//! disturbed, recording what was acknowledged; afterwards every replica is read back and
//! compared with that history.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_client::{BatchingConfig, BatchingProducer, CairnClient, IdempotentProducer};
use cairn_types::Record;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// value → (partition, offset) for acknowledged appends; values never acknowledged; when
/// each partition's appends were acknowledged; sends of the pipelining writer that failed.
#[derive(Default)]
pub struct History {
    pub acknowledged: HashMap<String, (u32, u64)>,
    pub indeterminate: Vec<String>,
    pub acknowledged_at: Vec<(u32, Instant)>,
    pub pipelined_failures: Vec<String>,
    /// Appends the pipelining writer sent while another of their partition was in flight.
    pub pipelined_appends: u64,
}

/// Concurrent sends of the pipelining writer.
const PIPELINED_SENDS: usize = 24;

/// What the replicas hold compared with the history.
#[derive(Debug)]
pub struct Verdict {
    /// Acknowledged appends missing or at another offset.
    pub lost: usize,
    /// Values stored more than once.
    pub duplicated: usize,
    /// Partitions whose offsets have a gap.
    pub gaps: usize,
    /// Never-acknowledged values that made it in anyway (allowed).
    pub indeterminate_present: usize,
    pub records: usize,
}

pub async fn connect(address: &str) -> CairnClient {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match CairnClient::connect(address).await {
            Ok(client) => return client,
            Err(err) => assert!(Instant::now() < deadline, "cannot connect to {address}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One writer per address, appending one record at a time until `stop` is called, and one
/// more through the last address that pipelines: many concurrent sends through a
/// `BatchingProducer` with small batches, so several appends per partition are in flight
/// when a leader dies.
pub struct Writers {
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub fn start(addresses: &[String], topic: &'static str, partitions: u32, seed: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::default()));
        let mut tasks: Vec<_> = addresses
            .iter()
            .enumerate()
            .map(|(id, address)| {
                let (stop, history) = (Arc::clone(&stop), Arc::clone(&history));
                tokio::spawn(writer(address.clone(), topic, partitions, id, seed, stop, history))
            })
            .collect();
        if let Some(address) = addresses.last() {
            let (stop, history) = (Arc::clone(&stop), Arc::clone(&history));
            tasks.push(tokio::spawn(pipelined_writer(address.clone(), topic, partitions, seed, stop, history)));
        }
        Writers { stop, history, tasks }
    }

    /// Appends acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.history.lock().expect("history").acknowledged.len()
    }

    /// Stops the writers, waits for them, and returns what they recorded.
    pub async fn stop(self) -> History {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("writer stops").expect("writer");
        }
        std::mem::take(&mut *self.history.lock().expect("history"))
    }
}

/// Appends `w{id}-{n}` values to random partitions of `topic` through the node at
/// `address` until `stop`, retrying each until acknowledged.
async fn writer(
    address: String,
    topic: &'static str,
    partitions: u32,
    id: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let client = connect(&address).await;
    let mut producer = loop {
        match IdempotentProducer::new(&client, topic).await {
            Ok(producer) => break producer,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(id as u64));
    for n in 0u64.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let value = format!("w{id}-{n}");
        let partition = rng.random_range(0..partitions);
        // After an error the same record is retried (the producer's contract): a different
        // record with the same sequence would be taken for the first one.
        loop {
            let record = Record { key: None, headers: vec![], value: Bytes::from(value.clone()) };
            match producer.append(partition, vec![record]).await {
                Ok(produced) => {
                    let mut history = history.lock().expect("history");
                    history.acknowledged.insert(value.clone(), (partition, produced.base_offset));
                    history.acknowledged_at.push((partition, Instant::now()));
                    break;
                }
                Err(_) if !stop.load(Ordering::Acquire) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => {
                    history.lock().expect("history").indeterminate.push(value.clone());
                    return;
                }
            }
        }
    }
}

/// Appends `p{task}-{n}` values to random partitions through one `BatchingProducer` from
/// `PIPELINED_SENDS` tasks. A failed send is indeterminate (the producer retries for 30 s
/// on its own, so a failover should never fail one) and ends its task.
async fn pipelined_writer(
    address: String,
    topic: &'static str,
    partitions: u32,
    seed: u64,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) {
    let client = connect(&address).await;
    let config = BatchingConfig { batch_records_max: 4, ..BatchingConfig::default() };
    let producer = loop {
        match BatchingProducer::new(&client, topic, config).await {
            Ok(producer) => break Arc::new(producer),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let tasks: Vec<_> = (0..PIPELINED_SENDS)
        .map(|task| {
            let (producer, stop, history) = (Arc::clone(&producer), Arc::clone(&stop), Arc::clone(&history));
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1_000 + task as u64));
                for n in 0u64.. {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let value = format!("p{task}-{n}");
                    let partition = rng.random_range(0..partitions);
                    let record = Record { key: None, headers: vec![], value: Bytes::from(value.clone()) };
                    match producer.send(partition, vec![record]).await {
                        Ok(offset) => {
                            let mut history = history.lock().expect("history");
                            history.acknowledged.insert(value, (partition, offset));
                            history.acknowledged_at.push((partition, Instant::now()));
                        }
                        Err(err) => {
                            let mut history = history.lock().expect("history");
                            history.pipelined_failures.push(format!("{value} to partition {partition}: {err}"));
                            history.indeterminate.push(value);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("pipelined send task");
    }
    history.lock().expect("history").pipelined_appends = producer.pipelined_appends();
}

/// Every record of `partition` a node serves: offset → (timestamp, value).
pub async fn read_values(client: &CairnClient, topic: &str, partition: u32) -> BTreeMap<u64, (u64, String)> {
    super::read_partition(client, topic, partition)
        .await
        .into_iter()
        .map(|r| (r.offset, (r.timestamp_ms, String::from_utf8_lossy(&r.value).into_owned())))
        .collect()
}

/// Compares one copy of the log, (partition, offset) → value, with the history.
pub fn check(log: &BTreeMap<(u32, u64), String>, history: &History, partitions: u32) -> Verdict {
    let mut seen: HashMap<&str, (u32, u64)> = HashMap::new();
    let mut duplicated = 0;
    for (&(partition, offset), value) in log {
        if seen.insert(value.as_str(), (partition, offset)).is_some() {
            duplicated += 1;
        }
    }
    let gaps = (0..partitions)
        .filter(|partition| {
            let offsets: Vec<u64> = log.keys().filter(|(p, _)| p == partition).map(|(_, o)| *o).collect();
            !offsets.iter().enumerate().all(|(i, &o)| o == i as u64)
        })
        .count();
    let lost = history.acknowledged.iter().filter(|(value, at)| seen.get(value.as_str()) != Some(at)).count();
    let indeterminate_present = history.indeterminate.iter().filter(|v| seen.contains_key(v.as_str())).count();
    Verdict { lost, duplicated, gaps, indeterminate_present, records: log.len() }
}
