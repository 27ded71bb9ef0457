//! Vulnerability database bundles kept in the registry itself, as OCI artifacts: the way an
//! air-gapped site moves its database in (one `oras push` of a bundle made outside), and the
//! way replicas anywhere find it.
//!
//! An artifact is an image manifest with `artifactType` [`BUNDLE_ARTIFACT_TYPE`] whose layers
//! are the snapshot ([`SNAPSHOT_MEDIA_TYPE`]) and, optionally, its detached Ed25519 signature
//! ([`SIGNATURE_MEDIA_TYPE`], 64 bytes or 128 hex digits):
//!
//! ```sh
//! oras push berth.example/ops/vulndb:latest --artifact-type application/vnd.berth.vulndb.bundle.v1 \
//!     db.snapshot:application/vnd.berth.vulndb.snapshot.v1 db.snapshot.sig:application/vnd.berth.vulndb.signature.v1
//! ```
//!
//! With `vulndb.bundle_artifact = "ops/vulndb:latest"`, one replica at a time checks the tag
//! and loads a bundle whose manifest digest it has not loaded before; the same signature rules
//! as every bundle apply (`vulndb.public_key`).

use berth_oci::{Digest, Manifest, Reference, RepoName};
use futures::StreamExt;

use crate::service::Registry;
use crate::vulndb::{ImportOutcome, VulnDbError, VulnDbService};

pub const BUNDLE_ARTIFACT_TYPE: &str = "application/vnd.berth.vulndb.bundle.v1";
pub const SNAPSHOT_MEDIA_TYPE: &str = "application/vnd.berth.vulndb.snapshot.v1";
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.berth.vulndb.signature.v1";
/// The feed name under which the artifact's loads are recorded (its `etag` is the manifest
/// digest last loaded).
pub const ARTIFACT_FEED: &str = "bundle-artifact";

fn invalid(m: impl Into<String>) -> VulnDbError {
    VulnDbError::Invalid(m.into())
}

async fn read_layer(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>, VulnDbError> {
    let reader = registry
        .open_blob(repo, digest)
        .await
        .map_err(|e| invalid(format!("bundle layer {digest}: {e}")))?;
    if reader.len() > limit {
        return Err(VulnDbError::TooLarge { limit });
    }
    let mut out = Vec::with_capacity(reader.len() as usize);
    let mut s = reader.stream(None);
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.map_err(|e| invalid(format!("bundle layer {digest}: {e}")))?);
    }
    Ok(out)
}

/// The manifest digest `reference` names in `repo`, if any.
pub async fn artifact_digest(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Option<String>, VulnDbError> {
    match registry.get_manifest(repo, reference).await {
        Ok(m) => Ok(Some(m.digest.clone())),
        Err(crate::RegistryError::ManifestUnknown(_))
        | Err(crate::RegistryError::NameUnknown(_)) => Ok(None),
        Err(e) => Err(VulnDbError::Unavailable(e.to_string())),
    }
}

/// Loads the bundle artifact `reference` names in `repo` into the shared database. Returns the
/// artifact's manifest digest and the outcome.
pub async fn load_bundle_artifact(
    registry: &Registry,
    vulndb: &VulnDbService,
    repo: &RepoName,
    reference: &Reference,
) -> Result<(String, ImportOutcome), VulnDbError> {
    let m = registry
        .get_manifest(repo, reference)
        .await
        .map_err(|e| VulnDbError::NotFound(format!("{repo}:{reference}: {e}")))?;
    let manifest = Manifest::parse(&m.content, Some(&m.media_type))
        .map_err(|e| invalid(format!("{repo}:{reference} is not a manifest: {e}")))?;
    if manifest.artifact_type.as_deref() != Some(BUNDLE_ARTIFACT_TYPE) {
        return Err(invalid(format!(
            "{repo}:{reference} is not a vulnerability database bundle (artifactType {BUNDLE_ARTIFACT_TYPE})"
        )));
    }
    let layer = |mt: &'static str| manifest.layers.iter().filter(move |l| l.media_type == mt);
    let mut snapshots = layer(SNAPSHOT_MEDIA_TYPE);
    let snapshot = match (snapshots.next(), snapshots.next()) {
        (Some(s), None) => s,
        _ => {
            return Err(invalid(format!(
                "a bundle artifact has exactly one {SNAPSHOT_MEDIA_TYPE} layer"
            )));
        }
    };
    let mut signatures = layer(SIGNATURE_MEDIA_TYPE);
    let signature = match (signatures.next(), signatures.next()) {
        (None, _) => None,
        (Some(s), None) => Some(read_layer(registry, repo, &s.digest, 1024).await?),
        _ => {
            return Err(invalid(format!(
                "a bundle artifact has at most one {SIGNATURE_MEDIA_TYPE} layer"
            )));
        }
    };
    let bytes = read_layer(
        registry,
        repo,
        &snapshot.digest,
        vulndb.config().max_upload_bytes,
    )
    .await?;
    let outcome = vulndb.import_bundle(bytes, signature).await?;
    Ok((m.digest.clone(), outcome))
}
