//! Language package metadata that is plain text or JSON: Cargo.lock, Python distribution
//! metadata, npm `package.json` and `package-lock.json`, RubyGems specifications.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::{Ecosystem, Package};

/// `[[package]]` tables of a Cargo.lock. Packages without a `source` are the workspace's own.
pub fn parse_cargo_lock(text: &str) -> Vec<Package> {
    #[derive(serde::Deserialize)]
    struct Lock {
        #[serde(default)]
        package: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        version: String,
        source: Option<String>,
    }
    let Ok(lock) = toml::from_str::<Lock>(text) else {
        return Vec::new();
    };
    lock.package
        .into_iter()
        .map(|e| {
            let mut p = Package::new(Ecosystem::Cargo, e.name, e.version, "cargo-lock");
            match e.source {
                Some(s) => {
                    p.properties.insert("cargo.source".into(), s);
                }
                None => {
                    p.properties.insert("cargo.local".into(), "true".into());
                }
            }
            p
        })
        .collect()
}

/// PEP 503 normalisation: lower case, runs of `-`, `_`, `.` become one `-`.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// `*.dist-info/METADATA` or `*.egg-info/PKG-INFO`: e-mail style headers until the first blank
/// line.
pub fn parse_python_metadata(text: &str) -> Option<Package> {
    let (mut name, mut version, mut license) = (None, None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => name = Some(v),
            "Version" => version = Some(v),
            "License-Expression" => license = Some(v),
            "License" if license.is_none() && !v.is_empty() && v != "UNKNOWN" && v.len() < 100 => {
                license = Some(v)
            }
            _ => {}
        }
    }
    let mut p = Package::new(Ecosystem::Pypi, pep503(name?), version?, "python-metadata");
    p.properties.insert("python.name".into(), name?.to_owned());
    p.licenses.extend(license.map(str::to_owned));
    Some(p)
}

/// An installed npm package's `package.json`.
pub fn parse_package_json(data: &[u8]) -> Result<Option<Package>, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| format!("package.json: {e}"))?;
    let (Some(name), Some(version)) = (v["name"].as_str(), v["version"].as_str()) else {
        return Ok(None);
    };
    let mut p = Package::new(Ecosystem::Npm, name, version, "npm-package");
    match &v["license"] {
        Value::String(s) => p.licenses.push(s.clone()),
        Value::Object(o) => p
            .licenses
            .extend(o.get("type").and_then(Value::as_str).map(str::to_owned)),
        _ => {}
    }
    Ok(Some(p))
}

/// A `package-lock.json` (v1 `dependencies`, v2/v3 `packages`): every entry, marked `declared`
/// because a lock file says what would be installed, not what is.
///
/// Entries are parsed one at a time from the file's bytes: as one JSON tree, a lock file of a
/// large monorepo (tens of thousands of entries, each with its URL and hash) takes four to five
/// times its size.
pub fn parse_package_lock(data: &[u8]) -> Result<Vec<Package>, String> {
    #[derive(serde::Deserialize)]
    struct Lock<'a> {
        #[serde(borrow, default)]
        packages: Option<&'a RawValue>,
        #[serde(borrow, default)]
        dependencies: Option<&'a RawValue>,
    }
    /// A v1 entry: its version and its own dependencies, left unparsed until visited.
    #[derive(serde::Deserialize, Default)]
    struct Dependency<'a> {
        #[serde(borrow, default)]
        version: Option<&'a RawValue>,
        #[serde(borrow, default)]
        dependencies: Option<&'a RawValue>,
    }
    /// The entries of an object (`None` if it is not one), each still unparsed.
    fn entries(raw: Option<&RawValue>) -> Option<BTreeMap<String, &RawValue>> {
        serde_json::from_str(raw?.get()).ok()
    }
    let lock: Lock = serde_json::from_slice(data).map_err(|e| format!("package-lock.json: {e}"))?;
    let mut out = Vec::new();
    let mut add = |name: &str, version: &str| {
        if name.is_empty() || version.is_empty() {
            return;
        }
        let mut p = Package::new(Ecosystem::Npm, name, version, "npm-lock");
        p.properties.insert("declared".into(), "true".into());
        out.push(p);
    };
    if let Some(pkgs) = entries(lock.packages) {
        for (key, raw) in &pkgs {
            let Some(i) = key.rfind("node_modules/") else {
                continue;
            };
            let entry: Value = serde_json::from_str(raw.get()).unwrap_or_default();
            if entry["link"].as_bool() == Some(true) {
                continue;
            }
            let name = entry["name"]
                .as_str()
                .unwrap_or(&key[i + "node_modules/".len()..]);
            add(name, entry["version"].as_str().unwrap_or_default());
        }
    } else if let Some(deps) = entries(lock.dependencies) {
        let mut stack: Vec<(String, &RawValue, usize)> =
            deps.into_iter().map(|(k, v)| (k, v, 0)).collect();
        while let Some((name, raw, depth)) = stack.pop() {
            let entry: Dependency = serde_json::from_str(raw.get()).unwrap_or_default();
            let version = entry
                .version
                .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
            add(&name, version.as_deref().unwrap_or_default());
            if depth < 64
                && let Some(d) = entries(entry.dependencies)
            {
                stack.extend(d.into_iter().map(|(k, v)| (k, v, depth + 1)));
            }
        }
    }
    Ok(out)
}

/// `specifications/*.gemspec`, the Ruby files RubyGems writes: `s.name = "x".freeze` and
/// `s.version = "1.2.3"` lines.
pub fn parse_gemspec(text: &str) -> Option<Package> {
    let quoted = |line: &str| -> Option<String> {
        let start = line.find(['"', '\''])?;
        let q = line.as_bytes()[start] as char;
        let rest = &line[start + 1..];
        Some(rest[..rest.find(q)?].to_owned())
    };
    let (mut name, mut version, mut licenses) = (None, None, Vec::new());
    for line in text.lines() {
        let l = line.trim();
        let Some((lhs, rhs)) = l.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim();
        if lhs.ends_with(".name") && name.is_none() {
            name = quoted(rhs);
        } else if lhs.ends_with(".version") && version.is_none() {
            version = quoted(rhs);
        } else if lhs.ends_with(".licenses") || lhs.ends_with(".license") {
            licenses.extend(quoted(rhs));
        }
    }
    let mut p = Package::new(Ecosystem::Gem, name?, version?, "gemspec");
    p.licenses = licenses;
    Some(p)
}
