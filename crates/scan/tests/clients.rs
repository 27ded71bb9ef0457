//! Images written by real tools: `skopeo` (docker-archive and oci-archive files, and a push to
//! Debian's `docker-registry`, the CNCF Distribution server). `scripts/test` installs both; the
//! tests fail without them rather than skip.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_scan::{AnalyzeOptions, ImageReport, LocalSource, RegistrySource};
use common::*;

fn tool(name: &str) -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join(name);
        if p.is_file() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("{name} is not installed: run scripts/test, which installs it");
}

fn skopeo(args: &[&str]) {
    let out = Command::new(tool("skopeo"))
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Debian image with a Go program and a vendored zlib, as an OCI layout tagged `test`.
fn layout() -> Layout {
    let mut l = Layout::new();
    let layers = [
        vec![
            dir("etc"),
            symlink("etc/os-release", "../usr/lib/os-release"),
            file("usr/lib/os-release", fixture("os-release-debian12")),
            file("var/lib/dpkg/status", fixture("dpkg-status")),
        ],
        vec![
            real("usr/local/bin/umoci", &tool("umoci")),
            real("opt/lib/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"),
        ],
        vec![file("usr/local/bin/.wh.umoci", "")],
    ];
    let blobs: Vec<_> = layers
        .iter()
        .map(|e| compress(&layer_tar(e), Comp::Gzip))
        .collect();
    let d = l.image(&blobs, "amd64");
    l.tag(d, "test");
    l.write_index();
    l
}

fn summary(r: &ImageReport) -> Vec<String> {
    r.packages
        .iter()
        .map(|p| format!("{} {} {}", p.purl, p.evidence.len(), p.evidence[0].path))
        .collect()
}

#[test]
fn archives_written_by_skopeo() {
    let l = layout();
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker.tar");
    let oci = dir.path().join("oci.tar");
    let src = format!("oci:{}:test", l.path().display());
    skopeo(&[
        "copy",
        &src,
        &format!("docker-archive:{}:app:1", docker.display()),
    ]);
    skopeo(&["copy", &src, &format!("oci-archive:{}:test", oci.display())]);
    let (from_layout, from_docker, from_oci) = run(async {
        let opts = AnalyzeOptions::default();
        let p = berth_scan::no_progress;
        let a = berth_scan::analyze_image(
            &LocalSource::oci_layout(l.path()).unwrap(),
            "test",
            &opts,
            p(),
        )
        .await
        .unwrap();
        let b = berth_scan::analyze_image(
            &LocalSource::archive(&docker).await.unwrap(),
            "",
            &opts,
            p(),
        )
        .await
        .unwrap();
        let c = berth_scan::analyze_image(
            &LocalSource::archive(&oci).await.unwrap(),
            "test",
            &opts,
            p(),
        )
        .await
        .unwrap();
        (a, b, c)
    });
    assert_eq!(from_layout.os.as_ref().unwrap().id, "debian");
    // The Go program was deleted by the top layer's whiteout; the vendored zlib remains.
    assert!(
        find(&from_layout, "stdlib").is_none(),
        "{:?}",
        names(&from_layout)
    );
    assert!(find(&from_layout, "zlib").is_some());
    assert_eq!(summary(&from_layout), summary(&from_docker));
    assert_eq!(summary(&from_layout), summary(&from_oci));
}

struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: berth-scan-test\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(tool("docker-registry"));
    cmd.arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        _dir: dir,
        addr,
    }
}

#[test]
fn an_image_pushed_to_a_distribution_registry() {
    let l = layout();
    let reg = start_registry();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:test", l.path().display()),
        &format!("docker://{}/team/app:1", reg.addr),
    ]);
    let (local, remote) = run(async {
        let opts = AnalyzeOptions::default();
        let a = berth_scan::analyze_image(
            &LocalSource::oci_layout(l.path()).unwrap(),
            "test",
            &opts,
            berth_scan::no_progress(),
        )
        .await
        .unwrap();
        let (src, reference) =
            RegistrySource::from_image_ref(&format!("{}/team/app:1", reg.addr), None, true)
                .unwrap();
        let b = berth_scan::analyze_image(&src, &reference, &opts, berth_scan::no_progress())
            .await
            .unwrap();
        (a, b)
    });
    assert_eq!(
        local.manifest_digest, remote.manifest_digest,
        "skopeo kept the manifest bytes"
    );
    assert_eq!(local.packages, remote.packages);
}
