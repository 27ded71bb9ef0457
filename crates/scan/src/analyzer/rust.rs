//! cargo-auditable: the dependency list a Rust binary carries in its `.dep-v0` ELF section,
//! zlib-compressed JSON (<https://github.com/rust-secure-code/cargo-auditable>).

use std::io::Read;

use object::{Object, ObjectSection};

use crate::model::{Ecosystem, Package};

/// Largest decompressed dependency list; real ones are tens of kilobytes.
const MAX_JSON: u64 = 8 << 20;

/// The packages of an auditable binary; `Ok(None)` when there is no `.dep-v0` section.
pub fn read_auditable(data: &[u8]) -> Result<Option<Vec<Package>>, String> {
    let Ok(file) = object::File::parse(data) else {
        return Ok(None);
    };
    let Some(sec) = file.section_by_name(".dep-v0") else {
        return Ok(None);
    };
    // Read by file offset from the section header, not through any loader logic.
    let (off, len) = sec.file_range().ok_or(".dep-v0 has no file data")?;
    let start = usize::try_from(off).map_err(|_| ".dep-v0 offset")?;
    let end = start
        .checked_add(usize::try_from(len).map_err(|_| ".dep-v0 size")?)
        .ok_or(".dep-v0 size")?;
    let compressed = data
        .get(start..end)
        .ok_or(".dep-v0 lies outside the file")?;
    parse_dep_v0(compressed).map(Some)
}

/// Decompresses and parses the section's content.
pub fn parse_dep_v0(compressed: &[u8]) -> Result<Vec<Package>, String> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("cargo-auditable data does not decompress: {e}"))?;
    if json.len() as u64 > MAX_JSON {
        return Err("cargo-auditable data is larger than 8 MiB decompressed".into());
    }
    #[derive(serde::Deserialize)]
    struct Info {
        packages: Vec<Dep>,
    }
    #[derive(serde::Deserialize)]
    struct Dep {
        name: String,
        version: String,
        #[serde(default)]
        source: String,
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        root: bool,
    }
    let info: Info =
        serde_json::from_slice(&json).map_err(|e| format!("cargo-auditable JSON: {e}"))?;
    Ok(info
        .packages
        .into_iter()
        .filter(|d| d.kind.as_deref() != Some("build"))
        .map(|d| {
            let mut p = Package::new(Ecosystem::Cargo, d.name, d.version, "cargo-auditable");
            if !d.source.is_empty() {
                p.properties.insert("cargo.source".into(), d.source);
            }
            if d.root {
                p.properties.insert("cargo.root".into(), "true".into());
            }
            p
        })
        .collect())
}
