//! A bank account kept as events, to show what Cairn's expected revisions are for.
//!
//! Each account is the stream `account-<id>` of the topic `bank`. Its events are
//! `Deposited {amount}` and `Withdrawn {amount}`; its balance is nothing but the fold of
//! them (`balance`). Deposits can never break the rule "no overdraft", so they append with
//! no condition. A withdrawal can: it reads the stream, folds the balance, refuses when the
//! money is not there, and otherwise appends `Withdrawn` *only if the stream is still at the
//! revision it read* (`ExpectedRevision::Exact`). If another append got in between, the
//! server writes nothing and answers `WrongExpectedRevision`; the withdrawal then reads again
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use cairn_client::{
    CairnClient, ClientError, Code, Consistency, CreateTopicOptions, EventData, ExpectedRevision, ReadStreamOptions,
    RecordedEvent, json_event,
};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// The topic holding every account's stream.
const TOPIC: &str = "bank";
/// Partitions of the topic when this example creates it.
const TOPIC_PARTITIONS: u32 = 3;
/// Reads-and-decides one withdrawal makes before giving up. Each refused attempt means
/// another append got in first, so under contention this bounds the work, not correctness.
const WITHDRAW_ATTEMPTS_MAX: u32 = 20;

/// A bank account on Cairn: deposits and withdrawals are events; a withdrawal never
/// overdraws, even when many run at once.
#[derive(Debug, Parser)]
struct Cli {
    /// Address of any Cairn node: host:port or http://host:port.
    #[arg(long, env = "CAIRN_SERVER", default_value = "127.0.0.1:7070", global = true)]
    server: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Put money in: appended with no condition, since it cannot overdraw.
    Deposit {
        /// The account; its stream is account-<ID>.
        id: String,
        /// Whole units of money, at least 1.
        #[arg(value_parser = positive_amount())]
        amount: Amount,
    },
    /// Take money out, if the balance allows it.
    Withdraw {
        /// The account; its stream is account-<ID>.
        id: String,
        /// Whole units of money, at least 1.
        #[arg(value_parser = positive_amount())]
        amount: Amount,
    },
    /// The balance now, or as it stood at a time in the past.
    Balance {
        /// The account; its stream is account-<ID>.
        id: String,
        /// An RFC 3339 time in UTC, e.g. 2026-03-01T00:00:00Z.
        #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
        as_of: Option<u64>,
    },
    /// Start N withdrawals of the same amount at once and show that none overdraws.
    Race {
        /// The account; its stream is account-<ID>.
        id: String,
        /// How many withdrawals start at once.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        withdrawers: u32,
        /// What each one withdraws, at least 1.
        #[arg(long, value_parser = positive_amount())]
        amount: Amount,
    },
}

/// Whole units of money.
type Amount = u32;

fn positive_amount() -> clap::builder::RangedI64ValueParser<Amount> {
    clap::value_parser!(Amount).range(1..)
}

/// What happens to an account. The event type is the variant's name; the data is
/// `{"amount": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccountEvent {
    Deposited { amount: Amount },
    Withdrawn { amount: Amount },
}

#[derive(Serialize, Deserialize)]
struct AmountData {
    amount: Amount,
}

impl AccountEvent {
    fn to_event_data(self) -> anyhow::Result<EventData> {
        let (event_type, amount) = match self {
            AccountEvent::Deposited { amount } => ("Deposited", amount),
            AccountEvent::Withdrawn { amount } => ("Withdrawn", amount),
        };
        Ok(json_event(event_type, serde_json::to_vec(&AmountData { amount })?))
    }

