use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cairn_types::PartitionId;

/// Where a producer's appends were applied, per partition: `PARTITION:INDEX,...`.
/// `cairn produce --print-token` prints one; `cairn consume --token` waits until the replica
/// read has applied that far, so it sees those appends (read-your-writes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadToken(BTreeMap<PartitionId, u64>);

impl ReadToken {
    /// Records that an append to `partition` was applied at `applied_index`.
    pub fn advance(&mut self, partition: PartitionId, applied_index: u64) {
        let index = self.0.entry(partition).or_default();
        *index = (*index).max(applied_index);
    }

    /// The index a read of `partition` must wait for (0: no append of ours there).
    pub fn applied_index(&self, partition: PartitionId) -> u64 {
        self.0.get(&partition).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(partition, index)| format!("{partition}:{index}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for ReadToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected PARTITION:INDEX[,PARTITION:INDEX...], as printed by `cairn produce --print-token`";
        let mut token = ReadToken::default();
        for part in text.split(',').filter(|part| !part.is_empty()) {
            let (partition, index) = part.split_once(':').ok_or_else(|| format!("'{part}': {expected}"))?;
            let partition =
                partition.trim().parse().map_err(|_| format!("'{partition}' is not a partition; {expected}"))?;
            let index = index.trim().parse().map_err(|_| format!("'{index}' is not a log index; {expected}"))?;
            token.advance(partition, index);
        }
        if token.is_empty() {
            return Err(expected.to_string());
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        let mut token = ReadToken::default();
        token.advance(3, 15);
        token.advance(0, 12);
        token.advance(3, 9);
        assert_eq!(token.to_string(), "0:12,3:15");
        assert_eq!("0:12,3:15".parse::<ReadToken>(), Ok(token.clone()));
        assert_eq!(token.applied_index(3), 15);
        assert_eq!(token.applied_index(1), 0);
        assert!("".parse::<ReadToken>().is_err());
        assert!("0=12".parse::<ReadToken>().is_err());
        assert!("x:1".parse::<ReadToken>().is_err());
    }
}
