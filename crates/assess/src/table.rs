//! The findings of a [`VulnReport`] as a text table for a terminal or a CI log: a summary
//! line, then one line per finding, most severe first (severity, id, package, installed
//! version, fixed version, where the package was found).

use std::fmt::Write;

use berth_vulndb::Finding;

use crate::gate::IgnoreList;
use crate::sarif::locations;
use crate::{VulnReport, level_name};

/// The findings section; findings the ignore list names are marked `(ignored)`.
pub fn to_table(report: &VulnReport, ignore: &IgnoreList) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let short_version = report.db_version.get(..12).unwrap_or(&report.db_version);
    let _ = writeln!(
        out,
        "Vulnerabilities: {} (critical {}, high {}, medium {}, low {}, negligible {}, unknown {}) \
         in {} matched packages, database {short_version}",
        s.total(),
        s.critical,
        s.high,
        s.medium,
        s.low,
        s.negligible,
        s.unknown,
        report.packages,
    );
    if !report.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "{} package(s) could not be checked: their version is not valid in their ecosystem",
            report.unmatched.len()
        );
    }
    if !report.unsupported.is_empty() {
        let _ = writeln!(
            out,
            "{} package(s) cannot be matched (no feed covers them; see the JSON report)",
            report.unsupported.len()
        );
    }
    if report.findings.is_empty() {
        return out;
    }
    out.push('\n');
    let mut findings: Vec<&Finding> = report.findings.iter().collect();
    // Stable: equal severities keep the report's order (inventory order).
    findings.sort_by_key(|f| std::cmp::Reverse(f.level()));
    let rows: Vec<[String; 6]> = findings
        .iter()
        .map(|f| {
            let places = locations(f);
            let path = places
                .first()
                .map(|(_, p)| format!("/{p}"))
                .unwrap_or_default();
            let more = if places.len() > 1 {
                format!(" (+{})", places.len() - 1)
            } else {
                String::new()
            };
            let mut severity = level_name(f.level()).to_string();
            if ignore.ignores(f) {
                severity.push_str(" (ignored)");
            }
            [
                severity,
                f.ids.first().cloned().unwrap_or_default(),
                f.package.name.clone(),
                f.installed_version.clone(),
                f.fixed_version.clone().unwrap_or_else(|| "-".into()),
                path + &more,
            ]
        })
        .collect();
    let header = ["SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED", "PATH"].map(String::from);
    let mut w = [0usize; 6];
    for r in std::iter::once(&header).chain(&rows) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate().take(5) {
            let _ = write!(line, "{c:<width$}  ", width = w[i]);
        }
        line.push_str(&r[5]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}
