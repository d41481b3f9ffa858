//! A bank account kept as events, to show what Cairn's expected revisions are for. The
//! account logic is this library (also used by `tests/streams.rs` against real nodes); the
//! command line is `main.rs`.
//!
//! Each account is the stream `account-<id>` of the topic `bank`. Its events are
//! `Deposited {amount}` and `Withdrawn {amount}`; its balance is nothing but the fold of
//! them (`balance`). Deposits can never break the rule "no overdraft", so they append with
//! no condition. A withdrawal can: it reads the stream, folds the balance, refuses when the
//! money is not there, and otherwise appends `Withdrawn` *only if the stream is still at the
//! revision it read* (`ExpectedRevision::Exact`). If another append got in between, the
//! server writes nothing and answers `ConditionFailed`; the withdrawal then reads again
//! and decides again. The server checks the revision when the partition's Raft state machine
//! applies the append, so two withdrawals that read the same revision can never both
//! succeed, on any node, across failovers: `race` starts many at once and the account still
//! never goes below zero.
//!
//! ```text
//! cairn serve &                                            # a one-node cluster on 127.0.0.1:7070
//! cargo run -p bank-account -- deposit 42 100
//! cargo run -p bank-account -- race 42 --withdrawers 10 --amount 30   # 3 succeed, 10 left
//! cargo run -p bank-account -- balance 42 --as-of 2026-03-01T00:00:00Z
//! ```

use std::sync::Arc;

use anyhow::{Context as _, bail};
use cairn_client::{
    CairnClient, ClientError, Code, Consistency, CreateTopicOptions, EventData, ExpectedRevision, ReadStreamOptions,
    RecordedEvent, json_event,
};
use serde::{Deserialize, Serialize};

/// The topic holding every account's stream.
pub const TOPIC: &str = "bank";
/// Partitions of the topic when this example creates it.
const TOPIC_PARTITIONS: u32 = 3;
/// Reads-and-decides one withdrawal makes before giving up. Each refused attempt means
/// another append got in first, so under contention this bounds the work, not correctness.
const WITHDRAW_ATTEMPTS_MAX: u32 = 20;

/// Whole units of money.
pub type Amount = u32;
/// What happens to an account. The event type is the variant's name; the data is
/// `{"amount": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEvent {
    Deposited { amount: Amount },
    Withdrawn { amount: Amount },
}

#[derive(Serialize, Deserialize)]
struct AmountData {
    amount: Amount,
}

impl AccountEvent {
    pub fn to_event_data(self) -> anyhow::Result<EventData> {
        let (event_type, amount) = match self {
            AccountEvent::Deposited { amount } => ("Deposited", amount),
            AccountEvent::Withdrawn { amount } => ("Withdrawn", amount),
        };
        Ok(json_event(event_type, serde_json::to_vec(&AmountData { amount })?))
    }

    /// An event as read back; a type this program does not know is an error rather than
    /// skipped, since skipping it would give a wrong balance.
    pub fn from_recorded(event: &RecordedEvent) -> anyhow::Result<AccountEvent> {
        let context = || format!("event {} of stream {}", event.stream_revision, event.stream);
        let amount = || serde_json::from_slice::<AmountData>(&event.data).map(|data| data.amount).with_context(context);
        match event.event_type.as_str() {
            "Deposited" => Ok(AccountEvent::Deposited { amount: amount()? }),
            "Withdrawn" => Ok(AccountEvent::Withdrawn { amount: amount()? }),
            other => Err(anyhow::anyhow!("unknown event type {other:?}")).with_context(context),
        }
    }
}

/// The balance after `events`, oldest first: the whole of the account's logic that is not
/// about concurrency. Signed, so that an overdraft (which the withdrawal protocol rules
/// out) would show rather than wrap.
pub fn balance(events: &[AccountEvent]) -> i64 {
    events
        .iter()
        .map(|event| match *event {
            AccountEvent::Deposited { amount } => i64::from(amount),
            AccountEvent::Withdrawn { amount } => -i64::from(amount),
        })
        .sum()
}

/// An account's events, and the revision of the last one (`None`: no events yet).
pub struct Account {
    pub events: Vec<AccountEvent>,
    pub revision: Option<u64>,
}

pub fn stream_name(id: &str) -> String {
    format!("account-{id}")
}

/// Reads the whole stream, page by page, from revision 0 (so that if retention ever
/// removed the oldest events the read fails, instead of a balance silently missing them).
/// Linearizable: a decision should see every append acknowledged before it; correctness
/// comes from the expected revision either way, this only avoids needless retries.
pub async fn read_account(client: &CairnClient, id: &str, as_of_ms: Option<u64>) -> anyhow::Result<Account> {
    let stream = stream_name(id);
    let mut options = ReadStreamOptions {
        from_revision: Some(0),
        as_of_ms,
        consistency: Consistency::Linearizable,
        ..ReadStreamOptions::default()
    };
    let mut account = Account { events: Vec::new(), revision: None };
    loop {
        let slice = client.read_stream(TOPIC, &stream, options).await?;
        for event in &slice.events {
            account.events.push(AccountEvent::from_recorded(event)?);
            account.revision = Some(event.stream_revision);
        }
        match slice.next_revision {
            Some(next) => options.from_revision = Some(next),
            None => return Ok(account),
        }
    }
}

pub enum Withdrawal {
    Done { balance_after: i64, attempts: u32 },
    Refused { balance: i64, attempts: u32 },
}