    /// An event as read back; a type this program does not know is an error rather than
    /// skipped, since skipping it would give a wrong balance.
    fn from_recorded(event: &RecordedEvent) -> anyhow::Result<AccountEvent> {
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
fn balance(events: &[AccountEvent]) -> i64 {
    events
        .iter()
        .map(|event| match *event {
            AccountEvent::Deposited { amount } => i64::from(amount),
            AccountEvent::Withdrawn { amount } => -i64::from(amount),
        })
        .sum()
}

/// An account's events, and the revision of the last one (`None`: no events yet).
struct Account {
    events: Vec<AccountEvent>,
    revision: Option<u64>,
}

fn stream_name(id: &str) -> String {
    format!("account-{id}")
}

/// Reads the whole stream, page by page, from revision 0 (so that if retention ever
/// removed the oldest events the read fails, instead of a balance silently missing them).
/// Linearizable: a decision should see every append acknowledged before it; correctness
/// comes from the expected revision either way, this only avoids needless retries.
async fn read_account(client: &CairnClient, id: &str, as_of_ms: Option<u64>) -> anyhow::Result<Account> {
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

enum Withdrawal {
    Done { balance_after: i64, attempts: u32 },
    Refused { balance: i64, attempts: u32 },
}

/// Read, decide, append on the condition that nothing changed; on a conflict, again.
async fn withdraw(client: &CairnClient, id: &str, amount: Amount) -> anyhow::Result<Withdrawal> {
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
            Err(ClientError::WrongExpectedRevision { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    bail!("account {id} kept changing under withdrawal: gave up after {WITHDRAW_ATTEMPTS_MAX} attempts")
}

/// Creates the topic unless it is there already.
async fn ensure_topic(client: &CairnClient) -> anyhow::Result<()> {
    match client.create_topic(CreateTopicOptions::new(TOPIC, TOPIC_PARTITIONS)).await {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(Code::AlreadyExists) => Ok(()),
        Err(error) => Err(error).context("creating the topic 'bank'"),
    }
}

async fn race(client: &CairnClient, id: &str, withdrawers: u32, amount: Amount) -> anyhow::Result<()> {
    let before = balance(&read_account(client, id, None).await?.events);
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
    let after = balance(&read_account(client, id, None).await?.events);
    println!("{withdrawers} withdrawals of {amount} from account {id} (balance {before}):");
    println!("  {succeeded} succeeded, {refused} refused for lack of money, {failed} failed");
    println!("  {conflicts} times a withdrawal found the account changed since its read, and decided again");
    println!("final balance: {after}");
    if after < 0 {
        bail!("account {id} is overdrawn: this must never happen");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = CairnClient::connect(&cli.server).await?;
    ensure_topic(&client).await?;
    match cli.command {
        Command::Deposit { id, amount } => {
            let event = AccountEvent::Deposited { amount }.to_event_data()?;
            let appended =
                client.append_to_stream(TOPIC, &stream_name(&id), ExpectedRevision::Any, vec![event]).await?;
            let revision = appended.last_revision().context("the server returned no position")?;
            println!(
                "deposited {amount} into account {id}: revision {revision}, at {}",
                time_text(appended.timestamp_ms)
            );
        }
        Command::Withdraw { id, amount } => match withdraw(&client, &id, amount).await? {
            Withdrawal::Done { balance_after, .. } => println!("withdrew {amount}: balance {balance_after}"),
            Withdrawal::Refused { balance, .. } => bail!("refused: balance {balance} is less than {amount}"),
        },
        Command::Balance { id, as_of } => {
            let account = read_account(&client, &id, as_of).await?;
            let when = as_of.map_or_else(String::new, |as_of_ms| format!(" as of {}", time_text(as_of_ms)));
            println!("account {id}{when}: balance {} ({} events)", balance(&account.events), account.events.len());
        }
        Command::Race { id, withdrawers, amount } => race(&client, &id, withdrawers, amount).await?,
    }
    Ok(())
}

/// An RFC 3339 time in UTC as milliseconds since the Unix epoch.
fn parse_time_ms(text: &str) -> Result<u64, String> {
    let time =
        humantime::parse_rfc3339(text).map_err(|error| format!("{error}; expected e.g. 2026-03-01T00:00:00Z"))?;
    let since_epoch = time.duration_since(UNIX_EPOCH).map_err(|_| "a time before 1970".to_string())?;
    u64::try_from(since_epoch.as_millis()).map_err(|_| "a time too far in the future".to_string())
}

fn time_text(timestamp_ms: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::UNIX_EPOCH + Duration::from_millis(timestamp_ms)).to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Cli::parse()).await
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

    #[test]
    fn times_parse_as_rfc3339() {
        assert_eq!(parse_time_ms("2026-03-01T00:00:00Z"), Ok(1_772_323_200_000));
        assert!(parse_time_ms("yesterday").expect_err("not a time").contains("2026-03-01T00:00:00Z"));
        assert_eq!(time_text(1_772_323_200_000), "2026-03-01T00:00:00.000Z");
    }
}
