//! End-to-end tests with real container clients (skopeo, podman, umoci)
//! against a running `berth serve`.
//!
//! Every test starts its own server and its own client sandbox (private
//! configuration and vfs storage), so tests run in parallel and never touch
//! the host's container storage. Missing tools fail the test: nothing skips.
//!
//! `BERTH_CLIENTS_TARGET=peer` runs the very same tests against CNCF
//! Distribution (Debian's `docker-registry`) instead of Berth, to tell a test
//! bug from a server bug. The default (and what CI runs) is Berth.

mod common;

use common::*;
use serde_json::Value;

/// The registry under test.
enum Target {
    Berth(TestServer),
    Peer(PeerRegistry),
}

/// Where Berth keeps its state in a test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backends {
    /// The embedded defaults: SQLite and the filesystem.
    Embedded,
    /// PostgreSQL and the filesystem.
    Postgres,
    /// PostgreSQL and S3 (a real Garage node): the scale-out configuration.
    PostgresS3,
}

thread_local! {
    /// Set by the `postgres` and `scale_out` copies of the tests.
    static BACKENDS: std::cell::Cell<Backends> = const { std::cell::Cell::new(Backends::Embedded) };
}

impl Target {
    fn start() -> Target {
        match std::env::var("BERTH_CLIENTS_TARGET").as_deref() {
            Ok("peer") => Target::Peer(PeerRegistry::start()),
            Ok("berth") | Err(_) => Target::Berth(match BACKENDS.get() {
                Backends::Embedded => TestServer::start(),
                Backends::Postgres => TestServer::start_postgres(),
                Backends::PostgresS3 => TestServer::start_scale_out(),
            }),
            Ok(other) => panic!("BERTH_CLIENTS_TARGET must be `berth` or `peer`, not {other:?}"),
        }
    }

    fn registry(&self) -> &dyn Registry {
        match self {
            Target::Berth(s) => s,
            Target::Peer(p) => p,
        }
    }

    fn host(&self) -> String {
        self.registry().host()
    }

    fn url(&self) -> String {
        self.registry().url()
    }

    /// `docker://HOST/REPO<suffix>` where suffix is `:tag` or `@digest`.
    fn docker_ref(&self, repo: &str, suffix: &str) -> String {
        format!("docker://{}/{repo}{suffix}", self.host())
    }

    /// `HOST/REPO:TAG` as podman spells it.
    fn image_name(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.host())
    }

    fn get_manifest(&self, repo: &str, reference: &str) -> HttpResponse {
        http(
            "GET",
            &format!("{}/v2/{repo}/manifests/{reference}", self.url()),
            &[
                ("Accept", MANIFEST_ACCEPT),
                ("Authorization", &common::admin_basic_auth()),
            ],
            None,
        )
    }

    fn head_blob(&self, repo: &str, digest: &str) -> HttpResponse {
        http(
            "HEAD",
            &format!("{}/v2/{repo}/blobs/{digest}", self.url()),
            &[("Authorization", &common::admin_basic_auth())],
            None,
        )
    }
}

const REPO: &str = "acme/team/app";

/// Build the standard layout inside the client sandbox.
fn layout(env: &ClientEnv, salt: &str) -> TestLayout {
    build_test_layout(&env.subdir("src-layout"), salt)
}

/// `skopeo copy` a local layout ref into the registry.
fn push(env: &ClientEnv, layout: &TestLayout, oci_ref: &str, dest: &str) {
    env.skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &layout.oci_ref(oci_ref),
        dest,
    ]);
}

fn assert_manifest_served(target: &Target, repo: &str, reference: &str, expected: &Blob) {
    let resp = target.get_manifest(repo, reference);
    assert_eq!(
        resp.status,
        200,
        "GET /v2/{repo}/manifests/{reference}: {}",
        resp.text()
    );
    assert_same_bytes(
        &resp.body,
        &expected.data,
        &format!("manifest bytes served for {repo}:{reference}"),
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(expected.digest.as_str()),
        "Docker-Content-Digest for {repo}:{reference}"
    );
    assert_eq!(
        resp.header("content-type"),
        Some(expected.media_type.as_str()),
        "Content-Type for {repo}:{reference}"
    );
}

