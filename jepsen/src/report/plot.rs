//! The report's timeline, as Jepsen draws it: completed operations per second (one line per
//! outcome) above the latency of every operation (one dot each, log scale), over seconds
//! since the run started, with each fault's period shaded across both, so that a person sees
//! at a glance what each fault did to the cluster. Hand-written SVG: no dependency, no
//! script, no font file.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::escape;
use super::faults::{FaultPeriod, fault_periods};
use crate::history::{self, Call, Entry, Kind};

/// At most this many latency dots are drawn; more make the page slow and show no more.
pub(crate) const DOTS_MAX: usize = 20_000;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const LEGEND_ROW: f64 = 20.0;
const THROUGHPUT_HEIGHT: f64 = 220.0;
const LATENCY_HEIGHT: f64 = 300.0;
/// Room above a panel for its title and below it for the tick labels.
const PANEL_GAP: f64 = 60.0;

/// The outcomes in drawing order (ok first, so that the rarer ones stay visible on top).
const OUTCOMES: [(Kind, &str, &str); 3] =
    [(Kind::Ok, "ok", "#1f77b4"), (Kind::Info, "info", "#ff9f1c"), (Kind::Fail, "fail", "#d62728")];
/// Nemesis shading colours, by the nemesis's rank in name order.
const NEMESIS_COLOURS: [&str; 8] =
    ["#9467bd", "#8c564b", "#2ca02c", "#7f7f7f", "#17becf", "#e377c2", "#bcbd22", "#ff7f0e"];

/// One latency dot: when the operation was invoked (s), its latency (ms), its outcome.
type Dot = (f64, f64, Kind);

