//! The command line of the bank-account example (see the library's documentation in
//! `lib.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bank_account::{Amount, TOPIC, Withdrawal, balance, ensure_topic, race, read_account, stream_name, withdraw};
use cairn_client::{CairnClient, ExpectedRevision};
use clap::{Parser, Subcommand};

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

fn positive_amount() -> clap::builder::RangedI64ValueParser<Amount> {
    clap::value_parser!(Amount).range(1..)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = CairnClient::connect(&cli.server).await?;
    ensure_topic(&client).await?;
    match cli.command {
        Command::Deposit { id, amount } => {
            let event = bank_account::AccountEvent::Deposited { amount }.to_event_data()?;
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
        Command::Race { id, withdrawers, amount } => {
            let outcome = race(&client, &id, withdrawers, amount).await?;
            println!("{withdrawers} withdrawals of {amount} from account {id} (balance {}):", outcome.balance_before);
            println!(
                "  {} succeeded, {} refused for lack of money, {} failed",
                outcome.succeeded, outcome.refused, outcome.failed
            );
            println!(
                "  {} times a withdrawal found the account changed since its read, and decided again",
                outcome.conflicts
            );
            println!("final balance: {}", outcome.balance_after);
            if outcome.balance_after < 0 {
                bail!("account {id} is overdrawn: this must never happen");
            }
        }
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
    fn times_parse_as_rfc3339() {
        assert_eq!(parse_time_ms("2026-03-01T00:00:00Z"), Ok(1_772_323_200_000));
        assert!(parse_time_ms("yesterday").expect_err("not a time").contains("2026-03-01T00:00:00Z"));
        assert_eq!(time_text(1_772_323_200_000), "2026-03-01T00:00:00.000Z");
    }
}
