//! Runs real `cairn` node processes for the integration tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_cairn");

/// Timeouts short enough for a quick restart of a one-node cluster.
pub const FAST_RAFT: [&str; 6] =
    ["--heartbeat-interval-ms", "100", "--election-timeout-min-ms", "300", "--election-timeout-max-ms", "600"];

pub struct Node {
    child: Child,
    pub address: String,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
}

impl Node {
    /// Starts `cairn serve` on `data_dir` and a free loopback port; returns once it listens.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Node {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let (child, address) = spawn(data_dir, &extra_args);
        Node { child, address, data_dir: data_dir.to_owned(), extra_args }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        let (child, address) = spawn(&self.data_dir, &self.extra_args);
        self.child = child;
        self.address = address;
    }

    /// Runs a client command of the binary against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut command = Command::new(BINARY);
        command.args(args).env("CAIRN_SERVER", &self.address);
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn cairn client");
        // Feed stdin from another thread while this one drains stdout: writing it all first
        // deadlocks once the child's output fills its pipe.
        let feeder = stdin.map(|input| {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            let input = input.to_vec();
            std::thread::spawn(move || pipe.write_all(&input))
        });
        let output = child.wait_with_output().expect("client output");
        if let Some(feeder) = feeder {
            feeder.join().expect("stdin feeder").expect("write stdin");
        }
        output
    }

    /// Like `cli`, but the command must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert_success(args, &output);
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn assert_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "cairn {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn spawn(data_dir: &Path, extra_args: &[String]) -> (Child, String) {
    let log_path = data_dir.with_extension("log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open node log");
    let mut child = Command::new(BINARY)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra_args)
        .env("CAIRN_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cairn serve");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.split("listening on ").nth(1) {
                let _ = sender.send(address.trim().to_owned());
            }
        }
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(address) => (child, address),
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("cairn serve did not start within 60 s; its log:\n{log}");
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The seed of a randomized test: `CAIRN_TEST_SEED` if set, else fresh. Printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("CAIRN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("seed: {seed} (replay with CAIRN_TEST_SEED={seed})");
    seed
}
