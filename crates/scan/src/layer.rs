//! Indexing one layer: decompress as a stream, walk the tar, record every entry, and hand the
//! files an analyser wants (and only those, each under a size cap) to it. Nothing is unpacked
//! to disk and memory does not grow with the layer: unwanted file data is read and dropped in
//! small buffers as the tar walker skips it.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read};

use berth_oci::Digest;

use crate::analyzer::{self, AnalyzerOptions, Want};
use crate::error::ScanError;
use crate::model::{ANALYZER_VERSION, EntryKind, FileEntry, FileFindings, LayerIndex, Warning};

/// Uncompressed bytes decompressed at once, ahead of the tar walker.
const DECODED_BUFFER: usize = 256 << 10;

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Decide from the first bytes (`docker save` archives do not say).
    Detect,
}

/// The compression of a layer media type; `None` for media types that are not tar layers.
pub fn compression_for(media_type: &str) -> Option<Compression> {
    let mt = berth_oci::media::essence(media_type);
    Some(match mt {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        // Media type used by `DockerArchive` for `docker save` layers, whose compression no
        // manifest states.
        crate::source::DOCKER_ARCHIVE_LAYER => Compression::Detect,
        _ => return None,
    })
}

/// Hashes what passes through and, at end of stream, fails the read if the digest differs, so
/// a tampered layer is an error even though its entries were already walked.
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    hasher: Option<berth_oci::digest::Hasher>,
    read: u64,
    on_bytes: Box<dyn FnMut(u64) + Send>,
}

impl<R: Read> VerifyingReader<R> {
    /// Verifies against `expected`; with `None` it only counts (the digest is checked elsewhere).
    pub fn new(inner: R, expected: Option<Digest>, on_bytes: Box<dyn FnMut(u64) + Send>) -> Self {
        let hasher = expected.as_ref().map(|d| d.algorithm().hasher());
        let expected = expected.unwrap_or_else(|| Digest::sha256_of(b""));
        VerifyingReader {
            inner,
            expected,
            hasher,
            read: 0,
            on_bytes,
        }
    }

    /// Reads the rest of the stream (whatever the decompressor left), then checks the digest.
    pub fn finish(mut self) -> Result<u64, ScanError> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.read)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(h) = self.hasher.take() {
                let actual = h.finish();
                if actual != self.expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "blob {} does not match its digest (got {actual})",
                            self.expected
                        ),
                    ));
                }
            }
            return Ok(0);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        let before = self.read >> 20;
        self.read += n as u64;
        if self.read >> 20 != before {
            (self.on_bytes)(self.read);
        }
        Ok(n)
    }
}

/// Indexes a layer from its compressed bytes. Runs synchronously: call it on a blocking thread.
/// `on_bytes` is told, about every MiB, how many compressed bytes were read.
pub fn index_layer(
    digest: &Digest,
    media_type: &str,
    reader: impl Read + Send,
    opts: &AnalyzerOptions,
    on_bytes: Box<dyn FnMut(u64) + Send>,
) -> Result<LayerIndex, ScanError> {
    let compression =
        compression_for(media_type).ok_or_else(|| ScanError::UnsupportedMediaType {
            digest: digest.clone(),
            media_type: media_type.to_owned(),
        })?;
    let layer_err = |e: io::Error| ScanError::Layer {
        digest: digest.clone(),
        message: e.to_string(),
    };
    // A `docker save` layer is named by its diff ID, the digest of the uncompressed tar, and may
    // be stored compressed: verify after decompression. Everything else is verified as stored.
    let detect = compression == Compression::Detect;
    let raw_expected = (!detect).then(|| digest.clone());
    let mut verifying = BufReader::with_capacity(
        64 << 10,
        VerifyingReader::new(reader, raw_expected, on_bytes),
    );
    let compression = match compression {
        Compression::Detect => {
            let head = verifying.fill_buf().map_err(layer_err)?;
            if head.starts_with(&[0x1f, 0x8b]) {
                Compression::Gzip
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Compression::Zstd
            } else {
                Compression::None
            }
        }
        c => c,
    };
    let mut index = LayerIndex {
        analyzer_version: ANALYZER_VERSION,
        digest: digest.clone(),
        tar_size: 0,
        entries: Vec::new(),
        findings: Vec::new(),
        warnings: Vec::new(),
    };
    {
        let decoded: Box<dyn Read + Send + '_> = match compression {
            // `verifying` is buffered already: no second buffer (and copy) in the decoder.
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut verifying)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(&mut verifying).map_err(layer_err)?,
            ),
            _ => Box::new(&mut verifying),
        };
        let decoded: Box<dyn Read + Send + '_> = if detect {
            Box::new(VerifyingReader::new(
                decoded,
                Some(digest.clone()),
                Box::new(|_| {}),
            ))
        } else {
            decoded
        };
        // The tar walker reads in small pieces (512-byte headers, 8 KiB copies); decompressing
        // into a large buffer instead keeps the inflater on its fast path.
        let decoded = BufReader::with_capacity(DECODED_BUFFER, decoded);
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut counted = CountingReader {
            inner: decoded,
            count: count.clone(),
        };
        walk_tar(&mut counted, &count, digest, opts, &mut index).map_err(layer_err)?;
        // Whatever follows the end-of-archive blocks still has to decompress cleanly.
        io::copy(&mut counted, &mut io::sink()).map_err(layer_err)?;
        index.tar_size = count.get();
    }
    verifying.into_inner().finish().map_err(|e| match e {
        ScanError::Io(e) => layer_err(e),
        e => e,
    })?;
    Ok(index)
}

