//! One `cairn serve` process in its host's network namespace: started, killed, paused and
//! restarted by the nemeses.
//!
//! It runs as `ip netns exec NS env VARS... cairn serve ...`. Both `ip netns exec` and
//! `env` exec what follows (no fork), so the spawned child's pid is the node's own pid:
//! SIGKILL and SIGSTOP reach the node, not a wrapper (the host tests check
//! `/proc/PID/exe`). `env` sets the preload for the node alone, not for `ip`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::command::signal;

/// How long a node may take from spawn to its "listening on" line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Written to the node's log before each start.
const START_MARKER: &str = "=== cairn-jepsen: start";
/// Log lines of a node shown in an error about it.
const LOG_TAIL_LINES: usize = 30;

/// How to run one node. Everything but the process survives restarts.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: u64,
    pub binary: PathBuf,
    /// The network namespace to run in.
    pub namespace: String,
    /// `host:port` it listens on, which is also how the others and the clients reach it.
    pub address: String,
    pub data_dir: PathBuf,
    /// Its stderr (the node's log) is appended here, across restarts.
    pub log: PathBuf,
    /// Arguments after `serve --node-id --listen --data-dir`: `--initial-cluster` or
    /// `--join`, and the Raft timeouts.
    pub args: Vec<String>,
    /// Environment of the node process alone (`CAIRN_LOG`, libfaketime's variables).
    pub env: Vec<(String, String)>,
}

pub struct Node {
    options: NodeOptions,
    child: Option<Child>,
    paused: bool,
    starts: u64,
    last_exit: Option<ExitStatus>,
}

impl Node {
    /// A node not started yet.
    pub fn new(options: NodeOptions) -> Node {
        Node { options, child: None, paused: false, starts: 0, last_exit: None }
    }

    pub fn id(&self) -> u64 {
        self.options.id
    }

    pub fn address(&self) -> &str {
        &self.options.address
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.options.log
    }

    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Starts the process; returns once it listens. An error if it already runs.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let listening = self.spawn()?;
        self.wait_listening(listening).await
    }

    /// Kills the process if it runs, then starts it again on the same data directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.start().await
    }

    /// Launches the process without waiting; pass the result to `wait_listening` (a
    /// cluster's first nodes must all be launched before any of them listens).
    pub fn spawn(&mut self) -> anyhow::Result<tokio::sync::oneshot::Receiver<String>> {
        anyhow::ensure!(!self.is_running(), "node {} already runs (pid {:?})", self.id(), self.pid());
        let options = &self.options;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.log)
            .with_context(|| format!("opening {}", options.log.display()))?;
        self.starts += 1;
        writeln!(log, "{START_MARKER} {} of node {} ===", self.starts, options.id)?;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &options.namespace, "env"]);
        command.args(options.env.iter().map(|(name, value)| format!("{name}={value}")));
        command
            .arg(&options.binary)
            .arg("serve")
            .args(["--node-id", &options.id.to_string(), "--listen", &options.address])
            .arg("--data-dir")
            .arg(&options.data_dir)
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().with_context(|| format!("spawning node {}", options.id))?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // Reads stdout to its end, so that the node never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listening on ").nth(1)
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(address.trim().to_owned());
                }
            }
        });
        self.child = Some(child);
        self.paused = false;
        Ok(receiver)
    }

    /// Waits for a spawned node's "listening on" line.
    pub async fn wait_listening(&mut self, listening: tokio::sync::oneshot::Receiver<String>) -> anyhow::Result<()> {
        match tokio::time::timeout(START_TIMEOUT, listening).await {
            Ok(Ok(_address)) => Ok(()),
            Ok(Err(_closed)) => {
                // Its stdout closed: the process ended.
                let status = self.child.as_mut().and_then(|child| child.wait().ok());
                self.child = None;
                self.last_exit = status;
                anyhow::bail!(
                    "node {} exited ({status:?}) before listening; its log ends:\n{}",
                    self.id(),
                    self.log_tail()
                )
            }
            Err(_elapsed) => {
                let _ = self.kill();
                anyhow::bail!(
                    "node {} did not listen within {START_TIMEOUT:?}; its log ends:\n{}",
                    self.id(),
                    self.log_tail()
                )
            }
        }
    }

    /// SIGKILL (no shutdown, no flush) and wait; nothing if it is not running.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            self.paused = false;
            // SIGKILL ends a stopped process too.
            child.kill().with_context(|| format!("killing node {}", self.options.id))?;
            self.last_exit = Some(child.wait().with_context(|| format!("waiting for node {}", self.options.id))?);
        }
        Ok(())
    }

    /// SIGSTOP: the node freezes with its connections open.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        let pid = self.live_pid()?;
        signal(pid, "STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let pid = self.live_pid()?;
        signal(pid, "CONT")?;
        self.paused = false;
        Ok(())
    }

    /// Whether the process is alive (paused counts as alive). Reaps it if it ended.
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.child = None;
                self.paused = false;
                false
            }
            // Cannot tell: treat it as alive, a later kill reaps it.
            Err(_) => true,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The node process's id (the node itself, not a wrapper), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the process last ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// What the current (or last) process logged: the log after the last start marker.
    pub fn log_of_this_start(&self) -> String {
        let log = std::fs::read_to_string(&self.options.log).unwrap_or_default();
        match log.rfind(START_MARKER) {
            Some(at) => log[at..].to_owned(),
            None => log,
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.options.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn live_pid(&mut self) -> anyhow::Result<u32> {
        anyhow::ensure!(self.is_running(), "node {} is not running", self.options.id);
        self.pid().context("no pid")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
