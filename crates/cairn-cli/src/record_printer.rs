use std::io::{self, Write};

use cairn_types::{PartitionId, StoredRecord};

use crate::OutputFormat;
use crate::record_json::RecordJson;
use crate::text::{bytes_text, timestamp_text};

/// Prints consumed records as they arrive: JSON lines, or table rows under one title line.
pub struct RecordPrinter<W: Write> {
    output: OutputFormat,
    out: W,
    title_printed: bool,
}

impl<W: Write> RecordPrinter<W> {
    pub fn new(output: OutputFormat, out: W) -> Self {
        RecordPrinter { output, out, title_printed: false }
    }

    pub fn print(&mut self, partition: PartitionId, record: &StoredRecord) -> io::Result<()> {
        match self.output {
            OutputFormat::Json => {
                let line = RecordJson { partition, record }.to_line().map_err(io::Error::other)?;
                writeln!(self.out, "{line}")
            }
            OutputFormat::Table => {
                if !self.title_printed {
                    self.title_printed = true;
                    writeln!(
                        self.out,
                        "{}",
                        table_line("PARTITION", "OFFSET", "TIMESTAMP", "KEY", "HEADERS", "VALUE")
                    )?;
                }
                let key = record.key.as_deref().map_or_else(|| "-".to_string(), bytes_text);
                let headers = if record.headers.is_empty() {
                    "-".to_string()
                } else {
                    let pairs: Vec<String> =
                        record.headers.iter().map(|(name, value)| format!("{name}={}", bytes_text(value))).collect();
                    pairs.join(",")
                };
                let line = table_line(
                    &partition.to_string(),
                    &record.offset.to_string(),
                    &timestamp_text(record.timestamp_ms),
                    &key,
                    &headers,
                    &bytes_text(&record.value),
                );
                writeln!(self.out, "{line}")
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Records stream, so columns have fixed minimum widths instead of measured ones.
fn table_line(partition: &str, offset: &str, timestamp: &str, key: &str, headers: &str, value: &str) -> String {
    format!("{partition:<9}  {offset:<10}  {timestamp:<24}  {key:<16}  {headers:<8}  {value}")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record() -> StoredRecord {
        StoredRecord {
            offset: 5,
            timestamp_ms: 0,
            key: Some(Bytes::from_static(b"k")),
            headers: vec![("h".to_string(), Bytes::from_static(b"v"))],
            value: Bytes::from_static(b"line\nbreak"),
            event: None,
        }
    }

    fn printed(output: OutputFormat) -> String {
        let mut printer = RecordPrinter::new(output, Vec::new());
        printer.print(2, &record()).expect("print");
        printer.print(2, &record()).expect("print");
        String::from_utf8(printer.out).expect("utf8")
    }

    #[test]
    fn json_prints_one_object_per_line() {
        let text = printed(OutputFormat::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let value: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
        assert_eq!(value["value"], "line\nbreak");
    }

    #[test]
    fn table_prints_a_title_once_and_one_line_per_record() {
        let text = printed(OutputFormat::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("PARTITION"));
        assert!(lines[1].starts_with("2  "));
        assert!(lines[1].contains("1970-01-01T00:00:00.000Z"));
        assert!(lines[1].ends_with("h=v       line\\nbreak"), "{}", lines[1]);
    }
}
