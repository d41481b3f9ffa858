//! The run's report, for people and for scripts: `report.html`, one self-contained page
//! (inline SVG, no script, no external file, so it can be mailed or archived as is) with
//! the summary, each check's verdict with examples, and the timeline of throughput and
//! latency with the faults shaded; and `results.json`, the same summary and results.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::checker::{CheckResult, Validity};
use crate::history::{Call, Entry, FaultAction, Kind};

mod faults;
mod plot;

/// What a run was and how it went, at the top of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The workload's name, e.g. "queue".
    pub workload: String,
    /// The nemeses that ran, e.g. ["partition", "kill"].
    pub nemeses: Vec<String>,
    /// Replays the run.
    pub seed: u64,
    /// How long the clients ran (with faults), before the final phase.
    pub duration_s: f64,
    /// How many nodes the cluster had.
    pub nodes: usize,
    /// Client operations that completed `Ok`.
    pub operations_ok: u64,
    /// Client operations that completed `Fail` (definitely did not happen).
    pub operations_fail: u64,
    /// Client operations whose outcome is unknown (`Info`, or still running at the end).
    pub operations_info: u64,
    /// Faults injected (started), per nemesis name (`fault_counts`).
    pub faults: BTreeMap<String, u64>,
    /// Leadership changes seen over the run, all partitions together.
    pub leader_changes: u64,
    /// The checks' combined verdict (`checker::overall`).
    pub verdict: Validity,
    /// Anything else a reader should know (a node that failed to restart...).
    pub notes: Vec<String>,
}

