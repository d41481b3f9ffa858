//! The kinds of fault, as named on the command line (`kill,pause,partition` or `all`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NemesisKind {
    /// SIGKILL a leader, a random node or a majority; restart them.
    Kill,
    /// SIGSTOP a leader or a random node; SIGCONT it.
    Pause,
    /// Cut nodes off from each other (one node, halves, or two halves sharing a node).
    Partition,
    /// Drop a share of the packets between nodes at random.
    Loss,
    /// Skew and jump nodes' wall clocks.
    Clock,
    /// Fill a node's disk.
    Disk,
    /// Cut the power of a node, a minority or all: unsynced writes are lost.
    Power,
    /// Join, decommission, move replicas and transfer leaders under load.
    Membership,
}

impl NemesisKind {
    pub const ALL: [NemesisKind; 8] = [
        NemesisKind::Kill,
        NemesisKind::Pause,
        NemesisKind::Partition,
        NemesisKind::Loss,
        NemesisKind::Clock,
        NemesisKind::Disk,
        NemesisKind::Power,
        NemesisKind::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Loss => "loss",
            NemesisKind::Clock => "clock",
            NemesisKind::Disk => "disk",
            NemesisKind::Power => "power",
            NemesisKind::Membership => "membership",
        }
    }

    /// Parses a comma-separated list (`all` means every kind); duplicates are dropped,
    /// the order kept (it matters: the seed picks kinds by position).
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<NemesisKind>> {
        let mut kinds = Vec::new();
        for word in list.split(',').map(str::trim).filter(|word| !word.is_empty()) {
            let parsed: Vec<NemesisKind> = if word == "all" { NemesisKind::ALL.to_vec() } else { vec![word.parse()?] };
            for kind in parsed {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        Ok(kinds)
    }
}

impl fmt::Display for NemesisKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NemesisKind {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> anyhow::Result<NemesisKind> {
        NemesisKind::ALL.into_iter().find(|kind| kind.name() == name).ok_or_else(|| {
            let known: Vec<&str> = NemesisKind::ALL.iter().map(|kind| kind.name()).collect();
            anyhow::anyhow!("unknown nemesis {name:?}; known: {}, all", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_with_all_and_without_duplicates() {
        assert_eq!(
            NemesisKind::parse_list("kill, pause,kill").expect("parse"),
            vec![NemesisKind::Kill, NemesisKind::Pause]
        );
        assert_eq!(NemesisKind::parse_list("all").expect("parse"), NemesisKind::ALL.to_vec());
        assert!(NemesisKind::parse_list("kill,meteor").is_err());
        assert!(NemesisKind::parse_list("").expect("parse").is_empty());
    }
}
