//! The RPM database in its three storage formats (SQLite `rpmdb.sqlite`, Berkeley DB hash
//! `Packages`, and rpm's own NDB `Packages.db`), all holding the same header blobs, which are
//! parsed here.

use std::io::Write;

use crate::model::{Ecosystem, Package, SourcePackage};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RpmError {
    #[error("rpm header: {0}")]
    Header(&'static str),
    #[error("rpm database: {0}")]
    Db(String),
}

pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_LICENSE: u32 = 1014;
pub const TAG_ARCH: u32 = 1022;
pub const TAG_OLDFILENAMES: u32 = 1027;
pub const TAG_SOURCERPM: u32 = 1044;
pub const TAG_DIRINDEXES: u32 = 1116;
pub const TAG_BASENAMES: u32 = 1117;
pub const TAG_DIRNAMES: u32 = 1118;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// Most index entries and data bytes a header may declare (real ones: hundreds and a few MiB).
const MAX_ENTRIES: usize = 1 << 16;
const MAX_DATA: usize = 64 << 20;

/// A parsed header's values, by tag.
struct Header<'a> {
    entries: Vec<(u32, u32, usize, usize)>,
    data: &'a [u8],
}

impl<'a> Header<'a> {
    /// Parses a header blob as stored in the database: entry count, data length, the index
    /// entries, then the data store (no lead, no header magic).
    fn parse(blob: &'a [u8]) -> Result<Header<'a>, RpmError> {
        let be = |o: usize| -> Result<u32, RpmError> {
            blob.get(o..o + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(RpmError::Header("truncated"))
        };
        let il = be(0)? as usize;
        let dl = be(4)? as usize;
        if il == 0 || il > MAX_ENTRIES || dl > MAX_DATA {
            return Err(RpmError::Header("implausible sizes"));
        }
        let data_start = 8 + il * 16;
        let data = blob
            .get(data_start..data_start + dl)
            .ok_or(RpmError::Header("truncated data"))?;
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let o = 8 + i * 16;
            let (tag, ty, off, count) = (
                be(o)?,
                be(o + 4)?,
                be(o + 8)? as usize,
                be(o + 12)? as usize,
            );
            if off > dl {
                return Err(RpmError::Header("entry offset outside the data"));
            }
            entries.push((tag, ty, off, count));
        }
        Ok(Header { entries, data })
    }

    fn find(&self, tag: u32) -> Option<(u32, usize, usize)> {
        self.entries
            .iter()
            .find(|e| e.0 == tag)
            .map(|e| (e.1, e.2, e.3))
    }

    fn strings(&self, tag: u32) -> Vec<&'a str> {
        let Some((ty, off, count)) = self.find(tag) else {
            return Vec::new();
        };
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut rest = &self.data[off..];
        for _ in 0..count.min(MAX_ENTRIES * 16) {
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                break;
            };
            out.push(std::str::from_utf8(&rest[..end]).unwrap_or(""));
            rest = &rest[end + 1..];
            if ty == TYPE_STRING {
                break;
            }
        }
        out
    }

    fn string(&self, tag: u32) -> Option<&'a str> {
        self.strings(tag).into_iter().next()
    }

    fn int32s(&self, tag: u32) -> Vec<u32> {
        let Some((TYPE_INT32, off, count)) = self.find(tag) else {
            return Vec::new();
        };
        let Some(bytes) = count
            .checked_mul(4)
            .and_then(|n| self.data.get(off..off.checked_add(n)?))
        else {
            return Vec::new();
        };
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

/// Turns one header blob into a package; `Ok(None)` for the `gpg-pubkey` pseudo-packages.
pub fn parse_header(blob: &[u8]) -> Result<Option<Package>, RpmError> {
    let h = Header::parse(blob)?;
    let name = h
        .string(TAG_NAME)
        .filter(|s| !s.is_empty())
        .ok_or(RpmError::Header("no name"))?;
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let version = h
        .string(TAG_VERSION)
        .ok_or(RpmError::Header("no version"))?;
    let release = h.string(TAG_RELEASE).unwrap_or_default();
    let epoch = h.int32s(TAG_EPOCH).first().copied();
    let vr = if release.is_empty() {
        version.to_owned()
    } else {
        format!("{version}-{release}")
    };
    let evr = match epoch {
        Some(e) => format!("{e}:{vr}"),
        None => vr.clone(),
    };
    let mut p = Package::new(Ecosystem::Rpm, name, evr, "rpm-db");
    p.arch = h
        .string(TAG_ARCH)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    if let Some(e) = epoch {
        p.properties.insert("rpm.epoch".into(), e.to_string());
    }
    if let Some(l) = h.string(TAG_LICENSE).filter(|l| !l.is_empty()) {
        p.licenses.push(l.to_owned());
    }
    if let Some(srpm) = h.string(TAG_SOURCERPM).filter(|s| !s.is_empty()) {
        p.properties.insert("rpm.sourcerpm".into(), srpm.to_owned());
        let stem = srpm
            .trim_end_matches(".rpm")
            .trim_end_matches(".src")
            .trim_end_matches(".nosrc");
        if let Some((nv, rel)) = stem.rsplit_once('-')
            && let Some((n, v)) = nv.rsplit_once('-')
        {
            let sv = format!("{v}-{rel}");
            let sv = match epoch {
                Some(e) => format!("{e}:{sv}"),
                None => sv,
            };
            p.source = Some(SourcePackage {
                name: n.to_owned(),
                version: sv,
            });
        }
    }
    let (base, dirs, idx) = (
        h.strings(TAG_BASENAMES),
        h.strings(TAG_DIRNAMES),
        h.int32s(TAG_DIRINDEXES),
    );
    if !base.is_empty() {
        for (b, i) in base.iter().zip(idx.iter()) {
            if let Some(d) = dirs.get(*i as usize) {
                p.files.push(format!("{}{b}", d.trim_start_matches('/')));
            }
        }
    } else {
        p.files.extend(
            h.strings(TAG_OLDFILENAMES)
                .iter()
                .map(|f| f.trim_start_matches('/').to_owned()),
        );
    }
    Ok(Some(p))
}

fn collect(blobs: impl IntoIterator<Item = Vec<u8>>) -> Result<Vec<Package>, RpmError> {
    let mut out = Vec::new();
    let mut bad = 0;
    for b in blobs {
        match parse_header(&b) {
            Ok(Some(p)) => out.push(p),
            Ok(None) => {}
            Err(_) => bad += 1,
        }
    }
    if out.is_empty() && bad > 0 {
        return Err(RpmError::Db(format!(
            "{bad} unreadable headers and no package"
        )));
    }
    Ok(out)
}

/// `rpmdb.sqlite`: SQLite needs a file, so the (size-capped) bytes go to a private temporary
/// file that is deleted when this returns. This is the only file analysis writes to disk.
pub fn read_sqlite(data: &[u8]) -> Result<Vec<Package>, RpmError> {
    let db = |e: &dyn std::fmt::Display| RpmError::Db(e.to_string());
    let mut tmp = tempfile::NamedTempFile::new().map_err(|e| db(&e))?;
    tmp.write_all(data).map_err(|e| db(&e))?;
    tmp.flush().map_err(|e| db(&e))?;
    let conn = rusqlite::Connection::open_with_flags(
        tmp.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(|e| db(&e))?;
    let mut stmt = conn
        .prepare("SELECT blob FROM Packages")
        .map_err(|e| db(&e))?;
    let blobs = stmt
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .map_err(|e| db(&e))?
        .filter_map(Result::ok)
        .collect::<Vec<_>>();
    collect(blobs)
}

/// Berkeley DB hash database `Packages`: every hash page's off-page values, each a chain of
/// overflow pages holding one header blob.
pub fn read_bdb(data: &[u8]) -> Result<Vec<Package>, RpmError> {
    const HASH_MAGIC: u32 = 0x061561;
    const P_HASH_UNSORTED: u8 = 2;
    const P_OVERFLOW: u8 = 7;
    const P_HASH: u8 = 13;
    const H_OFFPAGE: u8 = 3;
    const HDR: usize = 26;
    let meta = data
        .get(..64)
        .ok_or(RpmError::Db("Berkeley DB file too short".into()))?;
    let raw_magic = [meta[12], meta[13], meta[14], meta[15]];
    let big = if u32::from_le_bytes(raw_magic) == HASH_MAGIC {
        false
    } else if u32::from_be_bytes(raw_magic) == HASH_MAGIC {
        true
    } else {
        return Err(RpmError::Db("not a Berkeley DB hash database".into()));
    };
    let u32_at = |b: &[u8], o: usize| -> u32 {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let u16_at = |b: &[u8], o: usize| -> u16 {
        if big {
            u16::from_be_bytes([b[o], b[o + 1]])
        } else {
            u16::from_le_bytes([b[o], b[o + 1]])
        }
    };
    let page_size = u32_at(meta, 20) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(RpmError::Db("implausible Berkeley DB page size".into()));
    }
    let last = (u32_at(meta, 32) as usize).min(data.len() / page_size);
    let page = |n: usize| data.get(n * page_size..(n + 1) * page_size);
    let mut blobs = Vec::new();
    for n in 0..=last {
        let Some(p) = page(n) else { break };
        if p[25] != P_HASH && p[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = u16_at(p, 20) as usize;
        // Items alternate key, value; their offsets follow the page header.
        for i in (1..entries).step_by(2) {
            let Some(off) = p
                .get(HDR + 2 * i..HDR + 2 * i + 2)
                .map(|_| u16_at(p, HDR + 2 * i) as usize)
            else {
                break;
            };
            let Some(item) = p.get(off..off + 12) else {
                continue;
            };
            if item[0] != H_OFFPAGE {
                continue;
            }
            let (mut next, total) = (u32_at(item, 4) as usize, u32_at(item, 8) as usize);
            if total > MAX_DATA {
                continue;
            }
            let mut blob = Vec::with_capacity(total);
            let mut hops = 0;
            while next != 0 && hops <= last && blob.len() < total {
                let Some(op) = page(next) else { break };
                if op[25] != P_OVERFLOW {
                    break;
                }
                let following = u32_at(op, 16) as usize;
                let used = if following == 0 {
                    (u16_at(op, 22) as usize).min(page_size - HDR)
                } else {
                    page_size - HDR
                };
                blob.extend_from_slice(&op[HDR..HDR + used]);
                next = following;
                hops += 1;
            }
            blob.truncate(total);
            blobs.push(blob);
        }
    }
    collect(blobs)
}

/// rpm's NDB `Packages.db`: a slot table pointing at 16-byte-aligned blobs.
pub fn read_ndb(data: &[u8]) -> Result<Vec<Package>, RpmError> {
    let le = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if data.get(..4) != Some(b"RpmP") {
        return Err(RpmError::Db("not an NDB database (bad magic)".into()));
    }
    let slot_pages = le(12).ok_or(RpmError::Db("truncated NDB header".into()))? as usize;
    let slots = (slot_pages.saturating_mul(4096 / 16))
        .saturating_sub(2)
        .min(data.len() / 16);
    let mut blobs = Vec::new();
    for s in 0..slots {
        let o = 32 + s * 16;
        let (Some(magic), Some(pkg), Some(blk)) = (data.get(o..o + 4), le(o + 4), le(o + 8)) else {
            break;
        };
        if magic != b"Slot" || pkg == 0 {
            continue;
        }
        let b = blk as usize * 16;
        if data.get(b..b + 4) != Some(b"BlbS") {
            continue;
        }
        let Some(len) = le(b + 12) else { continue };
        if let Some(blob) = data.get(b + 16..b + 16 + len as usize) {
            blobs.push(blob.to_vec());
        }
    }
    collect(blobs)
}

/// Builds a header blob (for tests and fuzzing): string tags and an optional epoch.
#[doc(hidden)]
pub fn build_header(strings: &[(u32, &[&str])], epoch: Option<u32>, dirindexes: &[u32]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    let mut push = |tag: u32, ty: u32, count: usize, bytes: &[u8], data: &mut Vec<u8>| {
        if ty == TYPE_INT32 {
            while !data.len().is_multiple_of(4) {
                data.push(0);
            }
        }
        index.extend_from_slice(&tag.to_be_bytes());
        index.extend_from_slice(&ty.to_be_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&(count as u32).to_be_bytes());
        data.extend_from_slice(bytes);
    };
    for (tag, values) in strings {
        let ty = if values.len() == 1 && ![TAG_BASENAMES, TAG_DIRNAMES].contains(tag) {
            TYPE_STRING
        } else {
            TYPE_STRING_ARRAY
        };
        let mut bytes = Vec::new();
        for v in *values {
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0);
        }
        push(*tag, ty, values.len(), &bytes, &mut data);
    }
    if let Some(e) = epoch {
        push(TAG_EPOCH, TYPE_INT32, 1, &e.to_be_bytes(), &mut data);
    }
    if !dirindexes.is_empty() {
        let bytes: Vec<u8> = dirindexes.iter().flat_map(|i| i.to_be_bytes()).collect();
        push(
            TAG_DIRINDEXES,
            TYPE_INT32,
            dirindexes.len(),
            &bytes,
            &mut data,
        );
    }
    let mut out = Vec::new();
    out.extend_from_slice(&((index.len() / 16) as u32).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    out
}

/// Tag numbers for [`build_header`].
#[doc(hidden)]
pub mod tags {
    pub use super::{
        TAG_ARCH as ARCH, TAG_BASENAMES as BASENAMES, TAG_DIRNAMES as DIRNAMES, TAG_NAME as NAME,
    };
    pub use super::{TAG_RELEASE as RELEASE, TAG_SOURCERPM as SOURCERPM, TAG_VERSION as VERSION};
}
