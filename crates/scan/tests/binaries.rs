//! Binaries: Go build information (real Debian Go programs, and both header layouts written per
//! the format), cargo-auditable sections, and the classifier table over real libraries.

mod common;

use std::io::Write;
use std::path::Path;

use berth_scan::analyzer::golang::{self, BuildInfoError};
use berth_scan::{Ecosystem, ImageReport};
use common::*;

/// A minimal little-endian ELF64 file with the given sections (name, virtual address, bytes),
/// laid out one after another, plus a section name table.
pub fn elf(sections: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let mut shstrtab = vec![0u8];
    let mut headers: Vec<[u64; 5]> = Vec::new(); // name offset, addr, offset, size, type
    for (name, addr, data) in sections {
        while !out.len().is_multiple_of(16) {
            out.push(0);
        }
        headers.push([
            shstrtab.len() as u64,
            *addr,
            out.len() as u64,
            data.len() as u64,
            1,
        ]);
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
        out.extend_from_slice(data);
    }
    let shstr_name = shstrtab.len() as u64;
    shstrtab.extend_from_slice(b".shstrtab\0");
    headers.push([shstr_name, 0, out.len() as u64, shstrtab.len() as u64, 3]);
    out.extend_from_slice(&shstrtab);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len() as u64;
    out.extend_from_slice(&[0u8; 64]); // the null section
    for h in &headers {
        let mut sh = Vec::new();
        sh.extend_from_slice(&(h[0] as u32).to_le_bytes()); // sh_name
        sh.extend_from_slice(&(h[4] as u32).to_le_bytes()); // sh_type
        sh.extend_from_slice(&(if h[1] != 0 { 3u64 } else { 0 }).to_le_bytes()); // flags: WA
        sh.extend_from_slice(&h[1].to_le_bytes()); // addr
        sh.extend_from_slice(&h[2].to_le_bytes()); // offset
        sh.extend_from_slice(&h[3].to_le_bytes()); // size
        sh.extend_from_slice(&0u32.to_le_bytes()); // link
        sh.extend_from_slice(&0u32.to_le_bytes()); // info
        sh.extend_from_slice(&1u64.to_le_bytes()); // addralign
        sh.extend_from_slice(&0u64.to_le_bytes()); // entsize
        out.extend_from_slice(&sh);
    }
    let shnum = headers.len() as u16 + 1;
    let e = &mut out[..64];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // 64-bit
    e[5] = 1; // little endian
    e[6] = 1;
    e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    e[20..24].copy_from_slice(&1u32.to_le_bytes());
    e[40..48].copy_from_slice(&shoff.to_le_bytes());
    e[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    e[58..60].copy_from_slice(&64u16.to_le_bytes()); // shentsize
    e[60..62].copy_from_slice(&shnum.to_le_bytes());
    e[62..64].copy_from_slice(&(shnum - 1).to_le_bytes()); // shstrndx
    out
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Module info as the linker writes it, between its 16-byte sentinels.
fn sentinel_wrapped(modinfo: &str) -> Vec<u8> {
    let mut m = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
    m.extend_from_slice(modinfo.as_bytes());
    m.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
    m
}

/// The Go 1.18+ inline header: magic, pointer size, flags (2 = inline), then two varint strings.
fn inline_buildinfo(version: &str, modinfo: &str) -> Vec<u8> {
    let mut b = b"\xff Go buildinf:".to_vec();
    b.push(8);
    b.push(2);
    b.resize(32, 0);
    varint(version.len(), &mut b);
    b.extend_from_slice(version.as_bytes());
    let m = sentinel_wrapped(modinfo);
    varint(m.len(), &mut b);
    b.extend_from_slice(&m);
    b
}

/// The pre-1.18 header: two pointers to Go string headers in `.data`.
fn pointer_buildinfo_elf(version: &str, modinfo: &str) -> Vec<u8> {
    const DATA: u64 = 0x50_0000;
    let m = sentinel_wrapped(modinfo);
    // .data: [hdr_version (ptr,len)] [hdr_modinfo (ptr,len)] [version bytes] [modinfo bytes]
    let mut data = Vec::new();
    let v_at = DATA + 32;
    let m_at = v_at + version.len() as u64;
    data.extend_from_slice(&v_at.to_le_bytes());
    data.extend_from_slice(&(version.len() as u64).to_le_bytes());
    data.extend_from_slice(&m_at.to_le_bytes());
    data.extend_from_slice(&(m.len() as u64).to_le_bytes());
    data.extend_from_slice(version.as_bytes());
    data.extend_from_slice(&m);
    let mut hdr = b"\xff Go buildinf:".to_vec();
    hdr.push(8);
    hdr.push(0);
    hdr.extend_from_slice(&DATA.to_le_bytes());
    hdr.extend_from_slice(&(DATA + 16).to_le_bytes());
    elf(&[(".go.buildinfo", 0x40_0000, &hdr), (".data", DATA, &data)])
}

fn terraform_modinfo() -> String {
    String::from_utf8(fixture("go-modinfo-terraform.txt")).unwrap()
}

fn check_terraform(info: &golang::BuildInfo) {
    assert_eq!(info.go_version, "go1.23.3");
    assert_eq!(info.path.as_deref(), Some("github.com/hashicorp/terraform"));
    assert_eq!(info.main.as_ref().unwrap().version, "(devel)");
    assert_eq!(info.deps.len(), 26);
    assert_eq!(info.deps[0].path, "cloud.google.com/go");
    assert_eq!(info.deps[0].version, "v0.110.7");
    let azure = info.deps.last().unwrap();
    assert_eq!(
        azure.replace.as_ref().unwrap().path,
        "./internal/backend/remote-state/azure"
    );
    assert!(info.settings.contains(&("GOOS".into(), "linux".into())));
}

#[test]
fn go_buildinfo_inline_and_pointer_formats() {
    let mut inline = b"\x7fELF".to_vec();
    inline.resize(4096, 0);
    inline.extend_from_slice(&inline_buildinfo("go1.23.3", &terraform_modinfo()));
    check_terraform(&golang::read_build_info(&inline).unwrap());
    check_terraform(
        &golang::read_build_info(&pointer_buildinfo_elf("go1.23.3", &terraform_modinfo())).unwrap(),
    );
}

#[test]
fn go_replacements_and_packages() {
    let modinfo = "path\texample.com/app\nmod\texample.com/app\tv1.2.3\th1:abc=\n\
dep\tgolang.org/x/net\tv0.1.0\th1:old=\n=>\tgithub.com/fork/net\tv0.2.0\th1:new=\n\
dep\texample.com/local\tv0.0.0\n=>\t../local\t\t\nbuild\tGOOS=linux\n";
    let info = golang::read_build_info(&inline_buildinfo("go1.21.5", modinfo)).unwrap();
    let pkgs = golang::packages(&info);
    let get = |n: &str| {
        pkgs.iter()
            .find(|p| p.name == n)
            .unwrap_or_else(|| panic!("{n}: {pkgs:?}"))
    };
    assert_eq!(get("example.com/app").version, "v1.2.3");
    assert_eq!(get("example.com/app").properties["go.main"], "true");
    let fork = get("github.com/fork/net");
    assert_eq!(fork.version, "v0.2.0");
    assert_eq!(fork.properties["go.replaced"], "golang.org/x/net v0.1.0");
    assert_eq!(
        get("example.com/local").properties["go.replacement.local"],
        "../local"
    );
    assert_eq!(get("stdlib").version, "go1.21.5");
    assert_eq!(
        get("stdlib").cpes,
        ["cpe:2.3:a:golang:go:1.21.5:*:*:*:*:*:*:*"]
    );
    assert_eq!(get("example.com/app").properties["go.sum"], "h1:abc=");
}

/// What `go build -mod=vendor` of a source tree without version control records (as
/// `scripts/test-images` builds its Go image): the main module at `(devel)`, dependencies with
/// an empty sum field.
#[test]
fn go_vendored_build_of_a_source_tree() {
    let modinfo = "path\texample.com/hello\nmod\texample.com/hello\t(devel)\t\n\
dep\tgolang.org/x/text\tv0.7.0\t\nbuild\t-trimpath=true\n";
    let pkgs =
        golang::packages(&golang::read_build_info(&inline_buildinfo("go1.19.8", modinfo)).unwrap());
    let main = &pkgs[0];
    assert_eq!(
        (main.name.as_str(), main.version.as_str()),
        ("example.com/hello", "")
    );
    assert_eq!(main.properties["go.main"], "true");
    assert!(!main.properties.contains_key("go.sum"), "{main:?}");
    let text = &pkgs[1];
    assert_eq!(
        (text.name.as_str(), text.version.as_str()),
        ("golang.org/x/text", "v0.7.0")
    );
    assert!(!text.properties.contains_key("go.sum"), "{text:?}");
    let r = analyze_layers(
        &[vec![exe("usr/bin/hello", {
            let mut b = b"\x7fELF".to_vec();
            b.resize(4096, 0);
            b.extend_from_slice(&inline_buildinfo("go1.19.8", modinfo));
            b
        })]],
        Comp::Gzip,
    );
    assert_eq!(
        find(&r, "example.com/hello").unwrap().purl,
        "pkg:golang/example.com/hello"
    );
}

#[test]
fn malformed_go_buildinfo_is_an_error_not_a_panic() {
    let good = inline_buildinfo("go1.21.5", "path\tx\n");
    for cut in [14, 20, 33, 40, good.len() - 3] {
        let r = golang::read_build_info(&good[..cut]);
        assert!(
            matches!(r, Err(BuildInfoError::Malformed(_))),
            "cut {cut}: {r:?}"
        );
    }
    // A huge declared length.
    let mut huge = good[..32].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(golang::read_build_info(&huge).is_err());
    // Pointers to addresses no section holds.
    let mut hdr = b"\xff Go buildinf:".to_vec();
    hdr.extend_from_slice(&[8, 0]);
    hdr.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
    hdr.extend_from_slice(&0xdead_beef_u64.to_le_bytes());
    let e = elf(&[(".go.buildinfo", 0x40_0000, &hdr)]);
    assert!(matches!(
        golang::read_build_info(&e),
        Err(BuildInfoError::Malformed(_))
    ));
    assert_eq!(
        golang::read_build_info(b"\x7fELF not go at all"),
        Err(BuildInfoError::NotGo)
    );
    // In an image, a malformed Go binary is a warning.
    let mut bad = b"\x7fELF".to_vec();
    bad.resize(64, 0);
    bad.extend_from_slice(&good[..40]);
    let r = analyze_layers(&[vec![exe("usr/bin/broken", bad)]], Comp::Gzip);
    assert!(r.packages.is_empty());
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("malformed Go build information")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn real_go_binaries_of_this_machine() {
    // Debian's skopeo (installed for the client tests) and umoci: built in GOPATH mode, so a
    // toolchain version and a path but no module list.
    for bin in ["/usr/bin/skopeo", "/usr/bin/umoci"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
    {
        let info = golang::read_build_info(&std::fs::read(bin).unwrap()).unwrap();
        assert!(info.go_version.starts_with("go1."), "{bin}: {info:?}");
        assert!(info.path.is_some(), "{bin}");
        let r = analyze_layers(&[vec![real("usr/bin/tool", bin)]], Comp::Gzip);
        let std = find(&r, "stdlib").unwrap();
        assert_eq!(std.version, info.go_version);
        assert_eq!(std.purl, format!("pkg:golang/stdlib@{}", info.go_version));
        assert_eq!(std.ecosystem, Ecosystem::Golang);
    }
}

#[test]
fn go_modules_in_an_image_get_golang_purls() {
    let mut bin = b"\x7fELF".to_vec();
    bin.resize(4096, 0);
    bin.extend_from_slice(&inline_buildinfo("go1.23.3", &terraform_modinfo()));
    let r = analyze_layers(&[vec![exe("usr/local/bin/terraform", bin)]], Comp::Zstd);
    let p = find(&r, "cloud.google.com/go/compute/metadata").unwrap();
    assert_eq!(
        p.purl,
        "pkg:golang/cloud.google.com/go/compute/metadata@v0.3.0"
    );
    assert_eq!(p.evidence[0].path, "usr/local/bin/terraform");
    // Terraform's release build leaves its main module at `(devel)`: no version.
    assert_eq!(
        find(&r, "github.com/hashicorp/terraform").unwrap().purl,
        "pkg:golang/github.com/hashicorp/terraform"
    );
}

fn auditable_section(json: &str) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json.as_bytes()).unwrap();
    z.finish().unwrap()
}

#[test]
fn cargo_auditable_binaries() {
    let json = r#"{"packages":[
        {"name":"hello","version":"0.1.0","source":"local","root":true,"dependencies":[1,2]},
        {"name":"serde","version":"1.0.197","source":"crates.io","dependencies":[]},
        {"name":"cc","version":"1.0.90","source":"crates.io","kind":"build"},
        {"name":"regex","version":"1.10.3","source":"crates.io"}]}"#;
    let bin = elf(&[
        (".text", 0x1000, &[0x90; 64]),
        (".dep-v0", 0, &auditable_section(json)),
    ]);
    let r = analyze_layers(&[vec![exe("usr/bin/hello", bin)]], Comp::Gzip);
    assert_eq!(names(&r), ["hello@0.1.0", "regex@1.10.3", "serde@1.0.197"]);
    assert_eq!(find(&r, "serde").unwrap().purl, "pkg:cargo/serde@1.0.197");
    // Not zlib: a warning.
    let bin = elf(&[(".dep-v0", 0, b"not compressed at all")]);
    let r = analyze_layers(&[vec![exe("usr/bin/bad", bin)]], Comp::Gzip);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.message.contains("cargo-auditable")),
        "{:?}",
        r.warnings
    );
    // A bomb: 64 MiB of zeros compressed to a few KiB is refused past the cap.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![b' '; 64 << 20]).unwrap();
    let bin = elf(&[(".dep-v0", 0, &z.finish().unwrap())]);
    let r = analyze_layers(&[vec![exe("usr/bin/bomb", bin)]], Comp::Gzip);
    assert!(
        r.warnings.iter().any(|w| w.message.contains("larger than")),
        "{:?}",
        r.warnings
    );
}