fn assert_blobs_present(target: &Target, repo: &str, blobs: &[&Blob]) {
    for blob in blobs {
        let resp = target.head_blob(repo, &blob.digest);
        assert_eq!(resp.status, 200, "HEAD /v2/{repo}/blobs/{}", blob.digest);
        assert_eq!(
            resp.header("content-length"),
            Some(blob.size().to_string().as_str()),
            "Content-Length of HEAD /v2/{repo}/blobs/{}",
            blob.digest
        );
    }
}

/// Pull `src` into a new layout under ref `name`; returns the layout path and
/// the pulled manifest descriptor.
fn pull_to_layout(
    env: &ClientEnv,
    src: &str,
    dir_name: &str,
    name: &str,
) -> (std::path::PathBuf, Value) {
    let dir = env.subdir(dir_name);
    env.skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        src,
        &format!("oci:{}:{name}", dir.display()),
    ]);
    let desc = layout_ref(&dir, name);
    (dir, desc)
}

fn image_blobs(image: &BuiltImage) -> Vec<&Blob> {
    std::iter::once(&image.config)
        .chain(image.layers.iter())
        .collect()
}

#[test]
fn skopeo_push_by_tag_then_pull_back_by_tag_and_digest() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "push-pull");
    let image = &layout.image;

    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref(REPO, ":v1"),
    );

    assert_manifest_served(&target, REPO, "v1", &image.manifest);
    assert_manifest_served(&target, REPO, &image.manifest.digest, &image.manifest);
    assert_blobs_present(&target, REPO, &image_blobs(image));

    // Back by tag: the manifest digest round-trips byte-exactly.
    let (dir, desc) = pull_to_layout(&env, &target.docker_ref(REPO, ":v1"), "by-tag", "pulled");
    assert_eq!(desc["digest"], image.manifest.digest.as_str());
    assert_eq!(desc["size"], image.manifest.size());
    assert_same_bytes(
        &layout_blob(&dir, &image.manifest.digest),
        &image.manifest.data,
        "manifest pulled by tag",
    );
    for blob in image_blobs(image) {
        assert_same_bytes(
            &layout_blob(&dir, &blob.digest),
            &blob.data,
            &format!("blob {} pulled by tag", blob.digest),
        );
    }
    assert_same_files(&layout_files(&dir, &image.manifest.digest), &image.files);

    // Back by digest.
    let by_digest = format!("@{}", image.manifest.digest);
    let (dir, desc) = pull_to_layout(
        &env,
        &target.docker_ref(REPO, &by_digest),
        "by-digest",
        "pulled",
    );
    assert_eq!(desc["digest"], image.manifest.digest.as_str());
    assert_same_bytes(
        &layout_blob(&dir, &image.manifest.digest),
        &image.manifest.data,
        "manifest pulled by digest",
    );
    assert_same_files(&layout_files(&dir, &image.manifest.digest), &image.files);

    // Pushed by digest (no tag) into another repository: stored and served under the digest.
    let untagged = format!("{REPO}-untagged");
    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref(&untagged, &by_digest),
    );
    assert_manifest_served(&target, &untagged, &image.manifest.digest, &image.manifest);
    assert_blobs_present(&target, &untagged, &image_blobs(image));

    // An independent reader of the pulled layout: umoci unpacks it.
    let bundle = env.path().join("bundle");
    env.umoci(&[
        "unpack",
        "--image",
        &format!("{}:pulled", dir.display()),
        &bundle.to_string_lossy(),
    ]);
    for (path, data) in &image.files {
        let on_disk = std::fs::read(bundle.join("rootfs").join(path))
            .unwrap_or_else(|e| panic!("umoci did not unpack {path}: {e}"));
        assert_same_bytes(&on_disk, data, &format!("{path} unpacked by umoci"));
    }
}

