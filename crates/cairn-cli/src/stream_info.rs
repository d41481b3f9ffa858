//! `cairn stream info`: where a stream stands, from one `GetStreamInfo` call.

use std::io::Write;

use cairn_client::{CairnClient, Consistency, proto};
use cairn_types::PartitionId;
use serde::Serialize;

use crate::OutputFormat;
use crate::table::{Table, optional_number};
use crate::text::duration_text;

#[derive(Debug, Serialize, PartialEq, Eq)]
struct StreamInfo {
    topic: String,
    stream: String,
    partition: PartitionId,
    /// The last event's revision; `None`: the stream never had one.
    revision: Option<u64>,
    /// Where reads start (a max age may hide more at the time of a read).
    first_visible_revision: u64,
    /// Events below this revision were deleted.
    deleted_before: u64,
    tombstoned: bool,
    max_age_ms: Option<u64>,
    max_count: Option<u64>,
    truncate_before: Option<u64>,
}

impl StreamInfo {
    fn new(topic: &str, stream: &str, response: proto::StreamInfoResponse) -> StreamInfo {
        let metadata = response.metadata.unwrap_or_default();
        StreamInfo {
            topic: topic.to_string(),
            stream: stream.to_string(),
            partition: response.partition,
            revision: response.current_revision,
            first_visible_revision: response.first_visible_revision,
            deleted_before: response.deleted_before,
            tombstoned: response.tombstoned,
            max_age_ms: metadata.max_age_ms,
            max_count: metadata.max_count,
            truncate_before: metadata.truncate_before,
        }
    }
}

/// One call to the partition's replica that answers (`Consistency::Local`): a quick look,
/// which may lag the leader by what replication has not applied yet.
pub(crate) async fn write_info(
    client: &CairnClient,
    topic: &str,
    stream: &str,
    output: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let response = client.stream_info(topic, stream, Consistency::Local).await?;
    write_stream_info(&StreamInfo::new(topic, stream, response), output, out)
}

/// JSON: one object `{"topic","stream","partition","revision","first_visible_revision",
/// "deleted_before","tombstoned","max_age_ms","max_count","truncate_before"}`, `null` for
/// what is unset.
fn write_stream_info(info: &StreamInfo, output: OutputFormat, out: &mut impl Write) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string(info)?)?,
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "STREAM",
                "PARTITION",
                "REVISION",
                "FIRST VISIBLE",
                "DELETED BEFORE",
                "TOMBSTONED",
                "MAX AGE",
                "MAX COUNT",
                "TRUNCATE BEFORE",
            ]);
            table.row(vec![
                info.stream.clone(),
                info.partition.to_string(),
                optional_number(info.revision),
                info.first_visible_revision.to_string(),
                info.deleted_before.to_string(),
                if info.tombstoned { "yes" } else { "no" }.to_string(),
                info.max_age_ms.map_or_else(|| "-".to_string(), duration_text),
                optional_number(info.max_count),
                optional_number(info.truncate_before),
            ]);
            table.write(out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_prints_dashes_for_an_empty_stream() {
        let response = proto::StreamInfoResponse { partition: 2, ..proto::StreamInfoResponse::default() };
        let info = StreamInfo::new("bank", "account-9", response);
        let mut out = Vec::new();
        write_stream_info(&info, OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let cells: Vec<&str> = text.lines().nth(1).expect("a row").split_whitespace().collect();
        assert_eq!(cells, ["account-9", "2", "-", "0", "0", "no", "-", "-", "-"], "{text}");
        let mut out = Vec::new();
        write_stream_info(&info, OutputFormat::Json, &mut out).expect("write");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"topic": "bank", "stream": "account-9", "partition": 2, "revision": null,
                "first_visible_revision": 0, "deleted_before": 0, "tombstoned": false, "max_age_ms": null,
                "max_count": null, "truncate_before": null})
        );
    }

    #[test]
    fn info_prints_deletion_and_metadata() {
        let response = proto::StreamInfoResponse {
            partition: 1,
            current_revision: Some(57),
            first_visible_revision: 40,
            deleted_before: 30,
            tombstoned: true,
            metadata: Some(proto::StreamMetadata {
                max_age_ms: Some(30 * 86_400_000 + 12 * 3_600_000),
                max_count: Some(100),
                truncate_before: Some(40),
            }),
        };
        let info = StreamInfo::new("bank", "account-1", response);
        let mut out = Vec::new();
        write_stream_info(&info, OutputFormat::Table, &mut out).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split("  ").filter(|title| !title.is_empty()).map(str::trim).collect::<Vec<_>>(),
            [
                "STREAM",
                "PARTITION",
                "REVISION",
                "FIRST VISIBLE",
                "DELETED BEFORE",
                "TOMBSTONED",
                "MAX AGE",
                "MAX COUNT",
                "TRUNCATE BEFORE"
            ],
            "{text}"
        );
        let cells: Vec<&str> = lines[1].split("  ").filter(|cell| !cell.is_empty()).map(str::trim).collect();
        assert_eq!(cells, ["account-1", "1", "57", "40", "30", "yes", "30d 12h", "100", "40"], "{text}");
        let mut out = Vec::new();
        write_stream_info(&info, OutputFormat::Json, &mut out).expect("write");
        let value: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"topic": "bank", "stream": "account-1", "partition": 1, "revision": 57,
                "first_visible_revision": 40, "deleted_before": 30, "tombstoned": true,
                "max_age_ms": 2_635_200_000_u64, "max_count": 100, "truncate_before": 40})
        );
    }
}