/// What the classifier reports for a real file placed at `at` in an image.
fn classify_real(from: &str, at: &str) -> ImageReport {
    analyze_layers(&[vec![real(at, from)]], Comp::Gzip)
}

/// The upstream version of a Debian package installed here (no epoch, revision or `.dfsg`).
fn debian_upstream(pkg: &str) -> String {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let p = berth_scan::analyzer::dpkg::parse_status(&status)
        .into_iter()
        .find(|p| p.name == pkg)
        .unwrap();
    let v = p
        .version
        .split_once(':')
        .map(|(_, v)| v)
        .unwrap_or(&p.version);
    let v = v.rsplit_once('-').map(|(u, _)| u).unwrap_or(v);
    v.split(['+', '~'])
        .next()
        .unwrap()
        .trim_end_matches(".dfsg")
        .to_owned()
}

#[test]
fn classifiers_on_real_libraries() {
    let lib = "/usr/lib/x86_64-linux-gnu";
    let check = |from: String, at: &str, name: &str, version: String, cpe: &str| {
        let r = classify_real(&from, at);
        let p = find(&r, name).unwrap_or_else(|| panic!("{name} in {from}: {:?}", names(&r)));
        assert_eq!(p.version, version, "{from}");
        assert_eq!(
            p.cpes[0],
            format!("cpe:2.3:a:{cpe}:{version}:*:*:*:*:*:*:*")
        );
        assert_eq!(p.purl, format!("pkg:generic/{name}@{version}"));
    };
    check(
        format!("{lib}/libz.so.1"),
        "opt/lib/libz.so.1",
        "zlib",
        debian_upstream("zlib1g"),
        "zlib:zlib",
    );
    check(
        format!("{lib}/libcrypto.so.3"),
        "opt/lib/libcrypto.so.3",
        "openssl",
        debian_upstream("libssl3"),
        "openssl:openssl",
    );
    // libcurl4 and libsqlite3-0 come with most Debian systems but not with every one.
    if Path::new(&format!("{lib}/libcurl.so.4")).exists() {
        check(
            format!("{lib}/libcurl.so.4"),
            "opt/lib/libcurl.so.4",
            "curl",
            debian_upstream("libcurl4"),
            "haxx:libcurl",
        );
    }
    if Path::new(&format!("{lib}/libsqlite3.so.0")).exists() {
        check(
            format!("{lib}/libsqlite3.so.0"),
            "opt/lib/libsqlite3.so.0",
            "sqlite",
            debian_upstream("libsqlite3-0"),
            "sqlite:sqlite",
        );
    }
    check(
        "/lib/x86_64-linux-gnu/libc.so.6".into(),
        "opt/lib/libc.so.6",
        "glibc",
        debian_upstream("libc6"),
        "gnu:glibc",
    );
    let pg = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("bin/postgres");
    let pg_version = debian_upstream(&format!(
        "postgresql-{}",
        pg.parent()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    ));
    check(
        pg.to_str().unwrap().into(),
        "usr/local/bin/postgres",
        "postgresql",
        pg_version,
        "postgresql:postgresql",
    );
    // Optional on a CI machine; checked when present.
    if Path::new(&format!("{lib}/libpython3.11.so.1.0")).exists() {
        let r = classify_real(
            &format!("{lib}/libpython3.11.so.1.0"),
            "usr/local/lib/libpython3.11.so.1.0",
        );
        assert!(find(&r, "python").unwrap().version.starts_with("3.11."));
    }
    if Path::new("/usr/bin/node").exists() {
        let r = classify_real("/usr/bin/node", "usr/local/bin/node");
        let node = find(&r, "node").unwrap();
        assert!(
            node.version.starts_with(|c: char| c.is_ascii_digit()),
            "{node:?}"
        );
    }
}