/// The timeline as an `<svg>` element.
pub(crate) fn svg(history: &[Entry]) -> Result<String, std::fmt::Error> {
    let end_s = (history.iter().map(|entry| entry.time_ns).max().unwrap_or(0) as f64 / 1e9).max(1.0);
    let x = |seconds: f64| LEFT + seconds / end_s * PLOT_WIDTH;
    let periods = fault_periods(history);
    let mut nemeses: Vec<&str> = periods.iter().map(|period| period.nemesis.as_str()).collect();
    nemeses.sort_unstable();
    nemeses.dedup();
    let colour = |nemesis: &str| {
        let rank = nemeses.iter().position(|name| *name == nemesis).unwrap_or(0);
        NEMESIS_COLOURS[rank % NEMESIS_COLOURS.len()]
    };

    let mut out = String::new();
    let (legend, legend_height) = legend(&nemeses, &colour)?;
    let throughput_top = legend_height + PANEL_GAP / 2.0;
    let latency_top = throughput_top + THROUGHPUT_HEIGHT + PANEL_GAP;
    let height = latency_top + LATENCY_HEIGHT + PANEL_GAP;
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    )?;
    out.push_str(&legend);

    // Throughput: completions per one-second bucket, per outcome.
    let buckets = end_s.ceil() as usize;
    let mut rates: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for entry in history.iter().filter(|entry| entry.kind != Kind::Invoke && !is_fault(&entry.call)) {
        let bucket = ((entry.time_ns / 1_000_000_000) as usize).min(buckets - 1);
        rates.entry(outcome(entry.kind).1).or_insert_with(|| vec![0; buckets])[bucket] += 1;
    }
    // The last bucket is cut short by the end of the run: its rate is over its true width,
    // and it is left out when too short to say anything.
    let width = |bucket: usize| (end_s - bucket as f64).min(1.0);
    let drawn = |bucket: usize| width(bucket) >= 0.5;
    let rate = |bucket: usize, count: u64| count as f64 / width(bucket);
    let rate_max = rates
        .values()
        .flat_map(|counts| counts.iter().enumerate().filter(|(bucket, _)| drawn(*bucket)))
        .map(|(bucket, count)| rate(bucket, *count))
        .fold(1.0, f64::max);
    let rate_step = nice_step(rate_max / 5.0);
    let rate_top = (rate_max / rate_step).ceil() * rate_step;
    let y_rate = |rate: f64| throughput_top + THROUGHPUT_HEIGHT - rate / rate_top * THROUGHPUT_HEIGHT;
    panel(&mut out, throughput_top, THROUGHPUT_HEIGHT, "Throughput (completed operations/s)", end_s, &x)?;
    let ticks: Vec<(f64, String)> =
        ticks(rate_step, rate_top).into_iter().map(|v| (y_rate(v), label(v, rate_step))).collect();
    y_axis(&mut out, throughput_top, THROUGHPUT_HEIGHT, &ticks)?;
    shading(&mut out, &periods, throughput_top, THROUGHPUT_HEIGHT, end_s, &x, &colour, true, &nemeses)?;
    for (_, name, stroke) in OUTCOMES {
        let Some(counts) = rates.get(name) else { continue };
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(bucket, _)| drawn(*bucket))
            .map(|(bucket, count)| {
                format!("{:.1},{:.1}", x(bucket as f64 + width(bucket) / 2.0), y_rate(rate(bucket, *count)))
            })
            .collect();
        writeln!(out, r#"<polyline fill="none" stroke="{stroke}" stroke-width="1.5" points="{}"/>"#, points.join(" "))?;
    }

    // Latency: one dot per completed operation, at its invocation, log scale.
    let dots: Vec<Dot> = history::operations(history)
        .iter()
        .filter(|operation| !is_fault(&operation.call))
        .filter_map(|operation| {
            let complete_ns = operation.complete_ns?;
            let latency_ms = (complete_ns.saturating_sub(operation.invoke_ns) as f64 / 1e6).max(1e-3);
            Some((operation.invoke_ns as f64 / 1e9, latency_ms, operation.kind))
        })
        .collect();
    let low = dots.iter().map(|dot| dot.1).fold(f64::INFINITY, f64::min);
    let high = dots.iter().map(|dot| dot.1).fold(0.0, f64::max);
    let (low_power, high_power) = if dots.is_empty() {
        (0, 3)
    } else {
        let (low_power, high_power) = (low.log10().floor() as i32, high.log10().ceil() as i32);
        (low_power, high_power.max(low_power + 1))
    };
    let y_latency = |ms: f64| {
        let fraction = (ms.log10() - f64::from(low_power)) / f64::from(high_power - low_power);
        latency_top + LATENCY_HEIGHT - fraction * LATENCY_HEIGHT
    };
    panel(&mut out, latency_top, LATENCY_HEIGHT, "Latency (ms, log scale)", end_s, &x)?;
    let ticks: Vec<(f64, String)> =
        (low_power..=high_power).map(|power| (y_latency(10f64.powi(power)), power_of_ten(power))).collect();
    y_axis(&mut out, latency_top, LATENCY_HEIGHT, &ticks)?;
    shading(&mut out, &periods, latency_top, LATENCY_HEIGHT, end_s, &x, &colour, false, &nemeses)?;
    for (kind, _, fill) in OUTCOMES {
        let of_kind: Vec<Dot> = dots.iter().filter(|dot| outcome(dot.2).0 == kind).copied().collect();
        let kept = thin(&of_kind, share(&dots, kind));
        if kept.is_empty() {
            continue;
        }
        writeln!(out, r#"<g fill="{fill}" fill-opacity="0.6">"#)?;
        for (seconds, ms, _) in kept {
            writeln!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="1.6"/>"#, x(seconds), y_latency(ms))?;
        }
        writeln!(out, "</g>")?;
    }
    let axis_y = latency_top + LATENCY_HEIGHT + 40.0;
    writeln!(
        out,
        r#"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">seconds since start</text>"#,
        LEFT + PLOT_WIDTH / 2.0
    )?;
    writeln!(out, "</svg>")?;
    Ok(out)
}

