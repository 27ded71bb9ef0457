//! Configuration: embedded defaults, then a TOML file, then `BERTH_...` environment variables,
//! then command-line flags, each overriding the one before. Parsed once into typed structs;
//! unknown keys are errors that name the key.
//!
//! Environment variables map to keys by upper-casing and joining sections with `__`:
//! `listen` is `BERTH_LISTEN`, `storage.fsync` is `BERTH_STORAGE__FSYNC`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Environment variables with the `BERTH_` prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &[
    "ADMIN_PASSWORD",
    "LOG",
    "TARGET_DIR",
    "BIN",
    "PG_BIN",
    "GARAGE_BIN",
    "GARAGE_ROOT",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded defaults keep everything: the SQLite database and the blobs.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub uploads: UploadConfig,
    pub limits: LimitConfig,
    pub auth: AuthSection,
    pub vulndb: VulnDbSection,
    pub scan: ScanSection,
}

/// Image analysis (`[scan]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSection {
    /// Whether the registry analyses images at all (on push, on demand, re-matching, pull policy).
    pub enabled: bool,
    /// Whether pushed images are analysed where no organisation or repository policy says.
    pub on_push: bool,
    /// Analyses at once on this replica.
    pub workers: usize,
    /// Whether each image's CycloneDX SBOM is pushed into its repository as a referrer.
    pub attach_sbom: bool,
}

/// `REPOSITORY:TAG` or `REPOSITORY@DIGEST`.
pub fn parse_artifact_reference(
    s: &str,
) -> anyhow::Result<(berth_oci::RepoName, berth_oci::Reference)> {
    let (repo, reference) = match s.split_once('@') {
        Some((r, d)) => (r, d),
        None => match s.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => {
                anyhow::bail!("{s:?} names no tag or digest (REPOSITORY:TAG or REPOSITORY@DIGEST)")
            }
        },
    };
    let repo = repo
        .parse()
        .map_err(|e| anyhow::anyhow!("{repo:?} is not a repository name: {e}"))?;
    let reference = reference
        .parse()
        .map_err(|e| anyhow::anyhow!("{reference:?} is not a tag or digest: {e}"))?;
    Ok((repo, reference))
}

impl Default for ScanSection {
    fn default() -> Self {
        let d = berth_registry::ScanConfig::default();
        ScanSection {
            enabled: d.enabled,
            on_push: d.on_push,
            workers: d.workers,
            attach_sbom: d.attach_sbom,
        }
    }
}

/// The vulnerability database (`[vulndb]`, and one `[[vulndb.feeds]]` per feed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VulnDbSection {
    /// Feeds polled on a schedule by one replica at a time.
    pub feeds: Vec<FeedSection>,
    /// Seconds between two polls of a feed.
    pub update_interval_secs: u64,
    /// Seconds between two checks of whether another replica changed the database.
    pub check_interval_secs: u64,
    /// A database not confirmed current for this many seconds is reported stale.
    pub max_age_secs: u64,
    /// Ed25519 public key that bundles must be signed with: 64 hex digits, or the path of a file
    /// holding them (or 32 raw bytes). Unset: bundles need no signature.
    pub public_key: Option<String>,
    /// Largest feed download, in bytes.
    pub max_download_bytes: u64,
    /// Largest file accepted by `POST /api/v1/vulndb/import`, in bytes.
    pub max_upload_bytes: u64,
    /// A bundle artifact in this registry (`REPOSITORY:TAG` or `REPOSITORY@DIGEST`), loaded
    /// whenever it changes: how an air-gapped site moves its database in with `oras push`.
    pub bundle_artifact: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSection {
    pub name: String,
    pub url: String,
    pub format: berth_registry::vulndb::FeedFormat,
}