#[test]
fn classifiers_on_version_strings() {
    // Each program's version string as its build embeds it, in an otherwise empty ELF file.
    let check = |at: &str, strings: &[u8], name: &str, version: &str| {
        let mut data = b"\x7fELF".to_vec();
        data.resize(256, 0);
        data.extend_from_slice(strings);
        data.resize(data.len() + 256, 0);
        let r = analyze_layers(&[vec![exe(at, data)]], Comp::None);
        let p = find(&r, name).unwrap_or_else(|| panic!("{name} at {at}: {:?}", names(&r)));
        assert_eq!(p.version, version, "{name}");
    };
    check(
        "bin/busybox",
        b"\0BusyBox v1.36.1 (2023-11-07 18:53:09 UTC)\0",
        "busybox",
        "1.36.1",
    );
    check(
        "usr/sbin/nginx",
        b"\0nginx version: nginx/1.25.3\0",
        "nginx",
        "1.25.3",
    );
    check(
        "usr/local/bin/redis-server",
        b"\x00redis_version\x00\x007.2.4\x00",
        "redis",
        "7.2.4",
    );
    check(
        "lib/ld-musl-x86_64.so.1",
        b"\x00musl libc (x86_64)\x00\x001.2.4\x00",
        "musl",
        "1.2.4",
    );
    check("usr/local/go/bin/go", b"\0go1.21.5\0", "go", "1.21.5");
    check(
        "usr/local/bin/app",
        b"\0OpenSSL 1.1.1w  11 Sep 2023\0",
        "openssl",
        "1.1.1w",
    );
    check(
        "usr/local/bin/app",
        b"\0OpenSSL 1.1.1 (compatible; BoringSSL)\0",
        "boringssl",
        "",
    );
    check(
        "usr/local/bin/static-tool",
        b"\0 inflate 1.3 Copyright 1995-2023 Mark Adler \0",
        "zlib",
        "1.3",
    );
    check("usr/bin/python3.12", b"\x003.12.1\x00", "python", "3.12.1");
}

