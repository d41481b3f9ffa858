//! `cairn stream query`, and the query flags `cairn stream append` shares with it: the
//! events of one partition that match items of types and tags (Dynamic Consistency
//! Boundaries), and the position an append's `--fail-if-match` condition starts after.

use std::io::Write;

use anyhow::bail;
use cairn_client::{CairnClient, Consistency, EventQuery, QueryItem, QueryOptions, QueryPartition, QueryViolation};
use serde::Serialize;

use crate::OutputFormat;
use crate::event_printer::EventPrinter;
use crate::stream_args::parse_as_of_ms;

/// `cairn stream query`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("partition_of").required(true).args(["partition", "key"])))]
pub struct StreamQueryArgs {
    /// Topic name.
    pub topic: String,
    /// The partition to read.
    #[arg(long, value_name = "N")]
    pub partition: Option<u32>,
    /// Read the partition of this stream (or of streams with this hash tag, `{order-17}`).
    #[arg(long, value_name = "STREAM")]
    pub key: Option<String>,
    /// An item of the query: events of any of the TYPEs that carry every TAG, as
    /// `TYPE,TYPE:TAG,TAG` (`Enrolled:course=7,student=ada`; `:course=7` for any type;
    /// `Enrolled` for any tags; `*` for every event). Repeatable: an event matches when it
    /// matches any item. None: every event.
    #[arg(long = "match", value_name = "TYPES:TAGS", value_parser = parse_query_item)]
    pub items: Vec<QueryItem>,
    /// Only events after this offset: the position an earlier query printed.
    #[arg(long, value_name = "OFFSET")]
    pub after: Option<u64>,
    /// Only events appended at or before this time. An RFC 3339 time in UTC
    /// (2026-03-01T00:00:00Z) or milliseconds since the Unix epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_as_of_ms)]
    pub as_of: Option<u64>,
    /// Read everything acknowledged before the query began (the partition leader confirms
    /// it); by default the node asked answers with what it has applied, which on a
    /// follower may lag by a moment. Use it before a --fail-if-match append.
    #[arg(long)]
    pub linearizable: bool,
    /// Stop after this many events; 0 reads to the end.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max: u64,
    /// Output format: json prints one object per event per line, then one
    /// `{"position": N|null, "limited": bool}` line.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// `--match`: `TYPES:TAGS`, either side a comma-separated list and either side empty; no
/// `:` means types only; `*` (or `:`) matches every event.
pub fn parse_query_item(text: &str) -> Result<QueryItem, String> {
    let list = |part: &str| -> Vec<String> {
        part.split(',').map(str::trim).filter(|term| !term.is_empty()).map(str::to_owned).collect()
    };
    let item = match text.trim() {
        "*" => QueryItem::default(),
        text => match text.split_once(':') {
            Some((types, tags)) => QueryItem { types: list(types), tags: list(tags) },
            None => QueryItem { types: list(text), tags: Vec::new() },
        },
    };
    if item.matches_all() && !matches!(text.trim(), "*" | ":") {
        return Err(format!("'{text}' names no type and no tag: write '*' to match every event"));
    }
    // The query's limits (items, types and tags in all) are the server's to check.
    Ok(item)
}

/// What a failed query condition tells the person who ran the append.
pub fn query_violation_message(violation: &QueryViolation) -> String {
    let after = match violation.after {
        Some(after) => format!("after offset {after}"),
        None => "in the partition".to_owned(),
    };
    format!(
        "  an event matching --fail-if-match was appended {after}, at offset {}: query again (`cairn stream query`) \
         and decide again with --after set to the position it prints",
        violation.first_match
    )
}

#[derive(Serialize)]
struct PositionJson {
    position: Option<u64>,
    limited: bool,
}

impl StreamQueryArgs {
    /// Pages through the matches until the end or --max events, then prints the position.
    pub async fn run(&self, client: &CairnClient, printer: &mut EventPrinter<impl Write>) -> anyhow::Result<()> {
        let query = EventQuery { items: self.items.clone() };
        let partition = match (&self.key, self.partition) {
            (Some(key), _) => QueryPartition::OfKey(key.clone()),
            (None, Some(partition)) => QueryPartition::Partition(partition),
            (None, None) => bail!("name the partition to read: --partition N or --key STREAM"),
        };
        let consistency = if self.linearizable { Consistency::Linearizable } else { Consistency::Local };
        let mut options = QueryOptions { after: self.after, as_of_ms: self.as_of, consistency, max_events: 0 };
        let (position, limited) = loop {
            let remaining = self.max.saturating_sub(printer.events_printed());
            options.max_events = if self.max == 0 { 0 } else { u32::try_from(remaining).unwrap_or(u32::MAX) };
            let page = client.query_events(&self.topic, partition.clone(), query.clone(), options).await?;
            for event in &page.events {
                printer.print(event)?;
            }
            printer.flush()?;
            let done = self.max != 0 && printer.events_printed() >= self.max;
            if !page.limited || done {
                break (page.position, page.limited);
            }
            if page.position == options.after && page.events.is_empty() {
                bail!("the server returned no events and the same position {:?}; stopping", page.position);
            }
            options.after = page.position;
        };
        match self.output {
            OutputFormat::Json => {
                writeln!(printer.out(), "{}", serde_json::to_string(&PositionJson { position, limited })?)?;
            }
            OutputFormat::Table => {
                if printer.events_printed() == 0 {
                    writeln!(printer.out(), "no matching events")?;
                }
                let position = position.map_or("none (nothing stored yet)".to_owned(), |p| p.to_string());
                let more = if limited { "; more may follow: --after it reads on" } else { "" };
                writeln!(printer.out(), "position: {position}{more}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(types: &[&str], tags: &[&str]) -> QueryItem {
        QueryItem::new(types.iter().copied(), tags.iter().copied())
    }

    #[test]
    fn match_items_parse_types_and_tags() {
        assert_eq!(
            parse_query_item("Enrolled,Left:course=7,student=ada"),
            Ok(item(&["Enrolled", "Left"], &["course=7", "student=ada"]))
        );
        assert_eq!(parse_query_item(":course=7"), Ok(item(&[], &["course=7"])));
        assert_eq!(parse_query_item("Enrolled"), Ok(item(&["Enrolled"], &[])));
        assert_eq!(parse_query_item("*"), Ok(QueryItem::default()));
        let empty = parse_query_item(" , ").expect_err("names nothing");
        assert!(empty.contains("write '*'"), "{empty}");
    }

    #[test]
    fn a_violation_says_where_and_what_to_do() {
        let message = query_violation_message(&QueryViolation { after: Some(4), first_match: 9 });
        assert!(message.contains("after offset 4, at offset 9"), "{message}");
        assert!(message.contains("--after"), "{message}");
    }
}
