//! `--summarize`: medians across rounds per scenario and label, and the ratio
//! of each label to the baseline, as Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::report::{ScenarioResult, fmt_num, median};
use crate::{ALL, MACHINE};

/// Other processes' average CPU use (cores) above which a figure is flagged.
const BUSY_CORES: f64 = 0.25;

/// Whether other processes were busy during this result's timed phase.
fn busy(r: &ScenarioResult) -> bool {
    match (r.other_cpu_s, r.seconds) {
        (Some(o), Some(s)) if s > 0.0 => o / s > BUSY_CORES && o >= 0.2,
        _ => false,
    }
}

pub fn summarize(files: &[PathBuf], baseline: &str, exclude_busy: bool) -> Result<String> {
    let mut rows = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.starts_with('{') {
                continue;
            }
            let r: ScenarioResult = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a result line", f.display(), i + 1))?;
            rows.push(r);
        }
    }
    Ok(render(&rows, baseline, exclude_busy))
}

/// The object store's own scenario that a registry scenario is compared with.
fn counterpart(scenario: &str) -> Option<&'static str> {
    match scenario {
        "push-mono" | "push-chunked" => Some("s3-put"),
        "pull" => Some("s3-get"),
        _ => None,
    }
}

fn order(s: &str) -> usize {
    ALL.iter()
        .chain(MACHINE.iter())
        .position(|x| *x == s)
        .unwrap_or(usize::MAX)
}

