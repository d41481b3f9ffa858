use std::str::FromStr;

use bytes::Bytes;

/// One `--header NAME=VALUE`: split at the first `=`, so the value may contain `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderArg {
    pub name: String,
    pub value: String,
}

impl HeaderArg {
    pub fn into_header(self) -> (String, Bytes) {
        (self.name, Bytes::from(self.value))
    }
}

impl FromStr for HeaderArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some(("", _)) => Err("the header name before '=' is empty".to_string()),
            Some((name, value)) => Ok(HeaderArg { name: name.to_string(), value: value.to_string() }),
            None => Err(format!("expected NAME=VALUE, got '{text}' (no '=')")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> HeaderArg {
        HeaderArg { name: name.to_string(), value: value.to_string() }
    }

    #[test]
    fn splits_at_the_first_equals_sign() {
        assert_eq!("trace=abc".parse(), Ok(header("trace", "abc")));
        assert_eq!("query=a=b".parse(), Ok(header("query", "a=b")));
        assert_eq!("empty=".parse(), Ok(header("empty", "")));
    }

    #[test]
    fn rejects_a_missing_equals_sign_or_name() {
        let error = "foo".parse::<HeaderArg>().expect_err("no '='");
        assert!(error.contains("NAME=VALUE"), "{error}");
        assert!("=value".parse::<HeaderArg>().is_err());
    }
}