/// The legend (outcomes, then nemeses), wrapped to the width; and its height.
fn legend(nemeses: &[&str], colour: &dyn Fn(&str) -> &'static str) -> Result<(String, f64), std::fmt::Error> {
    let mut out = String::new();
    let (mut x, mut y) = (LEFT, LEGEND_ROW * 0.75);
    let mut place = |width: f64| {
        if x + width > WIDTH - RIGHT {
            x = LEFT;
            y += LEGEND_ROW;
        }
        let at = (x, y);
        x += width;
        at
    };
    for (_, name, stroke) in OUTCOMES {
        let (x, y) = place(30.0 + 7.0 * name.len() as f64 + 16.0);
        writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="2"/>"#,
            y - 4.0,
            x + 22.0,
            y - 4.0
        )?;
        writeln!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{stroke}"/>"#, x + 11.0, y - 4.0)?;
        writeln!(out, r#"<text x="{:.1}" y="{y:.1}">{name}</text>"#, x + 28.0)?;
    }
    for nemesis in nemeses {
        let (x, y) = place(30.0 + 7.0 * nemesis.chars().count() as f64 + 16.0);
        writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="22" height="12" fill="{}" fill-opacity="0.3"/>"#,
            y - 10.0,
            colour(nemesis)
        )?;
        writeln!(out, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, x + 28.0, escape(nemesis))?;
    }
    Ok((out, y + LEGEND_ROW * 0.25))
}

/// A panel's title, frame, vertical grid lines and time tick labels.
fn panel(out: &mut String, top: f64, height: f64, title: &str, end_s: f64, x: &dyn Fn(f64) -> f64) -> std::fmt::Result {
    writeln!(out, r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#, top - 8.0, escape(title))?;
    writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top:.1}" width="{PLOT_WIDTH}" height="{height}" fill="none" stroke="#999"/>"##
    )?;
    let step = nice_step(end_s / 12.0);
    for seconds in ticks(step, end_s) {
        let at = x(seconds);
        writeln!(out, r##"<line x1="{at:.1}" y1="{top:.1}" x2="{at:.1}" y2="{:.1}" stroke="#eee"/>"##, top + height)?;
        writeln!(
            out,
            r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + height + 15.0,
            label(seconds, step)
        )?;
    }
    Ok(())
}

/// Horizontal grid lines with their labels, `(y, label)`.
fn y_axis(out: &mut String, top: f64, height: f64, ticks: &[(f64, String)]) -> std::fmt::Result {
    for (y, text) in ticks.iter().filter(|(y, _)| (top - 0.5..=top + height + 0.5).contains(y)) {
        writeln!(out, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##, LEFT + PLOT_WIDTH)?;
        writeln!(out, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{text}</text>"#, LEFT - 6.0, y + 4.0)?;
    }
    Ok(())
}

/// One translucent rectangle per fault period; `labelled` puts the nemesis's name in it
/// (across if it fits, else down its left edge), one row per nemesis so names don't collide.
#[allow(clippy::too_many_arguments)]
fn shading(
    out: &mut String,
    periods: &[FaultPeriod],
    top: f64,
    height: f64,
    end_s: f64,
    x: &dyn Fn(f64) -> f64,
    colour: &dyn Fn(&str) -> &'static str,
    labelled: bool,
    nemeses: &[&str],
) -> std::fmt::Result {
    for period in periods {
        let start_s = period.start_ns as f64 / 1e9;
        let end = period.end_ns.map_or(end_s, |end_ns| end_ns as f64 / 1e9);
        let (left, width) = (x(start_s), (x(end) - x(start_s)).max(1.0));
        let until =
            period.end_ns.map_or("the end of the run".to_owned(), |end_ns| format!("{:.3} s", end_ns as f64 / 1e9));
        let name = escape(&period.nemesis);
        writeln!(
            out,
            r#"<rect x="{left:.1}" y="{top:.1}" width="{width:.1}" height="{height}" fill="{}" fill-opacity="0.18"><title>{name} from {start_s:.3} s to {until}: {}</title></rect>"#,
            colour(&period.nemesis),
            escape(&period.detail)
        )?;
        if !labelled {
            continue;
        }
        let row = nemeses.iter().position(|nemesis| *nemesis == period.nemesis).unwrap_or(0) as f64;
        if 7.0 * period.nemesis.chars().count() as f64 + 6.0 <= width {
            writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" fill="{}">{name}</text>"#,
                left + 3.0,
                top + 12.0 + 12.0 * (row % 4.0),
                colour(&period.nemesis)
            )?;
        } else {
            writeln!(
                out,
                r#"<text transform="translate({:.1},{:.1}) rotate(90)" font-size="11" fill="{}">{name}</text>"#,
                left + 2.0,
                top + 4.0,
                colour(&period.nemesis)
            )?;
        }
    }
    Ok(())
}

fn is_fault(call: &Call) -> bool {
    matches!(call, Call::Fault { .. })
}

/// The outcome's kind and name; an operation without a completion counts as info.
fn outcome(kind: Kind) -> (Kind, &'static str) {
    match kind {
        Kind::Ok => (Kind::Ok, "ok"),
        Kind::Fail => (Kind::Fail, "fail"),
        Kind::Info | Kind::Invoke => (Kind::Info, "info"),
    }
}

/// How many dots of `kind` to draw: the rarer outcomes first get all they have, up to an
/// even share of `DOTS_MAX`, and the rest goes to the others.
fn share(dots: &[Dot], kind: Kind) -> usize {
    let mut sizes: Vec<(usize, Kind)> = OUTCOMES
        .iter()
        .map(|(outcome_kind, _, _)| {
            (dots.iter().filter(|dot| outcome(dot.2).0 == *outcome_kind).count(), *outcome_kind)
        })
        .collect();
    sizes.sort_by_key(|(size, _)| *size);
    let mut remaining = DOTS_MAX;
    for (at, (size, outcome_kind)) in sizes.iter().enumerate() {
        let keep = (*size).min(remaining / (sizes.len() - at));
        if *outcome_kind == kind {
            return keep;
        }
        remaining -= keep;
    }
    0
}

/// `keep` of `items`, evenly spread (deterministic: the same history draws the same dots).
fn thin<T: Copy>(items: &[T], keep: usize) -> Vec<T> {
    if items.len() <= keep {
        return items.to_vec();
    }
    (0..keep).map(|at| items[at * items.len() / keep]).collect()
}

/// A round step (1, 2 or 5 times a power of ten) of at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|step| *step >= raw).unwrap_or(10.0 * magnitude)
}

