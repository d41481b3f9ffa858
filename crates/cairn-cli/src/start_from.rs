use std::fmt;
use std::str::FromStr;

use cairn_client::StartPosition;
use cairn_types::Offset;

/// Where `consume --from` starts: `earliest`, `latest`, an offset, or `@UNIX_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
    Offset(Offset),
    /// The first record at or after this many milliseconds since the Unix epoch.
    Timestamp(u64),
}

impl StartFrom {
    pub fn to_start_position(self) -> StartPosition {
        match self {
            StartFrom::Earliest => StartPosition::Earliest,
            StartFrom::Latest => StartPosition::Latest,
            StartFrom::Offset(offset) => StartPosition::Offset(offset),
            StartFrom::Timestamp(timestamp_ms) => StartPosition::Timestamp(timestamp_ms),
        }
    }
}

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected 'earliest', 'latest', an offset (e.g. 42) or @UNIX_MS (e.g. @1700000000000)";
        match text {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            _ => match text.strip_prefix('@') {
                Some(timestamp) => timestamp.parse().map(StartFrom::Timestamp).map_err(|_| {
                    format!("'{timestamp}' is not a time in milliseconds since the Unix epoch; {expected}")
                }),
                None => text.parse().map(StartFrom::Offset).map_err(|_| expected.to_string()),
            },
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFrom::Earliest => f.write_str("earliest"),
            StartFrom::Latest => f.write_str("latest"),
            StartFrom::Offset(offset) => write!(f, "{offset}"),
            StartFrom::Timestamp(timestamp_ms) => write!(f, "@{timestamp_ms}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("earliest".parse(), Ok(StartFrom::Earliest));
        assert_eq!("latest".parse(), Ok(StartFrom::Latest));
        assert_eq!("0".parse(), Ok(StartFrom::Offset(0)));
        assert_eq!("18446744073709551615".parse(), Ok(StartFrom::Offset(u64::MAX)));
        assert_eq!("@1700000000000".parse(), Ok(StartFrom::Timestamp(1_700_000_000_000)));
    }

    #[test]
    fn rejects_bad_values_with_a_hint() {
        for bad in ["abc", "", "-1", "1.5", "Earliest", "@", "@abc", "@-5", " 3"] {
            let error = bad.parse::<StartFrom>().expect_err(bad);
            assert!(error.contains("expected 'earliest'"), "{bad}: {error}");
        }
    }

    #[test]
    fn display_round_trips() {
        for from in [StartFrom::Earliest, StartFrom::Latest, StartFrom::Offset(7), StartFrom::Timestamp(9)] {
            assert_eq!(from.to_string().parse(), Ok(from));
        }
    }
}
