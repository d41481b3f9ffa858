//! `cairn-bench streams`: the event store under load, through the public client.
//!
//! 1. **Load**: `--writers` tasks append `--events-per-stream` events to each of
//!    `--streams` streams, one event per append, each with the exact expected revision
//!    (`NoStream`, then `Exact(previous)`), round by round over the streams.
//! 2. **Plain** (`--compare`): the same writers append as many plain records of the same
//!    size, keyed by the same stream names, for the figure the issue compares against.
//! 3. **Reads under load**: `--readers` tasks read whole random streams (`ReadStream`)
//!    for `--read-duration` while the writers append on (to new streams), for the read
//!    latency a projection rebuilding one aggregate sees.
//!
//! With `--server-pids` (the nodes' process ids, on this machine) it reports their resident
//! memory after the load, from `/proc/PID/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_client::{CairnClient, Consistency, ExpectedRevision, ReadStreamOptions};
use cairn_types::stream::new_event_id;
use cairn_types::{NewEvent, Record};
use tokio::time::Instant;

use crate::produce::batch_of;
use crate::stats::{ProgressLine, Report, Stats};
use crate::{TopicArgs, ensure_topic};

/// Event store load: appends with expected revisions, plain appends, stream reads.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamsBench {
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Streams to fill.
    #[arg(long, default_value_t = 100_000)]
    pub streams: u64,
    /// Events appended to each stream.
    #[arg(long, default_value_t = 10)]
    pub events_per_stream: u64,
    /// Events per append in the load phase, to one stream at its exact expected revision
    /// (1: one event per append, the figure compared with plain appends; 10 with 10
    /// events per stream fills each stream in one append, to reach a size sooner).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub events_per_append: u64,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 256)]
    pub event_size: usize,
    /// Concurrent appenders, each with its own connection.
    #[arg(long, default_value_t = 64)]
    pub writers: u64,
    /// Also append as many plain records of the same size, to compare.
    #[arg(long)]
    pub compare: bool,
    /// Concurrent stream readers in the read phase.
    #[arg(long, default_value_t = 4)]
    pub readers: u64,
    /// Appenders during the read phase (default: --writers, which saturates the nodes);
    /// several values run one read phase each, e.g. `64,4`.
    #[arg(long, value_delimiter = ',')]
    pub read_phase_writers: Vec<u64>,
    /// How long the read phase runs, e.g. 30s.
    #[arg(long, default_value = "30s")]
    pub read_duration: humantime::Duration,
    /// Process ids of the nodes (on this machine), for their resident memory.
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
}

/// The three phases' figures, and the nodes' memory after the load.
pub struct StreamsReport {
    pub conditional: Report,
    pub plain: Option<Report>,
    /// One per read phase: the appenders running meanwhile, their appends, the reads.
    pub reads: Vec<(u64, Report, Report)>,
    /// (pid, resident KiB).
    pub resident_kib: Vec<(u32, u64)>,
}

impl StreamsReport {
    pub fn print(&self, output: cairn_cli::OutputFormat, out: &mut impl std::io::Write) -> anyhow::Result<()> {
        let resident_mb: Vec<(u32, f64)> =
            self.resident_kib.iter().map(|&(pid, kib)| (pid, kib as f64 / 1024.0)).collect();
        match output {
            cairn_cli::OutputFormat::Json => {
                let value = serde_json::json!({
                    "conditional": self.conditional,
                    "plain": self.plain,
                    "reads": self.reads.iter().map(|(writers, appends, reads)| serde_json::json!({
                        "writers": writers, "appends": appends, "reads": reads,
                    })).collect::<Vec<_>>(),
                    "resident_mb": resident_mb,
                });
                writeln!(out, "{value}")?;
            }
            cairn_cli::OutputFormat::Table => {
                self.conditional.print(output, out)?;
                if let Some(plain) = &self.plain {
                    plain.print(output, out)?;
                    let ratio = self.conditional.records_per_sec / plain.records_per_sec.max(1e-9);
                    writeln!(out, "conditional / plain appends: {:.0}%", ratio * 100.0)?;
                }
                for (writers, appends, reads) in &self.reads {
                    writeln!(out, "read phase with {writers} appenders:")?;
                    appends.print(output, out)?;
                    reads.print(output, out)?;
                }
                for (pid, mb) in resident_mb {
                    writeln!(out, "node pid {pid}: resident {mb:.0} MB")?;
                }
            }
        }
        Ok(())
    }
}

fn stream_name(index: u64) -> String {
    format!("bench-stream-{index}")
}

impl StreamsBench {
    pub async fn run(&self, server: &str) -> anyhow::Result<StreamsReport> {
        ensure_topic(server, &self.topic).await?;
        let data = batch_of(1, self.event_size, 7).remove(0).value;
        let conditional = self.load(server, data.clone()).await?;
        let plain = if self.compare { Some(self.plain(server, data.clone()).await?) } else { None };
        let mut reads = Vec::new();
        let phases =
            if self.read_phase_writers.is_empty() { vec![self.writers] } else { self.read_phase_writers.clone() };
        for (phase, writers) in phases.into_iter().enumerate() {
            let (appends, read) = self.reads(server, data.clone(), writers, phase).await?;
            reads.push((writers, appends, read));
        }
        let resident_kib = self.server_pids.iter().map(|&pid| (pid, resident_kib(pid).unwrap_or(0))).collect();
        Ok(StreamsReport { conditional, plain, reads, resident_kib })
    }

