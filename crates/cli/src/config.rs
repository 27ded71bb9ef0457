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
const NOT_KEYS: &[&str] = &["ADMIN_PASSWORD", "LOG", "TARGET_DIR", "BIN"];

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Blob directory; default `<data_dir>/storage`.
    pub path: Option<PathBuf>,
    /// fsync each blob (and its directory) before acknowledging it. Turning this off risks
    /// losing recently acknowledged blobs on power loss or a kernel crash (never on a process
    /// crash); manifests referring to them would then fail to pull until re-pushed.
    pub fsync: bool,
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
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: None,
            fsync: true,
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
        Ok(())
    }

    pub fn storage_path(&self) -> PathBuf {
        self.storage
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("storage"))
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
}
