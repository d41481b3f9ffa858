//! The history of a run, as Jepsen keeps it: every operation a client process invoked and
//! how it completed, and every fault the nemesis started and healed, in the order they
//! happened. Checkers read nothing else (besides the replica dump taken after healing).
//!
//! An operation is two entries with the same `process`: an `Invoke` and, later, its
//! completion: `Ok` (it happened), `Fail` (it definitely did not happen: the server refused
//! it before writing anything) or `Info` (unknown: a timeout, a lost connection, a crash; it
//! may have happened or may still happen). A process runs one operation at a time, so an
//! invocation's completion is the next entry of its process. A process whose operation
//! ended `Info` never invokes again (Jepsen's rule: its operation may still be in flight);
//! the workload starts a fresh process number in its place.
//!
//! Written as JSON lines (`history.jsonl`), one entry per line.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The nemesis's process number.
pub const NEMESIS: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// How fresh a poll asked its data to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "level", content = "token")]
pub enum ReadLevel {
    /// Whatever the replica has applied.
    Local,
    /// At least up to this applied index, the token of an earlier append of the same
    /// process to the same partition.
    ReadYourWrites(u64),
    /// Every append acknowledged before the poll was invoked.
    Linearizable,
}

/// What an operation asked for. Completions repeat their invocation's call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "f")]
pub enum Call {
    /// A plain append of one record (no producer id: a retry could duplicate it, so the
    /// workload never retries an `Info` one).
    Append { node: u64, partition: u32, value: String },
    /// An append through an idempotent producer, which retries it (same sequence) across
    /// failovers until it is acknowledged or the producer gives up.
    Produce { node: u64, producer: u64, partition: u32, value: String },
    /// A read of `partition` from offset `from` on `node`.
    Poll { node: u64, partition: u32, from: u64, level: ReadLevel },
    /// An event append to `stream` expecting `expected`, with a fixed event id so that a
    /// retry is recognised.
    StreamAppend { node: u64, stream: String, expected: Expected, event_id: String, value: String },
    /// A read of the whole stream (linearizable).
    StreamRead { node: u64, stream: String },
    /// A consumer-group member (`member`, joined through `node`) polling for its next batch.
    GroupPoll { node: u64, member: String },
    /// A consumer-group member committing the positions of what it polled.
    GroupCommit { node: u64, member: String },
    /// A fault starting (`Invoke`) and in place (`Ok`), or healing (`Invoke`) and healed
    /// (`Ok`); `Info` when injecting or healing it failed.
    Fault { nemesis: String, action: FaultAction, detail: String },
}

/// The revision an event append expects its stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "expect", content = "revision")]
pub enum Expected {
    /// No check.
    Any,
    /// The stream has no events yet (the append gets revision 0).
    NoStream,
    /// The stream's last event has this revision (the append gets the next one).
    Revision(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultAction {
    Start,
    Heal,
}

/// What a completed operation answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reply")]
pub enum Reply {
    /// The record's offset, and the applied index to read it back with (read-your-writes).
    Appended { offset: u64, token: u64 },
    /// Records `(offset, value)` in the order returned, where the next read starts, and the
    /// partition's high watermark as the replica saw it.
    Polled { records: Vec<(u64, String)>, next_offset: u64, high_watermark: u64 },
    /// The revision the event got in its stream.
    StreamAppended { revision: u64 },
    /// Events `(revision, event_id, value)` in revision order.
    StreamEvents { events: Vec<(u64, String, String)> },
    /// A group member's batch: records `(offset, value)` of `partition` (None: nothing
    /// came within the poll's wait).
    GroupPolled { partition: Option<u32>, records: Vec<(u64, String)> },
    /// The positions `(partition, next offset)` a group member committed.
    GroupCommitted { positions: Vec<(u32, u64)> },
    /// An error: the gRPC code's name (or "timeout", "connect") and the message.
    Error { code: String, message: String },
    /// A fault's effect as carried out (which node, which peers...).
    Done { detail: String },
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the history, from 0.
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
    pub process: u32,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub call: Call,
    /// None on invocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

/// An invocation with its completion, for checkers. `complete_ns` is None (and `kind`
/// `Info`) when the run ended before the operation completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub process: u32,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    pub kind: Kind,
    pub call: Call,
    pub reply: Option<Reply>,
}

impl Operation {
    /// Whether this operation completed before `other` was invoked (real-time order).
    pub fn precedes(&self, other: &Operation) -> bool {
        self.complete_ns.is_some_and(|done| done < other.invoke_ns)
    }
}

/// Pairs each invocation with its process's next entry; operations are in invocation order.
pub fn operations(history: &[Entry]) -> Vec<Operation> {
    let mut open: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut operations: Vec<Operation> = Vec::new();
    for entry in history {
        if entry.kind == Kind::Invoke {
            open.insert(entry.process, operations.len());
            operations.push(Operation {
                process: entry.process,
                invoke_ns: entry.time_ns,
                complete_ns: None,
                kind: Kind::Info,
                call: entry.call.clone(),
                reply: None,
            });
        } else if let Some(at) = open.remove(&entry.process) {
            let operation = &mut operations[at];
            operation.complete_ns = Some(entry.time_ns);
            operation.kind = entry.kind;
            operation.reply = entry.reply.clone();
        }
    }
    operations
}

/// Appends entries to the history, in memory and to `history.jsonl`. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderState>>,
    started: Instant,
}

struct RecorderState {
    entries: Vec<Entry>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl Recorder {
    /// A recorder writing to `path` (None: memory only).
    pub fn new(path: Option<&Path>) -> std::io::Result<Recorder> {
        let file = match path {
            Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
            None => None,
        };
        Ok(Recorder {
            inner: Arc::new(Mutex::new(RecorderState { entries: Vec::new(), file })),
            started: Instant::now(),
        })
    }

    /// When the run started: entry times count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn invoke(&self, process: u32, call: &Call) {
        self.push(process, Kind::Invoke, call, None);
    }

