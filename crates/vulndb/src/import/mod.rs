//! Importers: feed formats in, [`Advisory`] records out.
//!
//! An [`Importer`] parses one document (one OSV record, the Debian tracker's JSON, one Alpine
//! secdb file). The functions here feed it documents from a byte slice, a file, a directory tree
//! or a zip archive, with size caps that hold whatever the input claims about itself: every read
//! goes through a `take` of the cap, so a lying zip header or a decompression bomb stops at the
//! cap. Nothing is ever extracted to disk, so entry names are only labels.
//!
//! A document that is not valid JSON of the expected shape fails the whole import (the feed is
//! broken, and the caller keeps its previous database). Problems inside a well-formed record (an
//! unknown ecosystem, a version the ecosystem's scheme cannot parse, an unreadable CVSS vector)
//! drop that part of the record and are reported as warnings.

pub mod alpine;
pub mod debian;
pub mod osv;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use crate::advisory::Advisory;

pub use alpine::AlpineSecdb;
pub use debian::DebianTracker;
pub use osv::Osv;

/// Caps applied while reading input. The defaults fit the public feeds with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single document (file or zip entry), after decompression.
    pub max_document_bytes: u64,
    /// Most documents in one directory tree or archive.
    pub max_documents: usize,
    /// Most bytes read from one archive or tree in total, after decompression.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // The Debian tracker's JSON is the largest document (about 80 MB in 2024).
            max_document_bytes: 256 << 20,
            max_documents: 1_000_000,
            max_total_bytes: 8 << 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{location}: larger than the limit of {limit} bytes")]
    TooLarge { location: String, limit: u64 },
    #[error("more than {limit} documents")]
    TooManyDocuments { limit: usize },
    #[error("{location}: invalid JSON: {source}")]
    Json {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{location}: {reason}")]
    Invalid { location: String, reason: String },
    #[error("{location}: bad zip archive: {source}")]
    Zip {
        location: String,
        #[source]
        source: zip::result::ZipError,
    },
}

/// Something skipped inside an otherwise valid document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportWarning {
    pub location: String,
    pub message: String,
}

/// Most warnings kept; later ones are only counted, so a hostile feed cannot fill memory.
const MAX_WARNINGS: usize = 1000;

/// What an import produced.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub feed: String,
    pub documents: usize,
    pub advisories: Vec<Advisory>,
    pub warnings: Vec<ImportWarning>,
    pub warnings_dropped: usize,
    by_id: HashMap<String, usize>,
}

impl ImportReport {
    pub fn new(feed: &str) -> Self {
        Self {
            feed: feed.to_string(),
            ..Self::default()
        }
    }

    pub fn warn(&mut self, location: &str, message: impl Into<String>) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(ImportWarning {
                location: location.to_string(),
                message: message.into(),
            });
        } else {
            self.warnings_dropped += 1;
        }
    }

    /// Adds a record. A second record with the same id (the same CVE in two Alpine secdb files)
    /// is merged into the first: its affected packages and aliases are appended.
    pub fn push(&mut self, adv: Advisory) {
        match self.by_id.get(&adv.id) {
            Some(&i) => {
                let existing = &mut self.advisories[i];
                for a in adv.aliases {
                    if !existing.aliases.contains(&a) {
                        existing.aliases.push(a);
                    }
                }
                for r in adv.related {
                    if !existing.related.contains(&r) {
                        existing.related.push(r);
                    }
                }
                existing.affected.extend(adv.affected);
                for s in adv.severity {
                    if !existing.severity.contains(&s) {
                        existing.severity.push(s);
                    }
                }
            }
            None => {
                self.by_id.insert(adv.id.clone(), self.advisories.len());
                self.advisories.push(adv);
            }
        }
    }
}

/// A feed format.
pub trait Importer {
    /// The feed's name, recorded on every advisory and in the database's feed statistics.
    fn feed(&self) -> &str;

    /// Parses one document and adds its records to `report`. `location` names the document in
    /// errors and warnings.
    fn parse_document(
        &self,
        location: &str,
        bytes: &[u8],
        report: &mut ImportReport,
    ) -> Result<(), ImportError>;
}

