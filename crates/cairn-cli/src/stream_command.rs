use std::io::{BufWriter, Write};

use anyhow::bail;
use bytes::Bytes;
use cairn_client::{
    AppendedEvents, CairnClient, ClientError, EventData, EventQuery, ExpectedRevision, QueryCondition, QueryItem,
    ReadStreamOptions, StreamWrite,
};
use cairn_types::PartitionId;
use cairn_types::stream::{EVENT_TAGS_MAX, new_event_id};
use serde::Serialize;

use crate::event_printer::EventPrinter;
use crate::query_command::{StreamQueryArgs, parse_query_item, query_violation_message};
use crate::stream_args::{DataArg, parse_as_of_ms, parse_data, parse_event_id_arg, parse_expected_revision, parse_tag};
use crate::stream_change_command::{StreamDeleteArgs, StreamMetadataArgs, wrong_revision_message};
use crate::stream_info::write_info;
use crate::table::Table;
use crate::{OutputFormat, is_broken_pipe};

/// Event streams: append events on a condition on the stream's revision (or on a query of
/// types and tags), read them, query them, delete them or limit what is kept, show where a
/// stream stands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StreamCommand {
    /// Append one event to a stream, if the stream is at the --expect'ed revision.
    Append(Box<StreamAppendArgs>),
    /// Read a stream's events, forwards (default) or --backwards.
    Read(Box<StreamReadArgs>),
    /// Read the events of one partition that match types and tags (--match), forwards,
    /// and print the position to pass to `stream append --fail-if-match ... --after`.
    Query(Box<StreamQueryArgs>),
    /// Delete a stream's events: reads show none of them, appends resume at the next
    /// revision.
    Delete(StreamDeleteArgs),
    /// Delete a stream for good: its events are gone and it never takes an event again
    /// (appends are refused, reads answer NOT_FOUND). This cannot be undone.
    Tombstone(StreamDeleteArgs),
    /// Set what a stream keeps (max age, max count, truncate before), replacing what was
    /// set before; events outside it are hidden from reads at once. With none of the limit
    /// flags, it clears the stream's metadata: every event not deleted is shown again.
    Metadata(StreamMetadataArgs),
    /// Show where a stream stands: its partition, revision, first visible revision,
    /// deletion and metadata.
    Info {
        /// Topic name.
        topic: String,
        /// Stream name (the events' key).
        stream: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

/// `cairn stream append`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamAppendArgs {
    /// Topic name.
    pub topic: String,
    /// Stream name (the events' key).
    pub stream: String,
    /// What the stream's revision (its last event's) must be for the append to happen:
    /// a revision, `any` (no condition), `no-stream` (no events yet) or `exists` (at least
    /// one event). Otherwise nothing is written and the command fails.
    #[arg(long, value_name = "N|any|no-stream|exists", default_value = "any", value_parser = parse_expected_revision)]
    pub expect: ExpectedRevision,
    /// The event's type, e.g. Deposited.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// The event's data, or @PATH to read it from a file. Checked to be JSON when the
    /// content type is JSON. Default: empty.
    #[arg(long, value_name = "JSON|@PATH", value_parser = parse_data)]
    pub data: Option<DataArg>,
    /// The event's metadata, a JSON document (e.g. '{"user":"ana"}').
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// A tag on the event, as KEY=VALUE; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<String>,
    /// The event's id, a UUID (default: a new random one). Appending an id that is stored
    /// already, with the same content, writes nothing and prints the original position,
    /// so a retry with the same id is safe.
    #[arg(long, value_name = "UUID", value_parser = parse_event_id_arg)]
    pub event_id: Option<[u8; 16]>,
    /// The data's content type.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Append only if no event matching this item (`TYPES:TAGS`, as `stream query
    /// --match` takes it) was appended to the stream's partition --after the position a
    /// query printed. Repeatable: any item's match refuses the append.
    #[arg(long = "fail-if-match", value_name = "TYPES:TAGS", value_parser = parse_query_item)]
    pub fail_if_match: Vec<QueryItem>,
    /// The position the --fail-if-match condition starts after (what `stream query`
    /// printed). Without it, any matching event in the partition refuses the append.
    #[arg(long, value_name = "OFFSET", requires = "fail_if_match")]
    pub after: Option<u64>,
    /// Output format: json prints one object with the event's position.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `cairn stream read`.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamReadArgs {
    /// Topic name.
    pub topic: String,
    /// Stream name (the events' key).
    pub stream: String,
    /// Read from the last event towards the first.
    #[arg(long)]
    pub backwards: bool,
    /// Start at this revision, inclusive (default: the first event still stored, or the
    /// last one with --backwards).
    #[arg(long, value_name = "REV")]
    pub from: Option<u64>,
    /// Only events appended at or before this time: the stream as it stood then. An
    /// RFC 3339 time in UTC (2026-03-01T00:00:00Z) or milliseconds since the Unix epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_as_of_ms)]
    pub as_of: Option<u64>,
    /// Stop after this many events; 0 reads to the end of the stream.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max: u64,
    /// Output format: json prints one object per event per line.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

impl StreamCommand {
    pub async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        match self {
            StreamCommand::Append(append) => append.run(client, out).await,
            StreamCommand::Read(read) => {
                let mut printer = EventPrinter::new(read.output, BufWriter::new(std::io::stdout()));
                match read.run(client, &mut printer).await.and_then(|()| Ok(printer.flush()?)) {
                    Err(error) if is_broken_pipe(&error) => Ok(()),
                    result => result,
                }
            }
            StreamCommand::Query(query) => {
                let printer = EventPrinter::new(query.output, BufWriter::new(std::io::stdout()));
                let mut printer = printer.with_streams();
                match query.run(client, &mut printer).await.and_then(|()| Ok(printer.flush()?)) {
                    Err(error) if is_broken_pipe(&error) => Ok(()),
                    result => result,
                }
            }
            StreamCommand::Delete(delete) => delete.run(client, false, out).await,
            StreamCommand::Tombstone(tombstone) => tombstone.run(client, true, out).await,
            StreamCommand::Metadata(metadata) => metadata.run(client, out).await,
            StreamCommand::Info { topic, stream, output } => write_info(client, &topic, &stream, output, out).await,
        }
    }
}