#[test]
fn skopeo_copy_all_multi_platform_index() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "copy-all");
    let repo = "acme/team/multi";

    env.skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &layout.oci_ref(TestLayout::INDEX_REF),
        &target.docker_ref(repo, ":latest"),
    ]);

    // The index, byte-exact, by tag and by digest.
    let raw = env.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &target.docker_ref(repo, ":latest"),
    ]);
    assert_same_bytes(
        raw.stdout.as_bytes(),
        &layout.index.index.data,
        "index via inspect --raw",
    );
    assert_manifest_served(&target, repo, "latest", &layout.index.index);
    assert_manifest_served(
        &target,
        repo,
        &layout.index.index.digest,
        &layout.index.index,
    );

    // Each platform manifest, byte-exact, and its blobs.
    for image in &layout.index.images {
        let raw = env.skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &target.docker_ref(repo, &format!("@{}", image.manifest.digest)),
        ]);
        assert_same_bytes(
            raw.stdout.as_bytes(),
            &image.manifest.data,
            &format!("{} manifest via inspect --raw", image.platform.architecture),
        );
        assert_manifest_served(&target, repo, &image.manifest.digest, &image.manifest);
        assert_blobs_present(&target, repo, &image_blobs(image));
    }

    // Platform selection through the index.
    for image in &layout.index.images {
        let arch = image.platform.architecture.as_str();
        let mut args = vec!["--override-arch", arch];
        if let Some(variant) = &image.platform.variant {
            args.extend(["--override-variant", variant.as_str()]);
        }
        args.extend(["inspect", "--tls-verify=false"]);
        let name = target.docker_ref(repo, ":latest");
        args.push(&name);
        let info = env.skopeo(&args).json();
        // skopeo reports the digest of what the tag names (the index) and
        // the layers of the platform it resolved.
        assert_eq!(info["Digest"], layout.index.index.digest.as_str());
        assert_eq!(
            info["Layers"],
            serde_json::json!(image.layer_digests()),
            "{arch} resolved through the index"
        );
        assert_eq!(info["Architecture"], arch);
        assert_eq!(info["Os"], "linux");
    }

    // Whole index back into a layout, byte-exact.
    let dir = env.subdir("multi-back");
    env.skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &target.docker_ref(repo, ":latest"),
        &format!("oci:{}:back", dir.display()),
    ]);
    assert_eq!(
        layout_ref(&dir, "back")["digest"],
        layout.index.index.digest.as_str()
    );
    for image in &layout.index.images {
        assert_same_files(&layout_files(&dir, &image.manifest.digest), &image.files);
    }
}

#[test]
fn skopeo_copy_as_docker_schema2() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "v2s2");
    let image = &layout.image;

    env.skopeo(&[
        "copy",
        "--quiet",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &layout.oci_ref(TestLayout::IMAGE_REF),
        &target.docker_ref(REPO, ":docker"),
    ]);

    let raw = env.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &target.docker_ref(REPO, ":docker"),
    ]);
    let manifest: Value = serde_json::from_str(&raw.stdout).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MT_DOCKER_MANIFEST, "{}", raw.stdout);
    assert_eq!(manifest["config"]["mediaType"], MT_DOCKER_CONFIG);
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), image.layers.len());
    for (got, want) in layers.iter().zip(&image.layers) {
        assert_eq!(got["mediaType"], MT_DOCKER_LAYER_GZIP);
        assert_eq!(got["digest"], want.digest.as_str());
        assert_eq!(got["size"], want.size());
    }

    // The registry stores and serves it as Docker schema 2, byte-exact.
    let stored = Blob::new(MT_DOCKER_MANIFEST, raw.stdout.into_bytes());
    assert_manifest_served(&target, REPO, "docker", &stored);
    assert_manifest_served(&target, REPO, &stored.digest, &stored);
    let head = http(
        "HEAD",
        &format!("{}/v2/{REPO}/manifests/docker", target.url()),
        &[
            ("Accept", MANIFEST_ACCEPT),
            ("Authorization", &common::admin_basic_auth()),
        ],
        None,
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some(MT_DOCKER_MANIFEST));
    assert_eq!(
        head.header("docker-content-digest"),
        Some(stored.digest.as_str())
    );
    assert_eq!(
        head.header("content-length"),
        Some(stored.size().to_string().as_str())
    );

    // And it pulls back with the same content.
    let (dir, desc) = pull_to_layout(
        &env,
        &target.docker_ref(REPO, ":docker"),
        "v2s2-back",
        "back",
    );
    assert_eq!(desc["digest"], stored.digest.as_str());
    assert_same_files(&layout_files(&dir, &stored.digest), &image.files);
}

