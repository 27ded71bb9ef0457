//! Berth's vulnerability database: advisories in, findings out, with no server, no network and
//! no SQL.
//!
//! # Design
//!
//! ```text
//!  feeds ──Importer──▶ ImportReport ──VulnDb::with_feed──▶ VulnDb ──write_snapshot──▶ file
//!  (OSV, Debian tracker,  (Advisory records,        (immutable, indexed,      (versioned, hashed,
//!   Alpine secdb)          warnings)                 content-versioned)        atomic, signable)
//!
//!  file ──SharedVulnDb::reload──▶ Arc<VulnDb> ──match_packages(&[PackageRef])──▶ MatchReport
//! ```
//!
//! - [`versions`]: one comparator per version scheme (dpkg, apk, rpm, SemVer, Go, PEP 440, Maven,
//!   RubyGems), each a parser into a type whose `Ord` is the scheme's precedence. Invalid
//!   versions are errors. [`versions::compare`] takes an [`Ecosystem`] and two strings.
//! - [`advisory`]: the model every feed is converted to. OSV's event lists become sorted
//!   [`advisory::Interval`]s at import, so matching never sorts events.
//! - [`import`]: the [`import::Importer`] trait and the OSV, Debian tracker and Alpine secdb
//!   importers, fed from bytes, files, directory trees or zip archives under [`import::Limits`]
//!   that no input can talk its way past. A broken document fails the import; a bad part of a
//!   good record (unknown ecosystem, unparseable version, bad CVSS vector) is dropped with a
//!   warning.
//! - [`db`]: [`VulnDb`], immutable once built. Its index maps (ecosystem, normalised name) to
//!   the records naming the package, with every range bound already parsed. Updating a feed
//!   builds a new database; [`SharedVulnDb`] swaps it in whole, and keeps the old one if a
//!   snapshot fails to load or verify. [`VulnDb::version`] is a content hash of the records.
//! - [`matching`]: distribution packages match by source package and source version within
//!   their release (binNMU suffixes removed); language packages by name and version. Records
//!   that share an id (GHSA, CVE, PYSEC, …) merge into one [`Finding`].
//! - [`cvss`] scores CVSS v2, v3.x and v4.0 vectors with the RustSec `cvss` crate;
//!   [`signature`] checks detached Ed25519 signatures over snapshot bundles.
//!
//! # Invariants
//!
//! - Nothing here panics on input: every parser returns an error, every read is capped.
//! - A loaded database has been validated completely: every record's versions parse under its
//!   ecosystem's scheme, and feed statistics agree with the records.
//! - A withdrawn record never produces a finding; an installed version that cannot be parsed is
//!   reported in [`MatchReport::unmatched`], never treated as "not affected".
//! - A snapshot on disk is either the old one or the new one (temp file, fsync, rename, fsync
//!   of the directory).
//!
//! # Threads
//!
//! Everything here is synchronous and knows no async runtime: a server should run imports and
//! snapshot I/O on a blocking thread (`tokio::task::spawn_blocking`). Matching is CPU-bound and
//! takes a few milliseconds for a thousand packages. [`VulnDb`], [`SharedVulnDb`] and
//! [`MatchReport`] are `Send + Sync`.
//!
//! # Tests
//!
//! Unit tests hold each scheme's upstream vectors; `tests/` imports the 8,158 real OSV records
//! of `/work/shared/advisories`, the Debian and Alpine fixtures, and hostile input; property
//! tests check that every comparator is a total order and that no parser panics. Fuzz targets
//! for the parsers live in `fuzz/` (`cargo +nightly fuzz run versions|importers|snapshot`).
//!
//! # Use
//!
//! ```no_run
//! use berth_vulndb::import::{import_dir, Limits, Osv};
//! use berth_vulndb::{Ecosystem, PackageRef, SharedVulnDb, VulnDb};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let report = import_dir(&Osv::default(), "advisories/".as_ref(), &Limits::default())?;
//! let db = VulnDb::from_imports(vec![report])?;
//! db.write_snapshot("vulndb.snapshot".as_ref())?;
//!
//! let shared = SharedVulnDb::default();
//! shared.reload("vulndb.snapshot".as_ref(), None)?;
//! let findings = shared.get().match_packages(&[PackageRef {
//!     ecosystem: Ecosystem::CratesIo,
//!     name: "openssl".into(),
//!     version: "0.8.3".into(),
//!     source_name: None,
//!     source_version: None,
//!     release: None,
//!     evidence: serde_json::Value::Null,
//! }]);
//! # Ok(()) }
//! ```

pub mod advisory;
pub mod cvss;
pub mod db;
pub mod import;
pub mod matching;
pub mod names;
pub mod signature;
pub mod versions;

pub use advisory::{Advisory, Level, Severity, Status};
pub use db::{FeedStats, SharedVulnDb, SnapshotError, VulnDb};
pub use import::{ImportError, ImportReport, Importer, Limits};
pub use matching::{Finding, MatchReport, PackageRef, SeveritySummary};
pub use versions::{Ecosystem, VersionError, compare};

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn shareable_between_threads() {
        send_sync::<super::VulnDb>();
        send_sync::<super::SharedVulnDb>();
        send_sync::<super::MatchReport>();
        send_sync::<super::import::Osv>();
        send_sync::<super::import::DebianTracker>();
        send_sync::<super::import::AlpineSecdb>();
    }
}