impl StreamAppendArgs {
    async fn run(self, client: &CairnClient, out: &mut impl Write) -> anyhow::Result<()> {
        let event = self.to_event()?;
        let event_id = cairn_types::stream::format_event_id(&event.event_id);
        let condition = if self.fail_if_match.is_empty() {
            None
        } else {
            Some(QueryCondition { query: EventQuery { items: self.fail_if_match.clone() }, after: self.after })
        };
        let write = StreamWrite { stream: self.stream.clone(), expected: self.expect, events: vec![event] };
        let appended = match client.append_to_streams_if(&self.topic, vec![write], Vec::new(), condition).await {
            Ok(appended) => appended,
            Err(ClientError::ConditionFailed { violations, query, .. }) => {
                let mut message = if violations.is_empty() {
                    "append refused, nothing was written: the query condition failed".to_owned()
                } else {
                    wrong_revision_message("append", &self.topic, &violations)
                };
                if let Some(query) = query {
                    message.push('\n');
                    message.push_str(&query_violation_message(&query));
                }
                bail!(message)
            }
            Err(error) => return Err(error.into()),
        };
        write_appended(&self, &event_id, &appended, out)
    }

    /// The event the flags describe: data loaded (and checked when its content type is
    /// JSON, so a typo fails here rather than in every later reader), metadata checked.
    fn to_event(&self) -> anyhow::Result<EventData> {
        if self.tags.len() > EVENT_TAGS_MAX {
            bail!("an event has at most {EVENT_TAGS_MAX} tags, got {}", self.tags.len());
        }
        let data = match &self.data {
            Some(data) => data.load()?,
            None => Bytes::new(),
        };
        if is_json_content_type(&self.content_type) && !data.is_empty() {
            serde_json::from_slice::<serde_json::Value>(&data).map_err(|error| {
                anyhow::anyhow!(
                    "--data is not valid JSON ({error}); pass --content-type (e.g. text/plain) to store other data"
                )
            })?;
        }
        let metadata = match &self.metadata {
            Some(metadata) => {
                serde_json::from_str::<serde_json::Value>(metadata)
                    .map_err(|error| anyhow::anyhow!("--metadata is not valid JSON ({error})"))?;
                Bytes::from(metadata.clone())
            }
            None => Bytes::new(),
        };
        Ok(EventData {
            event_id: self.event_id.unwrap_or_else(new_event_id),
            event_type: self.event_type.clone(),
            content_type: self.content_type.clone(),
            data,
            metadata,
            tags: self.tags.clone(),
        })
    }
}

impl StreamReadArgs {
    /// Pages through the stream with `next_revision` until the end or --max events.
    async fn run(&self, client: &CairnClient, printer: &mut EventPrinter<impl Write>) -> anyhow::Result<()> {
        let mut options = ReadStreamOptions {
            from_revision: self.from,
            backwards: self.backwards,
            as_of_ms: self.as_of,
            ..ReadStreamOptions::default()
        };
        loop {
            let remaining = self.max.saturating_sub(printer.events_printed());
            // 0 asks for the server's default page size.
            options.max_events = if self.max == 0 { 0 } else { u32::try_from(remaining).unwrap_or(u32::MAX) };
            let slice = client.read_stream(&self.topic, &self.stream, options).await?;
            for event in &slice.events {
                if self.max != 0 && printer.events_printed() == self.max {
                    break;
                }
                printer.print(event)?;
            }
            printer.flush()?;
            if self.max != 0 && printer.events_printed() == self.max {
                break;
            }
            match slice.next_revision {
                None => break,
                Some(next) if Some(next) == options.from_revision && slice.events.is_empty() => {
                    bail!("the server returned no events and the same next revision {next}; stopping")
                }
                Some(next) => options.from_revision = Some(next),
            }
        }
        if printer.events_printed() == 0 && self.output == OutputFormat::Table {
            writeln!(printer.out(), "no events in stream '{}' of topic '{}'", self.stream, self.topic)?;
        }
        Ok(())
    }
}