#[test]
fn skopeo_inspect_image() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "inspect");
    let image = &layout.image;
    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref(REPO, ":v1"),
    );

    let info = env
        .skopeo(&[
            "inspect",
            "--tls-verify=false",
            &target.docker_ref(REPO, ":v1"),
        ])
        .json();
    assert_eq!(info["Name"], format!("{}/{REPO}", target.host()));
    assert_eq!(info["Digest"], image.manifest.digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["RepoTags"], serde_json::json!(["v1"]));
    assert_eq!(info["Layers"], serde_json::json!(image.layer_digests()));
    assert_eq!(
        info["Labels"]["org.opencontainers.image.title"],
        "berth test image"
    );

    let config = env.skopeo(&[
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &target.docker_ref(REPO, ":v1"),
    ]);
    assert_same_bytes(
        config.stdout.as_bytes(),
        &image.config.data,
        "config blob via inspect --config --raw",
    );
}

#[test]
fn skopeo_list_tags() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "list-tags");
    for tag in ["v1", "latest", "1.0.0", "beta_2"] {
        push(
            &env,
            &layout,
            TestLayout::IMAGE_REF,
            &target.docker_ref(REPO, &format!(":{tag}")),
        );
    }
    let out = env
        .skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &target.docker_ref(REPO, ""),
        ])
        .json();
    assert_eq!(out["Repository"], format!("{}/{REPO}", target.host()));
    let mut tags: Vec<String> = out["Tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no Tags array: {out}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.0.0", "beta_2", "latest", "v1"]);

    // A sibling repository's tags are separate.
    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref("acme/team/other", ":only"),
    );
    let out = env
        .skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &target.docker_ref("acme/team/other", ""),
        ])
        .json();
    assert_eq!(out["Tags"], serde_json::json!(["only"]));
}

#[test]
fn skopeo_delete_removes_manifest() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "delete");
    let image = &layout.image;
    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref(REPO, ":v1"),
    );
    assert_manifest_served(&target, REPO, "v1", &image.manifest);

    env.skopeo(&[
        "delete",
        "--tls-verify=false",
        &target.docker_ref(REPO, ":v1"),
    ]);

    for reference in ["v1", image.manifest.digest.as_str()] {
        let resp = target.get_manifest(REPO, reference);
        assert_eq!(
            resp.status,
            404,
            "GET manifest {reference} after delete: {}",
            resp.text()
        );
        let body = resp.json();
        let code = body["errors"][0]["code"].as_str().unwrap_or_default();
        assert!(
            code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN",
            "error code after delete: {body}"
        );
    }
    let out = env.try_skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &target.docker_ref(REPO, ":v1"),
    ]);
    assert!(!out.success(), "inspect after delete should fail:\n{out}");
    let out = env.try_skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &target.docker_ref(REPO, &format!("@{}", image.manifest.digest)),
    ]);
    assert!(
        !out.success(),
        "inspect by digest after delete should fail:\n{out}"
    );
}

#[test]
fn skopeo_copy_between_repositories_mounts_blobs() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "mount");
    let image = &layout.image;
    let mirror = "acme/mirror/app";
    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref(REPO, ":v1"),
    );

    let out = env.skopeo(&[
        "--debug",
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &target.docker_ref(REPO, ":v1"),
        &target.docker_ref(mirror, ":v1"),
    ]);

    // skopeo knows where it just read the layers from, so it asks the
    // registry to mount them: POST /v2/MIRROR/blobs/uploads/?from=REPO&mount=D,
    // and a registry that has the blob answers 201 ("... mount OK"). (skopeo
    // never mounts the config blob: it re-uploads it.)
    let from = format!("from={}", REPO.replace('/', "%2F"));
    for layer in &image.layers {
        let mount = format!("mount={}", layer.digest.replace(':', "%3A"));
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains("Trying to mount") && l.contains(&mount) && l.contains(&from)),
            "skopeo did not try to mount {} from {REPO}:\n{}",
            layer.digest,
            out.stderr
        );
    }
    assert_eq!(
        out.stderr.matches("... mount OK").count(),
        image.layers.len(),
        "every layer should be mounted across repositories (201 Created), not re-uploaded:\n{}",
        out.stderr
    );

    assert_manifest_served(&target, mirror, "v1", &image.manifest);
    assert_blobs_present(&target, mirror, &image_blobs(image));
    let (dir, desc) = pull_to_layout(&env, &target.docker_ref(mirror, ":v1"), "mirror", "m");
    assert_eq!(desc["digest"], image.manifest.digest.as_str());
    assert_same_files(&layout_files(&dir, &image.manifest.digest), &image.files);
}

