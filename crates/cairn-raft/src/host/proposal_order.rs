//! Idempotent appends enter a partition's Raft log in sequence order.
//!
//! A pipelining producer (`cairn_client::BatchingProducer`) has several appends of a
//! partition in flight; they can overtake one another on the way (gRPC streams are served
//! concurrently, and a forwarding node adds a second hop). The state machine refuses a batch
//! whose sequence is ahead of the producer's next one (a gap), and the producer then has to
//! send it again after the earlier one: a stall. So the leader holds a batch that is ahead
//! of what it has proposed for that producer until the earlier ones are proposed, and
//! proposes under a lock, so proposals enter openraft in the order they were admitted.
//!
//! How long a batch waits for an earlier one depends on where that one is. One that has
//! reached this replica (registered with `arrive`) may take as long as a lease renewal
//! before it can be proposed: an idle group's leader renews its lease with a heartbeat
//! round first, for up to the failure detection time. The later batch waits for it, up to
//! `on_their_way_wait_max`, so that the two do not race each other's renewals. One that
//! has not arrived is usually a few milliseconds behind on the network, and one that never
//! comes (it failed on the way) costs the producer `WAIT_MAX` before its batch is refused
//! as a gap and sent again.
//!
//! A proposal that is not made (the caller's future answers `Err`: the lease lapsed, say)
//! leaves the table as it was, so a later batch cannot overtake it when both are sent again.
//!
//! The table is a hint, kept per leader term: a producer it does not know waits only for
//! its earlier batches that reached this replica, else is proposed at once (the state
//! machine still checks every sequence), and the table is forgotten when it grows past
//! `PRODUCERS_PER_PARTITION_MAX`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use crate::command::ProducerSequence;
use crate::partition::producer_table::PRODUCERS_PER_PARTITION_MAX;

/// How long a batch ahead of its producer's proposals waits for earlier ones that have not
/// reached this replica.
const WAIT_MAX: Duration = Duration::from_millis(100);

pub(crate) struct ProposalOrder {
    state: Mutex<OrderState>,
    shared: Arc<Shared>,
    /// How long a batch waits for earlier ones that reached this replica.
    on_their_way_wait_max: Duration,
}

/// What arrivals, which outlive a borrow of the order, share with it.
#[derive(Default)]
struct Shared {
    /// Per producer, the sequences of its appends that reached this replica and are not
    /// proposed yet, with how many of each (a retry may meet its first attempt here).
    on_their_way: std::sync::Mutex<HashMap<u64, BTreeMap<u64, usize>>>,
    proposed: Notify,
}

#[derive(Default)]
struct OrderState {
    /// The leader term the table belongs to: another term's proposals say nothing.
    term: u64,
    /// Per producer, the sequence after its last batch proposed in `term`.
    next: HashMap<u64, u64>,
}

/// An append of a producer that reached this replica and is not proposed yet: later
/// batches wait for it. Dropped once it is proposed, or given up.
pub struct ProducerArrival {
    shared: Arc<Shared>,
    producer: ProducerSequence,
}

impl Drop for ProducerArrival {
    fn drop(&mut self) {
        if let Ok(mut on_their_way) = self.shared.on_their_way.lock() {
            let ProducerSequence { producer_id, sequence } = self.producer;
            if let Some(sequences) = on_their_way.get_mut(&producer_id) {
                if let Some(count) = sequences.get_mut(&sequence) {
                    *count -= 1;
                    if *count == 0 {
                        sequences.remove(&sequence);
                    }
                }
                if sequences.is_empty() {
                    on_their_way.remove(&producer_id);
                }
            }
        }
        self.shared.proposed.notify_waiters();
    }
}

impl ProposalOrder {
    /// `on_their_way_wait_max`: longer than an append can take from reaching this replica
    /// to being proposed (a lease renewal, at most the failure detection time).
    pub(crate) fn new(on_their_way_wait_max: Duration) -> ProposalOrder {
        ProposalOrder { state: Mutex::default(), shared: Arc::default(), on_their_way_wait_max }
    }

    /// Registers an append of `producer` that reached this replica, before anything that
    /// may delay it (the lease renewal, attempts made again): until the arrival is
    /// dropped, later batches of the producer wait for it.
    pub(crate) fn arrive(&self, producer: ProducerSequence) -> ProducerArrival {
        if let Ok(mut on_their_way) = self.shared.on_their_way.lock() {
            // Bounded like the table: an append in progress per producer and sequence.
            if !on_their_way.contains_key(&producer.producer_id) && on_their_way.len() >= PRODUCERS_PER_PARTITION_MAX {
                on_their_way.clear();
            }
            *on_their_way.entry(producer.producer_id).or_default().entry(producer.sequence).or_default() += 1;
        }
        ProducerArrival { shared: Arc::clone(&self.shared), producer }
    }

