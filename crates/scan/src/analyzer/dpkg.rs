//! dpkg's database: `var/lib/dpkg/status`, distroless `var/lib/dpkg/status.d/*`, and the
//! per-package file lists `info/*.list` and `*.md5sums`.

use crate::model::{Ecosystem, OwnedFiles, Package, SourcePackage};

/// Parses a status file (or a distroless `status.d` entry) into its installed packages.
/// Paragraphs whose `Status` says the package is not installed (removed, config files only) are
/// left out; a paragraph without `Status` (distroless) counts as installed.
pub fn parse_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for para in paragraphs(text) {
        let field = |name: &str| {
            para.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        if name.is_empty() || version.is_empty() {
            continue;
        }
        if let Some(status) = field("Status")
            && status.split_whitespace().last() != Some("installed")
        {
            continue;
        }
        let mut pkg = Package::new(Ecosystem::Deb, name, version, "dpkg-db");
        pkg.arch = field("Architecture")
            .filter(|a| !a.is_empty())
            .map(str::to_owned);
        // `Source: name` or `Source: name (version)`; without it the source is the binary itself.
        let (src_name, src_version) = match field("Source") {
            Some(src) if !src.is_empty() => match src.split_once('(') {
                Some((n, v)) => (
                    n.trim().to_owned(),
                    v.trim_end_matches(')').trim().to_owned(),
                ),
                None => (src.to_owned(), version.to_owned()),
            },
            _ => (name.to_owned(), version.to_owned()),
        };
        pkg.source = Some(SourcePackage {
            name: src_name,
            version: src_version,
        });
        if let Some(m) = field("Maintainer") {
            pkg.properties.insert("maintainer".into(), m.to_owned());
        }
        out.push(pkg);
    }
    out
}

/// Splits a deb822 document into paragraphs of (field, value), joining continuation lines.
fn paragraphs(text: &str) -> Vec<Vec<(&str, String)>> {
    let mut paras = Vec::new();
    let mut cur: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                paras.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim(), v.trim().to_owned()));
        }
    }
    if !cur.is_empty() {
        paras.push(cur);
    }
    paras
}

/// Parses `info/<pkg>.list` (one absolute path a line) or `<pkg>.md5sums` (`<md5>  <path>`,
/// paths relative) into the files `owner` owns, normalised like tar paths.
pub fn parse_file_list(owner: &str, text: &str, md5sums: bool) -> OwnedFiles {
    let files = text
        .lines()
        .filter_map(|l| {
            let p = if md5sums {
                l.split_once(char::is_whitespace)?.1.trim_start()
            } else {
                l
            };
            let p = p.trim_start_matches('/').trim_end_matches('/');
            (!p.is_empty() && p != ".").then(|| p.to_owned())
        })
        .collect();
    OwnedFiles {
        owner: owner.to_owned(),
        files,
    }
}