/// Counts the uncompressed bytes; shared so the tar walker can tell, when the stream ends
/// early, whether the last entry's data was complete.
struct CountingReader<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Normalises a tar path: relative, no empty or `.` parts, no trailing `/`. `Err` for paths that
/// climb out with `..`; `Ok((path, was_absolute))` otherwise.
pub fn normalize_path(raw: &str) -> Result<(String, bool), String> {
    let absolute = raw.starts_with('/');
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path {raw:?} climbs out of the image root")),
            p => parts.push(p),
        }
    }
    Ok((parts.join("/"), absolute))
}

/// Normalises a path resolving `..` against what precedes it (`a/../b` is `b`); `Err` when it
/// climbs above the root. For archive-internal links, not for layer entries.
pub fn normalize_path_lexically(raw: &str) -> Result<(String, bool), String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts
                    .pop()
                    .ok_or_else(|| format!("path {raw:?} climbs out of the root"))?;
            }
            p => parts.push(p),
        }
    }
    Ok((parts.join("/"), raw.starts_with('/')))
}

fn walk_tar(
    reader: &mut impl Read,
    count: &std::cell::Cell<u64>,
    digest: &Digest,
    opts: &AnalyzerOptions,
    index: &mut LayerIndex,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    // Findings by path, so a hard link later in the layer can share its target's.
    let mut by_path: HashMap<String, usize> = HashMap::new();
    let warn = |index: &mut LayerIndex, path: Option<&str>, message: String| {
        index.warnings.push(Warning {
            layer: Some(digest.clone()),
            path: path.map(str::to_owned),
            message,
        });
    };
    // Where the last entry's data ends in the tar stream.
    let mut data_end: u64 = 0;
    for entry in archive.entries()? {
        let mut entry = match entry {
            Ok(e) => e,
            // Some writers (umoci 0.4) end a layer right after the last file's data, without
            // the padding and end-of-archive blocks. The blob's digest vouches for what is
            // there, and every file is complete: a warning. Data cut short is still an error.
            // (The tar crate reports a short skip as `Other` with this message.)
            Err(e)
                if (e.kind() == io::ErrorKind::UnexpectedEof
                    || e.to_string().contains("unexpected EOF"))
                    && data_end > 0
                    && count.get() >= data_end =>
            {
                warn(
                    index,
                    None,
                    "the tar stream ends without its end-of-archive blocks".into(),
                );
                break;
            }
            Err(e) => return Err(e),
        };
        data_end = entry.raw_file_position() + entry.size();
        let ty = entry.header().entry_type();
        if matches!(
            ty,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = match normalize_path(&raw) {
            Ok((p, absolute)) => {
                if absolute {
                    warn(
                        index,
                        Some(&p),
                        format!("absolute path {raw:?} read as relative to the image root"),
                    );
                }
                p
            }
            Err(message) => {
                warn(index, None, format!("entry skipped: {message}"));
                continue;
            }
        };
        if path.is_empty() {
            continue;
        }
        let (parent, base) = match path.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", path.as_str()),
        };
        let join = |name: &str| {
            if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}/{name}")
            }
        };
        if base == ".wh..wh..opq" {
            index.entries.push(FileEntry {
                path: parent.to_owned(),
                kind: EntryKind::Opaque,
            });
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            index.entries.push(FileEntry {
                path: join(hidden),
                kind: EntryKind::Whiteout,
            });
            continue;
        }
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let kind = match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size()?;
                let mode = entry.header().mode().unwrap_or(0);
                EntryKind::File { size, mode }
            }
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink { target: link() },
            tar::EntryType::Link => match normalize_path(&link()) {
                Ok((target, _)) => EntryKind::Hardlink { target },
                Err(message) => {
                    warn(index, Some(&path), format!("hard link skipped: {message}"));
                    continue;
                }
            },
            _ => EntryKind::Other,
        };
        match &kind {
            EntryKind::File { size, mode } => {
                if let Some(f) =
                    read_and_analyze(&mut entry, digest, &path, *size, *mode, opts, index)?
                {
                    by_path.insert(path.clone(), index.findings.len());
                    index.findings.push(f);
                }
            }
            EntryKind::Hardlink { target } => {
                if let Some(&i) = by_path.get(target) {
                    let mut f = index.findings[i].clone();
                    f.path = path.clone();
                    for p in &mut f.packages {
                        for e in &mut p.evidence {
                            e.path = path.clone();
                        }
                    }
                    by_path.insert(path.clone(), index.findings.len());
                    index.findings.push(f);
                }
            }
            _ => {}
        }
        index.entries.push(FileEntry { path, kind });
    }
    Ok(())
}

