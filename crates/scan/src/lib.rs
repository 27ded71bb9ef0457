//! Image analysis for Berth: what an OCI image contains, without a server, a database or a
//! container runtime.
//!
//! # Design
//!
//! An image is analysed in two steps.
//!
//! 1. **Per layer** ([`layer::index_layer`]): the compressed blob streams from an
//!    [`ImageSource`] through a digest-verifying reader and a decompressor (gzip, zstd or none,
//!    by media type; other media types are refused before anything is fetched) into a tar
//!    walker, on a blocking thread fed by a bounded bridge (`SyncIoBridge`). Every entry is
//!    recorded ([`model::FileEntry`]); the few files an analyser wants (chosen by path, and ELF
//!    files by their first bytes) are read into memory one at a time under a size cap
//!    ([`AnalyzerOptions`]); binaries over the cap are scanned as a stream in 4 MiB windows; all
//!    other data is skipped as it streams. Memory is bounded by the caps, not by the layer
//!    (`tests/memory.rs` indexes a 512 MiB layer with a peak of a few MiB). Nothing is written
//!    to disk except a capped copy of an `rpmdb.sqlite`, which SQLite can only open as a file.
//!    The result, a [`LayerIndex`], depends only on the layer's bytes and [`ANALYZER_VERSION`],
//!    so callers cache it by layer digest ([`LayerCache`], or their own store with
//!    [`layer_index`] and [`assemble_report`]); a layer shared by many images is analysed once.
//! 2. **Merge** ([`merge::inventory`]): the layer indexes are applied bottom to top (whiteouts,
//!    opaque directories, replacement, hard links including links to lower layers, symlinks
//!    resolved in the final tree, so `etc/os-release -> ../usr/lib/os-release` works across
//!    layers) and the findings of files that survive become the inventory: the OS, packages with
//!    purls (whose `distro` qualifier needs the final OS, which is why purls are computed here
//!    and not per layer), CPEs and evidence (layer digest and path). A binary recognised by the
//!    classifier table at a path an OS package owns (dpkg file lists, apk `F:`/`R:`, rpm file
//!    names; compared through symlinks such as merged-`/usr`) is left to that package.
//!
//! Analysers ([`analyzer`]) are pure functions of a file's path and bytes: os-release, dpkg
//! (status, distroless `status.d`, `info/*.list` and `*.md5sums`), apk, rpm (SQLite, Berkeley
//! DB hash, NDB; headers parsed here), Go build info (both header layouts), cargo-auditable,
//! Cargo.lock, Python metadata, npm (`package.json`, lock files as declared), Java archives
//! (nested, within an expansion budget), RubyGems, and the binary classifier table
//! ([`analyzer::binary::CLASSIFIERS`]). A file they cannot read is a [`Warning`], never an
//! error and never a panic; a layer that does not decompress, is not a tar or does not match
//! its digest is an error ([`ScanError`]); a tar that ends right after its last complete file,
//! without the end-of-archive blocks (as umoci 0.4 writes some), is read with a warning.
//!
//! Sources ([`source`], [`registry`]): OCI layout directories, OCI and `docker save` archives
//! (whose layers are named by diff ID and so verified after decompression), and registries
//! (anonymous, Basic, or Bearer tokens from a `WWW-Authenticate` challenge). Each gives manifest
//! bytes and blob streams; digests are verified while streaming.
//!
//! Output ([`output`]): Berth's JSON ([`ImageReport`] with serde), CycloneDX 1.6 (validated in
//! tests against the official schema), SPDX 2.3 and a text table.
//!
//! Entry points: [`analyze_image`] (one image, or one platform of an index) and
//! [`analyze_index`] (every platform, attestation manifests skipped), both reporting
//! [`Progress`].

pub mod analyzer;
pub mod error;
/// Entry points of the fuzz targets in `crates/scan/fuzz`, replayed by the stable tests.
#[doc(hidden)]
pub mod fuzz;
pub mod layer;
pub mod merge;
pub mod model;
pub mod output;
pub mod purl;
pub mod registry;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_oci::{Descriptor, Digest, Manifest};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

pub use analyzer::AnalyzerOptions;
pub use error::ScanError;
pub use model::{
    ANALYZER_VERSION, Ecosystem, Evidence, ImageReport, LayerIndex, LayerSummary, OsInfo, Package,
    Platform, SourcePackage, Warning,
};
pub use registry::{Credentials, RegistrySource};
pub use source::{BlobReader, FetchedManifest, ImageSource, LocalSource};

/// A cache of layer indexes, keyed by layer digest. Implementations must return only indexes
/// whose `analyzer_version` is [`ANALYZER_VERSION`] (the analysis also checks).
pub trait LayerCache: Send + Sync {
    fn get(&self, digest: &Digest) -> Option<LayerIndex>;
    fn put(&self, index: &LayerIndex);
}

/// An in-memory [`LayerCache`], for one process (a multi-platform analysis, a test).
#[derive(Default)]
pub struct MemoryLayerCache {
    map: Mutex<HashMap<Digest, LayerIndex>>,
}