    pub fn complete(&self, process: u32, kind: Kind, call: &Call, reply: Reply) {
        debug_assert!(kind != Kind::Invoke, "a completion is ok, fail or info");
        self.push(process, kind, call, Some(reply));
    }

    fn push(&self, process: u32, kind: Kind, call: &Call, reply: Option<Reply>) {
        let mut state = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = Entry {
            index: state.entries.len() as u64,
            time_ns: self.now_ns(),
            process,
            kind,
            call: call.clone(),
            reply,
        };
        if let Some(file) = state.file.as_mut() {
            // The history on disk is for people; a write error must not stop the run, and
            // the in-memory history is what the checkers read.
            if let Ok(line) = serde_json::to_string(&entry) {
                let _ = writeln!(file, "{line}");
            }
        }
        state.entries.push(entry);
    }

    /// Everything recorded so far (and flushes the file).
    pub fn entries(&self) -> Vec<Entry> {
        let mut state = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = state.file.as_mut() {
            let _ = file.flush();
        }
        state.entries.clone()
    }
}

/// Reads a `history.jsonl` back (to check a recorded run again).
pub fn load(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut entries = Vec::new();
    for (number, line) in file.lines().enumerate() {
        let line = line?;
        let entry: Entry = serde_json::from_str(&line)
            .map_err(|error| anyhow::anyhow!("{}:{}: {error}", path.display(), number + 1))?;
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_pair_invocations_with_their_process_completion() {
        let recorder = Recorder::new(None).expect("recorder");
        let a = Call::Append { node: 1, partition: 0, value: "a".into() };
        let b = Call::Append { node: 2, partition: 0, value: "b".into() };
        recorder.invoke(1, &a);
        recorder.invoke(2, &b);
        recorder.complete(2, Kind::Ok, &b, Reply::Appended { offset: 0, token: 5 });
        recorder.complete(1, Kind::Info, &a, Reply::Error { code: "timeout".into(), message: "10 s".into() });
        recorder.invoke(3, &a);
        let operations = operations(&recorder.entries());
        assert_eq!(operations.len(), 3);
        assert_eq!((operations[0].process, operations[0].kind), (1, Kind::Info));
        assert_eq!(operations[1].reply, Some(Reply::Appended { offset: 0, token: 5 }));
        assert_eq!((operations[2].kind, operations[2].complete_ns), (Kind::Info, None));
        assert!(!operations[0].precedes(&operations[1]));
        assert!(operations[1].precedes(&operations[2]));
    }

    #[test]
    fn a_history_survives_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        let recorder = Recorder::new(Some(&path)).expect("recorder");
        let poll = Call::Poll { node: 3, partition: 1, from: 7, level: ReadLevel::ReadYourWrites(42) };
        recorder.invoke(4, &poll);
        recorder.complete(
            4,
            Kind::Ok,
            &poll,
            Reply::Polled { records: vec![(7, "x".into())], next_offset: 8, high_watermark: 9 },
        );
        let fault = Call::Fault { nemesis: "kill".into(), action: FaultAction::Start, detail: "leader".into() };
        recorder.invoke(NEMESIS, &fault);
        let entries = recorder.entries();
        assert_eq!(load(&path).expect("load"), entries);
    }
}
