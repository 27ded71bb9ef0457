//! Image sources (OCI layout, OCI archive, `docker save` archive), multi-platform indexes, the
//! layer cache, progress, and the output formats.

mod common;

use std::sync::{Arc, Mutex};

use berth_oci::Digest;
use berth_scan::{
    AnalyzeOptions, ImageReport, LayerCache, LocalSource, MemoryLayerCache, Platform, Progress,
    output,
};
use common::*;
use serde_json::{Value, json};

fn base_layer() -> Vec<Entry> {
    vec![
        dir("etc"),
        symlink("etc/os-release", "../usr/lib/os-release"),
        file("usr/lib/os-release", fixture("os-release-debian12")),
        file("var/lib/dpkg/status", fixture("dpkg-status")),
    ]
}

fn app_layer(version: &str) -> Vec<Entry> {
    vec![file(
        "app/node_modules/@scope/thing/package.json",
        format!(r#"{{"name":"@scope/thing","version":"{version}","license":"MIT"}}"#),
    )]
}

/// Writes `layout`'s directory into a tar (an `oci-archive`).
fn tar_dir(dir: &std::path::Path) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut b = tar::Builder::new(f.reopen().unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
    f
}

#[test]
fn oci_archive_and_layout_agree() {
    let mut l = Layout::new();
    let layers: Vec<_> = [base_layer(), app_layer("1.0.0")]
        .iter()
        .map(|e| compress(&layer_tar(e), Comp::Gzip))
        .collect();
    let d = l.image(&layers, "amd64");
    l.tag(d, "v1");
    l.write_index();
    let archive = tar_dir(&l.path());
    let (a, b) = run(async {
        let opts = AnalyzeOptions::default();
        let dir = LocalSource::oci_layout(l.path()).unwrap();
        let a = berth_scan::analyze_image(&dir, "v1", &opts, berth_scan::no_progress())
            .await
            .unwrap();
        let ar = LocalSource::archive(archive.path()).await.unwrap();
        let b = berth_scan::analyze_image(&ar, "v1", &opts, berth_scan::no_progress())
            .await
            .unwrap();
        (a, b)
    });
    assert_eq!(a, b);
    assert_eq!(a.platform.as_ref().unwrap().architecture, "amd64");
    let thing = find(&a, "@scope/thing").unwrap();
    assert_eq!(thing.purl, "pkg:npm/%40scope/thing@1.0.0");
    assert_eq!(thing.licenses, ["MIT"]);
}

#[test]
fn docker_save_archive() {
    // The legacy `docker save` layout: manifest.json, <config>.json, <id>/layer.tar.
    let t1 = layer_tar(&base_layer());
    let t2 = layer_tar(&app_layer("3.1.0"));
    let diff_ids = [
        Digest::sha256_of(&t1).to_string(),
        Digest::sha256_of(&t2).to_string(),
    ];
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let cfg_name = format!("{}.json", Digest::sha256_of(&config).hex());
    let manifest = serde_json::to_vec(&json!([{"Config": cfg_name, "RepoTags": ["app:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}])).unwrap();
    let f = tempfile::NamedTempFile::new().unwrap();
    {
        let mut b = tar::Builder::new(f.reopen().unwrap());
        let add = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        // The base layer the way newer writers store it: a symlink to `../<digest>.tar`.
        add(&mut b, "a1b2.tar", &t1);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "aaa/layer.tar", "../a1b2.tar")
            .unwrap();
        // Layers may be stored compressed; their names stay the uncompressed digests.
        add(&mut b, "bbb/layer.tar", &compress(&t2, Comp::Gzip).0);
        add(&mut b, &cfg_name, &config);
        add(&mut b, "manifest.json", &manifest);
        b.finish().unwrap();
    }
    let r = run(async {
        let src = LocalSource::archive(f.path()).await.unwrap();
        berth_scan::analyze_image(
            &src,
            "",
            &AnalyzeOptions::default(),
            berth_scan::no_progress(),
        )
        .await
        .unwrap()
    });
    assert_eq!(r.os.as_ref().unwrap().id, "debian");
    assert_eq!(find(&r, "@scope/thing").unwrap().version, "3.1.0");
    assert_eq!(
        find(&r, "@scope/thing").unwrap().evidence[0]
            .layer
            .to_string(),
        diff_ids[1]
    );
    assert!(find(&r, "libc6").is_some());
}

/// An index with two platforms sharing the base layer, and an attestation manifest.
fn multi_platform() -> Layout {
    let mut l = Layout::new();
    let base = compress(&layer_tar(&base_layer()), Comp::Gzip);
    let amd = l.image(
        &[
            base.clone(),
            compress(&layer_tar(&app_layer("1.0.0")), Comp::Zstd),
        ],
        "amd64",
    );
    let arm = l.image(
        &[base, compress(&layer_tar(&app_layer("2.0.0")), Comp::Gzip)],
        "arm64",
    );
    let att = l.image(
        &[(b"{}".to_vec(), "application/vnd.in-toto+json")],
        "unknown",
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            amd,
            arm,
            {"mediaType": att["mediaType"], "digest": att["digest"], "size": att["size"],
             "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd["digest"]}},
        ],
    }))
    .unwrap();
    let d = l.blob(&index);
    l.tag(json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d.to_string(), "size": index.len()}), "multi");
    l.write_index();
    l
}

#[test]
fn multi_platform_index_with_shared_layers_and_attestations() {
    let l = multi_platform();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let progress: berth_scan::ProgressFn = Arc::new(move |p| ev.lock().unwrap().push(p));
    let reports = run(async {
        let src = LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_index(&src, "multi", &AnalyzeOptions::default(), progress)
            .await
            .unwrap()
    });
    assert_eq!(reports.len(), 2, "the attestation manifest is skipped");
    let arches: Vec<_> = reports
        .iter()
        .map(|r| r.platform.as_ref().unwrap().architecture.clone())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    assert_eq!(find(&reports[0], "@scope/thing").unwrap().version, "1.0.0");
    assert_eq!(find(&reports[1], "@scope/thing").unwrap().version, "2.0.0");
    // The shared base layer was read once.
    assert!(!reports[0].layers[0].cached);
    assert!(reports[1].layers[0].cached);
    let events = events.lock().unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Progress::LayerStarted { .. }))
            .count(),
        3
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::LayerDone { cached: true, .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::Resolved { layers: 2, .. }))
    );
    // One platform by choice.
    let r = run(async {
        let src = LocalSource::oci_layout(l.path()).unwrap();
        let opts = AnalyzeOptions {
            platform: Some(Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: None,
            }),
            ..Default::default()
        };
        berth_scan::analyze_image(&src, "multi", &opts, berth_scan::no_progress())
            .await
            .unwrap()
    });
    assert_eq!(find(&r, "@scope/thing").unwrap().version, "2.0.0");
    let err = run(async {
        let src = LocalSource::oci_layout(l.path()).unwrap();
        let opts = AnalyzeOptions {
            platform: Some(Platform {
                os: "linux".into(),
                architecture: "s390x".into(),
                variant: None,
            }),
            ..Default::default()
        };
        berth_scan::analyze_image(&src, "multi", &opts, berth_scan::no_progress())
            .await
            .unwrap_err()
    });
    assert!(err.to_string().contains("linux/s390x"), "{err}");
}