#[test]
fn podman_pull_tag_push_and_pull_back() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "podman");
    let image = &layout.image;
    push(
        &env,
        &layout,
        TestLayout::IMAGE_REF,
        &target.docker_ref(REPO, ":v1"),
    );

    let source = target.image_name(REPO, "v1");
    let pushed = target.image_name("acme/team/pushed", "v2");

    env.podman(&["pull", "--quiet", "--tls-verify=false", &source]);
    let id = env.podman(&["image", "inspect", "--format", "{{.Id}}", &source]);
    assert_eq!(
        id.stdout.trim(),
        image.config.hex(),
        "image id is the config digest"
    );

    env.podman(&["tag", &source, &pushed]);
    env.podman(&["push", "--quiet", "--tls-verify=false", &pushed]);

    // Forget everything locally, then pull the pushed image back.
    env.podman(&["rmi", "--all", "--force"]);
    let images = env.podman(&["images", "--quiet"]);
    assert_eq!(images.stdout.trim(), "", "local storage should be empty");
    env.podman(&["pull", "--quiet", "--tls-verify=false", &pushed]);
    let id = env.podman(&["image", "inspect", "--format", "{{.Id}}", &pushed]);
    assert_eq!(id.stdout.trim(), image.config.hex(), "pulled-back image id");

    // What podman pushed has the same files (its layers are recompressed, so
    // compare content rather than digests).
    let (dir, desc) = pull_to_layout(
        &env,
        &target.docker_ref("acme/team/pushed", ":v2"),
        "podman-back",
        "p",
    );
    let digest = desc["digest"].as_str().unwrap();
    assert_same_files(&layout_files(&dir, digest), &image.files);
    let manifest: Value = serde_json::from_slice(&layout_blob(&dir, digest)).unwrap();
    assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
}

#[test]
fn layout_builder_output_is_valid_for_umoci_and_skopeo() {
    // Harness self-check, no registry: the layout parses in independent tools.
    let env = ClientEnv::new();
    let layout = layout(&env, "self-check");
    let stat = env.umoci(&[
        "stat",
        "--json",
        "--image",
        &format!("{}:{}", layout.path.display(), TestLayout::IMAGE_REF),
    ]);
    let stat: Value = serde_json::from_str(&stat.stdout).unwrap();
    assert_eq!(stat["history"].as_array().map(Vec::len), Some(2), "{stat}");
    let info = env
        .skopeo(&["inspect", &layout.oci_ref(TestLayout::IMAGE_REF)])
        .json();
    assert_eq!(info["Digest"], layout.image.manifest.digest.as_str());
    assert_eq!(
        info["Layers"],
        serde_json::json!(layout.image.layer_digests())
    );
    // A skopeo copy between layouts validates every digest and size.
    let copy = env.subdir("copy");
    env.skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        &layout.oci_ref(TestLayout::INDEX_REF),
        &format!("oci:{}:multi", copy.display()),
    ]);
    assert_eq!(
        layout_ref(&copy, "multi")["digest"],
        layout.index.index.digest.as_str()
    );
}

#[test]
fn peer_registry_harness_works() {
    // The peer is the benchmarks' and test-writers' reference registry; keep
    // its harness exercised.
    let peer = PeerRegistry::start();
    let env = ClientEnv::new();
    let layout = layout(&env, "peer");
    env.skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &layout.oci_ref(TestLayout::IMAGE_REF),
        &format!("docker://{}/{REPO}:v1", peer.host()),
    ]);
    let resp = http(
        "GET",
        &format!("{}/v2/{REPO}/manifests/v1", peer.url()),
        &[("Accept", MANIFEST_ACCEPT)],
        None,
    );
    assert_eq!(resp.status, 200);
    assert_same_bytes(&resp.body, &layout.image.manifest.data, "peer manifest");
}