/// With `exclude_busy`, results measured while other processes were busy are
/// left out of the medians (cells then say how many were used).
pub fn render(rows: &[ScenarioResult], baseline: &str, exclude_busy: bool) -> String {
    let mut labels: Vec<String> = Vec::new();
    for r in rows {
        let l = r.label.clone().unwrap_or_else(|| "-".into());
        if !labels.contains(&l) && !MACHINE.contains(&r.scenario.as_str()) {
            labels.push(l);
        }
    }
    // Baseline column last, so "X / baseline" reads left to right.
    labels.sort_by_key(|l| l == baseline);
    let others: Vec<&String> = labels.iter().filter(|l| *l != baseline).collect();
    let has_base = labels.iter().any(|l| l == baseline);

    // scenario -> label -> results
    let mut by: BTreeMap<(usize, String), BTreeMap<String, Vec<&ScenarioResult>>> = BTreeMap::new();
    for r in rows {
        let l = r.label.clone().unwrap_or_else(|| "-".into());
        by.entry((order(&r.scenario), r.scenario.clone()))
            .or_default()
            .entry(l)
            .or_default()
            .push(r);
    }

    let mut out = String::new();
    let med = |rs: &[&ScenarioResult], f: &dyn Fn(&ScenarioResult) -> Option<f64>| {
        let v: Vec<f64> = rs
            .iter()
            .filter(|r| r.ok && !(exclude_busy && busy(r)))
            .filter_map(|r| f(r))
            .collect();
        median(&v)
    };
    let cell = |rs: Option<&Vec<&ScenarioResult>>, f: &dyn Fn(&ScenarioResult) -> Option<f64>| {
        let Some(rs) = rs else { return "-".to_string() };
        let ok = rs
            .iter()
            .filter(|r| r.ok && r.skipped.is_none() && !(exclude_busy && busy(r)))
            .count();
        let mut s = match med(rs, f) {
            Some(v) => fmt_num(v),
            None => "-".into(),
        };
        if ok < rs.len() {
            let _ = write!(s, " ({ok}/{} used)", rs.len());
        }
        s
    };

    // Headline table.
    let _ = write!(out, "| scenario | unit |");
    for l in &labels {
        let _ = write!(out, " {l} |");
    }
    if has_base {
        for o in &others {
            let _ = write!(out, " {o} / {baseline} |");
        }
    }
    out.push('\n');
    let ncol = 2 + labels.len() + if has_base { others.len() } else { 0 };
    out.push_str(&format!("|{}\n", "---|".repeat(ncol)));
    let headline = |r: &ScenarioResult| r.metric;
    for ((_, sc), per) in &by {
        if MACHINE.contains(&sc.as_str()) {
            continue;
        }
        let any = per.values().flatten().next().expect("non-empty");
        let dir = if any.higher_is_better { "↑" } else { "↓" };
        let _ = write!(out, "| {sc} | {} {dir} |", any.unit);
        for l in &labels {
            let _ = write!(out, " {} |", cell(per.get(l), &headline));
        }
        if has_base {
            // A baseline without this scenario (an object store's own run) is read at
            // the scenario that is its counterpart: a plain PUT for pushes, GET for pulls.
            let (b, against) = match per.get(baseline) {
                Some(rs) => (med(rs, &headline), None),
                None => {
                    let c = counterpart(sc);
                    let rs = c.and_then(|c| by.get(&(order(c), c.to_string())));
                    let b = rs
                        .and_then(|per| per.get(baseline))
                        .and_then(|rs| med(rs, &headline));
                    (b, c)
                }
            };
            for o in &others {
                let v = per.get(*o).and_then(|rs| med(rs, &headline));
                let _ = match (v, b, against) {
                    (Some(v), Some(b), None) if b > 0.0 => write!(out, " {:.2}× |", v / b),
                    (Some(v), Some(b), Some(c)) if b > 0.0 => {
                        write!(out, " {:.2}× (of {c}) |", v / b)
                    }
                    _ => write!(out, " - |"),
                };
            }
        }
        out.push('\n');
    }

    // Secondary figures.
    type Getter = fn(&ScenarioResult) -> Option<f64>;
    let secondary: [(&str, Getter); 7] = [
        ("p50 ms", |r| r.p50_ms),
        ("p99 ms", |r| r.p99_ms),
        ("server CPU-s/GiB", |r| r.server_cpu_s_per_gib),
        ("server CPU µs/req", |r| r.server_cpu_us_per_req),
        ("server peak RSS MiB", |r| r.rss_peak_mib),
        ("server peak anon RSS MiB", |r| r.rss_anon_peak_mib),
        ("other processes' CPU s", |r| r.other_cpu_s),
    ];
    let mut sec = String::new();
    for ((_, sc), per) in &by {
        if MACHINE.contains(&sc.as_str()) || sc.starts_with("idle-rss") {
            continue;
        }
        for (name, f) in &secondary {
            if !per.values().flatten().any(|r| f(r).is_some()) {
                continue;
            }
            // p50 of a listing is its headline already.
            if (sc == "tag-list" || sc == "catalog") && name.starts_with("p50") {
                continue;
            }
            let _ = write!(sec, "| {sc} | {name} |");
            for l in &labels {
                let _ = write!(sec, " {} |", cell(per.get(l), f));
            }
            sec.push('\n');
        }
    }
    if !sec.is_empty() {
        let _ = write!(out, "\n| scenario | figure |");
        for l in &labels {
            let _ = write!(out, " {l} |");
        }
        out.push('\n');
        out.push_str(&format!("|{}\n", "---|".repeat(2 + labels.len())));
        out.push_str(&sec);
    }

    // Rounds measured while other processes were busy.
    let mut flagged = String::new();
    for ((_, sc), per) in &by {
        for (l, rs) in per {
            let n = rs.iter().filter(|r| busy(r)).count();
            if n > 0 {
                let _ = write!(flagged, " {sc}/{l} ({n} of {}),", rs.len());
            }
        }
    }
    if !flagged.is_empty() {
        flagged.pop();
        let _ = writeln!(
            out,
            "\nWarning: other processes used more than {BUSY_CORES} core on average during:{flagged}; \
             {}",
            if exclude_busy {
                "those runs are left out of the medians."
            } else {
                "those figures are suspect (--exclude-busy leaves them out)."
            }
        );
    }

    // Machine limits.
    let mut mach = String::new();
    for ((_, sc), per) in &by {
        if !MACHINE.contains(&sc.as_str()) {
            continue;
        }
        let all: Vec<&ScenarioResult> = per.values().flatten().copied().collect();
        let unit = all.first().map(|r| r.unit.clone()).unwrap_or_default();
        let _ = writeln!(mach, "| {sc} | {} {unit} |", cell(Some(&all), &headline));
    }
    if !mach.is_empty() {
        out.push_str("\n| machine | median |\n|---|---|\n");
        out.push_str(&mach);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sc: &str, label: &str, v: f64) -> ScenarioResult {
        let mut r = ScenarioResult::new(sc, Some(label.into()), "x");
        r.ok = true;
        r.metric = Some(v);
        r
    }

    #[test]
    fn medians_and_ratio() {
        let rows = vec![
            row("push-mono", "berth", 300.0),
            row("push-mono", "distribution", 100.0),
            row("push-mono", "berth", 500.0),
            row("push-mono", "distribution", 200.0),
            row("push-mono", "berth", 400.0),
            row("push-mono", "distribution", 150.0),
            row("machine-sha256", "machine", 2000.0),
        ];
        let t = render(&rows, "distribution", true);
        assert!(
            t.contains("| berth | distribution | berth / distribution |"),
            "{t}"
        );
        assert!(
            t.contains("| push-mono | MB/s ↑ | 400 | 150 | 2.67× |"),
            "{t}"
        );
        assert!(t.contains("| machine-sha256 | 2000 MB/s |"), "{t}");
    }

    #[test]
    fn object_store_baseline_is_read_at_its_counterpart() {
        let rows = vec![
            row("push-mono", "s3", 160.0),
            row("pull", "s3", 600.0),
            row("manifest-get", "s3", 1000.0),
            row("s3-put", "garage", 200.0),
            row("s3-get", "garage", 500.0),
        ];
        let t = render(&rows, "garage", false);
        assert!(
            t.contains("| push-mono | MB/s ↑ | 160 | - | 0.80× (of s3-put) |"),
            "{t}"
        );
        assert!(
            t.contains("| pull | MB/s ↑ | 600 | - | 1.20× (of s3-get) |"),
            "{t}"
        );
        assert!(
            t.contains("| manifest-get | req/s ↑ | 1000 | - | - |"),
            "{t}"
        );
    }
}