impl Default for VulnDbSection {
    fn default() -> Self {
        let d = berth_registry::vulndb::VulnDbConfig::default();
        VulnDbSection {
            feeds: Vec::new(),
            update_interval_secs: d.update_interval.as_secs(),
            check_interval_secs: d.check_interval.as_secs(),
            max_age_secs: d.max_age.as_secs(),
            public_key: None,
            max_download_bytes: d.max_download_bytes,
            max_upload_bytes: d.max_upload_bytes,
            bundle_artifact: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Authentication and authorization on every request. Turning it off makes an open
    /// registry where anyone who can reach it may push, pull and delete: for local experiments.
    pub enabled: bool,
    /// The URL clients reach the registry at (for the token realm); default: from the request.
    pub external_url: Option<String>,
    /// The service name tokens are issued for.
    pub service: String,
    /// Lifetime of bearer tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Whether users who are not site admins may create organisations by pushing into a free
    /// namespace.
    pub users_create_orgs: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            enabled: true,
            external_url: None,
            service: "berth".into(),
            token_ttl_secs: 300,
            users_create_orgs: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// The local filesystem under `path`.
    Fs,
    /// S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Garage, R2...).
    S3,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// fs: blob directory; default `<data_dir>/storage`.
    pub path: Option<PathBuf>,
    /// fs: fsync each blob (and its directory) before acknowledging it. Turning this off risks
    /// losing recently acknowledged blobs on power loss or a kernel crash (never on a process
    /// crash); manifests referring to them would then fail to pull until re-pushed.
    pub fsync: bool,
    /// s3: the endpoint URL; default AWS's for the region.
    pub endpoint: Option<String>,
    /// s3: the bucket.
    pub bucket: Option<String>,
    /// s3: the region.
    pub region: String,
    /// s3: a key prefix inside the bucket.
    pub prefix: String,
    /// s3: credentials; default from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and the rest
    /// of the usual AWS environment).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// s3: multipart part size in bytes (at least 5 MiB).
    pub part_size: usize,
    /// s3: address buckets as virtual hosts (`bucket.endpoint`) rather than paths.
    pub virtual_hosted_style: bool,
    /// Answer blob downloads with a redirect (307) to a presigned URL of the object store, so
    /// the bytes do not pass through the registry.
    pub redirect: bool,
    /// Lifetime of those URLs, in seconds.
    pub redirect_ttl_secs: u64,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("fsync", &self.fsync)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            // Never printed: configuration may be logged.
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("part_size", &self.part_size)
            .field("redirect", &self.redirect)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://...`; default an SQLite file in the data dir.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Seconds an upload session may sit idle before it and its data are removed.
    pub expiry_secs: u64,
    /// Seconds between expiry sweeps.
    pub sweep_interval_secs: u64,
    /// Seconds a request body may stall between two chunks before the upload is abandoned.
    pub body_idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    pub max_manifest_bytes: usize,
    pub max_blob_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default address"),
            data_dir: PathBuf::from("./berth-data"),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            uploads: UploadConfig::default(),
            limits: LimitConfig::default(),
            auth: AuthSection::default(),
            vulndb: VulnDbSection::default(),
            scan: ScanSection::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Fs,
            path: None,
            fsync: true,
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            part_size: 8 << 20,
            virtual_hosted_style: false,
            redirect: false,
            redirect_ttl_secs: 300,
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            expiry_secs: 24 * 3600,
            sweep_interval_secs: 600,
            body_idle_timeout_secs: 60,
        }
    }
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 1 << 40,
        }
    }
}

