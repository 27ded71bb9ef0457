//! Parsing and validating manifests. Manifests are stored exactly as received; this module only
//! reads them to check them and to index what they reference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest is invalid: {0}")]
    Invalid(String),
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
}

/// What kind of manifest a document is; decides which fields are required and what it references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerList,
}

impl ManifestKind {
    pub fn from_media_type(mt: &str) -> Option<ManifestKind> {
        match mt {
            media::OCI_MANIFEST => Some(ManifestKind::OciManifest),
            media::OCI_INDEX => Some(ManifestKind::OciIndex),
            media::DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            media::DOCKER_LIST => Some(ManifestKind::DockerList),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => media::OCI_MANIFEST,
            ManifestKind::OciIndex => media::OCI_INDEX,
            ManifestKind::DockerManifest => media::DOCKER_MANIFEST,
            ManifestKind::DockerList => media::DOCKER_LIST,
        }
    }

    pub fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerList)
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// The wire shape, permissive so that missing fields become precise errors in `Manifest::parse`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A validated manifest: what it is and what it points at.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// The manifest's own `artifactType`, if it has one.
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses and validates `bytes`, using `content_type` (the request's `Content-Type`, possibly
    /// absent) together with the document's own `mediaType` to decide its kind.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let header = content_type.map(media::essence).filter(|s| !s.is_empty());
        let kind = match (raw.media_type.as_deref(), header) {
            (Some(doc), Some(h)) if doc != h && ManifestKind::from_media_type(h).is_some() => {
                return Err(ManifestError::Invalid(format!(
                    "mediaType {doc:?} does not match Content-Type {h:?}"
                )));
            }
            (Some(doc), _) => kind_of(doc)?,
            (None, Some(h)) if ManifestKind::from_media_type(h).is_some() => kind_of(h)?,
            (None, Some(h)) if is_schema1(h) => {
                return Err(ManifestError::UnsupportedMediaType(h.to_owned()));
            }
            // Neither says: infer from the shape, as the OCI spec allows for mediaType-less documents.
            (None, _) => {
                if raw.manifests.is_some() {
                    ManifestKind::OciIndex
                } else if raw.config.is_some() {
                    ManifestKind::OciManifest
                } else {
                    return Err(ManifestError::Invalid(
                        "no mediaType, config or manifests".into(),
                    ));
                }
            }
        };
        match raw.schema_version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(2) => {}
            _ => return Err(ManifestError::Invalid("schemaVersion must be 2".into())),
        }
        let check = |d: &Descriptor, what: &str| -> Result<(), ManifestError> {
            if d.size < 0 {
                return Err(ManifestError::Invalid(format!(
                    "{what} has a negative size"
                )));
            }
            if d.media_type.is_empty() {
                return Err(ManifestError::Invalid(format!("{what} has no mediaType")));
            }
            Ok(())
        };
        let manifest = if kind.is_index() {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid(
                    "an index has no config or layers".into(),
                ));
            }
            let manifests = raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("index has no manifests".into()))?;
            for m in &manifests {
                check(m, "manifests[]")?;
            }
            Manifest {
                kind,
                config: None,
                layers: Vec::new(),
                manifests,
                subject: raw.subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations.unwrap_or_default(),
            }
        } else {
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid(
                    "an image manifest has no manifests".into(),
                ));
            }
            let config = raw
                .config
                .ok_or_else(|| ManifestError::Invalid("manifest has no config".into()))?;
            check(&config, "config")?;
            let layers = raw
                .layers
                .ok_or_else(|| ManifestError::Invalid("manifest has no layers".into()))?;
            for l in &layers {
                check(l, "layers[]")?;
            }
            Manifest {
                kind,
                config: Some(config),
                layers,
                manifests: Vec::new(),
                subject: raw.subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations.unwrap_or_default(),
            }
        };
        if let Some(s) = &manifest.subject {
            check(s, "subject")?;
        }
        Ok(manifest)
    }

    /// Blobs that must exist in the repository for this manifest to be accepted: the config and
    /// every layer except foreign (non-distributable) ones.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|l| !(media::is_foreign_layer(&l.media_type) && l.urls.is_some())),
        )
    }

    /// The artifact type reported for this manifest in a referrers listing: its `artifactType`,
    /// or else its config's media type (OCI v1.1).
    /// Whether this is a container image (an image manifest with an image configuration and
    /// no artifact type), as opposed to an index or an artifact (signature, SBOM, chart).
    pub fn is_container_image(&self) -> bool {
        matches!(
            self.kind,
            ManifestKind::OciManifest | ManifestKind::DockerManifest
        ) && self.artifact_type.is_none()
            && self.config.as_ref().is_some_and(|c| {
                c.media_type == media::OCI_CONFIG || c.media_type == media::DOCKER_CONFIG
            })
    }

    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

fn is_schema1(mt: &str) -> bool {
    mt == media::DOCKER_SCHEMA1 || mt == media::DOCKER_SCHEMA1_SIGNED
}

fn kind_of(mt: &str) -> Result<ManifestKind, ManifestError> {
    ManifestKind::from_media_type(mt)
        .ok_or_else(|| ManifestError::UnsupportedMediaType(mt.chars().take(160).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D}","size":0}}]{extra}}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG
        )
    }

    #[test]
    fn parses_image_manifest() {
        let m = Manifest::parse(image("").as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(m.effective_artifact_type(), Some(media::OCI_CONFIG));
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x-sbom","subject":{{"mediaType":"{}","digest":"{D}","size":1}}"#,
            media::OCI_MANIFEST
        );
        let m = Manifest::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.effective_artifact_type(), Some("application/x-sbom"));
        assert!(m.subject.is_some());
    }

    #[test]
    fn rejects_bad_documents() {
        let cases: Vec<(String, Option<&str>)> = vec![
            ("".into(), None),
            ("{".into(), None),
            ("[]".into(), None),
            (
                image("").replace("\"schemaVersion\":2", "\"schemaVersion\":1"),
                None,
            ),
            (image("").replace(D, "sha256:abc"), None),
            (image("").replace("\"size\":0}]", "\"size\":-1}]"), None),
            (image(""), Some(media::OCI_INDEX)),
            (r#"{"schemaVersion":2}"#.into(), None),
            (
                r#"{"schemaVersion":2,"mediaType":"application/x-nope"}"#.into(),
                None,
            ),
            (
                r#"{"schemaVersion":1,"name":"x"}"#.into(),
                Some(media::DOCKER_SCHEMA1_SIGNED),
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{}"}}"#,
                    media::OCI_INDEX
                ),
                None,
            ),
        ];
        for (doc, ct) in cases {
            assert!(
                Manifest::parse(doc.as_bytes(), ct).is_err(),
                "{doc} / {ct:?}"
            );
        }
    }

    #[test]
    fn index_references_manifests() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST
        );
        let m = Manifest::parse(
            doc.as_bytes(),
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert!(m.kind.is_index());
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.required_blobs().count(), 0);
    }
}
