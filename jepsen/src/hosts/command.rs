//! Running the system tools the hosts are built with (`ip`, `nft`, `mount`, `kill`). Each
//! call is short (milliseconds) and blocking: the suite calls them rarely, from the nemesis
//! and from set-up, never on a client's path.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Context;

/// Runs `program args...`; its stdout, or an error naming the command and its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    run_with_input(program, args, None)
}

/// Like `run`, with `input` written to the command's stdin (an `nft -f -` script).
pub(crate) fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is it installed and on PATH?)"))?;
    if let Some(input) = input {
        // The scripts are a few hundred bytes: far below a pipe's buffer, so writing all of
        // it before reading the output cannot deadlock.
        let mut stdin = child.stdin.take().context("stdin of the child")?;
        stdin.write_all(input.as_bytes()).with_context(|| format!("writing the input of {program}"))?;
    }
    let output = child.wait_with_output().with_context(|| format!("waiting for {program}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command whose failure is expected at times (removing what may not exist).
pub(crate) fn run_ignoring_failure(program: &str, args: &[&str]) {
    let _ = run(program, args);
}

/// Sends `signal` ("KILL", "STOP", "CONT") to `pid`. The caller must still hold the
/// process's unreaped `Child`, so that the pid cannot have been reused.
pub(crate) fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    run("kill", &[&format!("-{signal}"), &pid.to_string()]).map(drop)
}

/// Whether this process runs as root (namespaces, mounts and nftables need it).
pub(crate) fn is_root() -> bool {
    run("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0")
}
