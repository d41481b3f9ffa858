//! Idempotent producers: per partition, what each producer last appended.
//!
//! A producer numbers its records per partition from 0 (`sequence` is the number of the
//! request's first record). The table keeps the last `RECENT_BATCHES_MAX` batches of each
//! producer so a retry of any of them returns its original offsets and writes nothing; a
//! gap or an older sequence that is no longer remembered is refused. The table is part of
//! the partition's state machine state: persisted on apply (one entry per producer, see
//! `producer_store.rs`) and carried in snapshots, so it survives restarts and failover.

use std::collections::{BTreeMap, VecDeque};

use cairn_types::Offset;
use serde::{Deserialize, Serialize};

/// Batches remembered per producer and partition (Kafka keeps 5 in flight).
pub const RECENT_BATCHES_MAX: usize = cairn_types::PRODUCER_BATCHES_REMEMBERED;
/// Producers remembered per partition; the least recently active is forgotten first.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub sequence: u64,
    pub record_count: u32,
    pub base_offset: Offset,
    pub timestamp_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    recent: VecDeque<ProducerBatch>,
    /// The Raft index of the producer's last append here: orders evictions.
    last_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerTable {
    producers: BTreeMap<u64, ProducerState>,
}

/// What to do with an idempotent append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The next batch: append it.
    Append,
    /// Already applied: answer with the original batch, write nothing.
    Duplicate(ProducerBatch),
    /// Refused: records `expected` is the next sequence the producer may send.
    OutOfOrder { expected: u64 },
}

impl ProducerTable {
    pub fn check(&self, producer_id: u64, sequence: u64, record_count: u32) -> SequenceCheck {
        let Some(state) = self.producers.get(&producer_id) else {
            return if sequence == 0 { SequenceCheck::Append } else { SequenceCheck::OutOfOrder { expected: 0 } };
        };
        if let Some(batch) = state.recent.iter().find(|b| b.sequence == sequence && b.record_count == record_count) {
            return SequenceCheck::Duplicate(*batch);
        }
        let expected = state.recent.back().map_or(0, |b| b.sequence + u64::from(b.record_count));
        if sequence == expected { SequenceCheck::Append } else { SequenceCheck::OutOfOrder { expected } }
    }

    /// Records an appended batch. Deterministic: every replica evicts the same producers.
    /// Returns the producer forgotten to make room, if any.
    pub fn record(&mut self, producer_id: u64, batch: ProducerBatch, index: u64) -> Option<u64> {
        let state = self.producers.entry(producer_id).or_default();
        state.recent.push_back(batch);
        while state.recent.len() > RECENT_BATCHES_MAX {
            state.recent.pop_front();
        }
        state.last_index = index;
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX
            && let Some(oldest) = self.producers.iter().min_by_key(|(id, s)| (s.last_index, **id)).map(|(id, _)| *id)
        {
            self.producers.remove(&oldest);
            return Some(oldest);
        }
        None
    }

    pub fn get(&self, producer_id: u64) -> Option<&ProducerState> {
        self.producers.get(&producer_id)
    }

    /// Puts back a producer's state read from the store.
    pub fn insert(&mut self, producer_id: u64, state: ProducerState) {
        self.producers.insert(producer_id, state);
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &ProducerState)> {
        self.producers.iter().map(|(id, state)| (*id, state))
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(sequence: u64, record_count: u32, base_offset: Offset) -> ProducerBatch {
        ProducerBatch { sequence, record_count, base_offset, timestamp_ms: 1 }
    }

    #[test]
    fn sequences_advance_and_retries_are_answered() {
        let mut table = ProducerTable::default();
        assert_eq!(table.check(7, 0, 3), SequenceCheck::Append);
        assert_eq!(table.check(7, 1, 3), SequenceCheck::OutOfOrder { expected: 0 }, "a new producer starts at 0");
        table.record(7, batch(0, 3, 100), 1);
        assert_eq!(table.check(7, 0, 3), SequenceCheck::Duplicate(batch(0, 3, 100)));
        assert_eq!(table.check(7, 3, 2), SequenceCheck::Append);
        assert_eq!(table.check(7, 4, 2), SequenceCheck::OutOfOrder { expected: 3 }, "gap");
        table.record(7, batch(3, 2, 110), 2);
        assert_eq!(table.check(7, 0, 3), SequenceCheck::Duplicate(batch(0, 3, 100)));
        assert_eq!(table.check(7, 3, 2), SequenceCheck::Duplicate(batch(3, 2, 110)));
        assert_eq!(table.check(7, 1, 1), SequenceCheck::OutOfOrder { expected: 5 }, "stale");
        assert_eq!(table.check(8, 0, 1), SequenceCheck::Append, "producers are independent");
    }

    #[test]
    fn only_recent_batches_are_remembered() {
        let mut table = ProducerTable::default();
        for i in 0..(RECENT_BATCHES_MAX as u64 + 2) {
            table.record(1, batch(i, 1, i), i);
        }
        assert_eq!(table.check(1, 0, 1), SequenceCheck::OutOfOrder { expected: RECENT_BATCHES_MAX as u64 + 2 });
        assert!(matches!(table.check(1, RECENT_BATCHES_MAX as u64 + 1, 1), SequenceCheck::Duplicate(_)));
    }

    #[test]
    fn least_recent_producer_is_evicted() {
        let mut table = ProducerTable::default();
        for id in 0..PRODUCERS_PER_PARTITION_MAX as u64 {
            assert_eq!(table.record(id, batch(0, 1, id), id + 10), None);
        }
        let last = PRODUCERS_PER_PARTITION_MAX as u64;
        assert_eq!(table.record(last, batch(0, 1, last), last + 10), Some(0), "the evicted producer is named");
        assert_eq!(table.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(table.check(0, 1, 1), SequenceCheck::OutOfOrder { expected: 0 }, "producer 0 was the oldest");
        assert!(matches!(table.check(1, 0, 1), SequenceCheck::Duplicate(_)));
    }
}
