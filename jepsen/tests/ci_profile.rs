//! The CI profile of the fault-injection suite: every nemesis and every workload, in short
//! runs against real nodes in network namespaces (see `jepsen/README.md`). Needs root,
//! `ip`, `nft`, `faketime` and `/dev/fuse`: without them it fails, saying what is missing,
//! rather than passing without having run. `CAIRN_JEPSEN_SEED` replays a run's schedule.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's target directory: this test binary is in `<target>/debug/deps/`.
fn target_debug_dir() -> PathBuf {
    let me = std::env::current_exe().expect("test executable path");
    me.parent().and_then(Path::parent).expect("target/debug").to_owned()
}

fn require(what: &str, present: bool) {
    assert!(present, "the fault-injection suite needs {what}; install it (.ci/run does) or run as root");
}

#[test]
fn the_ci_profile_finds_no_violation() {
    require("root (network namespaces, nftables, mounts)", is_root());
    for tool in ["ip", "nft", "faketime", "fusermount3"] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).status().is_ok_and(|s| s.success());
        require(&format!("`{tool}`"), found);
    }
    require("/dev/fuse", Path::new("/dev/fuse").exists());

    // The node and fault file system binaries, built by the workspace's test build into
    // the same target directory (cairn-server's tests need the one, cairn-faultfs's the
    // other).
    let debug = target_debug_dir();
    for binary in ["cairn", "cairn-faultfs"] {
        let path = debug.join(binary);
        assert!(path.exists(), "no {} (build the workspace: cargo test --workspace --no-run)", path.display());
    }
    // Only the last CI run's files are kept: the target directory outlives runs.
    let out = debug.join("jepsen-ci");
    if out.exists()
        && let Err(error) = std::fs::remove_dir_all(&out)
    {
        eprintln!("could not remove the previous run's files in {}: {error}", out.display());
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn-jepsen"));
    command
        .args(["--profile", "ci", "--out"])
        .arg(&out)
        .arg("--binary")
        .arg(debug.join("cairn"))
        .arg("--faultfs-binary")
        .arg(debug.join("cairn-faultfs"));
    if let Ok(seed) = std::env::var("CAIRN_JEPSEN_SEED") {
        command.args(["--seed", &seed]);
    }
    let status = command.status().expect("run cairn-jepsen");
    assert!(
        status.success(),
        "the fault-injection suite found a violation or could not run; runs are in {}",
        out.display()
    );
}

/// Whether this process runs as root (uid 0), read from /proc (no unsafe libc call).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|line| line.starts_with("Uid:")).map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
