//! Drives a running Cairn node with appends through the public client and prints
//! throughput and latency. A first figure for single-node append throughput; the full
//! load generator (`cairn bench`) comes with the speed work.
//!
//! `cargo run -p cairn-benches --release --bin append-load -- --batch 100 --duration-secs 20`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_client::{CairnClient, CreateTopicOptions};
use clap::Parser;
use hdrhistogram::Histogram;

#[derive(Debug, Parser)]
struct Args {
    /// The node to load.
    #[arg(long, default_value = "127.0.0.1:7070")]
    server: String,
    /// Topic to append to (created when missing).
    #[arg(long, default_value = "append-load")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records per append request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Append requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = CairnClient::connect(&args.server).await.context("connect")?;
    if client.describe_topic(&args.topic).await.is_err() {
        client.create_topic(CreateTopicOptions::new(&args.topic, args.partitions)).await.context("create topic")?;
    }
    let records = cairn_benches::records(args.batch, args.record_size);
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let appended = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let client = client.clone();
        let records = records.clone();
        let topic = args.topic.clone();
        let appended = Arc::clone(&appended);
        let partitions = args.partitions;
        workers.push(tokio::spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            let mut n = worker as u32;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match client.append(&topic, Some(n % partitions), records.clone()).await {
                    Ok(_) => {
                        let _ = latencies.record(sent.elapsed().as_micros() as u64);
                        appended.fetch_add(records.len() as u64, Ordering::Relaxed);
                    }
                    Err(_) => errors += 1,
                }
                n = n.wrapping_add(1);
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for worker in workers {
        let (worker_latencies, worker_errors) = worker.await?;
        latencies.add(worker_latencies)?;
        errors += worker_errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records_total = appended.load(Ordering::Relaxed);
    let records_per_sec = records_total as f64 / elapsed;
    println!(
        "batch {} x {} B, {} in flight, {:.1} s: {:.0} records/s, {:.1} MB/s, {} errors; append latency ms p50 {:.2} p99 {:.2} max {:.2}",
        args.batch,
        args.record_size,
        args.concurrency,
        elapsed,
        records_per_sec,
        records_per_sec * args.record_size as f64 / 1e6,
        errors,
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0,
    );
    Ok(())
}
