//! `os-release` (<https://www.freedesktop.org/software/systemd/man/os-release.html>).

use crate::model::OsInfo;

/// Parses an os-release file. `None` when it has no `ID`.
pub fn parse_os_release(text: &str) -> Option<OsInfo> {
    let mut id = None;
    let mut info = OsInfo {
        id: String::new(),
        version_id: None,
        version_codename: None,
        id_like: Vec::new(),
        pretty_name: None,
        distroless: false,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "ID" => id = Some(value.to_ascii_lowercase()),
            "VERSION_ID" => info.version_id = Some(value),
            "VERSION_CODENAME" => info.version_codename = Some(value),
            "ID_LIKE" => info.id_like = value.split_whitespace().map(str::to_owned).collect(),
            "PRETTY_NAME" => info.pretty_name = Some(value),
            _ => {}
        }
    }
    info.id = id?;
    info.distroless = info
        .pretty_name
        .as_deref()
        .is_some_and(|p| p.contains("Distroless"));
    Some(info)
}

/// Removes shell quoting: one pair of `"` or `'`, and backslash escapes inside double quotes.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_owned();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    v.to_owned()
}
