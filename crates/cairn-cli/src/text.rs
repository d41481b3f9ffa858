//! How bytes and times read in table output.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// UTF-8 text with control characters escaped (one record stays on one line), or
/// `b64:...` when the bytes are not UTF-8.
pub fn bytes_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
        }
        Err(_) => format!("b64:{}", BASE64.encode(bytes)),
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn timestamp_text(timestamp_ms: u64) -> String {
    const MS_PER_DAY: u64 = 86_400_000;
    let days = timestamp_ms / MS_PER_DAY;
    let ms_of_day = timestamp_ms % MS_PER_DAY;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (second, ms) = (ms_of_day / 1_000 % 60, ms_of_day % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{ms:03}Z")
}

/// A duration in milliseconds as humantime writes durations, but in days at most
/// (`30d 12h`, `90s`, `1s 500ms`): humantime's own months and years are 30.44 and 365.25
/// days, which turns a round `31d` into `1month 13h 29m 24s`. `--max-age` reads it back.
pub fn duration_text(duration_ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
    if duration_ms == 0 {
        return "0s".to_string();
    }
    let mut remaining_ms = duration_ms;
    let mut parts = Vec::new();
    for (unit_ms, unit) in UNITS {
        if remaining_ms >= unit_ms {
            parts.push(format!("{}{unit}", remaining_ms / unit_ms));
            remaining_ms %= unit_ms;
        }
    }
    parts.join(" ")
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_in_utc() {
        assert_eq!(timestamp_text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp_text(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(timestamp_text(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(timestamp_text(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
    }

    #[test]
    fn durations_render_in_days_at_most_and_parse_back() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(250), "250ms");
        assert_eq!(duration_text(90_000), "1m 30s");
        assert_eq!(duration_text(1_500), "1s 500ms");
        assert_eq!(duration_text(31 * 86_400_000), "31d");
        assert_eq!(duration_text(30 * 86_400_000 + 12 * 3_600_000), "30d 12h");
        assert_eq!(duration_text(400 * 86_400_000 + 1), "400d 1ms");
        for duration_ms in [1, 999, 61_001, 2_635_200_000, 34_560_000_000_123] {
            let parsed = humantime::parse_duration(&duration_text(duration_ms)).expect("humantime reads it");
            assert_eq!(parsed.as_millis(), u128::from(duration_ms));
        }
    }

    #[test]
    fn bytes_render_on_one_line() {
        assert_eq!(bytes_text(b"plain text"), "plain text");
        assert_eq!(bytes_text(b"a\nb\tc"), "a\\nb\\tc");
        assert_eq!(bytes_text("héllo".as_bytes()), "héllo");
        assert_eq!(bytes_text(&[0xff, 0x00, 0xfe]), "b64:/wD+");
    }
}
