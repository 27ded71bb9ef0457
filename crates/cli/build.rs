//! Link-time options for the `berth` executable.

fn main() {
    // Relative relocations packed as DT_RELR (glibc 2.36+, GNU ld 2.38+): a position-independent
    // executable keeps its address randomisation, but its ~60,000 pointer fix-ups take a few KiB
    // instead of 1.4 MB that the loader would read (and keep resident) at every start.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
