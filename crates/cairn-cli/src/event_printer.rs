use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use cairn_client::RecordedEvent;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::OutputFormat;
use crate::text::{bytes_text, timestamp_text};

/// Prints a stream's events as they are read, page by page: JSON lines, or table rows
/// under one title line (fixed minimum widths, since later pages are not known yet).
pub struct EventPrinter<W: Write> {
    output: OutputFormat,
    out: W,
    events_printed: u64,
    /// Tables get a stream column (events of several streams, as a query reads them).
    streams: bool,
}

impl<W: Write> EventPrinter<W> {
    pub fn new(output: OutputFormat, out: W) -> Self {
        EventPrinter { output, out, events_printed: 0, streams: false }
    }

    /// A printer whose table shows each event's stream.
    pub fn with_streams(self) -> Self {
        EventPrinter { streams: true, ..self }
    }

    pub fn print(&mut self, event: &RecordedEvent) -> io::Result<()> {
        match self.output {
            OutputFormat::Json => {
                let line = serde_json::to_string(&EventJson(event)).map_err(io::Error::other)?;
                writeln!(self.out, "{line}")?;
            }
            OutputFormat::Table => {
                if self.events_printed == 0 {
                    let title = table_line("REVISION", "OFFSET", "TIME", "TYPE", "EVENT ID", "DATA");
                    match self.streams {
                        true => writeln!(self.out, "{:<24}  {title}", "STREAM")?,
                        false => writeln!(self.out, "{title}")?,
                    }
                }
                if self.streams {
                    write!(self.out, "{:<24}  ", bytes_text(event.stream.as_bytes()))?;
                }
                let line = table_line(
                    &event.stream_revision.to_string(),
                    &event.offset.to_string(),
                    &timestamp_text(event.timestamp_ms),
                    &bytes_text(event.event_type.as_bytes()),
                    &event.event_id_string(),
                    &bytes_text(&event.data),
                );
                writeln!(self.out, "{line}")?;
            }
        }
        self.events_printed += 1;
        Ok(())
    }

    pub fn events_printed(&self) -> u64 {
        self.events_printed
    }

    pub fn out(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn table_line(revision: &str, offset: &str, time: &str, event_type: &str, event_id: &str, data: &str) -> String {
    format!("{revision:<8}  {offset:<10}  {time:<24}  {event_type:<16}  {event_id:<36}  {data}")
}

/// An event as one JSON object, keys in this order: `stream, revision, offset,
/// timestamp_ms, event_id, event_type, content_type, data, metadata, tags`. `data` and
/// `metadata` are embedded as JSON when they parse as JSON (whatever the content type
/// says: `content_type` is there to check), else as a string; bytes that are not UTF-8
/// become `data_b64` / `metadata_b64` (standard base64), as in `cairn consume` output.
pub struct EventJson<'a>(pub &'a RecordedEvent);

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut map = serializer.serialize_map(Some(10))?;
        map.serialize_entry("stream", &event.stream)?;
        map.serialize_entry("revision", &event.stream_revision)?;
        map.serialize_entry("offset", &event.offset)?;
        map.serialize_entry("timestamp_ms", &event.timestamp_ms)?;
        map.serialize_entry("event_id", &event.event_id_string())?;
        map.serialize_entry("event_type", &event.event_type)?;
        map.serialize_entry("content_type", &event.content_type)?;
        serialize_payload(&mut map, "data", &event.data)?;
        serialize_payload(&mut map, "metadata", &event.metadata)?;
        map.serialize_entry("tags", &event.tags)?;
        map.end()
    }
}

/// `name`: the bytes as JSON, else as a string; `name_b64` when they are not UTF-8.
fn serialize_payload<M: SerializeMap>(map: &mut M, name: &str, bytes: &[u8]) -> Result<(), M::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => map.serialize_entry(name, &value),
            Err(_) => map.serialize_entry(name, text),
        },
        Err(_) => map.serialize_entry(&format!("{name}_b64"), &BASE64.encode(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::*;

    fn event(data: &'static [u8], metadata: &'static [u8]) -> RecordedEvent {
        RecordedEvent {
            stream: "account-1".to_string(),
            stream_revision: 4,
            offset: 17,
            timestamp_ms: 1_700_000_000_123,
            event_id: [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8],
            event_type: "Deposited".to_string(),
            content_type: "application/json".to_string(),
            data: Bytes::from_static(data),
            metadata: Bytes::from_static(metadata),
            tags: vec!["tenant=acme".to_string()],
        }
    }

    fn printed(output: OutputFormat, events: &[RecordedEvent]) -> String {
        let mut printer = EventPrinter::new(output, Vec::new());
        for event in events {
            printer.print(event).expect("write to a Vec");
        }
        assert_eq!(printer.events_printed(), events.len() as u64);
        String::from_utf8(printer.out).expect("utf8")
    }

    #[test]
    fn json_line_embeds_json_data_in_key_order() {
        let text = printed(OutputFormat::Json, &[event(br#"{"amount":10}"#, b"")]);
        assert_eq!(
            text,
            concat!(
                r#"{"stream":"account-1","revision":4,"offset":17,"timestamp_ms":1700000000123,"#,
                r#""event_id":"12345678-9abc-def0-0102-030405060708","event_type":"Deposited","#,
                r#""content_type":"application/json","data":{"amount":10},"metadata":"","tags":["tenant=acme"]}"#,
                "\n"
            )
        );
    }

    #[test]
    fn json_falls_back_to_a_string_then_to_base64() {
        let text = printed(OutputFormat::Json, &[event(b"not json", &[0xff, 0x00])]);
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["data"], json!("not json"));
        assert_eq!(value["metadata_b64"], json!("/wA="));
        assert!(value.get("metadata").is_none(), "{value}");
    }

    #[test]
    fn table_has_one_title_and_one_line_per_event() {
        let text = printed(OutputFormat::Table, &[event(b"{\"a\":\n1}", b""), event(b"x", b"")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("REVISION  OFFSET      TIME"), "{text}");
        assert!(lines[1].starts_with("4         17          2023-11-14T22:13:20.123Z  Deposited"), "{text}");
        assert!(lines[1].contains("12345678-9abc-def0-0102-030405060708"), "{text}");
        assert!(lines[1].ends_with("{\"a\":\\n1}"), "{text}");
    }
}
