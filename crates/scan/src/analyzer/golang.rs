//! Go build information, as `go version -m` prints it: the `\xff Go buildinf:` header in the
//! binary's data, then the Go version and the module list (`runtime/debug.BuildInfo`).
//!
//! Two layouts exist. Since Go 1.18 the two strings follow the 32-byte header inline, each
//! prefixed by its uvarint length (flag bit 2). Before, the header holds two pointers to Go
//! string headers (pointer, length), which must be mapped from virtual addresses to file offsets
//! through the ELF section table.

use object::{Object, ObjectSection};

use crate::model::{Ecosystem, Package};

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// The version of a main module built without version information.
const DEVEL: &str = "(devel)";
/// Longest module list accepted; a real one is a few tens of kilobytes.
const MAX_MODINFO: u64 = 4 << 20;

/// The build information of one Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub go_version: String,
    /// `path` line: the main package's import path.
    pub path: Option<String>,
    pub main: Option<Module>,
    pub deps: Vec<Module>,
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub version: String,
    pub sum: Option<String>,
    pub replace: Option<Box<Module>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildInfoError {
    #[error("no Go build information")]
    NotGo,
    #[error("malformed Go build information: {0}")]
    Malformed(&'static str),
}

/// Reads the build information from a whole binary. `NotGo` when there is none.
pub fn read_build_info(data: &[u8]) -> Result<BuildInfo, BuildInfoError> {
    // Prefer the section the linker names; otherwise search the file at 16-byte alignment.
    let parsed = object::File::parse(data).ok();
    let mut start = None;
    if let Some(file) = &parsed
        && let Some(sec) = file.section_by_name(".go.buildinfo")
        && let Some((off, _)) = sec.file_range()
    {
        start = Some(off as usize);
    }
    let start = match start {
        Some(s) if data.get(s..).is_some_and(|d| d.starts_with(MAGIC)) => s,
        _ => find_magic(data).ok_or(BuildInfoError::NotGo)?,
    };
    let hdr = data
        .get(start..start + 32)
        .ok_or(BuildInfoError::Malformed("short header"))?;
    let ptr_size = hdr[14] as usize;
    let flags = hdr[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let rest = &data[start + 32..];
        let (v, n) = read_varint_string(rest)?;
        let (m, _) = read_varint_string(&rest[n..])?;
        (v, m)
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return Err(BuildInfoError::Malformed("pointer size"));
        }
        let file = parsed.as_ref().ok_or(BuildInfoError::Malformed(
            "pointer format needs an object file",
        ))?;
        let big = flags & 1 != 0;
        let read_ptr = |b: &[u8]| -> u64 {
            match (ptr_size, big) {
                (4, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
                (4, true) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64,
                (_, false) => u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                (_, true) => u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8])),
            }
        };
        let read_string = |addr: u64| -> Result<Vec<u8>, BuildInfoError> {
            let header = read_at(file, data, addr, 2 * ptr_size as u64)
                .ok_or(BuildInfoError::Malformed("string header"))?;
            let (p, len) = (read_ptr(header), read_ptr(&header[ptr_size..]));
            if len > MAX_MODINFO {
                return Err(BuildInfoError::Malformed("string too long"));
            }
            let bytes =
                read_at(file, data, p, len).ok_or(BuildInfoError::Malformed("string data"))?;
            Ok(bytes.to_vec())
        };
        let v = read_string(read_ptr(&hdr[16..]))?;
        let m = read_string(read_ptr(&hdr[16 + ptr_size..]))?;
        (v, m)
    };
    let version = String::from_utf8_lossy(&version).into_owned();
    if !version.starts_with("go") && !version.starts_with("devel") {
        return Err(BuildInfoError::Malformed("version"));
    }
    // The linker wraps the module list in 16-byte binary sentinels; drop them before decoding.
    let mut m = modinfo.as_slice();
    if m.len() >= 33 && m[m.len() - 17] == b'\n' {
        m = &m[16..m.len() - 16];
    }
    Ok(parse_modinfo(version, &String::from_utf8_lossy(m)))
}

/// The build info header's magic; compiled once (a literal search, memchr-fast).
pub(crate) static MAGIC_FINDER: std::sync::LazyLock<Option<regex::bytes::Regex>> =
    std::sync::LazyLock::new(|| regex::bytes::Regex::new(r"(?-u)\xff Go buildinf:").ok());

fn find_magic(data: &[u8]) -> Option<usize> {
    MAGIC_FINDER
        .as_ref()?
        .find_iter(data)
        .map(|m| m.start())
        .find(|s| s % 16 == 0)
}

/// Reads `len` bytes at virtual address `addr`, through the section that contains it.
fn read_at<'a>(file: &object::File<'a>, data: &'a [u8], addr: u64, len: u64) -> Option<&'a [u8]> {
    for sec in file.sections() {
        let (sa, ss) = (sec.address(), sec.size());
        if addr >= sa && addr.checked_add(len)? <= sa.checked_add(ss)? {
            let (off, flen) = sec.file_range()?;
            let rel = addr - sa;
            if rel + len > flen {
                return None;
            }
            let s = usize::try_from(off + rel).ok()?;
            return data.get(s..s.checked_add(len as usize)?);
        }
    }
    None
}