#[test]
fn berth_prints_listen_line_and_exits_on_sigterm() {
    let mut server = TestServer::start();
    // Authentication is on by default: the base endpoint challenges anonymous clients.
    let resp = http("GET", &format!("{}/v2/", server.url()), &[], None);
    assert_eq!(resp.status, 401, "GET /v2/: {}", resp.text());
    let challenge = resp
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"http://"),
        "{challenge}"
    );
    assert_eq!(
        server
            .stdout()
            .lines()
            .filter(|l| l.starts_with("listening on "))
            .count(),
        1,
        "stdout: {:?}",
        server.stdout()
    );
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        server.stderr()
    );
}

/// SIGTERM lets a request in progress finish: an upload whose body is still arriving when the
/// signal comes is stored and answered, and only then does the server exit.
#[test]
fn sigterm_lets_an_upload_in_progress_finish() {
    use std::io::{Read, Write};
    let mut server = TestServer::start();
    let data = pseudo_random_bytes(7, 1 << 20);
    let digest = sha256_digest(&data);
    let mut conn = std::net::TcpStream::connect(server.host()).unwrap();
    write!(
        conn,
        "POST /v2/acme/drain/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {}\r\n\
         Authorization: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.host(),
        admin_basic_auth(),
        data.len()
    )
    .unwrap();
    conn.write_all(&data[..data.len() / 2]).unwrap();
    let client = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        conn.write_all(&data[data.len() / 2..]).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let status = server.terminate();
    let answer = client.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(status.success(), "{status}\n{}", server.stderr());
}

#[test]
fn podman_pulls_each_platform_of_an_index() {
    let target = Target::start();
    let env = ClientEnv::new();
    env.log_in(&target.host(), "admin", common::ADMIN_PASSWORD);
    let layout = layout(&env, "podman-index");
    let repo = "acme/team/multi";
    env.skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &layout.oci_ref(TestLayout::INDEX_REF),
        &target.docker_ref(repo, ":latest"),
    ]);
    for image in &layout.index.images {
        let name = target.image_name(repo, "latest");
        let mut pull = vec!["pull", "--quiet", "--tls-verify=false"];
        pull.extend(["--os", &image.platform.os]);
        pull.extend(["--arch", &image.platform.architecture]);
        if let Some(variant) = &image.platform.variant {
            pull.extend(["--variant", variant]);
        }
        pull.push(&name);
        let id = env.podman(&pull);
        assert_eq!(
            id.stdout.trim(),
            image.config.hex(),
            "podman pull --arch {} through the index",
            image.platform.architecture
        );
        // podman records the digest the tag resolved to: the index's.
        let info = env.podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Digest}} {{.Architecture}}",
            &name,
        ]);
        assert_eq!(
            info.stdout.trim(),
            format!(
                "{} {}",
                layout.index.index.digest, image.platform.architecture
            )
        );
    }
}

/// The same client tests against Berth on PostgreSQL (`postgres`) and in its scale-out
/// configuration (`scale_out`: PostgreSQL for metadata, S3 on a real Garage node for blobs).
macro_rules! on_backends {
    ($module:ident, $backends:expr, [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    super::BACKENDS.set($backends);
                    super::$name();
                }
            )*
        }
    };
}

macro_rules! on_other_backends {
    ($($name:ident),* $(,)?) => {
        on_backends!(postgres, super::Backends::Postgres, [$($name),*]);
        on_backends!(scale_out, super::Backends::PostgresS3, [$($name),*]);
    };
}

on_other_backends!(
    skopeo_push_by_tag_then_pull_back_by_tag_and_digest,
    skopeo_copy_all_multi_platform_index,
    skopeo_copy_as_docker_schema2,
    skopeo_inspect_image,
    skopeo_list_tags,
    skopeo_delete_removes_manifest,
    skopeo_copy_between_repositories_mounts_blobs,
    podman_pull_tag_push_and_pull_back,
    podman_pulls_each_platform_of_an_index,
);
