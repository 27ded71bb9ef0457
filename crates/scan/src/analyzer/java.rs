//! Java archives (`.jar`, `.war`, `.ear`): Maven coordinates from
//! `META-INF/maven/**/pom.properties`, else `META-INF/MANIFEST.MF`, else the file name; nested
//! archives (`WEB-INF/lib`, `BOOT-INF/lib`) recursively, within an expansion budget that a zip
//! bomb cannot get past.

use std::io::{Cursor, Read};

use super::AnalyzerOptions;
use crate::model::{Ecosystem, Package};

const MAX_DEPTH: usize = 3;
/// Largest metadata file read from an archive.
const MAX_META: u64 = 1 << 20;

pub fn analyze_archive(
    path: &str,
    data: &[u8],
    opts: &AnalyzerOptions,
    warnings: &mut Vec<String>,
) -> Vec<Package> {
    let mut budget = opts.max_archive_expansion;
    let mut out = Vec::new();
    walk(path, data, 0, &mut budget, opts, &mut out, warnings);
    out
}

fn walk(
    path: &str,
    data: &[u8],
    depth: usize,
    budget: &mut u64,
    opts: &AnalyzerOptions,
    out: &mut Vec<Package>,
    warnings: &mut Vec<String>,
) {
    let mut zip = match zip::ZipArchive::new(Cursor::new(data)) {
        Ok(z) => z,
        Err(e) => {
            warnings.push(format!("{path}: not a readable zip archive: {e}"));
            return;
        }
    };
    let mut poms = Vec::new();
    let mut manifest = None;
    let mut nested = Vec::new();
    // Metadata first, so that a bomb among the nested archives cannot starve it of budget.
    for i in 0..zip.len() {
        let Ok(mut f) = zip.by_index(i) else { continue };
        let name = f.name().to_owned();
        let is_pom = name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties");
        let is_manifest = name == "META-INF/MANIFEST.MF";
        if [".jar", ".war", ".ear"].iter().any(|e| name.ends_with(e)) {
            nested.push(i);
        }
        if !(is_pom || is_manifest) {
            continue;
        }
        let Some(buf) = read_capped(&mut f, MAX_META, budget, path, &name, warnings) else {
            continue;
        };
        if is_pom {
            poms.push(String::from_utf8_lossy(&buf).into_owned());
        } else {
            manifest = Some(String::from_utf8_lossy(&buf).into_owned());
        }
    }
    let mut found = false;
    for pom in &poms {
        let prop = |k: &str| {
            pom.lines().find_map(|l| {
                l.strip_prefix(k)
                    .and_then(|r| r.trim_start().strip_prefix('='))
                    .map(|v| v.trim().to_owned())
            })
        };
        if let (Some(g), Some(a), Some(v)) = (prop("groupId"), prop("artifactId"), prop("version"))
        {
            out.push(maven(&g, &a, &v, path));
            found = true;
        }
    }
    if !found {
        let attr = |k: &str| {
            manifest.as_deref().and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix(k)?
                        .strip_prefix(':')
                        .map(|v| v.trim().to_owned())
                })
            })
        };
        let file_name = path.rsplit(['/', '!']).next().unwrap_or(path);
        let stem = file_name
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or(file_name);
        let from_name = stem
            .rsplit_once('-')
            .filter(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit()));
        let version = attr("Implementation-Version")
            .or_else(|| attr("Bundle-Version"))
            .or_else(|| from_name.map(|(_, v)| v.to_owned()));
        let artifact = from_name
            .map(|(n, _)| n.to_owned())
            .or_else(|| attr("Implementation-Title"))
            .unwrap_or_else(|| stem.to_owned());
        let group = attr("Implementation-Vendor-Id").or_else(|| {
            attr("Bundle-SymbolicName").and_then(|s| s.rsplit_once('.').map(|(g, _)| g.to_owned()))
        });
        if let Some(v) = version {
            out.push(maven(
                group.as_deref().unwrap_or_default(),
                &artifact,
                &v,
                path,
            ));
        }
    }
    if depth + 1 >= MAX_DEPTH && !nested.is_empty() {
        warnings.push(format!(
            "{path}: nested archives deeper than {MAX_DEPTH} skipped"
        ));
        return;
    }
    // One nested archive in memory at a time per level: read it, analyse it, drop it.
    for i in nested {
        let Ok(mut f) = zip.by_index(i) else { continue };
        let name = f.name().to_owned();
        let Some(buf) = read_capped(&mut f, opts.max_binary_size, budget, path, &name, warnings)
        else {
            continue;
        };
        drop(f);
        walk(
            &format!("{path}!{name}"),
            &buf,
            depth + 1,
            budget,
            opts,
            out,
            warnings,
        );
    }
}

/// Reads an entry through `take`, because the declared size may lie; charges what came out to
/// the archive's expansion budget. `None` (with a warning) past the cap or the budget.
fn read_capped(
    f: &mut impl Read,
    cap: u64,
    budget: &mut u64,
    path: &str,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let cap = cap.min(*budget);
    let mut buf = Vec::new();
    if f.take(cap + 1).read_to_end(&mut buf).is_err() {
        warnings.push(format!("{path}!{name}: unreadable entry"));
        return None;
    }
    if buf.len() as u64 > cap {
        warnings.push(format!(
            "{path}!{name}: skipped, expands past the archive budget"
        ));
        *budget = budget.saturating_sub(cap);
        return None;
    }
    *budget = budget.saturating_sub(buf.len() as u64);
    Some(buf)
}

fn maven(group: &str, artifact: &str, version: &str, path: &str) -> Package {
    let name = if group.is_empty() {
        artifact.to_owned()
    } else {
        format!("{group}:{artifact}")
    };
    let mut p = Package::new(Ecosystem::Maven, name, version, "java-archive");
    if !group.is_empty() {
        p.properties.insert("maven.group".into(), group.to_owned());
    }
    p.properties
        .insert("maven.artifact".into(), artifact.to_owned());
    if path.contains('!') {
        p.properties.insert("java.nested".into(), path.to_owned());
    }
    p
}