    /// Whether an append of the producer with a sequence in `[from, producer.sequence)`
    /// reached this replica and is not proposed yet.
    fn earlier_on_their_way(&self, producer: ProducerSequence, from: u64) -> bool {
        self.shared.on_their_way.lock().is_ok_and(|on_their_way| {
            on_their_way
                .get(&producer.producer_id)
                .is_some_and(|sequences| sequences.range(from..producer.sequence).next().is_some())
        })
    }

    /// Runs `propose` for `records` records of `producer` once every earlier sequence of
    /// the producer has been proposed in `term`, or after waiting as long as the module
    /// says, and returns its result. Proposals made through here are made one at a time,
    /// in admission order. `propose` answers `Err` when it proposed nothing.
    pub(crate) async fn propose<T, E, F>(
        &self,
        term: u64,
        producer: ProducerSequence,
        records: u64,
        propose: F,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let started = tokio::time::Instant::now();
        let mut state = loop {
            // Created before the check, so a proposal made in between still wakes it.
            let proposed = self.shared.proposed.notified();
            let mut state = self.state.lock().await;
            if term > state.term {
                state.term = term;
                state.next.clear();
            }
            // A request that saw an older term (it waited across an election) proposes at
            // once: the table belongs to the newer term.
            if term < state.term {
                break state;
            }
            let wait_max = match state.next.get(&producer.producer_id).copied() {
                Some(next) if producer.sequence <= next => break state,
                Some(next) if self.earlier_on_their_way(producer, next) => self.on_their_way_wait_max,
                Some(_) => WAIT_MAX,
                // A producer the table does not know in this term (a new leader's first
                // batches of it) waits only for earlier batches that reached this replica.
                None if self.earlier_on_their_way(producer, 0) => self.on_their_way_wait_max,
                None => break state,
            };
            let deadline = started + wait_max;
            if tokio::time::Instant::now() >= deadline {
                break state;
            }
            drop(state);
            let _ = tokio::time::timeout_at(deadline, proposed).await;
        };
        let result = propose.await;
        if term == state.term && result.is_ok() {
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
        self.shared.proposed.notify_waiters();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON_THEIR_WAY_WAIT_MAX: Duration = Duration::from_secs(2);

    fn batch(sequence: u64) -> ProducerSequence {
        ProducerSequence { producer_id: 7, sequence }
    }

    /// The sequences proposed, in the order their proposals were made.
    #[derive(Clone, Default)]
    struct Made(Arc<std::sync::Mutex<Vec<u64>>>);

    impl Made {
        /// Proposes `sequence` of a producer at `term` through `order`, recording it when made.
        fn propose(
            &self,
            order: &Arc<ProposalOrder>,
            term: u64,
            sequence: u64,
            records: u64,
        ) -> impl Future<Output = Result<(), ()>> + Send + 'static {
            let (order, made) = (Arc::clone(order), self.clone());
            async move {
                order
                    .propose(term, batch(sequence), records, async {
                        made.0.lock().expect("made").push(sequence);
                        Ok::<(), ()>(())
                    })
                    .await
            }
        }

        fn sequences(&self) -> Vec<u64> {
            self.0.lock().expect("made").clone()
        }
    }

    async fn proposed() -> Result<(), ()> {
        Ok(())
    }

    /// Proposals of sequences 0, 2, 4 arriving as 0, 4, 2 are made as 0, 2, 4.
    #[tokio::test(start_paused = true)]
    async fn a_batch_that_overtook_an_earlier_one_waits_for_it() {
        let order = Arc::new(ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX));
        let made = Made::default();
        let propose = |sequence: u64| made.propose(&order, 1, sequence, 2);
        propose(0).await.expect("proposed");
        let overtaking = tokio::spawn(propose(4));
        // Let the overtaking batch reach its wait before the earlier one comes (paused
        // time: the clock moves only when every task waits).
        tokio::time::sleep(Duration::from_millis(5)).await;
        propose(2).await.expect("proposed");
        overtaking.await.expect("task").expect("proposed");
        assert_eq!(made.sequences(), [0, 2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_producers_retries_and_a_new_term_are_proposed_at_once() {
        let order = ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX);
        let started = tokio::time::Instant::now();
        // Unknown producer: no wait, whatever its sequence.
        order.propose(1, batch(10), 1, proposed()).await.expect("proposed");
        // A retry of an earlier batch: no wait, and the table stays at 11 (the next batch
        // does not wait either).
        order.propose(1, batch(3), 1, proposed()).await.expect("proposed");
        order.propose(1, batch(11), 1, proposed()).await.expect("proposed");
        // A new term forgets the old one's proposals.
        order.propose(2, batch(50), 1, proposed()).await.expect("proposed");
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing waited");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_that_never_fills_waits_at_most_wait_max() {
        let order = ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX);
        order.propose(1, batch(0), 1, proposed()).await.expect("proposed");
        let started = tokio::time::Instant::now();
        order.propose(1, batch(5), 1, proposed()).await.expect("proposed");
        assert!(started.elapsed() >= WAIT_MAX, "waited {:?}", started.elapsed());
        // The batches before the gap, and the next one, go at once: the table moved past
        // the gap rather than staying behind it.
        let started = tokio::time::Instant::now();
        order.propose(1, batch(1), 1, proposed()).await.expect("proposed");
        order.propose(1, batch(6), 1, proposed()).await.expect("proposed");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_of_an_older_term_neither_waits_nor_resets_the_table() {
        let order = ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX);
        order.propose(2, batch(0), 4, proposed()).await.expect("proposed");
        let started = tokio::time::Instant::now();
        order.propose(1, batch(40), 1, proposed()).await.expect("proposed");
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Term 2's table still stands: a batch ahead of it waits.
        order.propose(2, batch(9), 1, proposed()).await.expect("proposed");
        assert!(started.elapsed() >= WAIT_MAX);
    }

    /// An earlier batch that reached the replica but takes longer than `WAIT_MAX` to be
    /// proposed (its lease renewal) is waited for: the two are proposed in order.
    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_an_earlier_one_that_arrived_as_long_as_it_takes() {
        let order = Arc::new(ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX));
        let made = Made::default();
        let propose = |sequence: u64| made.propose(&order, 1, sequence, 2);
        propose(0).await.expect("proposed");
        let arrival = order.arrive(batch(2));
        let started = tokio::time::Instant::now();
        let overtaking = tokio::spawn(propose(4));
        // The earlier batch renews the lease for 5 times WAIT_MAX before it proposes.
        tokio::time::sleep(WAIT_MAX * 5).await;
        propose(2).await.expect("proposed");
        drop(arrival);
        overtaking.await.expect("task").expect("proposed");
        assert_eq!(made.sequences(), [0, 2, 4]);
        assert!(started.elapsed() < ON_THEIR_WAY_WAIT_MAX);
    }