fn read_varint_string(b: &[u8]) -> Result<(Vec<u8>, usize), BuildInfoError> {
    let mut len: u64 = 0;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let byte = *b.get(i).ok_or(BuildInfoError::Malformed("varint"))?;
        i += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 56 {
            return Err(BuildInfoError::Malformed("varint"));
        }
    }
    if len > MAX_MODINFO {
        return Err(BuildInfoError::Malformed("string too long"));
    }
    let end = i
        .checked_add(len as usize)
        .ok_or(BuildInfoError::Malformed("length"))?;
    let s = b
        .get(i..end)
        .ok_or(BuildInfoError::Malformed("truncated string"))?;
    Ok((s.to_vec(), end))
}

/// Parses the module list (`path`, `mod`, `dep`, `=>`, `build` lines).
pub fn parse_modinfo(go_version: String, modinfo: &str) -> BuildInfo {
    let text = modinfo;
    let mut info = BuildInfo {
        go_version,
        path: None,
        main: None,
        deps: Vec::new(),
        settings: Vec::new(),
    };
    let mut last_is_main = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        // A module built from vendored sources has an empty sum field (the line ends in a
        // tab): no sum, not an empty one.
        let module = |f: &[&str]| Module {
            path: f.get(1).copied().unwrap_or_default().to_owned(),
            version: f.get(2).copied().unwrap_or_default().to_owned(),
            sum: f.get(3).filter(|s| !s.is_empty()).map(|s| (*s).to_owned()),
            replace: None,
        };
        match f[0] {
            "path" if f.len() >= 2 => info.path = Some(f[1].to_owned()),
            "mod" if f.len() >= 3 => {
                info.main = Some(module(&f));
                last_is_main = true;
            }
            "dep" if f.len() >= 3 => {
                info.deps.push(module(&f));
                last_is_main = false;
            }
            "=>" if f.len() >= 3 => {
                let target = if last_is_main {
                    info.main.as_mut()
                } else {
                    info.deps.last_mut()
                };
                if let Some(m) = target {
                    m.replace = Some(Box::new(module(&f)));
                }
            }
            "build" if f.len() >= 2 => {
                if let Some((k, v)) = f[1..].join("\t").split_once('=') {
                    info.settings.push((k.to_owned(), v.to_owned()));
                }
            }
            _ => {}
        }
    }
    info
}

/// The packages a Go binary contributes: its main module, every dependency (under the module
/// that replaced it, if any, with the original recorded), and the standard library at the
/// toolchain's version.
pub fn packages(info: &BuildInfo) -> Vec<Package> {
    let mut out = Vec::new();
    let mut push = |m: &Module, main: bool| {
        // A replacement by a local directory (`=> ./x`) has no version of its own: the module
        // keeps its name and version, and is marked as locally replaced.
        let local = m
            .replace
            .as_ref()
            .is_some_and(|r| r.path.starts_with(['.', '/']));
        let (path, version) = match &m.replace {
            Some(r) if !local && !r.version.is_empty() => (r.path.as_str(), r.version.as_str()),
            Some(r) if !local => (r.path.as_str(), m.version.as_str()),
            _ => (m.path.as_str(), m.version.as_str()),
        };
        if path.is_empty() {
            return;
        }
        // `(devel)` is what the go command records for a main module built from a source tree
        // that no version names: not a version, so the package has none (and its purl none).
        let version = if version == DEVEL { "" } else { version };
        let mut p = Package::new(Ecosystem::Golang, path, version, "go-buildinfo");
        p.properties
            .insert("go.toolchain".into(), info.go_version.clone());
        if main {
            p.properties.insert("go.main".into(), "true".into());
        }
        if let Some(r) = &m.replace {
            p.properties
                .insert("go.replaced".into(), format!("{} {}", m.path, m.version));
            if local {
                p.properties
                    .insert("go.replacement.local".into(), r.path.clone());
            }
        }
        if let Some(s) = &m.sum {
            p.properties.insert("go.sum".into(), s.clone());
        }
        out.push(p);
    };
    if let Some(m) = &info.main {
        push(m, true);
    }
    for d in &info.deps {
        push(d, false);
    }
    let mut std = Package::new(
        Ecosystem::Golang,
        "stdlib",
        info.go_version.clone(),
        "go-buildinfo",
    );
    std.cpes.push(format!(
        "cpe:2.3:a:golang:go:{}:*:*:*:*:*:*:*",
        info.go_version
            .trim_start_matches("go")
            .split(' ')
            .next()
            .unwrap_or_default()
    ));
    out.push(std);
    if let Some(p) = &info.path
        && let Some(first) = out
            .first_mut()
            .filter(|p| p.properties.contains_key("go.main"))
    {
        first.properties.insert("go.path".into(), p.clone());
    }
    out
}
