//! Idempotent appends enter a partition's Raft log in sequence order.
//!
//! A pipelining producer (`cairn_client::BatchingProducer`) has several appends of a
//! partition in flight; they can overtake one another on the way (gRPC streams are served
//! concurrently, and a forwarding node adds a second hop). The state machine refuses a batch
//! whose sequence is ahead of the producer's next one (a gap), and the producer then has to
//! send it again after the earlier one: a stall. So the leader holds a batch that is ahead
//! of what it has proposed for that producer until the earlier ones are proposed, for a
//! short while at most, and proposes under a lock, so proposals enter openraft in the
//! order they were admitted.
//!
//! The table is a hint, kept per leader term: a producer it does not know is proposed at
//! once (the state machine still checks every sequence), and it is forgotten when it grows
//! past `PRODUCERS_PER_PARTITION_MAX`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use crate::command::ProducerSequence;
use crate::producer_table::PRODUCERS_PER_PARTITION_MAX;

/// How long a batch ahead of its producer's proposals waits for the earlier ones. They are
/// usually a few milliseconds behind; one that never comes (it failed on the way) costs the
/// producer this much before its batch is refused as a gap and sent again.
const WAIT_MAX: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(crate) struct ProposalOrder {
    state: Mutex<OrderState>,
    proposed: Notify,
}

#[derive(Default)]
struct OrderState {
    /// The leader term the table belongs to: another term's proposals say nothing.
    term: u64,
    /// Per producer, the sequence after its last batch proposed in `term`.
    next: HashMap<u64, u64>,
}

impl ProposalOrder {
    /// Runs `propose` for `records` records of `producer` once every earlier sequence of
    /// the producer has been proposed in `term`, or after `WAIT_MAX`, and returns its
    /// result. Proposals made through here are made one at a time, in admission order.
    pub(crate) async fn propose<T, F>(&self, term: u64, producer: ProducerSequence, records: u64, propose: F) -> T
    where
        F: Future<Output = T>,
    {
        let deadline = tokio::time::Instant::now() + WAIT_MAX;
        let mut state = loop {
            // Created before the check, so a proposal made in between still wakes it.
            let proposed = self.proposed.notified();
            let mut state = self.state.lock().await;
            if term > state.term {
                state.term = term;
                state.next.clear();
            }
            // A request that saw an older term (it waited across an election) proposes at
            // once: the table belongs to the newer term.
            let ahead = term == state.term
                && state.next.get(&producer.producer_id).is_some_and(|&next| producer.sequence > next);
            if !ahead || tokio::time::Instant::now() >= deadline {
                break state;
            }
            drop(state);
            let _ = tokio::time::timeout_at(deadline, proposed).await;
        };
        let result = propose.await;
        if term == state.term {
            // The table only moves forward: a retry of an earlier batch leaves it, and a
            // batch proposed after waiting in vain (or refused) moves it past itself. Too
            // far ahead only means a later batch does not wait; too far behind would make
            // every one of them wait.
            let end = producer.sequence + records;
            if !state.next.contains_key(&producer.producer_id) && state.next.len() >= PRODUCERS_PER_PARTITION_MAX {
                state.next.clear();
            }
            let next = state.next.entry(producer.producer_id).or_insert(end);
            *next = (*next).max(end);
        }
        drop(state);
        self.proposed.notify_waiters();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn batch(sequence: u64) -> ProducerSequence {
        ProducerSequence { producer_id: 7, sequence }
    }

    /// Proposals of sequences 0, 2, 4 arriving as 0, 4, 2 are made as 0, 2, 4.
    #[tokio::test(start_paused = true)]
    async fn a_batch_that_overtook_an_earlier_one_waits_for_it() {
        let order = Arc::new(ProposalOrder::default());
        let made = Arc::new(std::sync::Mutex::new(Vec::new()));
        let propose = |sequence: u64| {
            let (order, made) = (Arc::clone(&order), Arc::clone(&made));
            async move {
                order
                    .propose(1, batch(sequence), 2, async {
                        made.lock().expect("made").push(sequence);
                    })
                    .await
            }
        };
        propose(0).await;
        let overtaking = tokio::spawn(propose(4));
        // Let the overtaking batch reach its wait before the earlier one comes (paused
        // time: the clock moves only when every task waits).
        tokio::time::sleep(Duration::from_millis(5)).await;
        propose(2).await;
        overtaking.await.expect("task");
        assert_eq!(*made.lock().expect("made"), [0, 2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_producers_retries_and_a_new_term_are_proposed_at_once() {
        let order = ProposalOrder::default();
        let started = tokio::time::Instant::now();
        // Unknown producer: no wait, whatever its sequence.
        order.propose(1, batch(10), 1, async {}).await;
        // A retry of an earlier batch: no wait, and the table stays at 11 (the next batch
        // does not wait either).
        order.propose(1, batch(3), 1, async {}).await;
        order.propose(1, batch(11), 1, async {}).await;
        // A new term forgets the old one's proposals.
        order.propose(2, batch(50), 1, async {}).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing waited");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_never_fills_waits_at_most_wait_max() {
        let order = ProposalOrder::default();
        order.propose(1, batch(0), 1, async {}).await;
        let started = tokio::time::Instant::now();
        order.propose(1, batch(5), 1, async {}).await;
        assert!(started.elapsed() >= WAIT_MAX, "waited {:?}", started.elapsed());
        // The batches before the gap, and the next one, go at once: the table moved past
        // the gap rather than staying behind it.
        let started = tokio::time::Instant::now();
        order.propose(1, batch(1), 1, async {}).await;
        order.propose(1, batch(6), 1, async {}).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_of_an_older_term_neither_waits_nor_resets_the_table() {
        let order = ProposalOrder::default();
        order.propose(2, batch(0), 4, async {}).await;
        let started = tokio::time::Instant::now();
        order.propose(1, batch(40), 1, async {}).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Term 2's table still stands: a batch ahead of it waits.
        order.propose(2, batch(9), 1, async {}).await;
        assert!(started.elapsed() >= WAIT_MAX);
    }
}
