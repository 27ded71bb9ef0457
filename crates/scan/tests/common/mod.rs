//! Builds test images the way registries store them: OCI image layouts and archives written
//! with the `tar` crate, from real files of this machine and committed fixtures.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_oci::Digest;
use berth_scan::model::ImageReport;
use berth_scan::{AnalyzeOptions, LocalSource, Package};
use serde_json::json;

/// One entry of a test layer.
#[derive(Clone)]
pub enum Entry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir(String),
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
    /// A raw path, written without normalisation (for hostile names).
    RawFile {
        path: Vec<u8>,
        data: Vec<u8>,
    },
}

pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Entry {
    Entry::File {
        path: path.into(),
        data: data.into(),
        mode: 0o644,
    }
}

pub fn exe(path: &str, data: impl Into<Vec<u8>>) -> Entry {
    Entry::File {
        path: path.into(),
        data: data.into(),
        mode: 0o755,
    }
}

/// A real file of this machine at `path` in the image.
pub fn real(path: &str, from: &str) -> Entry {
    let data = std::fs::read(from).unwrap_or_else(|e| panic!("{from}: {e}"));
    let mode = std::fs::metadata(from)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
        .unwrap_or(0o644);
    Entry::File {
        path: path.into(),
        data,
        mode: mode & 0o7777,
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn symlink(path: &str, target: &str) -> Entry {
    Entry::Symlink {
        path: path.into(),
        target: target.into(),
    }
}

pub fn hardlink(path: &str, target: &str) -> Entry {
    Entry::Hardlink {
        path: path.into(),
        target: target.into(),
    }
}

pub fn dir(path: &str) -> Entry {
    Entry::Dir(path.into())
}

/// An uncompressed layer tar.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        match e {
            Entry::File { path, data, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, path, data.as_slice()).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::Hardlink { path, target } => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::RawFile { path, data } => {
                // Write the name bytes straight into the header, bypassing the builder's checks.
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path);
                h.set_cksum();
                b.append(&h, data.as_slice()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub fn compress(tar: &[u8], c: Comp) -> (Vec<u8>, &'static str) {
    match c {
        Comp::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => (
            zstd::encode_all(tar, 1).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    }
}

/// An OCI image layout being written.
pub struct Layout {
    pub dir: tempfile::TempDir,
    pub index: Vec<serde_json::Value>,
}

impl Layout {
    pub fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Layout {
            dir,
            index: Vec::new(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn blob(&self, bytes: &[u8]) -> Digest {
        let d = Digest::sha256_of(bytes);
        std::fs::write(self.dir.path().join("blobs/sha256").join(d.hex()), bytes).unwrap();
        d
    }

    /// Writes an image (config + layers + manifest) and returns the manifest's descriptor.
    pub fn image(&mut self, layers: &[(Vec<u8>, &str)], arch: &str) -> serde_json::Value {
        // Diff IDs are digests of the uncompressed tars (of the bytes as they are, for the
        // corrupt blobs some tests write).
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|(b, mt)| {
                let tar = if mt.ends_with("gzip") {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(b.as_slice()),
                        &mut out,
                    )
                    .ok()
                    .map(|_| out)
                } else if mt.ends_with("zstd") {
                    zstd::decode_all(b.as_slice()).ok()
                } else {
                    None
                };
                Digest::sha256_of(tar.as_deref().unwrap_or(b)).to_string()
            })
            .collect();
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
        let cd = self.blob(&config);
        let ls: Vec<_> = layers
            .iter()
            .map(|(b, mt)| json!({"mediaType": mt, "digest": self.blob(b).to_string(), "size": b.len()}))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
            "layers": ls,
        }))
        .unwrap();
        let md = self.blob(&manifest);
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": manifest.len(),
               "platform": {"os": "linux", "architecture": arch}})
    }

    pub fn tag(&mut self, mut desc: serde_json::Value, tag: &str) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(desc);
    }

    pub fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.index});
        std::fs::write(
            self.dir.path().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// An image of these layers (each a list of entries), compressed with `c`, analysed.
pub fn analyze_layers(layers: &[Vec<Entry>], c: Comp) -> ImageReport {
    analyze_layers_with(layers, c, AnalyzeOptions::default()).unwrap()
}

pub fn analyze_layers_with(
    layers: &[Vec<Entry>],
    c: Comp,
    opts: AnalyzeOptions,
) -> Result<ImageReport, berth_scan::ScanError> {
    let mut l = Layout::new();
    let blobs: Vec<_> = layers.iter().map(|e| compress(&layer_tar(e), c)).collect();
    let d = l.image(&blobs, "amd64");
    l.tag(d, "test");
    l.write_index();
    run(async move {
        let src = LocalSource::oci_layout(l.path())?;
        berth_scan::analyze_image(&src, "test", &opts, berth_scan::no_progress()).await
    })
}

pub fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn find<'a>(r: &'a ImageReport, name: &str) -> Option<&'a Package> {
    r.packages.iter().find(|p| p.name == name)
}

