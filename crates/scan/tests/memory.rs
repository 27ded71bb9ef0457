//! Memory stays bounded whatever the layer size: a 512 MiB (uncompressed) gzip layer, generated
//! as it streams, is indexed while a counting allocator watches the peak.

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

const MIB: u64 = 1 << 20;

/// Writes the layer (tar, gzip) into `out`: a 400 MiB data file, a 100 MiB ELF executable (over
/// the binary cap), a few mid-sized files, and an os-release.
fn generate(out: impl Write) {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    let mut add = |path: &str, mode: u32, size: u64, head: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        let data = head.chain(std::io::repeat(b'A').take(size - head.len() as u64));
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/os-release", 0o644, 24, b"ID=alpine\nVERSION_ID=");
    add("data/big.bin", 0o644, 400 * MIB, b"");
    add("usr/bin/huge", 0o755, 100 * MIB, b"\x7fELF");
    for i in 0..3 {
        add(
            &format!("usr/lib/libthing{i}.so.1"),
            0o644,
            4 * MIB,
            b"\x7fELF\x02\x01\x01",
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
    eprintln!("peak allocation during indexing: {} KiB", peak >> 10);
    // The three 4 MiB libraries were read (one at a time); nothing else was held.
    assert!(
        peak < 24 * MIB as usize,
        "peak allocation {} MiB",
        peak >> 20
    );
}
