//! `cairn stream delete|tombstone|metadata`: the changes to a stream other than appends,
//! each on the same `--expect` condition as an append, each printing where the stream
//! stands afterwards.

use std::io::Write;

use anyhow::bail;
use cairn_client::{CairnClient, ClientError, ExpectedRevision, StreamChanged, StreamMetadata};
use cairn_types::PartitionId;
use serde::Serialize;

use crate::OutputFormat;
use crate::stream_args::{parse_expected_revision, parse_max_age_ms, parse_max_count};
use crate::table::{Table, optional_number};

/// `cairn stream delete` and `cairn stream tombstone`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamDeleteArgs {
    /// Topic name.
    pub topic: String,
    /// Stream name (the events' key).
    pub stream: String,
    /// What the stream's revision (its last event's) must be for the deletion to happen:
    /// a revision, `any` (no condition), `no-stream` (no events yet) or `exists` (at least
    /// one event). Otherwise nothing changes and the command fails.
    #[arg(long, value_name = "N|any|no-stream|exists", default_value = "any", value_parser = parse_expected_revision)]
    pub expect: ExpectedRevision,
    /// Output format: json prints one object with where the stream stands.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `cairn stream metadata`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamMetadataArgs {
    /// Topic name.
    pub topic: String,
    /// Stream name (the events' key).
    pub stream: String,
    /// Hide events older than this, at the time of each read: a duration (30d, 12h, 90s)
    /// or milliseconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_max_age_ms)]
    pub max_age: Option<u64>,
    /// Show only the last this many events.
    #[arg(long, value_name = "N", value_parser = parse_max_count)]
    pub max_count: Option<u64>,
    /// Hide the events below this revision.
    #[arg(long, value_name = "REV")]
    pub truncate_before: Option<u64>,
    /// What the stream's revision (its last event's) must be for the metadata to be set:
    /// a revision, `any` (no condition), `no-stream` (no events yet) or `exists` (at least
    /// one event). Otherwise nothing changes and the command fails.
    #[arg(long, value_name = "N|any|no-stream|exists", default_value = "any", value_parser = parse_expected_revision)]
    pub expect: ExpectedRevision,
    /// Output format: json prints one object with where the stream stands.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

impl StreamDeleteArgs {
    /// A soft delete (`tombstone` false) or a deletion for good.
    pub(crate) async fn run(self, client: &CairnClient, tombstone: bool, out: &mut impl Write) -> anyhow::Result<()> {
        let action = if tombstone { "tombstone" } else { "delete" };
        let changed = client.delete_stream(&self.topic, &self.stream, self.expect, tombstone).await;
        let changed = refused_on_wrong_revision(action, &self.topic, changed)?;
        write_stream_changed(&self.topic, &self.stream, &changed, self.output, out)
    }
}

impl StreamMetadataArgs {
    pub(crate) async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let metadata = self.metadata();
        let changed = client.set_stream_metadata(&self.topic, &self.stream, self.expect, metadata).await;
        let changed = refused_on_wrong_revision("metadata change", &self.topic, changed)?;
        write_stream_changed(&self.topic, &self.stream, &changed, self.output, out)
    }

    /// The metadata the flags describe; with none of them, empty (which clears it).
    fn metadata(&self) -> StreamMetadata {
        StreamMetadata { max_age_ms: self.max_age, max_count: self.max_count, truncate_before: self.truncate_before }
    }
}

/// A wrong expected revision turned into the message an append's refusal gets.
fn refused_on_wrong_revision(
    action: &str,
    topic: &str,
    result: Result<StreamChanged, ClientError>,
) -> anyhow::Result<StreamChanged> {
    match result {
        Ok(changed) => Ok(changed),
        Err(ClientError::ConditionFailed { violations, .. }) => {
            bail!(wrong_revision_message(action, topic, &violations))
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Serialize)]
struct StreamChangedJson<'a> {
    topic: &'a str,
    stream: &'a str,
    partition: PartitionId,
    /// The last event's revision; `None`: the stream never had one.
    current_revision: Option<u64>,
    first_visible_revision: u64,
}

