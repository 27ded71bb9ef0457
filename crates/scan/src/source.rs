//! Where images come from: an OCI image layout directory, an image archive (`docker save` or an
//! OCI layout in a tar), or a registry ([`crate::registry::RegistrySource`]).
//!
//! A source only hands out bytes: manifest bytes (exactly as stored) and blob streams by
//! digest. Digests are verified by the caller as it streams ([`crate::layer::VerifyingReader`]),
//! so no source has to buffer a blob to check it.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use berth_oci::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::error::ScanError;

/// The media type given to `docker save` layers, whose compression no manifest states (it is
/// detected from the first bytes).
pub const DOCKER_ARCHIVE_LAYER: &str = "application/vnd.berth.docker-archive.layer.tar";

/// Largest manifest or config read into memory.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// A stream of a blob's bytes, unverified.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Manifest bytes as the source stores them, with what the source says they are.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    /// The media type the source reported (a registry's `Content-Type`), if any.
    pub media_type: Option<String>,
    /// The digest of `bytes` (checked against the reference when fetched by digest).
    pub digest: Digest,
}

/// Something images can be read from.
pub trait ImageSource: Send + Sync {
    /// The manifest (or index) that `reference` names: a tag, a digest (`sha256:...`), or the
    /// empty string for "the image" of a single-image source.
    fn manifest(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<FetchedManifest, ScanError>> + Send;
    /// A blob's bytes.
    fn blob(&self, digest: &Digest) -> impl Future<Output = Result<BlobReader, ScanError>> + Send;
}

/// Reads a manifest addressed by digest and checks that the bytes match.
pub(crate) fn verified_manifest(
    bytes: Vec<u8>,
    media_type: Option<String>,
    digest: &Digest,
) -> Result<FetchedManifest, ScanError> {
    let actual = Digest::of(digest.algorithm(), &bytes);
    if &actual != digest {
        return Err(ScanError::DigestMismatch {
            digest: digest.clone(),
            actual,
        });
    }
    Ok(FetchedManifest {
        bytes,
        media_type,
        digest: actual,
    })
}

/// Where a local source's files are: a directory, or the entries of a tar file.
#[derive(Debug)]
enum Backing {
    Dir(PathBuf),
    /// Entry path -> (data offset, size) in the tar at `file`, indexed once on open.
    Tar {
        file: PathBuf,
        entries: HashMap<String, (u64, u64)>,
    },
}

/// An image on the local filesystem: an OCI image layout directory ([`LocalSource::oci_layout`])
/// or an archive written by `docker save`, `skopeo copy docker-archive:` or `oci-archive:`
/// ([`LocalSource::archive`]).
#[derive(Debug)]
pub struct LocalSource {
    backing: Backing,
    /// For `docker save` archives in the legacy format: a synthesised Docker manifest, and
    /// blob digest -> archive path for its config and layers.
    docker: Option<(Vec<u8>, HashMap<Digest, String>)>,
}

impl LocalSource {
    /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`).
    pub fn oci_layout(dir: impl Into<PathBuf>) -> Result<LocalSource, ScanError> {
        let dir = dir.into();
        if !dir.join("index.json").is_file() {
            return Err(ScanError::Source(format!(
                "{} is not an OCI image layout (no index.json)",
                dir.display()
            )));
        }
        Ok(LocalSource {
            backing: Backing::Dir(dir),
            docker: None,
        })
    }

    /// A tar archive holding an OCI layout or `docker save` output (legacy `manifest.json` with
    /// `<id>/layer.tar` layers, or the OCI layout Docker 25+ writes). Reads the tar headers once.
    pub async fn archive(path: impl Into<PathBuf>) -> Result<LocalSource, ScanError> {
        let path = path.into();
        let p = path.clone();
        let entries = tokio::task::spawn_blocking(move || index_tar(&p))
            .await
            .map_err(|e| ScanError::Source(e.to_string()))??;
        let mut src = LocalSource {
            backing: Backing::Tar {
                file: path,
                entries,
            },
            docker: None,
        };
        if !src.exists("index.json") {
            if !src.exists("manifest.json") {
                return Err(ScanError::Source(
                    "archive has neither index.json nor manifest.json".into(),
                ));
            }
            src.docker = Some(src.docker_manifest().await?);
        }
        Ok(src)
    }

    fn exists(&self, name: &str) -> bool {
        match &self.backing {
            Backing::Dir(d) => d.join(name).is_file(),
            Backing::Tar { entries, .. } => entries.contains_key(name),
        }
    }

    async fn open(&self, name: &str) -> Result<(BlobReader, u64), ScanError> {
        match &self.backing {
            Backing::Dir(d) => {
                let f = tokio::fs::File::open(d.join(name))
                    .await
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => ScanError::NotFound(name.to_owned()),
                        _ => ScanError::Io(e),
                    })?;
                let len = f.metadata().await?.len();
                Ok((Box::pin(f), len))
            }
            Backing::Tar { file, entries } => {
                let (offset, size) = *entries
                    .get(name)
                    .ok_or_else(|| ScanError::NotFound(name.to_owned()))?;
                let mut f = tokio::fs::File::open(file).await?;
                f.seek(SeekFrom::Start(offset)).await?;
                Ok((Box::pin(f.take(size)), size))
            }
        }
    }

    async fn read_small(&self, name: &str) -> Result<Vec<u8>, ScanError> {
        let (mut r, len) = self.open(name).await?;
        if len > MAX_MANIFEST {
            return Err(ScanError::Source(format!(
                "{name} is larger than {MAX_MANIFEST} bytes"
            )));
        }
        let mut buf = Vec::with_capacity(len as usize);
        r.read_to_end(&mut buf).await?;
        Ok(buf)
    }

    fn blob_path(digest: &Digest) -> String {
        format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
    }

    /// Builds a Docker image manifest from a legacy `manifest.json` (first image), whose layers
    /// are named by path; their digests are the config's `diff_ids` (uncompressed tars).
    async fn docker_manifest(&self) -> Result<(Vec<u8>, HashMap<Digest, String>), ScanError> {
        let bad = |m: &str| ScanError::Source(format!("docker archive manifest.json: {m}"));
        let m: serde_json::Value = serde_json::from_slice(&self.read_small("manifest.json").await?)
            .map_err(|e| bad(&e.to_string()))?;
        let image = m.get(0).ok_or_else(|| bad("no image"))?;
        let config_path = image["Config"].as_str().ok_or_else(|| bad("no Config"))?;
        let config = self.read_small(config_path).await?;
        let config_digest = Digest::sha256_of(&config);
        let cfg: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| bad(&e.to_string()))?;
        let diff_ids = cfg["rootfs"]["diff_ids"]
            .as_array()
            .ok_or_else(|| bad("config has no rootfs.diff_ids"))?;
        let layers = image["Layers"].as_array().ok_or_else(|| bad("no Layers"))?;
        if layers.len() != diff_ids.len() {
            return Err(bad("Layers and diff_ids differ in length"));
        }
        let mut paths = HashMap::new();
        paths.insert(config_digest.clone(), config_path.to_owned());
        let mut descs = Vec::new();
        for (l, d) in layers.iter().zip(diff_ids) {
            let path = l.as_str().ok_or_else(|| bad("layer path"))?;
            let digest: Digest = d
                .as_str()
                .unwrap_or_default()
                .parse()
                .map_err(|_| bad("bad diff_id"))?;
            let size = match &self.backing {
                Backing::Tar { entries, .. } => entries.get(path).map(|e| e.1).unwrap_or(0),
                Backing::Dir(_) => 0,
            };
            descs.push(serde_json::json!({"mediaType": DOCKER_ARCHIVE_LAYER, "digest": digest.to_string(), "size": size}));
            paths.insert(digest, path.to_owned());
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": berth_oci::media::DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": descs,
        });
        Ok((
            serde_json::to_vec(&manifest).map_err(|e| bad(&e.to_string()))?,
            paths,
        ))
    }
}

impl ImageSource for LocalSource {
    async fn manifest(&self, reference: &str) -> Result<FetchedManifest, ScanError> {
        if let Some((bytes, _)) = &self.docker {
            return Ok(FetchedManifest {
                bytes: bytes.clone(),
                media_type: Some(berth_oci::media::DOCKER_MANIFEST.into()),
                digest: Digest::sha256_of(bytes),
            });
        }
        if let Ok(d) = reference.parse::<Digest>() {
            let bytes = self.read_small(&Self::blob_path(&d)).await?;
            return verified_manifest(bytes, None, &d);
        }
        let index_bytes = self.read_small("index.json").await?;
        let index: serde_json::Value = serde_json::from_slice(&index_bytes)
            .map_err(|e| ScanError::Manifest(format!("index.json: {e}")))?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = if reference.is_empty() {
            if manifests.len() != 1 {
                // Several images: hand out the index itself; the caller picks per platform.
                let digest = Digest::sha256_of(&index_bytes);
                return Ok(FetchedManifest {
                    bytes: index_bytes,
                    media_type: Some(berth_oci::media::OCI_INDEX.into()),
                    digest,
                });
            }
            manifests.first()
        } else {
            manifests.iter().find(|m| {
                let a = &m["annotations"];
                a["org.opencontainers.image.ref.name"].as_str() == Some(reference)
                    || a["io.containerd.image.name"]
                        .as_str()
                        .is_some_and(|n| n == reference || n.ends_with(&format!(":{reference}")))
            })
        };
        let desc = chosen.ok_or_else(|| ScanError::NotFound(format!("reference {reference:?}")))?;
        let digest: Digest = desc["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|_| ScanError::Manifest("index.json: bad digest".into()))?;
        let bytes = self.read_small(&Self::blob_path(&digest)).await?;
        verified_manifest(
            bytes,
            desc["mediaType"].as_str().map(str::to_owned),
            &digest,
        )
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobReader, ScanError> {
        let path = match &self.docker {
            Some((_, paths)) => paths
                .get(digest)
                .cloned()
                .ok_or_else(|| ScanError::NotFound(digest.to_string()))?,
            None => Self::blob_path(digest),
        };
        Ok(self.open(&path).await?.0)
    }
}

/// Reads a tar's headers (seeking over the data) into entry path -> (data offset, size).
fn index_tar(path: &Path) -> Result<HashMap<String, (u64, u64)>, ScanError> {
    let mut file = std::fs::File::open(path)?;
    let mut head = [0u8; 2];
    let n = file.read(&mut head)?;
    if n == 2 && head == [0x1f, 0x8b] {
        return Err(ScanError::Source(
            "compressed image archives are not supported; decompress it first".into(),
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut out = HashMap::new();
    // `docker save` names layers `<id>/layer.tar`, which newer writers make symlinks to
    // `../<digest>.tar`: resolved once all entries are known.
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry.map_err(|e| ScanError::Source(format!("archive: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Ok((name, _)) = crate::layer::normalize_path(&name) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                out.insert(name, (entry.raw_file_position(), entry.size()));
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                let joined = match (entry.header().entry_type(), name.rsplit_once('/')) {
                    (tar::EntryType::Symlink, Some((dir, _))) if !target.starts_with('/') => {
                        format!("{dir}/{target}")
                    }
                    _ => target,
                };
                if let Ok((target, _)) = crate::layer::normalize_path_lexically(&joined) {
                    links.push((name, target));
                }
            }
            _ => {}
        }
    }
    for (name, target) in links {
        if let Some(&e) = out.get(&target) {
            out.entry(name).or_insert(e);
        }
    }
    Ok(out)
}
