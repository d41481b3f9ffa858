//! Runs real `cairn` node processes for the integration tests.

#![allow(dead_code)]

pub mod http;
pub mod latency_proxy;
pub mod workload;

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
    /// Where its HTTP listener (health, metrics, status page) serves: `host:port`, or
    /// `None` when it runs with `--http-listen off`. Nodes start with a free port for it.
    pub http_address: Option<String>,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Environment variables set for the node process (test hooks), kept across restarts.
    env: Vec<(String, String)>,
}

impl Node {
    /// Starts `cairn serve` on `data_dir` and a free loopback port; returns once it listens.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Node {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let (child, address, http_address) = spawn(data_dir, &extra_args, &[]);
        Node { child, address, http_address, data_dir: data_dir.to_owned(), extra_args, env: Vec::new() }
    }

    /// Starts `cairn serve` with exactly these arguments (besides `--data-dir`).
    pub fn start_with(data_dir: &Path, args: Vec<String>) -> Node {
        Node::start_with_env(data_dir, args, Vec::new())
    }

    /// Like `start_with`, with these environment variables set for the node process.
    pub fn start_with_env(data_dir: &Path, args: Vec<String>, env: Vec<(String, String)>) -> Node {
        let (child, address, http_address) = spawn(data_dir, &args, &env);
        Node { child, address, http_address, data_dir: data_dir.to_owned(), extra_args: args, env }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the process.
    pub fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Starts the node again on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        let (child, address, http_address) = spawn(&self.data_dir, &self.extra_args, &self.env);
        self.child = child;
        self.address = address;
        self.http_address = http_address;
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
        // `CAIRN_TEST_KEEP_LOGS=<dir>` keeps every node's log there (to debug a test).
        if let Ok(keep) = std::env::var("CAIRN_TEST_KEEP_LOGS") {
            let log = self.data_dir.with_extension("log");
            if let Some(name) = log.file_name() {
                let kept = Path::new(&keep).join(format!("{}-{}", std::process::id(), name.to_string_lossy()));
                let _ = std::fs::create_dir_all(&keep).and_then(|()| std::fs::copy(&log, kept));
            }
        }
        // A failing test shows what each node logged last.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- last lines of {} ---\n{tail}", self.data_dir.display());
        }
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

/// Free loopback ports, for nodes that must know each other's addresses before starting.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> =
        (0..count).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("address").port()).collect()
}

/// A cluster of real node processes formed with `--initial-cluster`.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(dir: &Path, size: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_with_env(dir, size, extra_args, &[])
    }

    /// Like `start`, with these environment variables set for every node process.
    pub fn start_with_env(dir: &Path, size: usize, extra_args: &[&str], env: &[(&str, &str)]) -> Cluster {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Cluster::start_with_node_env(dir, size, extra_args, |_| env.clone())
    }

    /// Like `start`, with the environment variables `env(i)` set for node `i + 1`.
    pub fn start_with_node_env(
        dir: &Path,
        size: usize,
        extra_args: &[&str],
        env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Cluster {
        let members: Vec<Member> = free_ports(size)
            .into_iter()
            .map(|port| Member { address: format!("127.0.0.1:{port}"), listen: format!("127.0.0.1:{port}") })
            .collect();
        Cluster::start_members(dir, &members, extra_args, env)
    }

    /// Starts node `i + 1` for each of `members` at once (a node waits for the others to
    /// elect leaders), known to the others at its `address` and listening on its `listen`
    /// address, with the environment variables `env(i)`. Each `Node::address` is its member
    /// address.
    pub fn start_members(
        dir: &Path,
        members: &[Member],
        extra_args: &[&str],
        env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Cluster {
        let spec: Vec<String> = members.iter().enumerate().map(|(i, m)| format!("{}={}", i + 1, m.address)).collect();
        let spec = spec.join(",");
        let children: Vec<_> = members
            .iter()
            .enumerate()
            .map(|(i, member)| {
                let data_dir = dir.join(format!("node{}", i + 1));
                let mut args: Vec<String> = vec![
                    "--node-id".into(),
                    (i + 1).to_string(),
                    "--initial-cluster".into(),
                    spec.clone(),
                    "--listen".into(),
                    member.listen.clone(),
                ];
                args.extend(extra_args.iter().map(|a| a.to_string()));
                let env = env(i);
                std::thread::spawn(move || Node::start_with_env(&data_dir, args, env))
            })
            .collect();
        let mut nodes: Vec<Node> = children.into_iter().map(|c| c.join().expect("node started")).collect();
        for (node, member) in nodes.iter_mut().zip(members) {
            node.address = member.address.clone();
        }
        Cluster { nodes }
    }
}

/// A node of a cluster to start: the address its peers know it by, and the one it listens on.
pub struct Member {
    pub address: String,
    pub listen: String,
}

/// Starts a node process; returns it with its gRPC and HTTP addresses once it listens.
fn spawn(data_dir: &Path, extra_args: &[String], env: &[(String, String)]) -> (Child, String, Option<String>) {
    let log_path = data_dir.with_extension("log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("open node log");
    let mut child = Command::new(BINARY)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(if extra_args.iter().any(|a| a == "--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
        // A free port for the HTTP listener, unless the test names one: its default (the
        // gRPC port + 1000) may be another test's port.
        .args(if extra_args.iter().any(|a| a == "--http-listen") {
            &[][..]
        } else {
            &["--http-listen", "127.0.0.1:0"][..]
        })
        .args(extra_args)
        // `CAIRN_TEST_NODE_LOG` sets the nodes' log filter (to debug a test).
        .env("CAIRN_LOG", std::env::var("CAIRN_TEST_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn cairn serve");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // The node prints its HTTP address (if it serves HTTP) before its gRPC one.
        let mut http_address = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.split("serving HTTP on ").nth(1) {
                http_address = Some(address.trim().to_owned());
            }
            if let Some(address) = line.split("listening on ").nth(1) {
                let _ = sender.send((address.trim().to_owned(), http_address.take()));
            }
        }
    });
    match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok((address, http_address)) => (child, address, http_address),
        Err(_) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("cairn serve did not start within 60 s; its log:\n{log}");
        }
    }
}

/// Every record a node serves of `topic`/`partition` (local reads, up to its high
/// watermark), in offset order.
pub async fn read_partition(
    client: &cairn_client::CairnClient,
    topic: &str,
    partition: u32,
) -> Vec<cairn_types::StoredRecord> {
    let mut records = Vec::new();
    let mut from = 0;
    loop {
        let read = client.read(topic, partition, from, 0, 0, 0).await.expect("read");
        records.extend(read.records);
        if read.next_offset >= read.high_watermark {
            return records;
        }
        assert!(read.next_offset > from, "reads make progress");
        from = read.next_offset;
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