/// Imports one in-memory document.
pub fn import_bytes(
    importer: &dyn Importer,
    location: &str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<ImportReport, ImportError> {
    if bytes.len() as u64 > limits.max_document_bytes {
        return Err(ImportError::TooLarge {
            location: location.to_string(),
            limit: limits.max_document_bytes,
        });
    }
    let mut report = ImportReport::new(importer.feed());
    importer.parse_document(location, bytes, &mut report)?;
    report.documents = 1;
    Ok(report)
}

/// Reads at most `limit` bytes; more is an error, whatever the source claimed its size was.
fn read_capped(r: impl Read, limit: u64, location: &str) -> Result<Vec<u8>, ImportError> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| ImportError::Io {
            path: PathBuf::from(location),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(ImportError::TooLarge {
            location: location.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// Imports one file, which may be a zip archive (recognised by its signature).
pub fn import_file(
    importer: &dyn Importer,
    path: &Path,
    limits: &Limits,
) -> Result<ImportReport, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io)?;
    file.rewind().map_err(io)?;
    if n == 4 && magic == *b"PK\x03\x04" {
        return import_zip(importer, file, &path.display().to_string(), limits);
    }
    let bytes = read_capped(file, limits.max_document_bytes, &path.display().to_string())?;
    import_bytes(importer, &path.display().to_string(), &bytes, limits)
}

/// Imports every `*.json` file under `dir` (recursively, in path order, not following symbolic
/// links, so a link loop cannot trap the walk).
pub fn import_dir(
    importer: &dyn Importer,
    dir: &Path,
    limits: &Limits,
) -> Result<ImportReport, ImportError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let io = |source| ImportError::Io {
            path: d.clone(),
            source,
        };
        for entry in fs::read_dir(&d).map_err(io)? {
            let entry = entry.map_err(io)?;
            let kind = entry.file_type().map_err(io)?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "json") {
                files.push(path);
                if files.len() > limits.max_documents {
                    return Err(ImportError::TooManyDocuments {
                        limit: limits.max_documents,
                    });
                }
            }
        }
    }
    files.sort();
    let mut report = ImportReport::new(importer.feed());
    let mut total = 0u64;
    for path in files {
        let location = path.display().to_string();
        let file = fs::File::open(&path).map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })?;
        let bytes = read_capped(file, limits.max_document_bytes, &location)?;
        total += bytes.len() as u64;
        if total > limits.max_total_bytes {
            return Err(ImportError::TooLarge {
                location: dir.display().to_string(),
                limit: limits.max_total_bytes,
            });
        }
        importer.parse_document(&location, &bytes, &mut report)?;
        report.documents += 1;
    }
    Ok(report)
}

/// Imports every `*.json` entry of a zip archive (OSV publishes each ecosystem as one). Entries
/// are decompressed in memory through the caps; their names are never used as paths.
pub fn import_zip(
    importer: &dyn Importer,
    reader: impl Read + Seek,
    location: &str,
    limits: &Limits,
) -> Result<ImportReport, ImportError> {
    let zip_err = |source| ImportError::Zip {
        location: location.to_string(),
        source,
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_err)?;
    if archive.len() > limits.max_documents {
        return Err(ImportError::TooManyDocuments {
            limit: limits.max_documents,
        });
    }
    let mut report = ImportReport::new(importer.feed());
    let mut total = 0u64;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(zip_err)?;
        if entry.is_dir() || !entry.name().ends_with(".json") {
            continue;
        }
        let entry_location = format!("{location}!{}", entry.name());
        // The declared size is only a hint (it can lie); the capped read below is the check.
        if entry.size() > limits.max_document_bytes {
            return Err(ImportError::TooLarge {
                location: entry_location,
                limit: limits.max_document_bytes,
            });
        }
        let bytes = read_capped(entry, limits.max_document_bytes, &entry_location)?;
        total += bytes.len() as u64;
        if total > limits.max_total_bytes {
            return Err(ImportError::TooLarge {
                location: location.to_string(),
                limit: limits.max_total_bytes,
            });
        }
        importer.parse_document(&entry_location, &bytes, &mut report)?;
        report.documents += 1;
    }
    Ok(report)
}

/// Cuts a string to at most `max` bytes at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