pub fn names(r: &ImageReport) -> Vec<String> {
    r.packages
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect()
}

/// A Berkeley DB hash file (512-byte pages) holding `blobs` as off-page values, as rpm < 4.16
/// wrote `Packages`.
pub fn bdb(blobs: &[Vec<u8>]) -> Vec<u8> {
    const PS: usize = 512;
    let mut pages: Vec<Vec<u8>> = vec![vec![0; PS], vec![0; PS]];
    let mut items: Vec<Vec<u8>> = Vec::new();
    for (i, blob) in blobs.iter().enumerate() {
        let first = pages.len();
        let chunks: Vec<&[u8]> = blob.chunks(PS - 26).collect();
        for (j, c) in chunks.iter().enumerate() {
            let mut p = vec![0u8; PS];
            let pgno = first + j;
            p[8..12].copy_from_slice(&(pgno as u32).to_le_bytes());
            let next = if j + 1 < chunks.len() { pgno + 1 } else { 0 };
            p[16..20].copy_from_slice(&(next as u32).to_le_bytes());
            p[22..24].copy_from_slice(&(c.len() as u16).to_le_bytes());
            p[25] = 7;
            p[26..26 + c.len()].copy_from_slice(c);
            pages.push(p);
        }
        let mut key = vec![1u8];
        key.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        let mut val = vec![3u8, 0, 0, 0];
        val.extend_from_slice(&(first as u32).to_le_bytes());
        val.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        items.push(key);
        items.push(val);
    }
    // The hash page: item offsets after the header, items from the end of the page down.
    let hp = &mut pages[1];
    hp[20..22].copy_from_slice(&(items.len() as u16).to_le_bytes());
    hp[25] = 13;
    let mut end = PS;
    for (k, item) in items.iter().enumerate() {
        end -= item.len();
        hp[end..end + item.len()].copy_from_slice(item);
        hp[26 + 2 * k..28 + 2 * k].copy_from_slice(&(end as u16).to_le_bytes());
    }
    let meta = &mut pages[0];
    meta[12..16].copy_from_slice(&0x061561u32.to_le_bytes());
    meta[20..24].copy_from_slice(&(PS as u32).to_le_bytes());
    let last = 0u32; // patched below
    meta[32..36].copy_from_slice(&last.to_le_bytes());
    let n = pages.len() as u32 - 1;
    pages[0][32..36].copy_from_slice(&n.to_le_bytes());
    pages.concat()
}

/// rpm's NDB `Packages.db`: one slot page, blobs after it.
pub fn ndb(blobs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    out[..4].copy_from_slice(b"RpmP");
    out[12..16].copy_from_slice(&1u32.to_le_bytes());
    for (i, b) in blobs.iter().enumerate() {
        let blk = out.len() / 16;
        let slot = 32 + i * 16;
        out[slot..slot + 4].copy_from_slice(b"Slot");
        out[slot + 4..slot + 8].copy_from_slice(&(i as u32 + 1).to_le_bytes());
        out[slot + 8..slot + 12].copy_from_slice(&(blk as u32).to_le_bytes());
        out[slot + 12..slot + 16]
            .copy_from_slice(&((b.len() as u32 + 16).div_ceil(16)).to_le_bytes());
        out.extend_from_slice(b"BlbS");
        out.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
        while !out.len().is_multiple_of(16) {
            out.push(0);
        }
    }
    out
}
