//! The NATS JetStream side of the comparison (`benches/compare.sh`): the same workloads as
//! `cairn-bench`, measured by the same code (`cairn_bench::Stats`), printed in the same
//! JSON shape. JetStream has no batch append: one publish is one record, and
//! `--in-flight` publishes per producer await their acks.
//!
//! `nats-bench produce --server 127.0.0.1:4222 --stream bench --replicas 3 --duration 20s`
//! `nats-bench consume --server 127.0.0.1:4222 --stream bench`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use cairn_bench::{ProgressLine, Report, Stats};
use cairn_cli::OutputFormat;
use clap::Parser;
use futures::StreamExt as _;
use tokio::time::Instant;

/// How long a new cluster may take to accept the stream.
const STREAM_CREATE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
enum Command {
    /// Publish to a stream (created when missing) and wait for every ack.
    Produce(ProduceArgs),
    /// Read a stream's backlog with an ordered consumer.
    Consume(ConsumeArgs),
}

#[derive(Debug, clap::Args)]
struct Connection {
    /// A NATS server of the cluster.
    #[arg(long, default_value = "127.0.0.1:4222")]
    server: String,
    /// The JetStream stream.
    #[arg(long, default_value = "bench")]
    stream: String,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Debug, clap::Args)]
struct ProduceArgs {
    #[command(flatten)]
    connection: Connection,
    /// Replicas of the stream when it is created (R).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Subjects `STREAM.0..N` the publishes are spread over (Cairn's partitions).
    #[arg(long, default_value_t = 8)]
    subjects: u64,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Publishes awaiting their ack, per producer.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[arg(long, default_value = "30s")]
    duration: humantime::Duration,
    /// Open loop: records per second in all.
    #[arg(long)]
    rate: Option<u64>,
    /// Producers, each with its own connection.
    #[arg(long, default_value_t = 1)]
    producers: usize,
}

#[derive(Debug, clap::Args)]
struct ConsumeArgs {
    #[command(flatten)]
    connection: Connection,
    /// Stop after this long even if the backlog is not read yet.
    #[arg(long, default_value = "10m")]
    duration: humantime::Duration,
}

async fn context(server: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::connect(server).await.with_context(|| format!("connecting to NATS at {server}"))?;
    Ok(jetstream::new(client))
}

async fn produce(args: &ProduceArgs) -> anyhow::Result<Report> {
    let name = &args.connection.stream;
    let js = context(&args.connection.server).await?;
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        storage: stream::StorageType::File,
        num_replicas: args.replicas,
        ..Default::default()
    };
    // A new cluster elects its JetStream meta leader first: retry for a while.
    let deadline = Instant::now() + STREAM_CREATE_TIMEOUT;
    while let Err(err) = js.get_or_create_stream(config.clone()).await {
        anyhow::ensure!(Instant::now() < deadline, "creating stream {name}: {err}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = Arc::new(Stats::new());
    let progress = ProgressLine::start(&stats, "nats produce");
    let started = Instant::now();
    let deadline = started + Duration::from(args.duration);
    let interval = args.rate.map(|rate| Duration::from_secs_f64(args.producers as f64 / rate.max(1) as f64));
    let payload = Bytes::from(cairn_bench::batch_of(1, args.record_size, 7).remove(0).value.to_vec());
    let mut tasks = Vec::new();
    for producer in 0..args.producers {
        let js = context(&args.connection.server).await?;
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..args.in_flight {
            let (js, stats, next, payload) = (js.clone(), Arc::clone(&stats), Arc::clone(&next), payload.clone());
            let (name, subjects) = (name.clone(), args.subjects.max(1));
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let due = interval.map_or_else(Instant::now, |interval| started + interval.mul_f64(n as f64));
                    if due >= deadline || (interval.is_none() && Instant::now() >= deadline) {
                        return;
                    }
                    tokio::time::sleep_until(due).await;
                    let subject = format!("{name}.{}", (n + producer as u64) % subjects);
                    let acked = match js.publish(subject, payload.clone()).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    };
                    if acked {
                        stats.record(1, payload.len() as u64, due.elapsed());
                    } else {
                        stats.error();
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    progress.finish().await;
    Ok(stats.report("nats produce"))
}

async fn consume(args: &ConsumeArgs) -> anyhow::Result<Report> {
    let name = &args.connection.stream;
    let js = context(&args.connection.server).await?;
    let mut stream =
        js.get_stream(name).await.map_err(|err| anyhow::anyhow!("stream {name} (fill it with produce): {err}"))?;
    let backlog = stream.info().await.map_err(|err| anyhow::anyhow!("stream info: {err}"))?.state.messages;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig { ..Default::default() })
        .await
        .map_err(|err| anyhow::anyhow!("creating an ordered consumer: {err}"))?;
    let mut messages = consumer.messages().await.map_err(|err| anyhow::anyhow!("consuming: {err}"))?;
    let stats = Arc::new(Stats::new());
    let progress = ProgressLine::start(&stats, "nats consume");
    let deadline = Instant::now() + Duration::from(args.duration);
    let mut last = Instant::now();
    while stats.records() < backlog && Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(Ok(message))) => {
                stats.record(1, message.payload.len() as u64, last.elapsed());
                last = Instant::now();
            }
            Ok(Some(Err(_))) => stats.error(),
            Ok(None) | Err(_) => break,
        }
    }
    progress.finish().await;
    Ok(stats.report("nats consume"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Command::parse();
    let (report, output) = match &command {
        Command::Produce(args) => (produce(args).await?, args.connection.output),
        Command::Consume(args) => (consume(args).await?, args.connection.output),
    };
    report.print(output, &mut std::io::stdout())
}