    /// Every stream gets its events, `events_per_append` per append, at the exact expected
    /// revision.
    async fn load(&self, server: &str, data: bytes::Bytes) -> anyhow::Result<Report> {
        let (topic, streams, events_per_stream) = (self.topic.topic.clone(), self.streams, self.events_per_stream);
        let per_append = self.events_per_append.min(events_per_stream.max(1));
        let label = "streams: appends with expected revisions";
        let total = streams * events_per_stream.div_ceil(per_append);
        self.appends(server, label, total, move |client, stats, n| {
            let (topic, data) = (topic.clone(), data.clone());
            async move {
                // Round by round: the next events of every stream, then the next.
                let (round, stream) = (n / streams, stream_name(n % streams));
                let first = round * per_append;
                let expected = first.checked_sub(1).map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
                let events = (first..(first + per_append).min(events_per_stream)).map(|_| event(data.clone()));
                append_until_done(&client, &stats, &topic, &stream, expected, events.collect()).await;
            }
        })
        .await
    }

    /// As many plain appends of one record of the same size, keyed by the stream names.
    async fn plain(&self, server: &str, data: bytes::Bytes) -> anyhow::Result<Report> {
        let (topic, streams) = (self.topic.topic.clone(), self.streams);
        let total = self.streams * self.events_per_stream;
        self.appends(server, "streams: plain appends, same size", total, move |client, stats, n| {
            let (topic, data) = (topic.clone(), data.clone());
            async move {
                let key = format!("plain-{}", stream_name(n % streams));
                let bytes = data.len() as u64;
                let record = Record { key: Some(key.into()), headers: Vec::new(), value: data };
                let sent = Instant::now();
                match client.append(&topic, None, vec![record]).await {
                    Ok(_) => stats.record(1, bytes, sent.elapsed()),
                    Err(_) => stats.error(),
                }
            }
        })
        .await
    }

    /// Runs `append(client, stats, n)` for every `n` below `total`,
    /// spread over the writers (each with its own connection), and reports them.
    async fn appends<Append, Appended>(
        &self,
        server: &str,
        label: &'static str,
        total: u64,
        append: Append,
    ) -> anyhow::Result<Report>
    where
        Append: Fn(CairnClient, Arc<Stats>, u64) -> Appended + Clone + Send + 'static,
        Appended: std::future::Future<Output = ()> + Send,
    {
        let stats = Arc::new(Stats::new());
        let progress = ProgressLine::start(&stats, label);
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..self.writers {
            let client = CairnClient::connect(server).await?;
            let (stats, next, append) = (Arc::clone(&stats), Arc::clone(&next), append.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return;
                    }
                    append(client.clone(), Arc::clone(&stats), n).await;
                }
            }));
        }
        for task in tasks {
            task.await?;
        }
        progress.finish().await;
        Ok(stats.report(label))
    }

    /// Whole random streams read while `writers` appenders fill new streams.
    async fn reads(
        &self,
        server: &str,
        data: bytes::Bytes,
        writers: u64,
        phase: usize,
    ) -> anyhow::Result<(Report, Report)> {
        let stats = Arc::new(Stats::new());
        let write_stats = Arc::new(Stats::new());
        let progress = ProgressLine::start(&stats, "streams: reads under load");
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for writer in 0..writers {
            let client = CairnClient::connect(server).await?;
            let (stats, stop, data, topic) =
                (Arc::clone(&write_stats), Arc::clone(&stop), data.clone(), self.topic.topic.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream = format!("bench-during-reads-{phase}-{writer}-{n}");
                    let expected = ExpectedRevision::NoStream;
                    append_until_done(&client, &stats, &topic, &stream, expected, vec![event(data.clone())]).await;
                    n += 1;
                }
            }));
        }
        let deadline = Instant::now() + Duration::from(self.read_duration);
        for reader in 0..self.readers {
            let client = CairnClient::connect(server).await?;
            let (stats, topic, streams) = (Arc::clone(&stats), self.topic.topic.clone(), self.streams);
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ reader;
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let stream = stream_name(state % streams);
                    let options = ReadStreamOptions { consistency: Consistency::Local, ..ReadStreamOptions::default() };
                    let asked = Instant::now();
                    match client.read_stream(&topic, &stream, options).await {
                        Ok(slice) => {
                            let bytes: usize = slice.events.iter().map(|e| e.data.len()).sum();
                            stats.record(slice.events.len() as u64, bytes as u64, asked.elapsed());
                        }
                        Err(_) => stats.error(),
                    }
                }
            }));
        }
        tokio::time::sleep_until(deadline).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await?;
        }
        progress.finish().await;
        let appends = write_stats.report("streams: appends during the read phase");
        Ok((appends, stats.report("streams: ReadStream of a random stream, under appends")))
    }
}

fn event(data: bytes::Bytes) -> NewEvent {
    NewEvent {
        event_id: new_event_id(),
        event_type: "BenchEvent".to_owned(),
        content_type: "application/octet-stream".to_owned(),
        data,
        metadata: bytes::Bytes::new(),
        tags: Vec::new(),
    }
}

/// Appends `events` until they are stored: a retry of the same events is answered with
/// their first positions (their ids), so retrying after an error never stores them twice.
async fn append_until_done(
    client: &CairnClient,
    stats: &Stats,
    topic: &str,
    stream: &str,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
) {
    let bytes = events.iter().map(|event| event.data.len() as u64).sum();
    loop {
        let sent = Instant::now();
        match client.append_to_stream(topic, stream, expected, events.clone()).await {
            Ok(_) => {
                stats.record(events.len() as u64, bytes, sent.elapsed());
                return;
            }
            Err(_) => {
                stats.error();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The resident memory of process `pid`, in KiB (Linux).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