impl LayerCache for MemoryLayerCache {
    fn get(&self, digest: &Digest) -> Option<LayerIndex> {
        self.map.lock().ok()?.get(digest).cloned()
    }

    fn put(&self, index: &LayerIndex) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(index.digest.clone(), index.clone());
        }
    }
}

/// What the analysis is doing, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The image manifest is known: how many layers, how many compressed bytes in all.
    Resolved {
        layers: usize,
        total_bytes: u64,
    },
    LayerStarted {
        digest: Digest,
        size: u64,
    },
    /// Compressed bytes of this layer read so far (about every MiB).
    LayerBytes {
        digest: Digest,
        read: u64,
    },
    LayerDone {
        digest: Digest,
        cached: bool,
    },
    /// All layers are indexed; the merge is running.
    Merging,
}

/// The callback told of [`Progress`]; called from async tasks and from blocking threads.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A progress callback that ignores everything.
pub fn no_progress() -> ProgressFn {
    Arc::new(|_| {})
}

/// How to analyse.
#[derive(Clone, Default)]
pub struct AnalyzeOptions {
    pub limits: AnalyzerOptions,
    /// The platform to pick from an index; default `linux/amd64`, or the only image there is.
    pub platform: Option<Platform>,
    pub cache: Option<Arc<dyn LayerCache>>,
    /// Layers indexed at once (0 means 2). Each holds at most one capped file in memory and a
    /// blocking thread, so this bounds both.
    pub concurrency: usize,
}

const ATTESTATION: &str = "attestation-manifest";

/// Analyses the image `reference` names in `source`. For an index, analyses the platform of
/// `options.platform` (default `linux/amd64`; an index with a single image needs no choice).
pub async fn analyze_image<S: ImageSource>(
    source: &S,
    reference: &str,
    options: &AnalyzeOptions,
    progress: ProgressFn,
) -> Result<ImageReport, ScanError> {
    let fetched = source.manifest(reference).await?;
    let manifest = parse_manifest(&fetched)?;
    if !manifest.kind.is_index() {
        return analyze_manifest(
            source,
            reference,
            fetched.digest,
            &manifest,
            None,
            options,
            &progress,
        )
        .await;
    }
    let images = platform_images(&manifest);
    let want = options.platform.clone().unwrap_or(Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    });
    let chosen = images
        .iter()
        .find(|(_, p)| {
            p.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || p.variant == want.variant)
            })
        })
        .or_else(|| {
            if images.len() == 1 && options.platform.is_none() {
                images.first()
            } else {
                None
            }
        })
        .ok_or_else(|| ScanError::NoPlatform(want.to_string()))?;
    let child = source.manifest(&chosen.0.digest.to_string()).await?;
    let m = parse_manifest(&child)?;
    analyze_manifest(
        source,
        reference,
        child.digest,
        &m,
        chosen.1.clone(),
        options,
        &progress,
    )
    .await
}

/// Analyses every image of an index (or the one image of a manifest), skipping attestation
/// manifests. Layers shared between platforms are indexed once (an in-memory cache is used
/// when `options.cache` is `None`).
pub async fn analyze_index<S: ImageSource>(
    source: &S,
    reference: &str,
    options: &AnalyzeOptions,
    progress: ProgressFn,
) -> Result<Vec<ImageReport>, ScanError> {
    let fetched = source.manifest(reference).await?;
    let manifest = parse_manifest(&fetched)?;
    if !manifest.kind.is_index() {
        return Ok(vec![
            analyze_manifest(
                source,
                reference,
                fetched.digest,
                &manifest,
                None,
                options,
                &progress,
            )
            .await?,
        ]);
    }
    let mut options = options.clone();
    if options.cache.is_none() {
        options.cache = Some(Arc::new(MemoryLayerCache::default()));
    }
    let mut out = Vec::new();
    for (desc, platform) in platform_images(&manifest) {
        let child = source.manifest(&desc.digest.to_string()).await?;
        let m = parse_manifest(&child)?;
        if m.kind.is_index() {
            continue;
        }
        out.push(
            analyze_manifest(
                source,
                reference,
                child.digest,
                &m,
                platform,
                &options,
                &progress,
            )
            .await?,
        );
    }
    Ok(out)
}

fn parse_manifest(f: &FetchedManifest) -> Result<Manifest, ScanError> {
    Manifest::parse(&f.bytes, f.media_type.as_deref())
        .map_err(|e| ScanError::Manifest(e.to_string()))
}

/// The images of an index with their platforms, attestation manifests left out.
fn platform_images(index: &Manifest) -> Vec<(Descriptor, Option<Platform>)> {
    index
        .manifests
        .iter()
        .filter(|d| {
            let ann = d.annotations.as_ref();
            let attestation = ann
                .and_then(|a| a.get("vnd.docker.reference.type"))
                .is_some_and(|t| t == ATTESTATION);
            let unknown = d.platform.as_ref().is_some_and(|p| p["os"] == "unknown");
            !attestation && !unknown
        })
        .map(|d| {
            (
                d.clone(),
                d.platform
                    .as_ref()
                    .and_then(|p| serde_json::from_value(p.clone()).ok()),
            )
        })
        .collect()
}