#[test]
fn a_real_cargo_auditable_binary() {
    // Built by cargo-auditable (see fixtures/rust/SOURCE), stripped, with one dependency.
    let r = analyze_layers(
        &[vec![exe(
            "usr/local/bin/audhello",
            fixture("rust/audhello"),
        )]],
        Comp::Gzip,
    );
    assert_eq!(names(&r), ["audhello@0.3.1", "hex@0.4.3"]);
    let hex = find(&r, "hex").unwrap();
    assert_eq!(hex.purl, "pkg:cargo/hex@0.4.3");
    assert_eq!(hex.properties["cargo.source"], "crates.io");
    assert_eq!(
        find(&r, "audhello").unwrap().properties["cargo.root"],
        "true"
    );
}

#[test]
fn real_go_1_23_build_info_bytes() {
    // The `.go.buildinfo` bytes of a released terraform binary (Go 1.23.3), cut out as they are.
    let mut data = b"\x7fELF".to_vec();
    data.resize(1 << 12, 0);
    data.extend_from_slice(&fixture("go-buildinfo-terraform.bin"));
    let info = golang::read_build_info(&data).unwrap();
    assert_eq!(info.go_version, "go1.23.3");
    assert_eq!(info.path.as_deref(), Some("github.com/hashicorp/terraform"));
    assert!(info.deps.len() > 200, "{}", info.deps.len());
    let pkgs = golang::packages(&info);
    let dep = pkgs
        .iter()
        .find(|p| p.name == "cloud.google.com/go/iam")
        .unwrap();
    assert_eq!(dep.version, "v1.1.1");
    assert!(dep.properties["go.sum"].starts_with("h1:"));
    assert_eq!(
        pkgs.iter()
            .filter(|p| p.properties.contains_key("go.replacement.local"))
            .count(),
        9
    );
}