    /// One that arrived but never gets proposed holds the later one up to
    /// `ON_THEIR_WAY_WAIT_MAX`, and once it gives up, `WAIT_MAX` from the later one's start.
    #[tokio::test(start_paused = true)]
    async fn an_arrival_that_is_never_proposed_holds_later_batches_a_bounded_time() {
        let order = ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX);
        order.propose(1, batch(0), 1, proposed()).await.expect("proposed");
        let arrival = order.arrive(batch(1));
        let started = tokio::time::Instant::now();
        order.propose(1, batch(2), 1, proposed()).await.expect("proposed");
        assert_eq!(started.elapsed(), ON_THEIR_WAY_WAIT_MAX);
        drop(arrival);
        let arrival = order.arrive(batch(3));
        let started = tokio::time::Instant::now();
        let given_up = async {
            tokio::time::sleep(WAIT_MAX / 2).await;
            drop(arrival);
        };
        let (result, ()) = tokio::join!(order.propose(1, batch(5), 1, proposed()), given_up);
        result.expect("proposed");
        assert_eq!(started.elapsed(), WAIT_MAX, "waited for the arrival, then WAIT_MAX from its own start");
    }

    /// A proposal that was not made (the lease had lapsed) leaves the table: the next batch
    /// still waits for it.
    #[tokio::test(start_paused = true)]
    async fn a_proposal_not_made_leaves_the_table() {
        let order = ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX);
        order.propose(1, batch(0), 1, proposed()).await.expect("proposed");
        let refused = order.propose(1, batch(1), 1, async { Err::<(), _>("lease lapsed") }).await;
        assert_eq!(refused, Err("lease lapsed"));
        let started = tokio::time::Instant::now();
        order.propose(1, batch(2), 1, proposed()).await.expect("proposed");
        assert_eq!(started.elapsed(), WAIT_MAX, "sequence 1 is still the next one");
    }

    /// A new leader's first batches of a producer: the table does not know it in this
    /// term, but a batch that overtook an earlier one that reached the replica waits for it.
    #[tokio::test(start_paused = true)]
    async fn a_producer_unknown_in_the_term_waits_for_earlier_arrivals() {
        let order = Arc::new(ProposalOrder::new(ON_THEIR_WAY_WAIT_MAX));
        let made = Made::default();
        let propose = |sequence: u64| made.propose(&order, 3, sequence, 1);
        let arrival = order.arrive(batch(8));
        let overtaking = tokio::spawn(propose(9));
        tokio::time::sleep(WAIT_MAX * 3).await;
        propose(8).await.expect("proposed");
        drop(arrival);
        overtaking.await.expect("task").expect("proposed");
        assert_eq!(made.sequences(), [8, 9]);
    }
}
