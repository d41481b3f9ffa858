//! The identity file of a data directory: which node and which cluster it belongs to, and
//! its format version. Written once, checked on every start, so a directory is never
//! started as another node or into another cluster.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

const IDENTITY_FILE: &str = "cairn-node.toml";
pub(crate) const DATA_FORMAT_VERSION: u32 = 1;

/// Written once into a new data directory; checked on every start.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NodeIdentity {
    pub node_id: u64,
    pub data_format_version: u32,
    /// The cluster this data belongs to: `single-node` or the canonical initial cluster.
    pub cluster: String,
}

/// The canonical description of the cluster a node forms or belongs to.
fn cluster_spec(initial_members: &BTreeMap<u64, String>) -> String {
    if initial_members.is_empty() {
        return "single-node".to_owned();
    }
    initial_members.iter().map(|(id, address)| format!("{id}={address}")).collect::<Vec<_>>().join(",")
}

/// Checks (or writes) the data directory's identity; returns the cluster it belongs to
/// (empty for a node that has not finished joining one).
pub(crate) fn check_identity(
    data_dir: &Path,
    node_id: u64,
    initial_members: &BTreeMap<u64, String>,
    joining: bool,
) -> anyhow::Result<String> {
    let cluster = if joining { String::new() } else { cluster_spec(initial_members) };
    let path = data_dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let identity: NodeIdentity =
                toml::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
            if identity.node_id != node_id {
                bail!(
                    "data directory {} belongs to node {}, not node {node_id}: use --node-id {} or another --data-dir",
                    data_dir.display(),
                    identity.node_id,
                    identity.node_id
                );
            }
            // Restarting without --initial-cluster is fine; naming another cluster is not.
            if !initial_members.is_empty() && identity.cluster != cluster {
                bail!(
                    "data directory {} belongs to cluster [{}], not [{cluster}]: starting it with another \
                     --initial-cluster could split the cluster; use a new --data-dir to form a new cluster",
                    data_dir.display(),
                    identity.cluster
                );
            }
            if identity.data_format_version != DATA_FORMAT_VERSION {
                bail!(
                    "data directory {} has format version {}; this build reads version {DATA_FORMAT_VERSION}",
                    data_dir.display(),
                    identity.data_format_version
                );
            }
            Ok(identity.cluster)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            write_identity(
                data_dir,
                &NodeIdentity { node_id, data_format_version: DATA_FORMAT_VERSION, cluster: cluster.clone() },
            )?;
            Ok(cluster)
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

pub(crate) fn write_identity(data_dir: &Path, identity: &NodeIdentity) -> anyhow::Result<()> {
    let text = toml::to_string(identity).context("encoding node identity")?;
    let temporary = data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, data_dir.join(IDENTITY_FILE))?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_written_then_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = BTreeMap::new();
        check_identity(dir.path(), 3, &none, false).expect("new directory");
        check_identity(dir.path(), 3, &none, false).expect("same node");
        let err = check_identity(dir.path(), 4, &none, false).expect_err("other node");
        assert!(err.to_string().contains("belongs to node 3"), "{err}");
        let cluster = BTreeMap::from([(3, "a:1".to_string())]);
        let err = check_identity(dir.path(), 3, &cluster, false).expect_err("another cluster");
        assert!(err.to_string().contains("belongs to cluster [single-node]"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let three = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string()), (3, "c:3".to_string())]);
        check_identity(dir.path(), 2, &three, false).expect("forms the cluster");
        check_identity(dir.path(), 2, &none, false).expect("restart without the flag");
        check_identity(dir.path(), 2, &three, false).expect("restart with the same flag");
        let other = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())]);
        assert!(check_identity(dir.path(), 2, &other, false).is_err(), "another --initial-cluster is refused");
    }
}