/// Values given on the command line, which override everything else.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "configuration file {} does not exist",
                file.display()
            );
            fig = fig.merge(Toml::file(file));
        }
        fig = fig
            .merge(
                Env::prefixed("BERTH_")
                    .ignore(NOT_KEYS)
                    .split("__")
                    .lowercase(true),
            )
            .merge(Serialized::defaults(overrides));
        let config: Config = fig.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.limits.max_manifest_bytes > 0,
            "limits.max_manifest_bytes must be positive"
        );
        anyhow::ensure!(
            self.uploads.sweep_interval_secs > 0,
            "uploads.sweep_interval_secs must be positive"
        );
        anyhow::ensure!(
            self.uploads.body_idle_timeout_secs > 0,
            "uploads.body_idle_timeout_secs must be positive"
        );
        anyhow::ensure!(
            self.auth.token_ttl_secs > 0,
            "auth.token_ttl_secs must be positive"
        );
        anyhow::ensure!(
            !self.auth.service.is_empty(),
            "auth.service must not be empty"
        );
        if self.storage.kind == StorageKind::S3 {
            anyhow::ensure!(
                self.storage
                    .bucket
                    .as_deref()
                    .is_some_and(|b| !b.is_empty()),
                "storage.bucket is required when storage.kind is \"s3\""
            );
            anyhow::ensure!(
                self.storage.part_size >= berth_storage::MIN_PART_SIZE,
                "storage.part_size must be at least {} bytes (S3's minimum part size)",
                berth_storage::MIN_PART_SIZE
            );
        }
        anyhow::ensure!(
            !self.storage.redirect || self.storage.kind == StorageKind::S3,
            "storage.redirect needs storage.kind = \"s3\""
        );
        anyhow::ensure!(
            (1..=7 * 24 * 3600).contains(&self.storage.redirect_ttl_secs),
            "storage.redirect_ttl_secs must be between 1 and 604800 (S3's longest)"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.scan.workers),
            "scan.workers must be between 1 and 64"
        );
        let v = &self.vulndb;
        anyhow::ensure!(
            v.update_interval_secs > 0,
            "vulndb.update_interval_secs must be positive"
        );
        anyhow::ensure!(
            v.check_interval_secs > 0,
            "vulndb.check_interval_secs must be positive"
        );
        anyhow::ensure!(v.max_age_secs > 0, "vulndb.max_age_secs must be positive");
        let mut names = std::collections::BTreeSet::new();
        for (i, f) in v.feeds.iter().enumerate() {
            anyhow::ensure!(
                !f.name.is_empty()
                    && f.name.len() <= 64
                    && f.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
                "vulndb.feeds[{i}].name must be 1 to 64 letters, digits, '-', '_' or '.'"
            );
            anyhow::ensure!(
                names.insert(f.name.as_str()),
                "vulndb.feeds[{i}].name {:?} is used twice",
                f.name
            );
            anyhow::ensure!(
                f.url.starts_with("http://") || f.url.starts_with("https://"),
                "vulndb.feeds[{i}].url must be an http:// or https:// URL"
            );
        }
        Ok(())
    }

    /// The vulnerability database's settings, with the public key read and parsed.
    pub fn scan_config(&self) -> berth_registry::ScanConfig {
        berth_registry::ScanConfig {
            enabled: self.scan.enabled,
            on_push: self.scan.on_push,
            workers: self.scan.workers,
            attach_sbom: self.scan.attach_sbom,
            ..Default::default()
        }
    }

    pub fn vulndb_config(&self) -> anyhow::Result<berth_registry::vulndb::VulnDbConfig> {
        use berth_registry::vulndb::{FeedSource, VulnDbConfig, parse_public_key};
        let v = &self.vulndb;
        let public_key = match &v.public_key {
            None => None,
            Some(k) => {
                let trimmed = k.trim();
                let bytes = if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    trimmed.as_bytes().to_vec()
                } else {
                    std::fs::read(trimmed).with_context(|| {
                        format!("vulndb.public_key: cannot read the key file {trimmed}")
                    })?
                };
                Some(parse_public_key(&bytes).context("vulndb.public_key")?)
            }
        };
        Ok(VulnDbConfig {
            feeds: v
                .feeds
                .iter()
                .map(|f| FeedSource {
                    name: f.name.clone(),
                    url: f.url.clone(),
                    format: f.format,
                })
                .collect(),
            update_interval: std::time::Duration::from_secs(v.update_interval_secs),
            check_interval: std::time::Duration::from_secs(v.check_interval_secs),
            max_age: std::time::Duration::from_secs(v.max_age_secs),
            public_key,
            max_download_bytes: v.max_download_bytes,
            max_upload_bytes: v.max_upload_bytes,
            bundle_artifact: v
                .bundle_artifact
                .as_deref()
                .map(parse_artifact_reference)
                .transpose()
                .context("vulndb.bundle_artifact")?,
            ..VulnDbConfig::default()
        })
    }

    pub fn storage_path(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("storage"))
    }

    pub fn s3_config(&self) -> berth_storage::S3Config {
        let s = &self.storage;
        berth_storage::S3Config {
            endpoint: s.endpoint.clone(),
            bucket: s.bucket.clone().unwrap_or_default(),
            region: s.region.clone(),
            prefix: s.prefix.clone(),
            access_key_id: s.access_key_id.clone(),
            secret_access_key: s.secret_access_key.clone(),
            part_size: s.part_size,
            virtual_hosted_style: s.virtual_hosted_style,
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(u) => u.clone(),
            None => berth_meta::MetaStore::sqlite_url(&self.data_dir.join("meta.db")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:6000\"\n[storage]\nfsync = false\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert!(!c.storage.fsync);
        let c = Config::load(
            Some(&file),
            Overrides {
                listen: Some("127.0.0.1:7000".parse().unwrap()),
                data_dir: None,
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
    }

    /// The defaults the README and the issue promise (what `Config::load` starts from before a
    /// file and `BERTH_*` variables).
    #[test]
    fn embedded_defaults() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(c.data_dir, std::path::Path::new("./berth-data"));
        assert!(c.storage.fsync);
        assert!(c.auth.enabled);
        assert!(c.database.url.is_none());
        assert_eq!(c.uploads.expiry_secs, 24 * 3600);
        assert_eq!(c.limits.max_manifest_bytes, 4 << 20);
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "[storage]\nfsynk = false\n").unwrap();
        let e = format!(
            "{:#}",
            Config::load(Some(&file), Overrides::default()).unwrap_err()
        );
        assert!(e.contains("fsynk"), "{e}");
    }

    #[test]
    fn vulndb_feeds_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        std::fs::write(
            &file,
            format!(
                "[vulndb]\nupdate_interval_secs = 60\npublic_key = \"{key}\"\n\
                 [[vulndb.feeds]]\nname = \"osv-pypi\"\nurl = \"https://example.org/all.zip\"\nformat = \"osv-zip\"\n"
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file), Overrides::default()).unwrap();
        let v = c.vulndb_config().unwrap();
        assert_eq!(v.feeds.len(), 1);
        assert_eq!(v.update_interval.as_secs(), 60);
        assert!(v.public_key.is_some());
        std::fs::write(
            &file,
            "[[vulndb.feeds]]\nname = \"x\"\nurl = \"https://e/x\"\nformat = \"rss\"\n",
        )
        .unwrap();
        let e = format!(
            "{:#}",
            Config::load(Some(&file), Overrides::default()).unwrap_err()
        );
        assert!(e.contains("rss"), "{e}");
        std::fs::write(&file, "[vulndb]\npublic_key = \"/nonexistent/key\"\n").unwrap();
        let c = Config::load(Some(&file), Overrides::default()).unwrap();
        let e = format!("{:#}", c.vulndb_config().unwrap_err());
        assert!(e.contains("vulndb.public_key"), "{e}");
    }
}
