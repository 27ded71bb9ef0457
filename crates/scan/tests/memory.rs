//! Memory stays bounded whatever the layer size: a 512 MiB (uncompressed) gzip layer, generated
//! as it streams, is indexed while a counting allocator watches the peak; and a large npm lock
//! file is parsed without building its JSON tree.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_oci::Digest;
use berth_scan::AnalyzerOptions;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tests measure one at a time (the peak is the process's).
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

const MIB: u64 = 1 << 20;

/// An inline (Go 1.18+) build info header with a small module list.
fn go_buildinfo() -> Vec<u8> {
    let mut b = b"\xff Go buildinf:\x08\x02".to_vec();
    b.resize(32, 0);
    let v = b"go1.22.1";
    b.push(v.len() as u8);
    b.extend_from_slice(v);
    let mut m = vec![b'S'; 16];
    m.extend_from_slice(b"path\texample.com/huge\nmod\texample.com/huge\tv1.0.0\t\ndep\tgolang.org/x/sys\tv0.18.0\th1:x=\n");
    m.extend_from_slice(&[b'E'; 16]);
    b.push(m.len() as u8);
    b.extend_from_slice(&m);
    b
}

/// Writes the layer (tar, gzip) into `out`: a 400 MiB data file, a 100 MiB Go executable with
/// OpenSSL linked in (over the binary cap, so scanned as a stream), a few mid-sized files, and
/// an os-release. Everything is generated as it is written; nothing big is allocated.
fn generate(out: impl Write) {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let add = |b: &mut tar::Builder<_>, path: &str, mode: u32, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        b.append_data(&mut h, path, data).unwrap();
    };
    let filler = |head: &'static [u8], size: u64| {
        head.chain(std::io::repeat(b'A').take(size - head.len() as u64))
    };
    add(
        &mut b,
        "etc/os-release",
        0o644,
        24,
        &mut filler(b"ID=alpine\nVERSION_ID=", 24),
    );
    add(
        &mut b,
        "data/big.bin",
        0o644,
        400 * MIB,
        &mut filler(b"", 400 * MIB),
    );
    // The Go header sits 16-byte aligned, 80 MiB in; the OpenSSL string at 60 MiB.
    let ssl = b"\0OpenSSL 3.0.11 19 Sep 2023\0";
    let go = go_buildinfo();
    let go_at = 80 * MIB;
    let mut huge = (&b"\x7fELF"[..])
        .chain(std::io::repeat(0).take(60 * MIB - 4))
        .chain(&ssl[..])
        .chain(std::io::repeat(b'G').take(go_at - 60 * MIB - ssl.len() as u64))
        .chain(go.as_slice())
        .chain(std::io::repeat(0).take(100 * MIB - go_at - go.len() as u64));
    add(&mut b, "usr/bin/huge", 0o755, 100 * MIB, &mut huge);
    for i in 0..3 {
        let path = format!("usr/lib/libthing{i}.so.1");
        add(
            &mut b,
            &path,
            0o644,
            4 * MIB,
            &mut filler(b"\x7fELF\x02\x01\x01", 4 * MIB),
        );
    }
    b.into_inner().unwrap().finish().unwrap();
}

struct HashingSink(berth_oci::digest::Hasher);

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_512_mib_layer_is_indexed_in_bounded_memory() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // First pass: the compressed digest, without keeping the bytes.
    let mut sink = HashingSink(berth_oci::Algorithm::Sha256.hasher());
    generate(&mut sink);
    let digest: Digest = sink.0.finish();

    // Second pass: generated on a thread into a pipe, indexed from the other end.
    let (reader, writer) = std::io::pipe().unwrap();
    let producer = std::thread::spawn(move || generate(writer));
    let opts = AnalyzerOptions {
        max_binary_size: 16 * MIB,
        ..Default::default()
    };
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let index = berth_scan::layer::index_layer(
        &digest,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        reader,
        &opts,
        Box::new(|_| {}),
    )
    .unwrap();
    producer.join().unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;

    assert!(index.tar_size > 504 * MIB, "{}", index.tar_size);
    assert_eq!(index.entries.len(), 6);
    assert!(index.findings.iter().any(|f| f.os.is_some()));
    assert!(
        index
            .warnings
            .iter()
            .any(|w| w.path.as_deref() == Some("usr/bin/huge") && w.message.contains("limit")),
        "{:?}",
        index.warnings
    );
    let huge = index
        .findings
        .iter()
        .find(|f| f.path == "usr/bin/huge")
        .expect("findings in the streamed binary");
    let mut found: Vec<String> = huge
        .packages
        .iter()
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "example.com/huge@v1.0.0",
            "golang.org/x/sys@v0.18.0",
            "openssl@3.0.11",
            "stdlib@go1.22.1"
        ]
    );
    eprintln!("peak allocation during indexing: {} KiB", peak >> 10);
    // The three 4 MiB libraries were read (one at a time), the big binary in windows of 4 MiB;
    // nothing else was held.
    assert!(
        peak < 24 * MIB as usize,
        "peak allocation {} MiB",
        peak >> 20
    );
}

/// A monorepo's lock file: 40,000 entries of about 200 bytes (8 MB). As one JSON tree it took
/// 36 MiB; read entry by entry, little more than an index of the keys (3.4 MiB). (These are
/// workspace entries, which are not packages, so the inventory itself costs nothing here.)
#[test]
fn a_large_npm_lock_file_is_parsed_entry_by_entry() {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut lock = String::from(r#"{"lockfileVersion":3,"packages":{"":{"name":"app"}"#);
    for i in 0..40_000 {
        lock.push_str(&format!(
            r#","packages/p{i}":{{"version":"1.{i}.0","resolved":"https://registry.npmjs.org/p{i}/-/p{i}-1.{i}.0.tgz","integrity":"sha512-{i:0>86}==","license":"MIT"}}"#
        ));
    }
    lock.push_str(r#","node_modules/left-pad":{"version":"1.3.0"}}}"#);
    assert!(lock.len() > 8_000_000, "{}", lock.len());
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let pkgs = berth_scan::analyzer::lang::parse_package_lock(lock.as_bytes()).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(pkgs.len(), 1);
    assert_eq!(pkgs[0].name, "left-pad");
    eprintln!(
        "peak allocation parsing an 8 MB lock file: {} KiB",
        peak >> 10
    );
    assert!(
        peak < 8 * MIB as usize,
        "peak allocation {} MiB",
        peak >> 20
    );
}
