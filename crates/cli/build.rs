//! Link-time options for the `berth` executable.

fn main() {
    // Relative relocations packed as DT_RELR (glibc 2.36+, GNU ld 2.38+): a position-independent
    // executable keeps its address randomisation, but its ~60,000 pointer fix-ups take a few KiB
    // instead of 1.4 MB that the loader would read (and keep resident) at every start.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }

    // Start-up and idle code first (release builds with rustc's default linker on this
    // target, rust-lld): the kernel maps code in 64 KiB blocks around each page touched,
    // so the ~3,000 functions an idle server has run, scattered over 23 MB of .text, kept
    // ~11 MiB resident; laid out together they take ~3 MiB. `scripts/symbol-order`
    // regenerates the list; symbols it names that no longer exist are ignored.
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let opted_out = std::env::var_os("BERTH_NO_SYMBOL_ORDER").is_some();
    if release && target == "x86_64-unknown-linux-gnu" && !opted_out {
        let order = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("symbol-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        println!("cargo:rerun-if-changed=symbol-order.txt");
    }
    println!("cargo:rerun-if-env-changed=BERTH_NO_SYMBOL_ORDER");
    println!("cargo:rerun-if-changed=build.rs");
}