/// Read, decide, append on the condition that nothing changed; on a conflict, again.
pub async fn withdraw(client: &CairnClient, id: &str, amount: Amount) -> anyhow::Result<Withdrawal> {
    for attempts in 1..=WITHDRAW_ATTEMPTS_MAX {
        let account = read_account(client, id, None).await?;
        let balance = balance(&account.events);
        if balance < i64::from(amount) {
            return Ok(Withdrawal::Refused { balance, attempts });
        }
        let expected = match account.revision {
            Some(revision) => ExpectedRevision::Exact(revision),
            None => ExpectedRevision::NoStream,
        };
        let event = AccountEvent::Withdrawn { amount }.to_event_data()?;
        match client.append_to_stream(TOPIC, &stream_name(id), expected, vec![event]).await {
            Ok(_) => return Ok(Withdrawal::Done { balance_after: balance - i64::from(amount), attempts }),
            // Someone appended since our read: nothing was written; decide again on what is
            // there now.
            Err(ClientError::ConditionFailed { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    bail!("account {id} kept changing under withdrawal: gave up after {WITHDRAW_ATTEMPTS_MAX} attempts")
}

/// Creates the topic unless it is there already.
pub async fn ensure_topic(client: &CairnClient) -> anyhow::Result<()> {
    match client.create_topic(CreateTopicOptions::new(TOPIC, TOPIC_PARTITIONS)).await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(Code::AlreadyExists) => Ok(()),
        Err(error) => Err(error).context("creating the topic 'bank'"),
    }
}

/// What `race` saw: the balance before and after, and how the withdrawals ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceOutcome {
    pub balance_before: i64,
    pub succeeded: u32,
    /// Refused for lack of money.
    pub refused: u32,
    pub failed: u32,
    /// Times a withdrawal found the account changed since its read, and decided again.
    pub conflicts: u32,
    pub balance_after: i64,
}

/// Starts `withdrawers` withdrawals of `amount` from account `id` at once.
pub async fn race(client: &CairnClient, id: &str, withdrawers: u32, amount: Amount) -> anyhow::Result<RaceOutcome> {
    let balance_before = balance(&read_account(client, id, None).await?.events);
    // Every withdrawer waits here, so they all read the same revision and then compete.
    let start = Arc::new(tokio::sync::Barrier::new(withdrawers as usize));
    let tasks: Vec<_> = (0..withdrawers)
        .map(|_| {
            let (client, id, start) = (client.clone(), id.to_owned(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                withdraw(&client, &id, amount).await
            })
        })
        .collect();
    let (mut succeeded, mut refused, mut failed, mut conflicts) = (0, 0, 0, 0);
    for task in tasks {
        match task.await? {
            Ok(Withdrawal::Done { attempts, .. }) => (succeeded, conflicts) = (succeeded + 1, conflicts + attempts - 1),
            Ok(Withdrawal::Refused { attempts, .. }) => (refused, conflicts) = (refused + 1, conflicts + attempts - 1),
            Err(error) => {
                failed += 1;
                eprintln!("a withdrawal failed: {error:#}");
            }
        }
    }
    let balance_after = balance(&read_account(client, id, None).await?.events);
    Ok(RaceOutcome { balance_before, succeeded, refused, failed, conflicts, balance_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_folds_deposits_and_withdrawals_in_order() {
        use AccountEvent::*;
        assert_eq!(balance(&[]), 0);
        assert_eq!(balance(&[Deposited { amount: 100 }, Withdrawn { amount: 30 }, Deposited { amount: 5 }]), 75);
        // Not reachable through `withdraw`, but the fold must show it rather than hide it.
        assert_eq!(balance(&[Deposited { amount: 10 }, Withdrawn { amount: 30 }]), -20);
        assert_eq!(balance(&[Deposited { amount: u32::MAX }, Deposited { amount: u32::MAX }]), 2 * i64::from(u32::MAX));
    }

    /// `data` as the server would return it at `revision`.
    fn recorded(data: EventData, revision: u64) -> RecordedEvent {
        RecordedEvent {
            stream: "account-1".to_owned(),
            stream_revision: revision,
            offset: 40 + revision,
            timestamp_ms: 0,
            event_id: data.event_id,
            event_type: data.event_type,
            content_type: data.content_type,
            data: data.data,
            metadata: data.metadata,
            tags: data.tags,
        }
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        for event in [AccountEvent::Deposited { amount: 7 }, AccountEvent::Withdrawn { amount: 3 }] {
            let data = event.to_event_data().expect("serializes");
            assert_eq!(data.event_type, format!("{event:?}").split(' ').next().expect("a name"));
            assert_eq!(AccountEvent::from_recorded(&recorded(data, 0)).expect("parses"), event);
        }
    }

    #[test]
    fn unknown_event_types_and_bad_data_are_errors() {
        let mut data = AccountEvent::Deposited { amount: 7 }.to_event_data().expect("serializes");
        data.event_type = "Frozen".to_owned();
        let error = AccountEvent::from_recorded(&recorded(data, 4)).expect_err("unknown type");
        assert!(format!("{error:#}").contains("Frozen"), "{error:#}");
        let mut data = AccountEvent::Deposited { amount: 7 }.to_event_data().expect("serializes");
        data.data = br#"{"amount": -7}"#.to_vec().into();
        let error = AccountEvent::from_recorded(&recorded(data, 5)).expect_err("negative amount");
        assert!(format!("{error:#}").contains("event 5 of stream account-1"), "{error:#}");
    }
}
