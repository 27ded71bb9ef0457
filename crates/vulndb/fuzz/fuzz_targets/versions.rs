//! Every version parser and comparator on arbitrary strings: no panics, and comparison is
//! reflexive and antisymmetric on whatever parses.

#![no_main]

use std::cmp::Ordering;

use berth_vulndb::versions::{VersionScheme, compare_scheme};
use libfuzzer_sys::fuzz_target;

const SCHEMES: [VersionScheme; 8] = [
    VersionScheme::Dpkg,
    VersionScheme::Apk,
    VersionScheme::Rpm,
    VersionScheme::SemVer,
    VersionScheme::Go,
    VersionScheme::Pep440,
    VersionScheme::Maven,
    VersionScheme::RubyGems,
];

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Split the input into two versions at the first NUL, if any.
    let (a, b) = s.split_once('\0').unwrap_or((s, s));
    for scheme in SCHEMES {
        if let Ok(ab) = compare_scheme(scheme, a, b) {
            assert_eq!(compare_scheme(scheme, a, a), Ok(Ordering::Equal));
            assert_eq!(compare_scheme(scheme, b, a), Ok(ab.reverse()));
        }
    }
});
