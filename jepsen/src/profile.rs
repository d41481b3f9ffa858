//! Profiles: fixed lists of mixes (a workload under some nemeses). `ci` covers every
//! nemesis and every workload at least once in about eight minutes; `long` runs the same
//! mixes for ten minutes each, by hand.

use std::time::Duration;

use crate::nemesis::NemesisKind;
use crate::workload::WorkloadKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Short runs of every mix, for CI.
    Ci,
    /// Ten minutes per mix.
    Long,
}

/// One mix of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
}

impl Profile {
    /// How long each mix's client phase lasts.
    pub fn time(self) -> Duration {
        match self {
            Profile::Ci => Duration::from_secs(30),
            Profile::Long => Duration::from_secs(600),
        }
    }

    pub fn mixes(self) -> Vec<Mix> {
        use NemesisKind::*;
        use WorkloadKind::*;
        let mix = |workload, nemeses: &[NemesisKind]| Mix { workload, nemeses: nemeses.to_vec() };
        vec![
            mix(Queue, &[Kill]),
            mix(Queue, &[Partition]),
            mix(Queue, &[Pause]),
            mix(Queue, &[Loss, Clock]),
            mix(Queue, &[Power]),
            mix(Queue, &[Disk]),
            mix(Queue, &[Membership]),
            mix(Producer, &[Kill, Partition]),
            mix(Streams, &[Kill, Partition, Pause]),
            mix(Groups, &[Kill, Partition]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ci_profile_covers_every_nemesis_and_workload() {
        let mixes = Profile::Ci.mixes();
        for kind in NemesisKind::ALL {
            assert!(mixes.iter().any(|mix| mix.nemeses.contains(&kind)), "{kind:?} is in no mix");
        }
        for workload in [WorkloadKind::Queue, WorkloadKind::Producer, WorkloadKind::Streams, WorkloadKind::Groups] {
            assert!(mixes.iter().any(|mix| mix.workload == workload), "{workload:?} is in no mix");
        }
    }
}