async fn analyze_manifest<S: ImageSource>(
    source: &S,
    reference: &str,
    manifest_digest: Digest,
    manifest: &Manifest,
    platform: Option<Platform>,
    options: &AnalyzeOptions,
    progress: &ProgressFn,
) -> Result<ImageReport, ScanError> {
    // Reject what cannot be read before fetching anything.
    for l in &manifest.layers {
        if layer::compression_for(&l.media_type).is_none() {
            return Err(ScanError::UnsupportedMediaType {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            });
        }
    }
    let mut platform = platform;
    let config_digest = manifest.config.as_ref().map(|c| c.digest.clone());
    if let Some(c) = &manifest.config
        && platform.is_none()
        && c.size >= 0
        && (c.size as u64) <= source::MAX_MANIFEST
    {
        let mut buf = Vec::new();
        let mut r = source.blob(&c.digest).await?.take(source::MAX_MANIFEST);
        r.read_to_end(&mut buf).await?;
        let actual = Digest::of(c.digest.algorithm(), &buf);
        if actual != c.digest {
            return Err(ScanError::DigestMismatch {
                digest: c.digest.clone(),
                actual,
            });
        }
        platform = serde_json::from_slice::<Platform>(&buf).ok();
    }
    let total: u64 = manifest.layers.iter().map(|l| l.size.max(0) as u64).sum();
    progress(Progress::Resolved {
        layers: manifest.layers.len(),
        total_bytes: total,
    });
    // Layers stream concurrently (downloads overlap), results stay in layer order.
    let concurrency = if options.concurrency == 0 {
        2
    } else {
        options.concurrency
    };
    // Owned descriptors: a closure over borrowed ones makes the future not `Send` (rustc's
    // higher-ranked lifetime limitation with stream adapters).
    let results: Vec<(LayerIndex, bool)> = futures::stream::iter(manifest.layers.clone())
        .map(|l| async move { layer_index(source, &l, options, progress).await })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let mut indexes = Vec::new();
    let mut summaries = Vec::new();
    for (l, (index, cached)) in manifest.layers.iter().zip(results) {
        summaries.push(LayerSummary {
            digest: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            cached,
        });
        indexes.push(index);
    }
    progress(Progress::Merging);
    Ok(assemble_report(
        ImageIdentity {
            reference: reference.to_owned(),
            manifest_digest,
            config_digest,
            platform,
        },
        summaries,
        &indexes,
    ))
}

/// What names an image in a report.
#[derive(Debug, Clone)]
pub struct ImageIdentity {
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Option<Digest>,
    pub platform: Option<Platform>,
}

/// Builds an image's report from its layers' indexes (bottom layer first), for callers that
/// index and cache layers themselves (with [`layer_index`] or [`layer::index_layer`]) and only
/// need the merge.
pub fn assemble_report(
    image: ImageIdentity,
    layers: Vec<LayerSummary>,
    indexes: &[LayerIndex],
) -> ImageReport {
    let inv = merge::inventory(indexes);
    ImageReport {
        analyzer_version: ANALYZER_VERSION,
        reference: image.reference,
        manifest_digest: image.manifest_digest,
        config_digest: image.config_digest,
        platform: image.platform,
        layers,
        os: inv.os,
        packages: inv.packages,
        warnings: inv.warnings,
    }
}

/// The index of one layer: from the cache, or by streaming the blob on a blocking thread.
pub async fn layer_index<S: ImageSource>(
    source: &S,
    layer: &Descriptor,
    options: &AnalyzeOptions,
    progress: &ProgressFn,
) -> Result<(LayerIndex, bool), ScanError> {
    if let Some(cache) = &options.cache
        && let Some(index) = cache
            .get(&layer.digest)
            .filter(|i| i.analyzer_version == ANALYZER_VERSION)
    {
        progress(Progress::LayerDone {
            digest: layer.digest.clone(),
            cached: true,
        });
        return Ok((index, true));
    }
    progress(Progress::LayerStarted {
        digest: layer.digest.clone(),
        size: layer.size.max(0) as u64,
    });
    let reader = source.blob(&layer.digest).await?;
    let (digest, media_type, limits) = (
        layer.digest.clone(),
        layer.media_type.clone(),
        options.limits.clone(),
    );
    let p = progress.clone();
    let d = digest.clone();
    let on_bytes = Box::new(move |read| {
        p(Progress::LayerBytes {
            digest: d.clone(),
            read,
        })
    });
    let index = tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        layer::index_layer(&digest, &media_type, bridge, &limits, on_bytes)
    })
    .await
    .map_err(|e| ScanError::Layer {
        digest: layer.digest.clone(),
        message: format!("analysis thread failed: {e}"),
    })??;
    if let Some(cache) = &options.cache {
        cache.put(&index);
    }
    progress(Progress::LayerDone {
        digest: layer.digest.clone(),
        cached: false,
    });
    Ok((index, false))
}