/// 0, step, 2 step... up to `end`.
fn ticks(step: f64, end: f64) -> Vec<f64> {
    (0..).map(|n| f64::from(n) * step).take_while(|value| *value <= end + step * 1e-6).take(1000).collect()
}

/// A tick value with as many decimals as its step needs.
fn label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    format!("{value:.decimals$}")
}

/// 10^power, written out ("0.01", "1", "1000").
fn power_of_ten(power: i32) -> String {
    if power >= 0 {
        format!("1{}", "0".repeat(power as usize))
    } else {
        format!("0.{}1", "0".repeat((-power - 1) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_history_draws_empty_panels() {
        let svg = svg(&[]).expect("renders");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("<polyline") && !svg.contains("r=\"1.6\"") && !svg.contains("NaN"));
    }

    #[test]
    fn thinning_keeps_an_even_deterministic_spread() {
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(thin(&items, 4), [0, 25, 50, 75]);
        assert_eq!(thin(&items, 200).len(), 100);
    }

    #[test]
    fn rare_outcomes_keep_all_their_dots() {
        let mut dots: Vec<Dot> = vec![(0.0, 1.0, Kind::Ok); 50_000];
        dots.extend(vec![(0.0, 1.0, Kind::Fail); 300]);
        dots.extend(vec![(0.0, 1.0, Kind::Info); 9_000]);
        let (ok, fail, info) = (share(&dots, Kind::Ok), share(&dots, Kind::Fail), share(&dots, Kind::Info));
        assert_eq!((fail, info), (300, 9_000));
        assert_eq!(ok + fail + info, DOTS_MAX);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(7.3), 10.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(0.04), 0.05);
        assert_eq!(ticks(20.0, 65.0), [0.0, 20.0, 40.0, 60.0]);
        assert_eq!((label(0.5, 0.1), label(40.0, 20.0)), ("0.5".to_owned(), "40".to_owned()));
        assert_eq!((power_of_ten(-2), power_of_ten(0), power_of_ten(3)), ("0.01".into(), "1".into(), "1000".into()));
    }
}