#[test]
fn cached_layer_indexes_survive_serialisation() {
    let l = multi_platform();
    let cache = Arc::new(MemoryLayerCache::default());
    let opts = AnalyzeOptions {
        cache: Some(cache.clone()),
        ..Default::default()
    };
    let first = run(async {
        let src = LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_image(&src, "multi", &opts, berth_scan::no_progress())
            .await
            .unwrap()
    });
    // Round-trip every cached index through JSON, as a persistent cache would.
    let d = &first.layers[0].digest;
    let index = cache.get(d).unwrap();
    let back: berth_scan::LayerIndex =
        serde_json::from_slice(&serde_json::to_vec(&index).unwrap()).unwrap();
    assert_eq!(back, index);
    assert_eq!(back.analyzer_version, berth_scan::ANALYZER_VERSION);
    let second = run(async {
        let src = LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_image(&src, "multi", &opts, berth_scan::no_progress())
            .await
            .unwrap()
    });
    assert!(second.layers.iter().all(|l| l.cached));
    assert_eq!(first.packages, second.packages);
    // An index from another analyser version is not used.
    let mut old = index.clone();
    old.analyzer_version = 0;
    cache.put(&old);
    let third = run(async {
        let src = LocalSource::oci_layout(l.path()).unwrap();
        berth_scan::analyze_image(&src, "multi", &opts, berth_scan::no_progress())
            .await
            .unwrap()
    });
    assert!(!third.layers[0].cached);
}

