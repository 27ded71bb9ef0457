//! The CI gate: does any finding reach a severity threshold, once the vulnerabilities a team
//! has decided to accept are left out?
//!
//! `berth scan --fail-on high --ignore-file .berthignore` evaluates one [`Gate`] over the
//! reports of every image it analysed. An ignore list names vulnerabilities by any of their ids
//! (a finding is ignored when one of its ids or aliases is listed), compared without regard to
//! case, so `cve-2021-25900` and the GHSA of the same issue both ignore the smallvec finding.

use std::collections::BTreeSet;

use berth_vulndb::{Finding, Level};

use crate::{VulnReport, reaches};

/// Vulnerability ids whose findings do not count against a gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreList {
    /// Lower-cased: ids are compared without regard to case.
    ids: BTreeSet<String>,
}

/// A line of an ignore file that is not one id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IgnoreFileError {
    pub line: usize,
    pub message: String,
}

/// Longest id accepted, as in the database (`berth_vulndb::advisory::MAX_ID_LEN`).
const MAX_ID_LEN: usize = berth_vulndb::advisory::MAX_ID_LEN;

impl IgnoreList {
    pub fn new<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::default();
        list.extend(ids);
        list
    }

    pub fn extend<I, S>(&mut self, ids: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.ids.extend(
            ids.into_iter()
                .map(|id| id.as_ref().trim().to_ascii_lowercase())
                .filter(|id| !id.is_empty()),
        );
    }

    /// Parses an ignore file: one id per line; `#` starts a comment (a whole line, or after
    /// the id); blank lines are skipped. A line with two words is an error rather than a guess,
    /// so `CVE-1 CVE-2` does not silently ignore only one of them.
    pub fn parse(text: &str) -> Result<Self, IgnoreFileError> {
        let mut ids = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let content = line.split_once('#').map_or(line, |(before, _)| before);
            let mut words = content.split_whitespace();
            let Some(id) = words.next() else { continue };
            if words.next().is_some() {
                return Err(IgnoreFileError {
                    line: line_no,
                    message: "one id per line (put reasons after a `#`)".into(),
                });
            }
            if id.len() > MAX_ID_LEN {
                return Err(IgnoreFileError {
                    line: line_no,
                    message: format!("an id is at most {MAX_ID_LEN} bytes long"),
                });
            }
            ids.push(id);
        }
        Ok(Self::new(ids))
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the list names `id` (in any case).
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(&id.to_ascii_lowercase())
    }

    /// Whether the list names any id of the finding.
    pub fn ignores(&self, f: &Finding) -> bool {
        !self.ids.is_empty() && f.ids.iter().any(|id| self.contains(id))
    }
}

/// A severity threshold and the findings that do not count against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub threshold: Level,
    pub ignore: IgnoreList,
}

/// What a gate found over one or more reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateOutcome {
    /// Findings at or above the threshold that are not ignored: the gate fails when any is.
    pub reached: usize,
    /// Findings at or above the threshold that the ignore list left out.
    pub ignored: usize,
}

impl GateOutcome {
    pub fn passed(&self) -> bool {
        self.reached == 0
    }
}

impl Gate {
    pub fn new(threshold: Level, ignore: IgnoreList) -> Self {
        Self { threshold, ignore }
    }

    /// The findings of `report` that fail the gate.
    pub fn failing<'a>(&'a self, report: &'a VulnReport) -> impl Iterator<Item = &'a Finding> {
        report
            .findings
            .iter()
            .filter(|f| reaches(f, self.threshold) && !self.ignore.ignores(f))
    }

    /// Evaluates the gate over every report (every platform of an image, say).
    pub fn evaluate<'a>(&self, reports: impl IntoIterator<Item = &'a VulnReport>) -> GateOutcome {
        let mut out = GateOutcome::default();
        for f in reports
            .into_iter()
            .flat_map(|r| &r.findings)
            .filter(|f| reaches(f, self.threshold))
        {
            if self.ignore.ignores(f) {
                out.ignored += 1;
            } else {
                out.reached += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_files() {
        let list = IgnoreList::parse(
            "# accepted until the next release\n\
             CVE-2021-25900   # smallvec: not reachable from our code\n\
             \n\
             \tghsa-43W2-9j62-hq99\n\
             #GO-2021-0113\n",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains("cve-2021-25900"));
        assert!(list.contains("GHSA-43w2-9j62-hq99"));
        assert!(!list.contains("GO-2021-0113"));
        assert_eq!(
            IgnoreList::parse("CVE-1\nCVE-2 CVE-3\n"),
            Err(IgnoreFileError {
                line: 2,
                message: "one id per line (put reasons after a `#`)".into()
            })
        );
        assert_eq!(
            IgnoreList::parse(&"A".repeat(MAX_ID_LEN + 1))
                .unwrap_err()
                .line,
            1
        );
        assert!(IgnoreList::parse("").unwrap().is_empty());
        assert!(IgnoreList::new(["", "  "]).is_empty());
    }
}