/// Faults that were put in place (a `Start` that completed `Ok`), per nemesis name.
pub fn fault_counts(history: &[Entry]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in history {
        if let (Call::Fault { nemesis, action: FaultAction::Start, .. }, Kind::Ok) = (&entry.call, entry.kind) {
            *counts.entry(nemesis.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// The whole of `results.json`.
#[derive(Serialize)]
struct Results<'a> {
    summary: &'a Summary,
    results: &'a [CheckResult],
}

/// Writes `dir/report.html` and `dir/results.json` (creating `dir`).
pub fn write(
    dir: &Path,
    title: &str,
    summary: &Summary,
    history: &[Entry],
    results: &[CheckResult],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(&Results { summary, results })?;
    let path = dir.join("results.json");
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    let page = page(title, summary, history, results).context("rendering the report")?;
    let path = dir.join("report.html");
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Text made safe to put in HTML or SVG, as content or as a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; }
.valid { background: #c8f0c8; } .invalid { background: #f7c1c1; } .vacuous { background: #f5e6a8; }
ul { margin: 0; padding-left: 1.2em; } li { font-family: monospace; font-size: 12px; }
.counts { font-family: monospace; font-size: 12px; white-space: nowrap; }";

fn page(title: &str, summary: &Summary, history: &[Entry], results: &[CheckResult]) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let title = escape(title);
    writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>")?;
    writeln!(out, "<style>\n{STYLE}\n</style>\n</head>\n<body>\n<h1>{title}</h1>")?;
    let verdict = validity_name(summary.verdict);
    writeln!(out, "<p>Verdict: <strong class=\"{verdict}\">&nbsp;{verdict}&nbsp;</strong></p>")?;

    writeln!(out, "<h2>Summary</h2>\n<table>")?;
    let faults: Vec<String> = summary.faults.iter().map(|(nemesis, count)| format!("{nemesis}: {count}")).collect();
    let rows = [
        ("workload", summary.workload.clone()),
        ("nemeses", summary.nemeses.join(", ")),
        ("seed", summary.seed.to_string()),
        ("duration", format!("{:.1} s", summary.duration_s)),
        ("nodes", summary.nodes.to_string()),
        (
            "operations",
            format!("{} ok, {} fail, {} info", summary.operations_ok, summary.operations_fail, summary.operations_info),
        ),
        ("faults injected", faults.join(", ")),
        ("leader changes", summary.leader_changes.to_string()),
    ];
    for (name, value) in rows {
        writeln!(out, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value))?;
    }
    writeln!(out, "<tr><th>verdict</th><td class=\"{verdict}\">{verdict}</td></tr>")?;
    for note in &summary.notes {
        writeln!(out, "<tr><th>note</th><td>{}</td></tr>", escape(note))?;
    }
    writeln!(out, "</table>")?;

    writeln!(out, "<h2>Checks</h2>\n<table>")?;
    writeln!(out, "<tr><th>check</th><th>validity</th><th>errors</th><th>counts</th><th>examples</th></tr>")?;
    for result in results {
        let validity = validity_name(result.validity);
        let counts: Vec<String> =
            result.counts.iter().map(|(name, count)| format!("{}: {count}", escape(name))).collect();
        let examples: String =
            result.errors.iter().map(|error| format!("<li>{}</li>", escape(error))).collect::<Vec<_>>().join("");
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"{validity}\">{validity}</td><td class=\"num\">{}</td>\
             <td class=\"counts\">{}</td><td><ul>{examples}</ul></td></tr>",
            escape(&result.name),
            result.error_count,
            counts.join("<br>"),
        )?;
    }
    writeln!(out, "</table>")?;

    writeln!(out, "<h2>Throughput and latency</h2>")?;
    out.push_str(&plot::svg(history)?);

    writeln!(out, "<h2>Faults</h2>\n<table>\n<tr><th>nemesis</th><th>from</th><th>to</th><th>detail</th></tr>")?;
    for period in faults::fault_periods(history) {
        let until = period.end_ns.map_or("end of run".to_owned(), |end_ns| format!("{:.3} s", end_ns as f64 / 1e9));
        writeln!(
            out,
            "<tr><td>{}</td><td class=\"num\">{:.3} s</td><td class=\"num\">{until}</td><td>{}</td></tr>",
            escape(&period.nemesis),
            period.start_ns as f64 / 1e9,
            escape(&period.detail)
        )?;
    }
    writeln!(out, "</table>\n</body>\n</html>")?;
    Ok(out)
}

fn validity_name(validity: Validity) -> &'static str {
    match validity {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Vacuous => "vacuous",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::overall;
    use crate::history;
    use crate::history::{NEMESIS, Reply};

    /// A deterministic 60-second run: 8 client processes appending, with latency of a few
    /// ms, a partition from 20 s to 35 s during which one in three operations times out
    /// (info) after up to 2 s, a kill from 45 s to 50 s during which appends fail, a short
    /// pause at 10 s and a kill from 58 s that is never healed.
    fn synthetic_history(nemesis_name: &str) -> Vec<Entry> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut push = |time_ns: u64, process: u32, kind: Kind, call: &Call, reply: Option<Reply>| {
            entries.push(Entry { index: 0, time_ns, process, kind, call: call.clone(), reply });
        };
        let second = 1_000_000_000u64;
        let mut next_process = 8;
        for lane in 0..8u32 {
            let (mut process, mut time_ns, mut n) = (lane, random() % 10_000_000, 0);
            while time_ns < 60 * second {
                let call = Call::Append { node: 1, partition: lane % 3, value: format!("{lane}-{n}") };
                push(time_ns, process, Kind::Invoke, &call, None);
                let partitioned = (20 * second..35 * second).contains(&time_ns);
                let killed = (45 * second..50 * second).contains(&time_ns);
                let (kind, latency_ns) = if partitioned && random() % 3 == 0 {
                    (Kind::Info, 500_000_000 + random() % (1_500_000_000))
                } else if killed {
                    (Kind::Fail, 200_000 + random() % 2_000_000)
                } else {
                    (Kind::Ok, 1_000_000 + random() % 8_000_000 + if partitioned { 40_000_000 } else { 0 })
                };
                let reply = match kind {
                    Kind::Ok => Reply::Appended { offset: n, token: n },
                    _ => Reply::Error { code: "timeout".into(), message: "<slow & late>".into() },
                };
                push(time_ns + latency_ns, process, kind, &call, Some(reply));
                if kind == Kind::Info {
                    process = next_process;
                    next_process += 1;
                }
                time_ns += latency_ns + random() % 20_000_000;
                n += 1;
            }
        }
        let faults = [
            (nemesis_name, 20_000, 35_000),
            ("kill", 45_000, 50_000),
            ("pause", 10_000, 10_300),
            ("kill", 58_000, 70_000),
        ];
        for (nemesis, start_ms, heal_ms) in faults {
            let start = Call::Fault { nemesis: nemesis.into(), action: FaultAction::Start, detail: "n2".into() };
            push(start_ms * 1_000_000, NEMESIS, Kind::Invoke, &start, None);
            let done = Some(Reply::Done { detail: "n2 <-> n1".into() });
            push(start_ms * 1_000_000 + 30_000_000, NEMESIS, Kind::Ok, &start, done);
            if heal_ms <= 60_000 {
                let heal = Call::Fault { nemesis: nemesis.into(), action: FaultAction::Heal, detail: String::new() };
                push(heal_ms * 1_000_000, NEMESIS, Kind::Invoke, &heal, None);
                push(
                    heal_ms * 1_000_000 + 10_000_000,
                    NEMESIS,
                    Kind::Ok,
                    &heal,
                    Some(Reply::Done { detail: "ok".into() }),
                );
            }
        }
        entries.sort_by_key(|entry| entry.time_ns);
        for (index, entry) in entries.iter_mut().enumerate() {
            entry.index = index as u64;
        }
        entries
    }

    fn results() -> Vec<CheckResult> {
        let mut lost = CheckResult::new("lost");
        lost.count("appends-ok", 12);
        lost.error("partition 0 offset 3: value \"<b>\" acknowledged".into());
        let mut order = CheckResult::new("real-time-order");
        order.count("appends-compared", 11);
        vec![lost.finish(true), order.finish(true), CheckResult::new("linearizable-reads").finish(false)]
    }

    fn summary(history: &[Entry], results: &[CheckResult]) -> Summary {
        let operations = history::operations(history);
        let count = |kind: Kind| {
            let clients = operations.iter().filter(|operation| !matches!(operation.call, Call::Fault { .. }));
            clients.filter(|operation| operation.kind == kind).count() as u64
        };
        Summary {
            workload: "queue".into(),
            nemeses: vec!["partition".into(), "kill".into()],
            seed: 42,
            duration_s: 60.0,
            nodes: 3,
            operations_ok: count(Kind::Ok),
            operations_fail: count(Kind::Fail),
            operations_info: count(Kind::Info),
            faults: fault_counts(history),
            leader_changes: 4,
            verdict: overall(results),
            notes: vec!["node 3 took <12 s> to restart".into()],
        }
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn faults_are_counted_when_in_place() {
        let history = synthetic_history("partition");
        let expected = [("kill".into(), 2), ("partition".into(), 1), ("pause".into(), 1)];
        assert_eq!(fault_counts(&history), BTreeMap::from(expected));
    }

    /// Writes the report of a synthetic run; with `CAIRN_JEPSEN_REPORT_PREVIEW=dir` it goes
    /// to `dir` (to look at it in a browser) instead of a temporary directory.
    #[test]
    fn the_report_is_one_self_contained_escaped_page_and_a_json_file() {
        let history = synthetic_history("part<i>tion");
        let results = results();
        let summary = summary(&history, &results);
        let temporary = tempfile::tempdir().expect("tempdir");
        let dir = std::env::var_os("CAIRN_JEPSEN_REPORT_PREVIEW")
            .map_or_else(|| temporary.path().to_owned(), std::path::PathBuf::from);
        write(&dir, "Cairn <queue> & partitions", &summary, &history, &results).expect("writes the report");

        let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
        assert!(html.contains("<h1>Cairn &lt;queue&gt; &amp; partitions</h1>"));
        assert!(html.contains("node 3 took &lt;12 s&gt; to restart"));
        assert!(html.contains("value &quot;&lt;b&gt;&quot; acknowledged"));
        assert!(html.contains(">part&lt;i&gt;tion</text>"), "the nemesis is in the legend, escaped");
        assert!(!html.contains("part<i>tion") && !html.contains("<b>"));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
        assert_eq!(html.matches("<svg").count(), 1);
        assert_eq!(html.matches("fill-opacity=\"0.18\"").count(), 2 * 4, "four faults shaded in both panels");
        let dots = html.matches("r=\"1.6\"/>").count();
        assert!(dots > 5_000 && dots <= plot::DOTS_MAX, "{dots} latency dots");
        assert!(
            html.contains("<td class=\"invalid\">invalid</td>") && html.contains("<td class=\"vacuous\">vacuous</td>")
        );

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("results.json"))
                .expect("results.json is JSON");
        assert_eq!(json["summary"]["verdict"], "invalid");
        assert_eq!(json["summary"]["faults"]["kill"], 2);
        assert!(json["summary"]["operations_fail"].as_u64().is_some_and(|fail| fail > 10));
        assert_eq!(json["results"][0]["name"], "lost");
        assert_eq!(json["results"][0]["error_count"], 1);
    }

    #[test]
    fn a_large_history_draws_at_most_the_dot_budget() {
        let call = Call::Append { node: 1, partition: 0, value: "v".into() };
        let history: Vec<Entry> = (0..60_000u64)
            .flat_map(|n| {
                let (process, time_ns) = ((n % 50) as u32, n * 100_000);
                let reply = Reply::Appended { offset: n, token: n };
                [
                    Entry { index: 2 * n, time_ns, process, kind: Kind::Invoke, call: call.clone(), reply: None },
                    Entry {
                        index: 2 * n + 1,
                        time_ns: time_ns + 50_000,
                        process,
                        kind: Kind::Ok,
                        call: call.clone(),
                        reply: Some(reply),
                    },
                ]
            })
            .collect();
        let svg = plot::svg(&history).expect("renders");
        assert_eq!(svg.matches("r=\"1.6\"/>").count(), plot::DOTS_MAX);
    }
}
