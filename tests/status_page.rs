//! The status page as a browser renders it: headless Chromium loads `/` from a node of a
//! real three-node cluster and the test reads the DOM it built (partitions with their
//! leaders, nodes live or down), kills the leader of a partition and waits for the rendered
//! page to show the new leader and the node down.
//!
//! Needs Chromium (Debian `chromium`, which `.ci/run` installs; or `CAIRN_TEST_CHROMIUM`
//! naming a binary). Without it the test fails, unless `CAIRN_TEST_SKIP_BROWSER=1`, which
//! makes it print SKIP and pass. `CAIRN_TEST_SCREENSHOT=path.png` also saves a screenshot
//! of the page as first rendered (how `deploy/status-page.png` is made).

mod harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Cluster, FAST_RAFT, wait_until};

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CAIRN_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs Chromium headless on `url` with `args`; its stdout. Killed after 60 s.
fn run_chromium(chromium: &PathBuf, url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Lets the page's scripts run (and its first refresh complete) before the dump.
        .arg("--virtual-time-budget=3000")
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).expect("chromium output"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("chromium status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("reader")
}

/// The value of `attribute="..."` in `element`'s opening tag, if there.
fn attribute<'a>(element: &'a str, attribute: &str) -> Option<&'a str> {
    let start = element.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    element[start..].split('"').next()
}

/// What the rendered DOM shows: each partition of `topic` with its leader ("none" if
/// none), and each node with whether it is live.
fn rendered(dom: &str, topic: &str) -> (BTreeMap<u32, String>, BTreeMap<u64, bool>) {
    let mut partitions = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    for element in dom.split("<tr ").skip(1) {
        let tag = element.split('>').next().unwrap_or_default();
        if attribute(tag, "data-topic") == Some(topic)
            && let (Some(partition), Some(leader)) = (attribute(tag, "data-partition"), attribute(tag, "data-leader"))
        {
            partitions.insert(partition.parse().expect("partition number"), leader.to_owned());
        }
        if let (Some(node), Some(live)) = (attribute(tag, "data-node"), attribute(tag, "data-live")) {
            nodes.insert(node.parse().expect("node id"), live == "true");
        }
    }
    (partitions, nodes)
}

#[test]
fn the_status_page_shows_leaders_and_follows_a_failover() {
    let Some(chromium) = chromium() else {
        if std::env::var("CAIRN_TEST_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!(
                "SKIP the_status_page_shows_leaders_and_follows_a_failover: no chromium (CAIRN_TEST_SKIP_BROWSER=1)"
            );
            return;
        }
        panic!(
            "this test needs Chromium: install Debian's `chromium` (as .ci/run does) or set CAIRN_TEST_CHROMIUM; \
             CAIRN_TEST_SKIP_BROWSER=1 skips it"
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3, &FAST_RAFT);
    cluster.nodes[0].cli_ok(&["topic", "create", "pages", "--partitions", "3", "--replication-factor", "3"]);
    let output = cluster.nodes[0].cli_with_stdin(&["produce", "pages"], Some(b"a\nb\nc\n"));
    harness::assert_success(&["produce", "pages"], &output);
    // A consumer group that consumed the three records and left: the page lists it.
    let consume = ["consume", "pages", "--group", "viewers", "--max", "3"];
    harness::assert_success(&consume, &cluster.nodes[0].cli_with_stdin(&consume, None));

    // Rendered from node 1: every partition with a leader, every node live.
    let url = |node: &harness::Node| format!("http://{}/", node.http_address.as_deref().expect("HTTP"));
    let mut view = (BTreeMap::new(), BTreeMap::new());
    wait_until("the page shows 3 partitions with leaders, 3 live nodes and the group", Duration::from_secs(60), || {
        let dom = run_chromium(&chromium, &url(&cluster.nodes[0]), &["--dump-dom"]);
        view = rendered(&dom, "pages");
        dom.contains("data-group=\"viewers\"")
            && view.0.len() == 3
            && view.0.values().all(|leader| leader != "none")
            && view.1.values().filter(|live| **live).count() == 3
    });
    if let Ok(path) = std::env::var("CAIRN_TEST_SCREENSHOT") {
        run_chromium(&chromium, &url(&cluster.nodes[0]), &[&format!("--screenshot={path}"), "--window-size=1100,760"]);
        eprintln!("screenshot saved at {path}");
    }

    // Kill the leader of partition 0 and watch the page of another node follow.
    let leader: u64 = view.0[&0].parse().expect("a leader id");
    let observer = (0..3).find(|i| *i + 1 != leader as usize).expect("another node");
    cluster.nodes[leader as usize - 1].kill();
    wait_until("the page shows a new leader for partition 0 and the old one down", Duration::from_secs(60), || {
        let (partitions, nodes) =
            rendered(&run_chromium(&chromium, &url(&cluster.nodes[observer]), &["--dump-dom"]), "pages");
        let new_leader = partitions.get(&0).and_then(|l| l.parse::<u64>().ok());
        nodes.get(&leader) == Some(&false) && new_leader.is_some_and(|new| new != leader)
    });
}