fn sample_report() -> ImageReport {
    let mut layers = vec![base_layer(), app_layer("1.0.0")];
    layers[1].push(real(
        "opt/lib/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ));
    analyze_layers(&layers, Comp::Gzip)
}

#[test]
fn cyclonedx_document() {
    let r = sample_report();
    let bom = output::to_cyclonedx(&r);
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["version"], 1);
    let serial = bom["serialNumber"].as_str().unwrap();
    assert!(
        serial.len() == 45 && serial.starts_with("urn:uuid:") && serial.as_bytes()[23] == b'4',
        "{serial}"
    );
    assert_eq!(bom["metadata"]["component"]["type"], "container");
    assert_eq!(
        bom["metadata"]["tools"]["components"][0]["name"],
        "berth-scan"
    );
    let comps = bom["components"].as_array().unwrap();
    assert_eq!(comps.len(), r.packages.len() + 1);
    assert_eq!(comps[0]["type"], "operating-system");
    let mut refs = std::collections::HashSet::new();
    for c in &comps[1..] {
        assert!(
            ["library", "application"].contains(&c["type"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(c["purl"].as_str().unwrap().starts_with("pkg:"), "{c}");
        assert!(
            refs.insert(c["bom-ref"].as_str().unwrap().to_owned()),
            "bom-refs are unique"
        );
        let occ = c["evidence"]["occurrences"].as_array().unwrap();
        assert!(!occ.is_empty());
        for o in occ {
            assert!(o["location"].as_str().unwrap().starts_with('/'));
        }
        for p in c["properties"].as_array().unwrap() {
            assert!(p["name"].is_string() && p["value"].is_string());
        }
    }
    let zlib = comps.iter().find(|c| c["name"] == "zlib").unwrap();
    assert_eq!(zlib["type"], "application");
    assert!(
        zlib["cpe"]
            .as_str()
            .unwrap()
            .starts_with("cpe:2.3:a:zlib:zlib:")
    );
    assert_eq!(
        zlib["evidence"]["occurrences"][0]["location"],
        "/opt/lib/libz.so.1"
    );
    // Deterministic for the same report.
    assert_eq!(bom, output::to_cyclonedx(&r));
}

#[test]
fn spdx_document() {
    let r = sample_report();
    let doc = output::to_spdx(&r, 1_700_000_000);
    for k in [
        "spdxVersion",
        "dataLicense",
        "SPDXID",
        "name",
        "documentNamespace",
        "creationInfo",
        "packages",
        "relationships",
    ] {
        assert!(!doc[k].is_null(), "missing {k}");
    }
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert!(
        doc["creationInfo"]["creators"][0]
            .as_str()
            .unwrap()
            .starts_with("Tool: ")
    );
    let pkgs = doc["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), r.packages.len() + 2);
    let ids: std::collections::HashSet<&str> =
        pkgs.iter().map(|p| p["SPDXID"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), pkgs.len());
    for p in pkgs {
        let id = p["SPDXID"].as_str().unwrap();
        assert!(
            id.starts_with("SPDXRef-")
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            "{id}"
        );
        for k in [
            "name",
            "downloadLocation",
            "licenseConcluded",
            "copyrightText",
        ] {
            assert!(p[k].is_string(), "{k} in {p}");
        }
        assert!(p["filesAnalyzed"].is_boolean());
    }
    for p in &pkgs[2..] {
        let refs = p["externalRefs"].as_array().unwrap();
        assert!(
            refs.iter().any(
                |r| r["referenceType"] == "purl" && r["referenceCategory"] == "PACKAGE-MANAGER"
            )
        );
    }
    let zlib = pkgs.iter().find(|p| p["name"] == "zlib").unwrap();
    assert!(
        zlib["externalRefs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["referenceType"] == "cpe23Type")
    );
    for rel in doc["relationships"].as_array().unwrap() {
        for k in ["spdxElementId", "relatedSpdxElement"] {
            let id = rel[k].as_str().unwrap();
            assert!(id == "SPDXRef-DOCUMENT" || ids.contains(id), "{id}");
        }
    }
    assert_eq!(doc["relationships"].as_array().unwrap().len(), pkgs.len());
}

#[test]
fn json_and_table() {
    let r = sample_report();
    let v: Value = output::to_json(&r);
    let back: ImageReport = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, r);
    assert!(
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.get("files").is_none()),
        "file lists stay internal"
    );
    let t = output::to_table(&r);
    assert!(t.contains("Debian GNU/Linux 12 (bookworm)"), "{t}");
    let line = t.lines().find(|l| l.starts_with("zlib ")).unwrap();
    assert!(
        line.contains("binary") && line.contains("/opt/lib/libz.so.1"),
        "{line}"
    );
    let header = t.lines().find(|l| l.starts_with("NAME")).unwrap();
    assert_eq!(header.find("VERSION"), line.find("1.2."));
}

#[test]
fn analysis_futures_are_send() {
    // The server runs analyses on tokio tasks.
    fn assert_send<T: Send>(_: &T) {}
    let l = multi_platform();
    let src = LocalSource::oci_layout(l.path()).unwrap();
    let opts = AnalyzeOptions::default();
    let f = berth_scan::analyze_image(&src, "multi", &opts, berth_scan::no_progress());
    assert_send(&f);
    let g = berth_scan::analyze_index(&src, "multi", &opts, berth_scan::no_progress());
    assert_send(&g);
    let reports = run(g);
    // Re-assembling from cached indexes gives the same report.
    let cache = Arc::new(MemoryLayerCache::default());
    let opts = AnalyzeOptions {
        cache: Some(cache.clone()),
        ..Default::default()
    };
    let r = run(berth_scan::analyze_image(
        &src,
        "multi",
        &opts,
        berth_scan::no_progress(),
    ))
    .unwrap();
    assert_eq!(r.packages, reports.unwrap()[0].packages);
    let indexes: Vec<_> = r
        .layers
        .iter()
        .map(|l| cache.get(&l.digest).unwrap())
        .collect();
    let again = berth_scan::assemble_report(
        berth_scan::ImageIdentity {
            reference: r.reference.clone(),
            manifest_digest: r.manifest_digest.clone(),
            config_digest: r.config_digest.clone(),
            platform: r.platform.clone(),
        },
        r.layers.clone(),
        &indexes,
    );
    assert_eq!(again, r);
    drop(f);
}