/// JSON: one object `{"topic","stream","partition","current_revision",
/// "first_visible_revision"}`, `current_revision` `null` when the stream never had an event.
fn write_stream_changed(
    topic: &str,
    stream: &str,
    changed: &StreamChanged,
    output: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => {
            let json = StreamChangedJson {
                topic,
                stream,
                partition: changed.partition,
                current_revision: changed.current_revision,
                first_visible_revision: changed.first_visible_revision,
            };
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["STREAM", "PARTITION", "REVISION", "FIRST VISIBLE"]);
            table.row(vec![
                stream.to_string(),
                changed.partition.to_string(),
                optional_number(changed.current_revision),
                changed.first_visible_revision.to_string(),
            ]);
            table.write(out)?;
        }
    }
    Ok(())
}

/// What a person needs after a refused append (or delete, or metadata change: `action`):
/// every stream's expected and actual revision, and what to do next.
pub(crate) fn wrong_revision_message(
    action: &str,
    topic: &str,
    violations: &[cairn_types::RevisionViolation],
) -> String {
    let mut message =
        format!("{action} refused, nothing was written: a stream of topic '{topic}' is not at the expected revision");
    for violation in violations {
        let actual = match violation.actual {
            Some(revision) => format!("revision {revision}"),
            None => "no events".to_string(),
        };
        message
            .push_str(&format!("\n  stream '{}': expected {}, actual {actual}", violation.stream, violation.expected));
    }
    message.push_str("\ncheck the stream's revision (`cairn stream info`) and retry with --expect set to it");
    message
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::StreamCommand;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: StreamCommand,
    }

    fn parse(args: &[&str]) -> Result<StreamCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("stream").chain(args.iter().copied())).map(|cli| cli.command)
    }

    fn parse_metadata(args: &[&str]) -> Result<StreamMetadataArgs, clap::Error> {
        let all: Vec<&str> = ["metadata", "bank", "account-1"].iter().chain(args).copied().collect();
        match parse(&all)? {
            StreamCommand::Metadata(metadata) => Ok(metadata),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn delete_and_tombstone_take_expect_and_output() {
        let StreamCommand::Delete(delete) = parse(&["delete", "bank", "account-1"]).expect("parses") else {
            panic!("wrong command")
        };
        assert_eq!((delete.topic.as_str(), delete.stream.as_str()), ("bank", "account-1"));
        assert_eq!((delete.expect, delete.output), (ExpectedRevision::Any, OutputFormat::Table));
        let command = parse(&["tombstone", "bank", "account-1", "--expect", "7", "--output", "json"]).expect("parses");
        let StreamCommand::Tombstone(tombstone) = command else { panic!("wrong command") };
        assert_eq!((tombstone.expect, tombstone.output), (ExpectedRevision::Exact(7), OutputFormat::Json));
        let StreamCommand::Delete(delete) = parse(&["delete", "t", "s", "--expect", "exists"]).expect("parses") else {
            panic!("wrong command")
        };
        assert_eq!(delete.expect, ExpectedRevision::Exists);
        let error = parse(&["delete", "t", "s", "--expect", "latest"]).expect_err("bad --expect");
        assert!(error.to_string().contains("'no-stream'"), "{error}");
        assert!(parse(&["tombstone", "t"]).is_err(), "the stream is required");
    }

    #[test]
    fn tombstone_help_says_it_cannot_be_undone() {
        let error = parse(&["tombstone", "--help"]).expect_err("help is an early exit");
        assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(error.to_string().contains("cannot be undone"), "{error}");
        let error = parse(&["metadata", "--help"]).expect_err("help is an early exit");
        assert!(error.to_string().contains("clears"), "{error}");
    }

    #[test]
    fn metadata_takes_every_limit() {
        let metadata = parse_metadata(&[
            "--max-age",
            "30d",
            "--max-count",
            "100",
            "--truncate-before",
            "12",
            "--expect",
            "no-stream",
            "--output",
            "json",
        ])
        .expect("parses");
        assert_eq!(
            metadata.metadata(),
            StreamMetadata { max_age_ms: Some(2_592_000_000), max_count: Some(100), truncate_before: Some(12) }
        );
        assert_eq!((metadata.expect, metadata.output), (ExpectedRevision::NoStream, OutputFormat::Json));
        assert_eq!(parse_metadata(&["--max-age", "90000"]).expect("parses").max_age, Some(90_000));
        assert_eq!(parse_metadata(&["--truncate-before", "0"]).expect("parses").truncate_before, Some(0));
    }

    #[test]
    fn metadata_without_limits_clears_it() {
        let metadata = parse_metadata(&[]).expect("parses");
        assert_eq!(metadata.metadata(), StreamMetadata::default());
        assert_eq!((metadata.expect, metadata.output), (ExpectedRevision::Any, OutputFormat::Table));
    }

    #[test]
    fn metadata_refuses_bad_limits() {
        let error = parse_metadata(&["--max-age", "0"]).expect_err("zero");
        assert!(error.to_string().contains("would hide every event"), "{error}");
        let error = parse_metadata(&["--max-age", "a month"]).expect_err("not a duration");
        assert!(error.to_string().contains("expected a duration"), "{error}");
        let error = parse_metadata(&["--max-count", "0"]).expect_err("zero");
        assert!(error.to_string().contains("would hide every event"), "{error}");
        let error = parse_metadata(&["--max-count=-3"]).expect_err("negative");
        assert!(error.to_string().contains("--max-count"), "{error}");
        let error = parse_metadata(&["--truncate-before", "first"]).expect_err("not a revision");
        assert!(error.to_string().contains("--truncate-before"), "{error}");
    }

    #[test]
    fn changed_stream_prints_as_a_table_and_as_json() {
        let changed =
            StreamChanged { partition: 3, current_revision: Some(41), first_visible_revision: 42, applied_index: 900 };
        let mut out = Vec::new();
        write_stream_changed("bank", "account-1", &changed, OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text, "STREAM     PARTITION  REVISION  FIRST VISIBLE\naccount-1  3          41        42\n",
            "{text}"
        );
        let mut out = Vec::new();
        write_stream_changed("bank", "account-1", &changed, OutputFormat::Json, &mut out).expect("write");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"topic": "bank", "stream": "account-1", "partition": 3, "current_revision": 41,
                "first_visible_revision": 42})
        );
    }

    #[test]
    fn a_stream_that_never_had_events_prints_a_dash_or_null() {
        let changed =
            StreamChanged { partition: 0, current_revision: None, first_visible_revision: 0, applied_index: 1 };
        let mut out = Vec::new();
        write_stream_changed("bank", "account-9", &changed, OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.lines().nth(1), Some("account-9  0          -         0"), "{text}");
        let mut out = Vec::new();
        write_stream_changed("bank", "account-9", &changed, OutputFormat::Json, &mut out).expect("write");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(value["current_revision"], serde_json::Value::Null, "{value}");
        assert_eq!(value["first_visible_revision"], 0, "{value}");
    }

    #[test]
    fn a_refused_change_names_the_action() {
        let violations = vec![cairn_types::RevisionViolation {
            stream: "account-1".to_string(),
            expected: ExpectedRevision::Exact(3),
            actual: Some(5),
        }];
        let refused =
            Err(ClientError::ConditionFailed { message: "wrong revision".to_string(), violations, query: None });
        let error = refused_on_wrong_revision("tombstone", "bank", refused).expect_err("refused");
        let message = error.to_string();
        assert!(message.starts_with("tombstone refused, nothing was written"), "{message}");
        assert!(message.contains("stream 'account-1': expected revision 3, actual revision 5"), "{message}");
    }
}
