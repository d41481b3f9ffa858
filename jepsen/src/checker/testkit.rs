//! Histories for the checkers' tests, recorded through the real `Recorder` so that they
//! have the shape a run produces. Each entry gets a strictly later time than the one before
//! (the recorder's clock could otherwise give two entries the same nanosecond, and real-time
//! precedence is strict).

use crate::history::{self, Call, Expected, Kind, Operation, ReadLevel, Recorder, Reply};

pub(crate) struct TestHistory {
    recorder: Recorder,
}

impl TestHistory {
    pub(crate) fn new() -> TestHistory {
        TestHistory { recorder: Recorder::new(None).expect("an in-memory recorder") }
    }

    pub(crate) fn invoke(&self, process: u32, call: &Call) {
        self.recorder.invoke(process, call);
        self.tick();
    }

    pub(crate) fn complete(&self, process: u32, kind: Kind, call: &Call, reply: Reply) {
        self.recorder.complete(process, kind, call, reply);
        self.tick();
    }

    /// An invocation immediately followed by its completion.
    pub(crate) fn run(&self, process: u32, kind: Kind, call: &Call, reply: Reply) {
        self.invoke(process, call);
        self.complete(process, kind, call, reply);
    }

    pub(crate) fn operations(&self) -> Vec<Operation> {
        history::operations(&self.recorder.entries())
    }

    /// Waits until the recorder's clock has moved on.
    fn tick(&self) {
        let now = self.recorder.now_ns();
        while self.recorder.now_ns() == now {
            std::hint::spin_loop();
        }
    }
}

pub(crate) fn append(partition: u32, value: &str) -> Call {
    Call::Append { node: 1, partition, value: value.into() }
}

pub(crate) fn produce(producer: u64, partition: u32, value: &str) -> Call {
    Call::Produce { node: 1, producer, partition, value: value.into() }
}

pub(crate) fn poll(partition: u32, from: u64, level: ReadLevel) -> Call {
    Call::Poll { node: 1, partition, from, level }
}

pub(crate) fn appended(offset: u64, token: u64) -> Reply {
    Reply::Appended { offset, token }
}

/// A poll's reply holding `records` (`(offset, value)`).
pub(crate) fn polled(records: &[(u64, &str)], next_offset: u64, high_watermark: u64) -> Reply {
    let records = records.iter().map(|&(offset, value)| (offset, value.to_owned())).collect();
    Reply::Polled { records, next_offset, high_watermark }
}

pub(crate) fn error(code: &str) -> Reply {
    Reply::Error { code: code.into(), message: "test".into() }
}

pub(crate) fn stream_append(stream: &str, expected: Expected, event_id: &str, value: &str) -> Call {
    Call::StreamAppend { node: 1, stream: stream.into(), expected, event_id: event_id.into(), value: value.into() }
}

pub(crate) fn stream_read(stream: &str) -> Call {
    Call::StreamRead { node: 1, stream: stream.into() }
}

/// A stream read's reply holding `events` (`(revision, event_id, value)`).
pub(crate) fn stream_events(events: &[(u64, &str, &str)]) -> Reply {
    let events = events.iter().map(|&(revision, id, value)| (revision, id.to_owned(), value.to_owned())).collect();
    Reply::StreamEvents { events }
}