/// Whether data of this content type should parse as JSON: `application/json` and the
/// `+json` types (`application/cloudevents+json`), parameters ignored.
fn is_json_content_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media_type == "application/json" || media_type.ends_with("+json")
}

#[derive(Serialize)]
struct AppendedJson<'a> {
    topic: &'a str,
    stream: &'a str,
    partition: PartitionId,
    offset: u64,
    revision: u64,
    timestamp_ms: u64,
    event_id: &'a str,
    /// The event id was stored already: the position is the original append's.
    duplicate: bool,
}

/// JSON: one object `{"topic","stream","partition","offset","revision","timestamp_ms",
/// "event_id","duplicate"}`.
fn write_appended(
    append: &StreamAppendArgs,
    event_id: &str,
    appended: &AppendedEvents,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let Some(&(offset, revision)) = appended.positions.first() else {
        bail!("the server answered an append of one event with no position");
    };
    match append.output {
        OutputFormat::Json => {
            let json = AppendedJson {
                topic: &append.topic,
                stream: &append.stream,
                partition: appended.partition,
                offset,
                revision,
                timestamp_ms: appended.timestamp_ms,
                event_id,
                duplicate: appended.duplicate,
            };
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["STREAM", "PARTITION", "OFFSET", "REVISION", "EVENT ID"]);
            table.row(vec![
                append.stream.clone(),
                appended.partition.to_string(),
                offset.to_string(),
                revision.to_string(),
                event_id.to_string(),
            ]);
            table.write(out)?;
            if appended.duplicate {
                writeln!(out, "(event {event_id} was stored already: this is its original position)")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cairn_types::RevisionViolation;
    use cairn_types::stream::EVENT_TAG_BYTES_MAX;
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: StreamCommand,
    }

    fn parse(args: &[&str]) -> Result<StreamCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("stream").chain(args.iter().copied())).map(|cli| cli.command)
    }

    fn parse_append(args: &[&str]) -> StreamAppendArgs {
        let all: Vec<&str> = ["append", "bank", "account-1"].iter().chain(args).copied().collect();
        match parse(&all) {
            Ok(StreamCommand::Append(append)) => *append,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn append_defaults() {
        let append = parse_append(&["--type", "Deposited"]);
        assert_eq!(append.expect, ExpectedRevision::Any);
        assert_eq!(append.content_type, "application/json");
        assert_eq!(append.output, OutputFormat::Table);
        assert!(append.data.is_none() && append.metadata.is_none() && append.event_id.is_none());
        assert!(append.tags.is_empty());
        let event = append.to_event().expect("an event");
        assert!(event.data.is_empty() && event.metadata.is_empty());
        assert!(parse(&["append", "bank", "account-1"]).is_err(), "--type is required");
    }

    #[test]
    fn append_takes_every_option() {
        let append = parse_append(&[
            "--type",
            "Deposited",
            "--expect",
            "no-stream",
            "--data",
            r#"{"amount":5}"#,
            "--tag",
            "tenant=acme",
            "--tag",
            "query=a=b",
            "--metadata",
            r#"{"user":"ana"}"#,
            "--event-id",
            "12345678-9abc-def0-0102-030405060708",
            "--output",
            "json",
        ]);
        assert_eq!(append.expect, ExpectedRevision::NoStream);
        assert_eq!(append.output, OutputFormat::Json);
        let event = append.to_event().expect("an event");
        assert_eq!(event.event_type, "Deposited");
        assert_eq!(event.data, Bytes::from_static(br#"{"amount":5}"#));
        assert_eq!(event.metadata, Bytes::from_static(br#"{"user":"ana"}"#));
        assert_eq!(event.tags, ["tenant=acme", "query=a=b"]);
        assert_eq!(event.event_id, [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn read_defaults_and_options() {
        let StreamCommand::Read(read) = parse(&["read", "bank", "account-1"]).expect("parses") else {
            panic!("wrong command")
        };
        assert!(!read.backwards && read.from.is_none() && read.as_of.is_none());
        assert_eq!((read.max, read.output), (0, OutputFormat::Table));
        let StreamCommand::Read(read) =
            parse(&["read", "bank", "account-1", "--backwards", "--from", "7", "--max", "3", "--output", "json"])
                .expect("parses")
        else {
            panic!("wrong command")
        };
        assert!(read.backwards);
        assert_eq!((read.from, read.max, read.output), (Some(7), 3, OutputFormat::Json));
    }

    #[test]
    fn data_from_a_file_is_read_when_the_command_runs() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("event.json");
        std::fs::write(&path, br#"{"amount": 12}"#).expect("write");
        let argument = format!("@{}", path.display());
        let append = parse_append(&["--type", "Deposited", "--data", &argument]);
        assert_eq!(append.data, Some(DataArg::File(path.clone())));
        assert_eq!(append.to_event().expect("an event").data, Bytes::from_static(br#"{"amount": 12}"#));

        let missing = format!("@{}", directory.path().join("missing.json").display());
        let error = parse_append(&["--type", "T", "--data", &missing]).to_event().expect_err("no such file");
        assert!(format!("{error:#}").contains("missing.json"), "{error:#}");
        assert!(parse_data("@").expect_err("no path").contains("file path"));
    }

    #[test]
    fn json_data_and_metadata_are_checked() {
        let error = parse_append(&["--type", "T", "--data", "{oops"]).to_event().expect_err("not JSON");
        assert!(error.to_string().contains("--content-type"), "{error}");
        let event = parse_append(&["--type", "T", "--data", "{oops", "--content-type", "text/plain"])
            .to_event()
            .expect("any text when not JSON");
        assert_eq!(event.data, Bytes::from_static(b"{oops"));
        let error = parse_append(&["--type", "T", "--metadata", "user=ana"]).to_event().expect_err("not JSON");
        assert!(error.to_string().contains("--metadata"), "{error}");
        assert!(is_json_content_type("application/cloudevents+json; charset=utf-8"));
        assert!(!is_json_content_type("text/plain"));
    }

    #[test]
    fn wrong_revision_lists_every_violation() {
        let violations = [
            RevisionViolation {
                stream: "account-1".to_string(),
                expected: ExpectedRevision::Exact(3),
                actual: Some(5),
            },
            RevisionViolation { stream: "account-2".to_string(), expected: ExpectedRevision::Exists, actual: None },
        ];
        let message = wrong_revision_message("append", "bank", &violations);
        assert!(message.contains("stream 'account-1': expected revision 3, actual revision 5"), "{message}");
        assert!(message.contains("stream 'account-2': expected an existing stream, actual no events"), "{message}");
        assert!(message.starts_with("append refused, nothing was written"), "{message}");
    }

    #[test]
    fn tags_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_tag("tenant=acme"), Ok("tenant=acme".to_string()));
        assert_eq!(parse_tag("empty="), Ok("empty=".to_string()));
        assert!(parse_tag("tenant").expect_err("no '='").contains("KEY=VALUE"));
        assert!(parse_tag("=acme").expect_err("no key").contains("empty"));
        let long = format!("k={}", "v".repeat(EVENT_TAG_BYTES_MAX));
        assert!(parse_tag(&long).expect_err("too long").contains("at most"));
        let error = parse(&["append", "t", "s", "--type", "T", "--tag", "oops"]).expect_err("bad tag");
        assert!(error.to_string().contains("KEY=VALUE"), "{error}");
    }

    #[test]
    fn as_of_takes_rfc3339_and_milliseconds() {
        assert_eq!(parse_as_of_ms("2026-03-01T00:00:00Z"), Ok(1_772_323_200_000));
        assert_eq!(parse_as_of_ms("2026-03-01T00:00:00.250Z"), Ok(1_772_323_200_250));
        assert_eq!(parse_as_of_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_as_of_ms("1772323200000"), Ok(1_772_323_200_000));
        assert_eq!(parse_as_of_ms("@1772323200000"), Ok(1_772_323_200_000));
        for bad in ["", "@", "yesterday", "2026-03-01", "2026-03-01T00:00:00", "2026-03-01T00:00:00+02:00", "-5"] {
            let error = parse_as_of_ms(bad).expect_err(bad);
            assert!(error.contains("RFC 3339"), "{bad}: {error}");
        }
        let read = parse(&["read", "bank", "account-1", "--as-of", "2026-03-01T00:00:00Z"]).expect("parses");
        let StreamCommand::Read(read) = read else { panic!("wrong command") };
        assert_eq!(read.as_of, Some(1_772_323_200_000));
    }

    #[test]
    fn event_id_must_be_a_uuid() {
        let error = parse(&["append", "t", "s", "--type", "T", "--event-id", "42"]).expect_err("not a UUID");
        assert!(error.to_string().contains("not a UUID"), "{error}");
    }
}
