//! The arguments of `cairn stream` that need parsing: expected revisions, tags, "as of"
//! times, event data (inline or from a file), event ids and stream metadata limits, each
//! refused with a message that says what is accepted.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use anyhow::Context as _;
use bytes::Bytes;
use cairn_client::ExpectedRevision;
use cairn_types::stream::{EVENT_TAG_BYTES_MAX, parse_event_id};

/// `--data`: the text itself, or the file it names after `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataArg {
    Inline(String),
    File(PathBuf),
}

impl DataArg {
    pub(crate) fn load(&self) -> anyhow::Result<Bytes> {
        match self {
            DataArg::Inline(text) => Ok(Bytes::from(text.clone())),
            DataArg::File(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading --data file {}", path.display()))?;
                Ok(Bytes::from(bytes))
            }
        }
    }
}

/// `--expect`: `any`, `no-stream`, `exists` or a revision.
pub fn parse_expected_revision(text: &str) -> Result<ExpectedRevision, String> {
    match text {
        "any" => Ok(ExpectedRevision::Any),
        "no-stream" => Ok(ExpectedRevision::NoStream),
        "exists" => Ok(ExpectedRevision::Exists),
        _ => text.parse().map(ExpectedRevision::Exact).map_err(|_| {
            format!(
                "expected a revision (e.g. 4), 'any', 'no-stream' or 'exists', got '{text}' \
                 (`cairn stream info` shows a stream's revision)"
            )
        }),
    }
}

/// `--tag KEY=VALUE`: kept as the text itself (tags are strings, `key=value` by
/// convention), split only to check that the key is there.
pub fn parse_tag(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        None => Err(format!("expected KEY=VALUE, got '{text}' (no '=')")),
        Some(("", _)) => Err(format!("the tag key before '=' is empty in '{text}'")),
        Some(_) if text.len() > EVENT_TAG_BYTES_MAX => {
            Err(format!("a tag has at most {EVENT_TAG_BYTES_MAX} bytes, this one has {}", text.len()))
        }
        Some(_) => Ok(text.to_string()),
    }
}

/// `--as-of`: an RFC 3339 time in UTC, or milliseconds since the Unix epoch (a leading
/// `@`, as in `cairn consume --from @UNIX_MS`, is accepted too).
pub fn parse_as_of_ms(text: &str) -> Result<u64, String> {
    let expected = "expected an RFC 3339 time in UTC (e.g. 2026-03-01T00:00:00Z) \
                    or milliseconds since the Unix epoch (e.g. 1772323200000)";
    let digits = text.strip_prefix('@').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return digits.parse().map_err(|_| format!("'{text}' is too large; {expected}"));
    }
    let time = humantime::parse_rfc3339(text).map_err(|error| format!("'{text}': {error}; {expected}"))?;
    let since_epoch = time.duration_since(UNIX_EPOCH).map_err(|_| format!("'{text}' is before 1970; {expected}"))?;
    u64::try_from(since_epoch.as_millis()).map_err(|_| format!("'{text}' is too far in the future; {expected}"))
}

/// `--data`: `@PATH` names a file (read when the command runs), anything else is the data.
pub fn parse_data(text: &str) -> Result<DataArg, String> {
    match text.strip_prefix('@') {
        Some("") => Err("'@' must be followed by a file path, e.g. --data @event.json".to_string()),
        Some(path) => Ok(DataArg::File(PathBuf::from(path))),
        None => Ok(DataArg::Inline(text.to_string())),
    }
}

/// `--event-id`: a UUID.
pub fn parse_event_id_arg(text: &str) -> Result<[u8; 16], String> {
    parse_event_id(text)
        .ok_or_else(|| format!("'{text}' is not a UUID (expected e.g. 67e55044-10b1-426f-9247-bb680e5fe0c8)"))
}

/// `--max-age`: a humantime duration (`30d`, `12h`, `90s`) or plain milliseconds. Zero
/// (or less than a millisecond) is refused: it would hide every event at once, which is
/// what `cairn stream delete` is for.
pub fn parse_max_age_ms(text: &str) -> Result<u64, String> {
    let expected = "expected a duration (e.g. 30d, 12h, 90s) or milliseconds (e.g. 60000)";
    let max_age_ms = if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().map_err(|_| format!("'{text}' is too large; {expected}"))?
    } else {
        let duration = humantime::parse_duration(text).map_err(|error| format!("'{text}': {error}; {expected}"))?;
        u64::try_from(duration.as_millis()).map_err(|_| format!("'{text}' is too long; {expected}"))?
    };
    if max_age_ms == 0 {
        return Err(format!(
            "a max age of '{text}' would hide every event; give at least 1ms, \
             or delete the stream's events with `cairn stream delete`"
        ));
    }
    Ok(max_age_ms)
}

/// `--max-count`: at least 1. Zero would hide every event, which is what
/// `cairn stream delete` is for (and says so).
pub fn parse_max_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("a max count of 0 would hide every event; give at least 1, \
                      or delete the stream's events with `cairn stream delete`"
            .to_string()),
        Ok(max_count) => Ok(max_count),
        Err(_) => Err(format!("expected a number of events (e.g. 100), got '{text}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_takes_every_form() {
        assert_eq!(parse_expected_revision("any"), Ok(ExpectedRevision::Any));
        assert_eq!(parse_expected_revision("no-stream"), Ok(ExpectedRevision::NoStream));
        assert_eq!(parse_expected_revision("exists"), Ok(ExpectedRevision::Exists));
        assert_eq!(parse_expected_revision("0"), Ok(ExpectedRevision::Exact(0)));
        assert_eq!(parse_expected_revision("18446744073709551615"), Ok(ExpectedRevision::Exact(u64::MAX)));
        for bad in ["", "-1", "Any", "no_stream", "1.5", "18446744073709551616", " 3"] {
            let error = parse_expected_revision(bad).expect_err(bad);
            assert!(error.contains("'no-stream'"), "{bad}: {error}");
        }
    }

    #[test]
    fn max_age_takes_durations_and_milliseconds() {
        assert_eq!(parse_max_age_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_max_age_ms("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_max_age_ms("90s"), Ok(90_000));
        assert_eq!(parse_max_age_ms("1h 30m"), Ok(5_400_000));
        assert_eq!(parse_max_age_ms("250ms"), Ok(250));
        assert_eq!(parse_max_age_ms("60000"), Ok(60_000));
        for zero in ["0", "0s", "0d", "500us"] {
            let error = parse_max_age_ms(zero).expect_err(zero);
            assert!(error.contains("would hide every event"), "{zero}: {error}");
        }
        for bad in ["", "soon", "-5s", "30 days ago", "1.5", "18446744073709551616"] {
            let error = parse_max_age_ms(bad).expect_err(bad);
            assert!(error.contains("expected a duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn max_count_is_a_positive_number() {
        assert_eq!(parse_max_count("1"), Ok(1));
        assert_eq!(parse_max_count("100"), Ok(100));
        assert!(parse_max_count("0").expect_err("zero").contains("would hide every event"));
        for bad in ["", "-1", "ten", "1e3"] {
            let error = parse_max_count(bad).expect_err(bad);
            assert!(error.contains("expected a number of events"), "{bad}: {error}");
        }
    }
}