/// Reads a wanted file (capped) and runs its analyser. Tar read errors are errors of the layer;
/// everything about the file's content is a warning.
fn read_and_analyze(
    entry: &mut impl Read,
    digest: &Digest,
    path: &str,
    size: u64,
    mode: u32,
    opts: &AnalyzerOptions,
    index: &mut LayerIndex,
) -> io::Result<Option<FileFindings>> {
    let Some(want) = analyzer::wants(path, mode) else {
        return Ok(None);
    };
    let cap = if want.is_large() {
        opts.max_binary_size
    } else {
        opts.max_text_size
    };
    let mut head = [0u8; 4];
    if want == Want::MaybeBinary {
        if size < 64 {
            return Ok(None);
        }
        entry.read_exact(&mut head)?;
        if head != *b"\x7fELF" {
            return Ok(None);
        }
    }
    if size > cap && want == Want::MaybeBinary {
        // Too big to hold: scan it as it streams instead (classifiers, inline Go build info).
        let mut messages = Vec::new();
        let packages = analyzer::stream_binary(path, &head, entry, &mut messages)?;
        messages.push(format!(
            "{size} bytes is over the {cap}-byte limit for binaries: scanned as a stream, so \
             pre-1.18 Go build info and cargo-auditable data were not read"
        ));
        index
            .warnings
            .extend(messages.into_iter().map(|message| Warning {
                layer: Some(digest.clone()),
                path: Some(path.to_owned()),
                message,
            }));
        if packages.is_empty() {
            return Ok(None);
        }
        let mut f = FileFindings {
            path: path.to_owned(),
            packages,
            ..Default::default()
        };
        for p in &mut f.packages {
            p.evidence.push(crate::model::Evidence {
                layer: digest.clone(),
                path: path.to_owned(),
            });
        }
        return Ok(Some(f));
    }
    if size > cap {
        index.warnings.push(Warning {
            layer: Some(digest.clone()),
            path: Some(path.to_owned()),
            message: format!(
                "not analysed: {size} bytes is over the {cap}-byte limit for this kind of file"
            ),
        });
        return Ok(None);
    }
    let mut data = Vec::with_capacity(size as usize);
    if want == Want::MaybeBinary {
        data.extend_from_slice(&head);
    }
    entry.take(cap).read_to_end(&mut data)?;
    let mut messages = Vec::new();
    let found = analyzer::analyze_file(digest, path, want, &data, opts, &mut messages);
    index
        .warnings
        .extend(messages.into_iter().map(|message| Warning {
            layer: Some(digest.clone()),
            path: Some(path.to_owned()),
            message,
        }));
    Ok(found)
}
